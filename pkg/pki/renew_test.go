package pki_test

import (
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

func TestValidateRenewedCert(t *testing.T) {
	ca := newCA(t)
	otherCA, err := pki.CreateCAWithKey(pki.CAFilesIn(t.TempDir()), testKey(t, 3), testNow)
	if err != nil {
		t.Fatal(err)
	}
	agentKey := testKey(t, 1)
	csr := mustCSR(t, agentKey, "web-01")
	sign := func(c *pki.CA, csr []byte, at time.Time, days int) []byte {
		t.Helper()
		cert, err := c.SignCSR(csr, days, at, pki.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pki.CertPEM(cert)
	}
	renewed := sign(ca, csr, testNow, 365)

	tests := []struct {
		name    string
		cert    []byte
		ca      []byte
		now     time.Time
		wantErr string // "" = accepted
	}{
		{"good", renewed, ca.CertPEM, testNow, ""},
		{"no ca field", renewed, nil, testNow, ""},
		{"ca field re-wrapped", renewed, []byte("\n" + string(ca.CertPEM) + "\n"), testNow, ""},
		{"agent clock a minute behind", renewed, ca.CertPEM, testNow.Add(-time.Minute), ""},
		{"different ca field", renewed, otherCA.CertPEM, testNow, "ca differs"},
		{"garbage ca field", renewed, []byte("junk"), testNow, "ca:"},
		{"another key", sign(ca, mustCSR(t, testKey(t, 2), "web-01"), testNow, 365), nil, testNow, "does not match the agent key"},
		{"another CA", sign(otherCA, csr, testNow, 365), nil, testNow, "does not chain to the trusted CA"},
		{"expired", sign(ca, csr, testNow.Add(-48*time.Hour), 1), nil, testNow, "cert expired on"},
		{"not PEM", []byte("{}"), nil, testNow, "cert:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, err := pki.ValidateRenewedCert(tt.cert, tt.ca, ca.CertPEM, &agentKey.PublicKey, tt.now)
			if tt.wantErr == "" {
				if err != nil || cert == nil {
					t.Fatalf("rejected: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
