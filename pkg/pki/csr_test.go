package pki_test

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

func TestCreateCSRShape(t *testing.T) {
	csrPEM := mustCSR(t, testKey(t, 1), "web-01.example")

	lines := strings.Split(strings.TrimSuffix(string(csrPEM), "\n"), "\n")
	if lines[0] != "-----BEGIN CERTIFICATE REQUEST-----" || lines[len(lines)-1] != "-----END CERTIFICATE REQUEST-----" {
		t.Errorf("PEM armour: %q … %q", lines[0], lines[len(lines)-1])
	}
	for i, l := range lines[1 : len(lines)-2] {
		if len(l) != 64 {
			t.Errorf("base64 line %d has %d columns, want 64", i+1, len(l))
		}
	}
	if !bytes.HasSuffix(csrPEM, []byte("-----\n")) {
		t.Error("no trailing newline")
	}

	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	type shape struct {
		Subject                string
		Attributes, Extensions int
		SigAlg                 x509.SignatureAlgorithm
		PubAlg                 x509.PublicKeyAlgorithm
	}
	//lint:ignore SA1019 Attributes is crypto/x509's only view of a CSR's attributes, and there must be none
	got := shape{csr.Subject.String(), len(csr.Attributes), len(csr.Extensions), csr.SignatureAlgorithm, csr.PublicKeyAlgorithm}
	want := shape{"CN=web-01.example", 0, 0, x509.SHA256WithRSA, x509.RSA}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CSR (-want +got):\n%s", diff)
	}
}

// The CN is reported as requested, so approve can flag a CN that differs from
// the hostname the agent claimed.
func TestCSRCommonNameReportsRequestedName(t *testing.T) {
	cn, err := pki.CSRCommonName(mustCSR(t, testKey(t, 1), "not-the-claimed-host"))
	if err != nil || cn != "not-the-claimed-host" {
		t.Errorf("CSRCommonName = %q, %v", cn, err)
	}
}

func TestParseCSRChecks(t *testing.T) {
	good := mustCSR(t, testKey(t, 1), "web-01")
	// Exactly MaxCSRSize bytes: the valid CSR padded after its END line, which
	// PEM decoding ignores.
	padded := append(append([]byte(nil), good...), bytes.Repeat([]byte("\n"), pki.MaxCSRSize-len(good))...)
	tests := []struct {
		name    string
		csr     []byte
		wantErr error  // errors.Is target, or nil with wantSub
		wantSub string // substring; "" = success
	}{
		{"good", good, nil, ""},
		{"exactly max size", padded, nil, ""},
		{"one byte over", append(padded, '\n'), pki.ErrCSRTooLarge, "CSR exceeds maximum size"},
		{"empty", nil, pki.ErrCSRFormat, "Invalid CSR format"},
		{"certificate", []byte("-----BEGIN CERTIFICATE-----\nYQ==\n-----END CERTIFICATE-----\n"), pki.ErrCSRFormat, "Invalid CSR format"},
		{"NEW CERTIFICATE REQUEST", bytes.Replace(good, []byte("CERTIFICATE REQUEST"), []byte("NEW CERTIFICATE REQUEST"), 2), pki.ErrCSRFormat, "Invalid CSR format"},
		{"truncated", good[:200], pki.ErrCSRFormat, "Invalid CSR format"},
		{"tampered", tamperCSR(t, good), nil, "self-signature does not verify"},
		{"ecdsa p-224", ecdsaCSR(t), nil, "P-256 or P-384"},
		{"RSA 1024", mustCSR(t, pkitest.Key(t, 1024, 0), "web-01"), pki.ErrWeakKey, "RSA 1024 bits, at least 2048 required"},
		{"two CNs", pkitest.CSR(t, testKey(t, 1), "web-01", "web-02"), pki.ErrMultipleCN, "more than one CN"},
		{"one CN via pkitest", pkitest.CSR(t, testKey(t, 1), "web-01"), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.ParseCSR(tt.csr)
			if tt.wantSub == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantSub) {
				t.Fatalf("err = %v, want %q", err, tt.wantSub)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.wantErr)
			}
		})
	}
}
