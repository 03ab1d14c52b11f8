package ratelimit

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestIPAllowlist(t *testing.T) {
	tests := []struct {
		entries []string
		peer    string
		want    bool
	}{
		{nil, "203.0.113.9", true},
		{nil, "::1", true},
		{[]string{"192.168.1.10"}, "192.168.1.10", true},
		{[]string{"192.168.1.10"}, "192.168.1.11", false},
		{[]string{"10.0.0.1", "192.168.1.10"}, "10.0.0.1", true},
		{[]string{"10.0.0.1", "192.168.1.10"}, "192.168.1.10", true},
		{[]string{"10.0.0.1", "192.168.1.10"}, "1.2.3.4", false},
		{[]string{"10.0.0.0/8"}, "10.99.1.1", true},
		{[]string{"10.0.0.0/8"}, "11.0.0.1", false},
		{[]string{"10.0.0.0/8"}, "100.0.0.1", false}, // octet strings, not a text prefix
		{[]string{"192.168.0.0/16"}, "192.168.77.1", true},
		{[]string{"192.168.0.0/16"}, "192.169.0.1", false},
		{[]string{"172.16.5.0/24"}, "172.16.5.200", true},
		{[]string{"172.16.5.0/24"}, "172.16.6.1", false},
		{[]string{"192.168.1.99/24"}, "192.168.1.3", true}, // host bits ignored
		{[]string{"10/8"}, "10.1.2.3", true},
		{[]string{"010.0.0.0/8"}, "10.1.2.3", false}, // octets compared as strings
		{[]string{"10.0.0.0/08"}, "10.1.2.3", true},  // prefix compared as a number
		{[]string{"10.0.0.0/7"}, "10.1.2.3", false},
		{[]string{"10.0.0.0/32"}, "10.0.0.0", false},
		{[]string{"10.0.0.0/x"}, "10.0.0.0", false},
		{[]string{"10.0.0.0/8"}, "::ffff:10.1.2.3", true},
		{[]string{"10.0.0.0/8"}, "[::ffff:10.1.2.3]:7443", true},
		{[]string{"10.1.2.3"}, "10.1.2.3:50000", true},
		{[]string{"::1"}, "::1", false}, // IPv6 never matches
		{[]string{"2001:db8::/16"}, "2001:db8::1", false},
		{[]string{"localhost"}, "127.0.0.1", false},
	}
	for _, tt := range tests {
		if got := NewIPAllowlist(tt.entries).Allows(tt.peer); got != tt.want {
			t.Errorf("%q allows %q = %v, want %v", tt.entries, tt.peer, got, tt.want)
		}
	}
}

func TestIPAllowlistEnabled(t *testing.T) {
	got := []bool{NewIPAllowlist(nil).Enabled(), NewIPAllowlist([]string{}).Enabled(), NewIPAllowlist([]string{"1.2.3.4"}).Enabled()}
	if diff := cmp.Diff([]bool{false, false, true}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzAllows(f *testing.F) {
	f.Add("10.0.0.0/8", "10.1.2.3")
	f.Add("192.168.1.10", "[::ffff:192.168.1.10]:1")
	f.Fuzz(func(t *testing.T, entry, peer string) {
		NewIPAllowlist([]string{entry}).Allows(peer)
	})
}
