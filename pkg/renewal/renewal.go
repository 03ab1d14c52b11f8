// Package renewal renews agent certificates past half their lifetime
// (SPEC §15.1). It runs after every ping batch, from the CLI and the API
// alike, through the dispatch client's AfterPing hook:
//
//	client := dispatch.NewClient(conf, log)
//	renewal.Attach(client, conf, log, time.Now)
//	results, err := client.Ping(ctx, hosts) // due agents renewed before it returns
//
// For each registered agent whose ping reported a due expiry, one at a time:
// POST /renew for a CSR made from the agent's existing key, sign it under the
// ca.serial lock, POST /renew-complete with the certificate and ca.crt, and
// record the new expiry in the registry. A failure is logged and never
// changes the ping result; the next ping tries again.
//
// It lives beside pkg/dispatch rather than inside it: dispatch moves requests
// and knows nothing of the CA or the registry, which renewal needs.
package renewal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// DefaultCertDays is cert_days when ctrl-exec.conf sets none: both the
// lifetime of a renewed certificate and twice the half-life test (B-16).
const DefaultCertDays = 365

// Renewer renews due agent certificates. Build it with New; every field may
// be set directly in tests.
type Renewer struct {
	Client   *dispatch.Client // the ping client: same identity, CA and timeout
	CA       pki.CAFiles      // in ca_dir (default /etc/ctrl-exec)
	Registry *registry.Registry
	Serials  pki.SerialCounter // shared serial counter (etcd); nil: ca.serial alone
	CertDays int               // <= 0 means DefaultCertDays
	Log      zerolog.Logger
	Now      func() time.Time
}

// New builds a Renewer for client from ctrl-exec.conf.
func New(client *dispatch.Client, conf *config.Control, log zerolog.Logger, now func() time.Time) *Renewer {
	return &Renewer{
		Client:   client,
		CA:       pki.CAFilesIn(conf.CADir),
		Registry: registry.New(conf.RegistryDir),
		CertDays: conf.CertDays,
		Log:      log,
		Now:      now,
	}
}

// Attach makes every Ping of client renew due registered agents before it
// returns: the one hook the CLI's ping and the API's /ping share. shared,
// when not nil, is the state backend's registry and serial counter (etcd).
func Attach(client *dispatch.Client, conf *config.Control, shared *Shared, log zerolog.Logger, now func() time.Time) {
	r := New(client, conf, log, now)
	if shared != nil {
		r.Registry, r.Serials = shared.Registry, shared.Serials
	}
	client.AfterPing = r.AfterPing
}

// Shared is the state a Renewer shares with other control hosts.
type Shared struct {
	Registry *registry.Registry
	Serials  pki.SerialCounter
}

func (r *Renewer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Renewer) certDays() int {
	if r.CertDays > 0 {
		return r.CertDays
	}
	return DefaultCertDays
}

// Due reports whether a certificate expiring at expiry (an OpenSSL date)
// has less than half of certDays left at now. An expiry that does not parse
// ("unknown") is never due.
func Due(expiry string, certDays int, now time.Time) bool {
	notAfter, err := pki.ParseOpenSSLDate(expiry)
	if err != nil {
		return false
	}
	halfLife := time.Duration(certDays) * 24 * time.Hour / 2
	return notAfter.Sub(now) < halfLife
}

// AfterPing renews, one after another, every agent of the batch that
// answered "ok" with a due expiry and is in the registry (D-23). Failures
// are logged; results are never changed.
func (r *Renewer) AfterPing(ctx context.Context, results []dispatch.PingResult) {
	now := r.now()
	for _, res := range results {
		if ctx.Err() != nil {
			return
		}
		if !res.OK() || !Due(res.Str("expiry"), r.certDays(), now) {
			continue
		}
		hostname, found := r.registered(res)
		if !found {
			continue
		}
		r.Renew(ctx, res.Target, hostname)
	}
}

// registered finds the registry record of a ping result: by the hostname
// the agent reported (its pairing name), else by the target's host as
// upstream keyed it.
func (r *Renewer) registered(res dispatch.PingResult) (string, bool) {
	for _, name := range []string{res.Str("host"), res.Target.Host} {
		if !registry.ValidHostname(name) {
			continue
		}
		if _, err := r.Registry.Get(name); err == nil {
			return name, true
		}
	}
	return "", false
}

