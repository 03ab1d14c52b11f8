package pki

import (
	"math/big"
	"strings"
)

// Readings of a revoked-serials entry (D-32). ReadingUpstream is §8.3's
// serial_to_hex on both sides, the only one the Perl agent applies; the
// others compare the entry's value with the peer's serial.
const (
	ReadingUpstream = "serial_to_hex" // SerialToHex(entry) == SerialToHex(peer)
	ReadingHex      = "hex"           // the entry as hex, with or without 0x, serial= and colons
	ReadingDecimal  = "decimal"       // a digits-only entry as a decimal number
)

// RevocationList is the agent's revoked-serials set. It keeps every match
// upstream makes and also revokes a peer when any reading of an entry
// equals the peer's serial (D-32): control serials from 0x01000000 on are
// usually all digits, which §8.3 reads as decimal, so `01:00:00:05` or
// `16777221` would otherwise miss serial 01000005. Revoking more is the
// safe side.
type RevocationList struct {
	upstream map[string]string          // SerialToHex(entry) → entry
	values   map[string]RevocationMatch // canonical hex of a reading → entry and reading
}

// RevocationMatch says which entry revoked a peer, read how.
type RevocationMatch struct{ Entry, Reading string }

// NewRevocationList returns an empty list.
func NewRevocationList() *RevocationList {
	return &RevocationList{upstream: map[string]string{}, values: map[string]RevocationMatch{}}
}

// Add records entry (already trimmed of comments and blanks). It reports
// false when no reading understands it; the caller warns and drops it.
func (l *RevocationList) Add(entry string) bool {
	understood := false
	if h, ok := SerialToHex(entry); ok {
		understood = true
		if _, seen := l.upstream[h]; h != "" && !seen {
			l.upstream[h] = entry
		}
	}
	for _, r := range readings(entry) {
		understood = true
		if _, seen := l.values[r.hex]; !seen {
			l.values[r.hex] = RevocationMatch{Entry: entry, Reading: r.name}
		}
	}
	return understood
}

// Len is the number of distinct serials the upstream reading revokes, the
// count upstream's set would hold.
func (l *RevocationList) Len() int { return len(l.upstream) }

// Match reports whether the peer with canonical serial peerHex is revoked
// and by which entry, preferring upstream's reading.
func (l *RevocationList) Match(peerHex string) (RevocationMatch, bool) {
	if peerHex == "" || l == nil {
		return RevocationMatch{}, false
	}
	if norm, ok := SerialToHex(peerHex); ok {
		if entry, found := l.upstream[norm]; found {
			return RevocationMatch{Entry: entry, Reading: ReadingUpstream}, true
		}
	}
	n, ok := new(big.Int).SetString(peerHex, 16)
	if !ok || n.Sign() < 0 {
		return RevocationMatch{}, false
	}
	m, found := l.values[serialHex(n)]
	return m, found
}

type reading struct{ name, hex string }

// readings are the values an entry can mean besides upstream's reading, each
// as a canonical serial: hex (prefixes 0x and serial= in either order, colons
// anywhere) and, for digits only, decimal.
func readings(entry string) []reading {
	var out []reading
	s := trimPrefixFold(trimPrefixFold(entry, "serial="), "0x")
	if t := trimPrefixFold(trimPrefixFold(entry, "0x"), "serial="); len(t) < len(s) {
		s = t
	}
	s = strings.ReplaceAll(s, ":", "")
	if s != "" && onlyBytes(s, "0123456789abcdefABCDEF") {
		n, _ := new(big.Int).SetString(s, 16)
		out = append(out, reading{ReadingHex, serialHex(n)})
	}
	if entry != "" && onlyBytes(entry, "0123456789") {
		n, _ := new(big.Int).SetString(entry, 10)
		out = append(out, reading{ReadingDecimal, serialHex(n)})
	}
	return out
}
