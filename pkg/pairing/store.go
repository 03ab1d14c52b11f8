package pairing

import (
	"crypto"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/ctrlserial"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// AgentGroup owns the agent's key and certificates, so the service user
// can read them (§7.9).
const AgentGroup = "ctrl-exec-agent"

// StoreCerts writes an approved pairing into the agent directory (§7.9):
// agent.crt and agent.key 0640, ca.crt 0644, each written whole, then
// ctrl-exec-serial 0644 when a serial was delivered; the three cert/key files
// are then given to group ctrl-exec-agent. The directory is the fixed
// /etc/ctrl-exec-agent (B-27), whatever agent.conf says.
//
// Before writing anything it checks that the certificate and the CA parse
// and that the certificate belongs to key, so a bad delivery never replaces
// a working identity. Ownership problems are returned as warnings, not
// errors, as upstream only warns.
func StoreCerts(p paths.Paths, res *Result, key crypto.Signer) (warnings []string, err error) {
	cert, err := pki.ParseCertPEM([]byte(res.CertPEM))
	if err != nil {
		return nil, fmt.Errorf("pairing result: agent certificate: %w", err)
	}
	if _, err := pki.ParseCertPEM([]byte(res.CAPEM)); err != nil {
		return nil, fmt.Errorf("pairing result: CA certificate: %w", err)
	}
	if !pki.KeyMatches(key, cert) {
		return nil, errors.New("pairing result: the certificate is not for this agent's key")
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	files := []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{p.AgentCert(), []byte(res.CertPEM), 0o640},
		{p.AgentKey(), keyPEM, 0o640},
		{p.AgentCA(), []byte(res.CAPEM), 0o644},
	}
	for _, f := range files {
		if err := atomicfile.Write(f.path, f.data, f.mode); err != nil {
			return nil, fmt.Errorf("store_certs: %w", err)
		}
	}
	if s := res.DispatcherSerial; s != "" {
		if err := ctrlserial.Check(s); err != nil {
			warnings = append(warnings, fmt.Sprintf("store_certs: ignoring ctrl-exec serial %.40q - %v", s, err))
		} else if err := ctrlserial.Write(p.AgentSerial(), s); err != nil {
			return nil, fmt.Errorf("store_certs: %w", err)
		}
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	for _, w := range GiveToAgentGroup(0, paths...) {
		warnings = append(warnings, "store_certs: "+w)
	}
	return warnings, nil
}

// GiveToAgentGroup gives files to group ctrl-exec-agent so the agent's
// service user can read them, and to owner uid (-1 keeps the owner). What
// goes wrong comes back as warnings to print, as upstream only warns.
func GiveToAgentGroup(uid int, files ...string) (warnings []string) {
	grp, err := user.LookupGroup(AgentGroup)
	if err != nil {
		return []string{fmt.Sprintf("group '%s' not found - set ownership manually", AgentGroup)}
	}
	gid, err := strconv.Atoi(grp.Gid)
	if err != nil {
		return []string{fmt.Sprintf("group '%s' has gid %q - set ownership manually", AgentGroup, grp.Gid)}
	}
	owner := "group " + AgentGroup
	if uid == 0 {
		owner = "root:" + AgentGroup
	}
	for _, f := range files {
		if err := os.Chown(f, uid, gid); err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot give %s to %s: %s - set ownership manually", f, owner, perltext.OSError(err)))
		}
	}
	return warnings
}

// Status is the agent's pairing state (§4.4): paired when agent.crt,
// agent.key and ca.crt are regular files and the certificate parses. Expiry
// is the certificate's notAfter as OpenSSL prints it; an expired
// certificate still counts as paired. Reason says why not.
func Status(p paths.Paths) (paired bool, expiry, reason string) {
	for _, f := range []string{p.AgentCert(), p.AgentKey(), p.AgentCA()} {
		if info, err := os.Stat(f); err != nil || !info.Mode().IsRegular() {
			return false, "", "missing file: " + f
		}
	}
	cert, err := pki.LoadCert(p.AgentCert())
	if err != nil {
		return false, "", "cannot parse cert: " + p.AgentCert()
	}
	return true, pki.FormatOpenSSLDate(cert.NotAfter), ""
}
