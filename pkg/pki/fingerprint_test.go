package pki

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFingerprintIsSHA256OfDER(t *testing.T) {
	der := []byte("not really DER, but any bytes hash")
	sum := sha256.Sum256(der)
	if diff := cmp.Diff("sha256:"+hex.EncodeToString(sum[:]), FingerprintDER(der)); diff != "" {
		t.Fatal(diff)
	}
}

func TestParseFingerprint(t *testing.T) {
	hexLower := strings.Repeat("ab", 32)
	canonical := "sha256:" + hexLower
	colons := strings.TrimSuffix(strings.Repeat("AB:", 32), ":")
	for _, tt := range []struct {
		in, want string
		ok       bool
	}{
		{canonical, canonical, true},
		{"SHA256:" + strings.ToUpper(hexLower), canonical, true},
		{"sha256:" + colons, canonical, true},
		{"  " + canonical + "\n", canonical, true},
		{hexLower, "", false},                    // no prefix
		{"sha1:" + hexLower, "", false},          // other digest
		{"sha256:" + hexLower[:62], "", false},   // short
		{"sha256:" + hexLower + "ab", "", false}, // long
		{"sha256:" + strings.Repeat("zz", 32), "", false},
		{"sha256:", "", false},
		{"", "", false},
	} {
		got, err := ParseFingerprint(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseFingerprint(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
