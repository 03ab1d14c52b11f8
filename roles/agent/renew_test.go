package agent

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// startRenewableAgent is startAgent with its own copy of the agent's cert and
// key, so a renewal replaces nothing shared with other tests.
func startRenewableAgent(t *testing.T, s setup) (*testAgent, string) {
	t.Helper()
	c := testCerts(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	for from, to := range map[string]string{c.agentCert: certPath, c.agentKey: keyPath} {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	s.conf += "cert = " + certPath + "\nkey = " + keyPath + "\n"
	return startAgent(t, s), certPath
}

func agentKey(t *testing.T, path string) *rsa.PrivateKey {
	t.Helper()
	key, err := pki.LoadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return key.(*rsa.PrivateKey)
}

// signFor issues a certificate for key from ca, valid from now for days.
func signFor(t *testing.T, ca *pki.CA, key *rsa.PrivateKey, cn string, now time.Time, days int) []byte {
	t.Helper()
	csr, err := pki.CreateCSR(key, cn)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignCSR(csr, days, now, pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pki.CertPEM(cert)
}

func deliver(t *testing.T, a *testAgent, client tls.Certificate, certPEM, caPEM []byte, reqid string) (string, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"cert": string(certPEM), "ca": string(caPEM), "reqid": reqid})
	status, reply := a.mustDo(t, client, "POST", "/renew-complete", string(body))
	return status, decode(t, reply)
}

// servedSerial is the serial of the certificate the agent presents to a new
// connection.
func servedSerial(t *testing.T, a *testAgent) string {
	t.Helper()
	conn, err := a.dial(a.certs.control)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return pki.SerialHex(conn.ConnectionState().PeerCertificates[0])
}

func TestRenewIssuesCSRFromExistingKey(t *testing.T) {
	a, _ := startRenewableAgent(t, setup{})
	status, body := a.mustDo(t, a.certs.control, "POST", "/renew", `{"reqid":"r-renew"}`)
	if status != "200 OK" {
		t.Fatalf("status %q body %s", status, body)
	}
	got := decode(t, body)
	if got["status"] != "ok" || got["reqid"] != "r-renew" {
		t.Fatalf("reply %s", body)
	}
	csrPEM, _ := got["csr"].(string)
	csr, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		t.Fatalf("csr: %v", err)
	}
	if csr.Subject.CommonName != "agent-test" || csr.Subject.String() != "CN=agent-test" {
		t.Errorf("subject %q, want CN=agent-test", csr.Subject)
	}
	key := agentKey(t, a.certs.agentKey)
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("CSR is not for the agent's existing key")
	}
	a.waitLog("ACTION=renew ", "REQID=r-renew", "STATUS=csr-sent")
}

func TestRenewCompleteStoresAndServesNewCert(t *testing.T) {
	a, certPath := startRenewableAgent(t, setup{scripts: map[string]string{"slow": "#!/bin/sh\nsleep 1\necho done\n"}})
	before := servedSerial(t, a)

	// A run that is in flight while the certificate changes completes.
	var wg sync.WaitGroup
	var runStatus, runBody string
	wg.Add(1)
	go func() {
		defer wg.Done()
		runStatus, runBody, _ = a.do(a.certs.control, "POST", "/run", `{"script":"slow","reqid":"r-slow"}`)
	}()
	time.Sleep(200 * time.Millisecond)

	key := agentKey(t, a.certs.agentKey)
	newPEM := signFor(t, a.certs.authority, key, "agent-test", time.Now(), 365)
	status, reply := deliver(t, a, a.certs.control, newPEM, a.certs.authority.CertPEM, "r-done")
	if diff := cmp.Diff(map[string]any{"status": "ok", "reqid": "r-done"}, reply); status != "200 OK" || diff != "" {
		t.Fatalf("status %q, reply (-want +got):\n%s", status, diff)
	}
	stored, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(newPEM) {
		t.Error("agent.crt does not hold the delivered certificate")
	}
	if fi, _ := os.Stat(certPath); fi.Mode().Perm() != 0o640 {
		t.Errorf("agent.crt mode %v, want 0640", fi.Mode().Perm())
	}
	newCert, _ := pki.ParseCertPEM(newPEM)
	if got := servedSerial(t, a); got != pki.SerialHex(newCert) || got == before {
		t.Errorf("new connections see serial %s, want %s (was %s)", got, pki.SerialHex(newCert), before)
	}
	if line := a.waitLog("ACTION=renew-complete"); line != "ACTION=renew-complete REQID=r-done STATUS=cert-stored" {
		t.Errorf("log %q", line)
	}

	wg.Wait()
	if runStatus != "200 OK" || !strings.Contains(runBody, `"exit":0`) {
		t.Errorf("run in flight during renewal: %q %s", runStatus, runBody)
	}
	// /ping reports the new expiry.
	_, body := a.mustDo(t, a.certs.control, "POST", "/ping", `{}`)
	if got := decode(t, body)["expiry"]; got != pki.FormatOpenSSLDate(newCert.NotAfter) {
		t.Errorf("ping expiry %v, want %s", got, pki.FormatOpenSSLDate(newCert.NotAfter))
	}
}

