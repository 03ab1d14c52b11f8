package wire

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNormalizeIP(t *testing.T) {
	tests := map[string]string{
		"192.0.2.1":              "192.0.2.1",
		"192.0.2.1:7443":         "192.0.2.1",
		"::ffff:192.0.2.1":       "192.0.2.1",
		"[::ffff:192.0.2.1]:443": "192.0.2.1",
		"::ffff:c000:0201":       "192.0.2.1",
		"[::1]:7443":             "::1",
		"::1":                    "::1",
		"[2001:DB8:0:0::1]":      "2001:db8::1",
		"fe80::1%eth0":           "fe80::1%eth0",
		"unknown":                "unknown",
		"host.example:80":        "host.example",
		"":                       "",
	}
	got := map[string]string{}
	for in := range tests {
		got[in] = NormalizeIP(in)
	}
	if diff := cmp.Diff(tests, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzNormalizeIP(f *testing.F) {
	for _, seed := range []string{"10.1.2.3", "[::ffff:192.168.1.10]:1", "[::1]", "fe80::1%eth0", "h:1", "[", "]"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, peer string) {
		n := NormalizeIP(peer)
		if _, err := netip.ParseAddr(n); err == nil && NormalizeIP(n) != n {
			t.Errorf("NormalizeIP not idempotent: %q → %q → %q", peer, n, NormalizeIP(n))
		}
	})
}
