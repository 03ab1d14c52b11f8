package ratelimit

import (
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// IPAllowlist is the agent's allowed_ips (§18.2), built from entries the
// config loader has already split, trimmed and filtered.
type IPAllowlist struct{ entries []string }

// NewIPAllowlist keeps a copy of entries. No entries = everyone allowed.
func NewIPAllowlist(entries []string) IPAllowlist {
	return IPAllowlist{entries: append([]string(nil), entries...)}
}

// Enabled reports whether any entry restricts peers.
func (a IPAllowlist) Enabled() bool { return len(a.entries) > 0 }

// Allows reports whether peer may connect. Matching is upstream's string
// matching: an entry without "/" must equal the peer; a.b.c.d/8, /16, /24
// compare the first 1, 2 or 3 dot-separated fields as strings (so "10/8"
// covers 10.x.y.z); any other entry never matches. An IPv6 peer never
// matches, after IPv4-mapped addresses have been turned into IPv4.
func (a IPAllowlist) Allows(peer string) bool {
	if !a.Enabled() {
		return true
	}
	peer = wire.NormalizeIP(peer)
	if strings.Contains(peer, ":") {
		return false
	}
	for _, e := range a.entries {
		network, prefix, isNet := strings.Cut(e, "/")
		if !isNet {
			if peer == e {
				return true
			}
			continue
		}
		fields := prefixFields(prefix)
		if fields == 0 {
			continue
		}
		p, n := strings.SplitN(peer, ".", 4), strings.SplitN(network, ".", 4)
		match := true
		for i := range fields {
			if field(p, i) != field(n, i) {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// prefixFields maps a prefix length of 8, 16 or 24 (digits only; leading
// zeros allowed, as Perl compares numerically) to the number of fields
// compared; 0 for anything else.
func prefixFields(prefix string) int {
	if prefix == "" {
		return 0
	}
	n := 0
	for _, c := range prefix {
		if c < '0' || c > '9' {
			return 0
		}
		n = min(n*10+int(c-'0'), 1000)
	}
	switch n {
	case 8, 16, 24:
		return n / 8
	}
	return 0
}

// field is parts[i], or "" past the end (Perl's undef compares as "").
func field(parts []string, i int) string {
	if i < len(parts) {
		return parts[i]
	}
	return ""
}
