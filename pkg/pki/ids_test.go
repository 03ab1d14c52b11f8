package pki_test

import (
	"regexp"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

func TestPairingCode(t *testing.T) {
	// SHA-256("") starts e3 b0 c4 42 → 0xe3b0c442 = 3820012610 → 012610.
	if got := pki.PairingCode(nil); got != "012610" {
		t.Errorf("PairingCode(\"\") = %s, want 012610", got)
	}
	csr := mustCSR(t, testKey(t, 1), "web-01")
	code := pki.PairingCode(csr)
	if !regexp.MustCompile(`^[0-9]{6}$`).MatchString(code) {
		t.Errorf("code %q is not six digits", code)
	}
	// The trailing newline is part of the hashed text.
	if pki.PairingCode(csr[:len(csr)-1]) == code {
		t.Error("code ignores the trailing newline")
	}
}

func TestRandomIdentifiers(t *testing.T) {
	for _, tt := range []struct {
		name string
		gen  func() string
		re   string
	}{
		{"reqid", pki.NewReqID, `^[0-9a-f]{16}$`},
		{"nonce", pki.NewNonce, `^[0-9a-f]{32}$`},
	} {
		seen := map[string]bool{}
		for range 100 {
			id := tt.gen()
			if !regexp.MustCompile(tt.re).MatchString(id) {
				t.Fatalf("%s %q does not match %s", tt.name, id, tt.re)
			}
			if seen[id] {
				t.Fatalf("%s %q repeated", tt.name, id)
			}
			seen[id] = true
		}
	}
}
