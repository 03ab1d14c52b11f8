package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// Certificate renewal (SPEC §9.7, [GO-DEFINED]; upstream agents answer 404).
// The control host asks for a CSR from the agent's existing key, signs it and
// delivers the certificate; the agent checks it, stores it and serves with it
// from the next handshake on. Both endpoints demand the stored serial like
// /run (D-16), so only the control host this agent trusts can renew it.

// handleRenew is POST /renew: {"reqid":R} → {"status":"ok","csr":PEM,"reqid":R},
// the CSR made from the configured key with CN = this host's name. The key
// is never replaced. Failure → 500 {"error":…}.
func (s *Server) handleRenew(_ context.Context, c *call) reply {
	if !c.serialMatches() {
		return s.serialReject(c)
	}
	var reqid any = ""
	if body, isObject := decodeObject(c.req.Body); isObject {
		reqid = body.get("reqid")
	}
	keyPath := c.rt.cfg.Key
	if fi, err := os.Stat(keyPath); err != nil || !fi.Mode().IsRegular() {
		return s.renewFailed(c, reqid, 500, fmt.Sprintf("Key file not found at '%s'", keyPath))
	}
	key, err := pki.LoadKey(keyPath)
	if err != nil {
		return s.renewFailed(c, reqid, 500, err.Error())
	}
	csr, err := pki.CreateCSR(key, s.hostname)
	if err != nil {
		return s.renewFailed(c, reqid, 500, err.Error())
	}
	s.log.Info().Str("PEER", c.peer).Str("REQID", logText(reqid)).Str("STATUS", "csr-sent").Msg("renew")
	return okReply(map[string]any{"status": "ok", "csr": string(csr), "reqid": reqid})
}

// handleRenewComplete is POST /renew-complete: {"cert":PEM,"ca":PEM,"reqid":R}.
// The certificate must be for this agent's key, chain to the CA it already
// trusts (a "ca" other than that one is refused) and be unexpired; then it
// replaces the configured cert (0640, group ctrl-exec-agent) and new
// handshakes present it. 400 with the reason when the delivery is refused,
// 500 when it cannot be stored.
func (s *Server) handleRenewComplete(_ context.Context, c *call) reply {
	if !c.serialMatches() {
		return s.serialReject(c)
	}
	body, isObject := decodeObject(c.req.Body)
	if !isObject {
		return s.renewFailed(c, "", 400, "invalid JSON")
	}
	reqid := body.get("reqid")
	certPEM, isText := body["cert"].(string)
	if !isText || certPEM == "" {
		return s.renewFailed(c, reqid, 400, "no cert in request")
	}
	caPEM := ""
	if v, given := body["ca"]; given && v != nil {
		if caPEM, isText = v.(string); !isText {
			return s.renewFailed(c, reqid, 400, "ca must be a PEM string")
		}
	}

	cfg := c.rt.cfg
	key, err := pki.LoadKey(cfg.Key)
	if err != nil {
		return s.renewFailed(c, reqid, 500, err.Error())
	}
	trusted, err := os.ReadFile(cfg.CA)
	if err != nil {
		return s.renewFailed(c, reqid, 500, fmt.Sprintf("read CA %s: %s", cfg.CA, osReason(err)))
	}
	cert, err := pki.ValidateRenewedCert([]byte(certPEM), []byte(caPEM), trusted, key.Public(), s.now())
	if err != nil {
		return s.renewFailed(c, reqid, 400, err.Error())
	}

	// One renewal at a time writes the cert and reloads (flock), and no
	// SIGHUP reload swaps the identity in between (identityMu).
	err = atomicfile.WithLock(filepath.Dir(cfg.Cert), func() error {
		s.identityMu.Lock()
		defer s.identityMu.Unlock()
		return s.storeCert(cfg.Cert, cfg.Key, cfg.CA, pki.CertPEM(cert))
	})
	if err != nil {
		return s.renewFailed(c, reqid, 500, err.Error())
	}
	s.log.Info().Str("STATUS", "cert-stored").Str("REQID", logText(reqid)).Msg("renew-complete")
	return okReply(map[string]any{"status": "ok", "reqid": reqid})
}

// storeCert replaces certFile with certPEM and serves it from the next
// handshake. If the server cannot load it, the previous file is put back, and
// a failure to do that is reported too. The caller holds s.identityMu.
func (s *Server) storeCert(certFile, keyFile, caFile string, certPEM []byte) error {
	previous, err := os.ReadFile(certFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read current cert %s: %w", certFile, err)
	}
	if err := atomicfile.Write(certFile, certPEM, 0o640); err != nil {
		return fmt.Errorf("store cert: %w", err)
	}
	s.giveToAgentGroup(certFile)
	if err := s.identity.Reload(certFile, keyFile, caFile); err != nil {
		err = fmt.Errorf("load the new cert: %w", err)
		// Never leave a cert on disk that the server could not use.
		if previous != nil {
			if werr := atomicfile.Write(certFile, previous, 0o640); werr != nil {
				return fmt.Errorf("%w; putting the previous cert back also failed: %v - %s holds a certificate the agent could not load; restore it before the next restart", err, werr, certFile)
			}
			s.giveToAgentGroup(certFile)
		}
		return err
	}
	return nil
}

// renewFailed logs a refused or failed renewal step and builds its reply.
func (s *Server) renewFailed(c *call, reqid any, code int, msg string) reply {
	s.log.Warn().Str("PEER", c.peer).Str("REQID", logText(reqid)).Str("REASON", msg).Msg("renew-reject")
	return reply{code, errorBody(msg)}
}

// giveToAgentGroup gives path to group ctrl-exec-agent as pairing does
// (§7.9), keeping its owner.
func (s *Server) giveToAgentGroup(path string) {
	for _, w := range pairing.GiveToAgentGroup(-1, path) {
		fmt.Fprintln(s.stderr, "renew: "+w)
	}
}
