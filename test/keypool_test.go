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
// and request-pairing, and of the fixtures that build a PKI in the test
// process. takeKeys hands out keys from pkitest's process-wide pool, so each
// is generated once per run and reused by later tests. The binary under test
// is a test build: a process that needs an RSA key of
// $CTRL_EXEC_TEST_KEY_BITS takes one from the directory in
// $CTRL_EXEC_TEST_KEY_POOL while one is left (pkg/testknobs), and giveKeys
// fills such a directory for one root.
//
// Within one top-level test every key handed out is distinct, so a CA never
// shares a key with a certificate it signs or with another CA (which would
// then trust its certificates), and a rotated key differs from the one it
// replaces. Keys repeat only across tests, whose PKIs are separate. Past
// poolPerTest keys a test's keys are generated afresh.
const (
	testKeyBits = 2048 // the smallest size the CA signs (D-35)
	poolFirst   = 1000 // pkitest.Key indices used here; tests may use lower ones directly
	poolPerTest = 32
)

var keyPool struct {
	mu   sync.Mutex
	next map[string]int // top-level test → keys handed out
}

// takeKeys returns n keys that no other caller in this top-level test gets.
func takeKeys(tb testing.TB, n int) []*rsa.PrivateKey {
	tb.Helper()
	top, _, _ := strings.Cut(tb.Name(), "/")
	keyPool.mu.Lock()
	if keyPool.next == nil {
		keyPool.next = map[string]int{}
	}
	first := keyPool.next[top]
	keyPool.next[top] = first + n
	keyPool.mu.Unlock()
	keys := make([]*rsa.PrivateKey, n)
	for i := range keys {
		if first+i < poolPerTest {
			keys[i] = pkitest.Key(tb, testKeyBits, poolFirst+first+i)
			continue
		}
		key, err := pki.GenerateKey(testKeyBits)
		if err != nil {
			tb.Fatal(err)
		}
		keys[i] = key
	}
	return keys
}

// keysOfSize is takeKeys for testKeyBits, and n new keys of any other size
// (benchmarks that measure full-size keys).
func keysOfSize(tb testing.TB, bits, n int) []*rsa.PrivateKey {
	tb.Helper()
	if bits == testKeyBits {
		return takeKeys(tb, n)
	}
	keys := make([]*rsa.PrivateKey, n)
	for i := range keys {
		key, err := pki.GenerateKey(bits)
		if err != nil {
			tb.Fatal(err)
		}
		keys[i] = key
	}
	return keys
}

// giveKeys lets r's processes take up to n pre-generated keys, and returns
// the directory that holds them.
func giveKeys(tb testing.TB, r *Root, n int) string {
	tb.Helper()
	dir := tb.TempDir()
	for i, key := range takeKeys(tb, n) {
		pem, err := pki.EncodeKeyPEM(key)
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