// Renew renews one agent reached at t, registered as hostname, with a fresh
// reqid: renew … STATUS=starting, then renew-complete … EXPIRY on success or
// renew … ERROR on failure. It returns the new certificate's notAfter.
func (r *Renewer) Renew(ctx context.Context, t dispatch.Target, hostname string) (time.Time, error) {
	reqid := pki.NewReqID()
	target := t.String()
	r.Log.Info().Str("TARGET", target).Str("REQID", reqid).Str("STATUS", "starting").Msg("renew")
	notAfter, err := r.renew(ctx, t, hostname, reqid)
	if err != nil {
		r.Log.Error().Str("TARGET", target).Str("ERROR", err.Error()).Msg("renew")
		return time.Time{}, err
	}
	r.Log.Info().Str("TARGET", target).Str("REQID", reqid).Str("EXPIRY", pki.FormatOpenSSLDate(notAfter)).Msg("renew-complete")
	return notAfter, nil
}

type renewRequest struct {
	Reqid string `json:"reqid"`
}

type renewDelivery struct {
	Cert  string `json:"cert"`
	CA    string `json:"ca"`
	Reqid string `json:"reqid"`
}

func (r *Renewer) renew(ctx context.Context, t dispatch.Target, hostname, reqid string) (time.Time, error) {
	if r.Client.Identity.Checks() {
		// The certificate is signed for hostname: only the agent that
		// already holds hostname's certificate may ask for it (D-31).
		t.Agents, t.Unregistered = []string{hostname}, false
	}
	rep, err := r.Client.Do(ctx, t, "POST", "/renew", wire.JSON(renewRequest{Reqid: reqid}))
	if err != nil {
		return time.Time{}, fmt.Errorf("renew request failed: %w", err)
	}
	if !rep.OK() {
		// A Perl agent answers 404: it cannot renew, and says so here.
		return time.Time{}, fmt.Errorf("renew request failed: %s", rep.StatusLine)
	}
	csr, err := csrFrom(rep.Body)
	if err != nil {
		return time.Time{}, err
	}
	// The certificate will carry the CSR's subject verbatim: it must name
	// the agent being renewed, not another one.
	cn, err := pki.CSRCommonName([]byte(csr))
	if err != nil {
		return time.Time{}, fmt.Errorf("CSR in renew response: %w", err)
	}
	if cn != hostname {
		return time.Time{}, fmt.Errorf("CSR in renew response is for '%s', not '%s' - the agent's hostname changed; re-pair it", cn, hostname)
	}

	ca, err := pki.LoadCA(r.CA)
	if err != nil {
		return time.Time{}, err
	}
	ca.Serials = r.Serials
	cert, err := ca.SignCSR([]byte(csr), r.certDays(), r.now(), pki.SignOptions{}) // under flock(ca.serial)
	if err != nil {
		return time.Time{}, err
	}

	rep, err = r.Client.Do(ctx, t, "POST", "/renew-complete", wire.JSON(renewDelivery{
		Cert: string(pki.CertPEM(cert)), CA: string(ca.CertPEM), Reqid: reqid,
	}))
	if err != nil {
		return time.Time{}, fmt.Errorf("renew-complete failed: %w", err)
	}
	if !rep.OK() {
		msg := rep.StatusLine
		if reason := errorField(rep.Body); reason != "" {
			msg += " (" + reason + ")"
		}
		return time.Time{}, fmt.Errorf("renew-complete failed: %s", msg)
	}

	expiry := pki.FormatOpenSSLDate(cert.NotAfter)
	_, err = r.Registry.Update(hostname, func(rec registry.Record) error {
		if len(rec) == 1 { // only the hostname: unpaired meanwhile
			return errUnpaired
		}
		rec[registry.FieldExpiry] = expiry
		rec[registry.FieldAgentSerial] = pki.SerialHex(cert)
		return nil
	})
	if errors.Is(err, errUnpaired) {
		return cert.NotAfter, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("the agent stored its new certificate (expires %s), but the registry update failed: %w", expiry, err)
	}
	return cert.NotAfter, nil
}

var errUnpaired = errors.New("agent unpaired during renewal")

// csrFrom reads the CSR out of a /renew reply.
func csrFrom(body []byte) (string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return "", errors.New("invalid JSON in renew response")
	}
	if _, err := dec.Token(); err != io.EOF {
		return "", errors.New("invalid JSON in renew response")
	}
	csr, _ := obj["csr"].(string)
	if csr == "" {
		return "", errors.New("no CSR in renew response")
	}
	return csr, nil
}

// errorField is the "error" member of an agent's JSON error reply, if any.
func errorField(body []byte) string {
	var obj struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &obj) != nil {
		return ""
	}
	return obj.Error
}
