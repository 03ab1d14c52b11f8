package pki_test

import (
	"crypto"
	"crypto/rsa"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// Keys are generated once per test binary, at the smallest size the CA signs.
var (
	keysOnce sync.Once
	keys     []*rsa.PrivateKey
)

const testBits = 2048

// testKey returns the i-th shared test key (0 ≤ i < 4).
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	keysOnce.Do(func() {
		for range 4 {
			k, err := pki.GenerateKey(testBits)
			if err != nil {
				panic(err)
			}
			keys = append(keys, k)
		}
	})
	return keys[i]
}

var testNow = time.Date(2026, time.March, 9, 14, 30, 0, 0, time.UTC)

// newCA creates a CA in a fresh temp dir with shared key 0.
func newCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.CreateCAWithKey(pki.CAFilesIn(t.TempDir()), testKey(t, 0), testNow)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustCSR(t testing.TB, key crypto.Signer, cn string) []byte {
	t.Helper()
	csr, err := pki.CreateCSR(key, cn)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func fileMode(t testing.TB, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// requireOpenSSL skips the test when the openssl CLI is absent.
func requireOpenSSL(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
}

// openssl runs the openssl CLI in dir and returns its stdout.
func openssl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("openssl %v: %v\n%s", args, err, stderr)
	}
	return string(out)
}

func join(dir, name string) string { return filepath.Join(dir, name) }