func TestRenewCompleteRejectsBadCertificates(t *testing.T) {
	a, certPath := startRenewableAgent(t, setup{})
	original, _ := os.ReadFile(certPath)
	before := servedSerial(t, a)
	c := a.certs
	key := agentKey(t, c.agentKey)
	now := time.Now()

	good := signFor(t, c.authority, key, "agent-test", now, 365)
	tampered := []byte(strings.Replace(string(good), "\n", "\nAAAA", 1))
	goodCert, _ := pki.ParseCertPEM(good)
	flipped := append([]byte(nil), goodCert.Raw...)
	flipped[len(flipped)-5] ^= 0xff // break the signature
	badSignature := pki.CertPEM(mustParse(t, flipped))

	otherKey, err := pki.GenerateKey(2048)
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.CreateCA(pki.CAFilesIn(t.TempDir()), 2048, now)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		cert   []byte
		ca     []byte
		reason string
	}{
		{"not PEM", []byte("garbage"), c.authority.CertPEM, "cert: "},
		{"tampered PEM", tampered, c.authority.CertPEM, "cert: "},
		{"broken signature", badSignature, c.authority.CertPEM, "does not chain to the trusted CA"},
		{"other key", signFor(t, c.authority, otherKey, "agent-test", now, 365), c.authority.CertPEM, "does not match the agent key"},
		{"other CA", signFor(t, other, key, "agent-test", now, 365), nil, "does not chain to the trusted CA"},
		{"other CA delivered as ca", signFor(t, other, key, "agent-test", now, 365), other.CertPEM, "ca differs"},
		{"expired", signFor(t, c.authority, key, "agent-test", now.Add(-72*time.Hour), 1), c.authority.CertPEM, "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, reply := deliver(t, a, c.control, tt.cert, tt.ca, "r-bad")
			msg, _ := reply["error"].(string)
			if status != "400 Bad Request" || !strings.Contains(msg, tt.reason) {
				t.Errorf("status %q error %q, want 400 with %q", status, msg, tt.reason)
			}
		})
	}
	if stored, _ := os.ReadFile(certPath); string(stored) != string(original) {
		t.Error("a refused certificate replaced agent.crt")
	}
	if got := servedSerial(t, a); got != before {
		t.Errorf("served serial changed to %s", got)
	}
	if a.hasLog("ACTION=renew-complete") {
		t.Error("renew-complete logged for a refused certificate")
	}
	a.waitLog("ACTION=renew-reject", "REQID=r-bad")
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestRenewEndpointsDemandStoredSerial(t *testing.T) {
	a, _ := startRenewableAgent(t, setup{})
	for _, path := range []string{"/renew", "/renew-complete"} {
		// The agent's own certificate chains to the CA but is not the
		// ctrl-exec serial this agent stores.
		status, body := a.mustDo(t, a.certs.agent, "POST", path, `{"reqid":"x"}`)
		if status != "403 Error" || body != `{"error":"serial mismatch","status":"forbidden"}` {
			t.Errorf("%s: %q %s", path, status, body)
		}
	}
	a.waitLog("ACTION=serial-reject")
}

func TestRenewRequestErrors(t *testing.T) {
	a, _ := startRenewableAgent(t, setup{})
	tests := []struct{ path, body, status, errText string }{
		{"/renew-complete", `not json`, "400 Bad Request", "invalid JSON"},
		{"/renew-complete", `{"reqid":"r"}`, "400 Bad Request", "no cert in request"},
		{"/renew-complete", `{"cert":"x","ca":[1],"reqid":"r"}`, "400 Bad Request", "ca must be a PEM string"},
	}
	for _, tt := range tests {
		status, body := a.mustDo(t, a.certs.control, "POST", tt.path, tt.body)
		if status != tt.status || decode(t, body)["error"] != tt.errText {
			t.Errorf("%s %s: %q %s", tt.path, tt.body, status, body)
		}
	}
	// GET is not routed.
	if status, _ := a.mustDo(t, a.certs.control, "GET", "/renew", ""); status != "404 Not Found" {
		t.Errorf("GET /renew: %q", status)
	}
}

func TestRenewWithoutKeyFileFails(t *testing.T) {
	a, _ := startRenewableAgent(t, setup{})
	if err := os.Remove(a.srv.rt.Load().cfg.Key); err != nil {
		t.Fatal(err)
	}
	status, body := a.mustDo(t, a.certs.control, "POST", "/renew", `{"reqid":"r"}`)
	if status != "500 Error" || !strings.HasPrefix(decode(t, body)["error"].(string), "Key file not found at '") {
		t.Errorf("%q %s", status, body)
	}
}

// The renewed certificate is what a later renewal and a self-ping see.
func TestRenewTwiceKeepsKey(t *testing.T) {
	a, certPath := startRenewableAgent(t, setup{})
	key := agentKey(t, a.certs.agentKey)
	var serials []string
	for i := 0; i < 2; i++ {
		pemData := signFor(t, a.certs.authority, key, "agent-test", time.Now(), 30+i)
		if status, reply := deliver(t, a, a.certs.control, pemData, nil, "r"); status != "200 OK" {
			t.Fatalf("round %d: %q %v", i, status, reply)
		}
		serials = append(serials, servedSerial(t, a))
	}
	if serials[0] == serials[1] {
		t.Errorf("serials %v did not change", serials)
	}
	id, err := tlsx.LoadIdentity(certPath, a.srv.rt.Load().cfg.Key, a.certs.ca)
	if err != nil || id == nil {
		t.Fatalf("stored pair does not load: %v", err)
	}
}
