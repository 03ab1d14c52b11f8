package e2e

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// Key generation is the slow part of setup-ca, setup-ctrl-exec, rotate-cert
// and request-pairing. The binary under test is a test build, so a process
// that needs an RSA key of $CTRL_EXEC_TEST_KEY_BITS takes one from the
// directory in $CTRL_EXEC_TEST_KEY_POOL when one is left (pkg/testknobs).
// giveKeys fills such a directory for one root from pkitest's process-wide
// pool: each key is generated once per run and reused by later tests.
//
// Within one top-level test every key handed out is distinct, so a CA never
// shares a key with a certificate it signs and a rotated key differs from
// the one it replaces. Keys repeat only across tests, whose PKIs are
// separate. Past poolPerTest keys a test's processes generate their own.
const (
	testKeyBits = 2048 // the smallest size the CA signs (D-35)
	poolFirst   = 1000 // pkitest.Key indices of pooled keys; in-process fixtures use lower ones
	poolPerTest = 24
)

var keyPool struct {
	mu   sync.Mutex
	next map[string]int // top-level test → keys handed out
}

// giveKeys lets r's processes take up to n pre-generated keys, and returns
// the directory that holds them ("" when the test has had its share).
func giveKeys(tb testing.TB, r *Root, n int) string {
	tb.Helper()
	top, _, _ := strings.Cut(tb.Name(), "/")
	keyPool.mu.Lock()
	if keyPool.next == nil {
		keyPool.next = map[string]int{}
	}
	first := keyPool.next[top]
	n = min(n, poolPerTest-first)
	keyPool.next[top] = first + max(n, 0)
	keyPool.mu.Unlock()
	if n <= 0 {
		return ""
	}
	dir := tb.TempDir()
	for i := range n {
		pem, err := pki.EncodeKeyPEM(pkitest.Key(tb, testKeyBits, poolFirst+first+i))
		if err != nil {
			tb.Fatal(err)
		}
		name := filepath.Join(dir, fmt.Sprintf("rsa%d-%02d.pem", testKeyBits, i))
		if err := os.WriteFile(name, pem, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	r.ExtraEnv = append(r.ExtraEnv, testknobs.KeyPool+"="+dir)
	return dir
}

// issueCtrlExecCert is pki's IssueCtrlExecCert with a given key instead of a
// new one: what setup-ctrl-exec leaves at keyPath and certPath.
func issueCtrlExecCert(tb testing.TB, ca *pki.CA, key *rsa.PrivateKey, keyPath, certPath string, now time.Time) *x509.Certificate {
	tb.Helper()
	csr, err := pki.CreateCSR(key, pki.CtrlExecCommonName)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := ca.SignCSR(csr, 825, now, pki.SignOptions{MinSerial: pki.CtrlExecSerialFloor})
	if err != nil {
		tb.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(certPath, pki.CertPEM(cert), 0o644); err != nil {
		tb.Fatal(err)
	}
	return cert
}
