package pki_test

import (
	"crypto/x509"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

func TestParseKeyType(t *testing.T) {
	for in, want := range map[string]pki.KeyType{"": pki.KeyRSA4096, "rsa-4096": pki.KeyRSA4096, "ecdsa-p256": pki.KeyECDSAP256} {
		if got, err := pki.ParseKeyType(in); err != nil || got != want {
			t.Errorf("ParseKeyType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"rsa", "ECDSA-P256", "ed25519", "rsa-2048"} {
		if _, err := pki.ParseKeyType(bad); err == nil || !strings.Contains(err.Error(), "rsa-4096 or ecdsa-p256") {
			t.Errorf("ParseKeyType(%q) err = %v", bad, err)
		}
	}
}

// Every combination of CA key and leaf key: the CA signs with its own
// algorithm, the leaf keeps its key, and the ctrl-exec key follows the CA.
func TestCAsSignEitherKindOfCSR(t *testing.T) {
	for _, caType := range []pki.KeyType{pki.KeyRSA4096, pki.KeyECDSAP256} {
		files := pki.CAFilesIn(t.TempDir())
		ca, err := pki.CreateCAOfType(files, caType, testBits, testNow)
		if err != nil {
			t.Fatal(err)
		}
		loaded, err := pki.LoadCA(files)
		if err != nil {
			t.Fatalf("%s CA does not load back: %v", caType, err)
		}
		if pki.KeyTypeOf(loaded.Key) != caType {
			t.Errorf("%s CA loaded as %s", caType, pki.KeyTypeOf(loaded.Key))
		}
		wantSig := map[pki.KeyType]x509.SignatureAlgorithm{pki.KeyRSA4096: x509.SHA256WithRSA, pki.KeyECDSAP256: x509.ECDSAWithSHA256}[caType]
		if ca.Cert.SignatureAlgorithm != wantSig {
			t.Errorf("%s CA self-signed with %v", caType, ca.Cert.SignatureAlgorithm)
		}
		for _, leafType := range []pki.KeyType{pki.KeyRSA4096, pki.KeyECDSAP256} {
			key, err := pki.NewKey(leafType, testBits)
			if err != nil {
				t.Fatal(err)
			}
			cert, err := ca.SignCSR(mustCSR(t, key, "web-01"), 30, testNow, pki.SignOptions{})
			if err != nil {
				t.Fatalf("%s CA, %s CSR: %v", caType, leafType, err)
			}
			got := []any{cert.SignatureAlgorithm, pki.KeyMatches(key, cert)}
			if diff := cmp.Diff([]any{wantSig, true}, got); diff != "" {
				t.Errorf("%s CA, %s leaf (-want +got):\n%s", caType, leafType, diff)
			}
			if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("%s CA, %s leaf: %v", caType, leafType, err)
			}
		}

		dir := t.TempDir()
		if _, err := ca.IssueCtrlExecCert(dir+"/ctrl-exec.key", dir+"/ctrl-exec.crt", testBits, 30, testNow); err != nil {
			t.Fatal(err)
		}
		key, err := pki.LoadKey(dir + "/ctrl-exec.key")
		if err != nil {
			t.Fatal(err)
		}
		if pki.KeyTypeOf(key) != caType {
			t.Errorf("ctrl-exec key under a %s CA is %s", caType, pki.KeyTypeOf(key))
		}
	}
}
