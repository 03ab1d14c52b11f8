package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// CtrlExecSerialFloor is the smallest serial given to a ctrl-exec cert.
// Perl agents' update-ctrl-exec-serial only accepts 8 to 40 hex digits, so a
// ctrl-exec serial below 0x01000000 could never be broadcast to them (B-3).
const CtrlExecSerialFloor = 0x01000000

// SerialHex is the canonical spelling of a certificate serial: lowercase hex,
// two digits per byte of the big-endian magnitude, as `openssl x509 -serial`
// prints it (lowercased, "serial=" removed). Zero is "00"; a negative serial
// (which Go only parses under GODEBUG=x509negativeserial=1) gets a "-" as
// OpenSSL prints it.
func SerialHex(cert *x509.Certificate) string {
	return serialHex(cert.SerialNumber)
}

func serialHex(n *big.Int) string {
	if n == nil {
		return ""
	}
	if n.Sign() == 0 {
		return "00"
	}
	s := hex.EncodeToString(n.Bytes())
	if n.Sign() < 0 {
		return "-" + s
	}
	return s
}

// SerialToHex normalises a revoked-serials entry, or a peer's canonical serial,
// exactly as the Perl agent's serial_to_hex does, so existing revocation files
// keep matching the same certificates:
//
//  1. "" stays "".
//  2. One leading "0x" (any case) is dropped, then one leading "serial=" (any case).
//  3. With a ":" anywhere: drop every ":", lowercase, drop leading "00" pairs
//     while two characters remain, done (whatever the characters are).
//  4. Lowercase.
//  5. Only decimal digits: read as a DECIMAL number, minimal lowercase hex
//     ("255" → "ff", "10" → "a", "0" → "0").
//  6. Only hex digits: unchanged (leading zeros kept; "0b101" stays "0b101").
//  7. Anything else: ok is false. Perl hands these to Math::BigInt with
//     unpredictable results; the caller drops the entry with a config-warn.
func SerialToHex(s string) (hexSerial string, ok bool) {
	if s == "" {
		return "", true
	}
	s = trimPrefixFold(s, "0x")
	s = trimPrefixFold(s, "serial=")

	if strings.Contains(s, ":") {
		return stripLeadingZeroPairs(perltext.Lower(strings.ReplaceAll(s, ":", ""))), true
	}
	s = perltext.Lower(s)
	switch {
	case s != "" && onlyBytes(s, "0123456789"):
		n, _ := new(big.Int).SetString(s, 10)
		return n.Text(16), true
	case s != "" && onlyBytes(s, "0123456789abcdef"):
		return s, true
	}
	return "", false
}

// stripLeadingZeroPairs is Perl's s/^(?:00)+(?=.{2})//: as many leading "00"
// pairs as possible such that two characters other than "\n" follow.
func stripLeadingZeroPairs(s string) string {
	pairs := 0
	for strings.HasPrefix(s[2*pairs:], "00") {
		pairs++
	}
	for ; pairs > 0; pairs-- {
		rest := s[2*pairs:]
		if len(rest) >= 2 && rest[0] != '\n' && rest[1] != '\n' {
			return rest
		}
	}
	return s
}

// trimPrefixFold drops the lowercase ASCII prefix, in any case, from the start
// of s (ASCII folding only, like Perl's /i on byte strings).
func trimPrefixFold(s, prefix string) string {
	if len(s) >= len(prefix) && perltext.Lower(s[:len(prefix)]) == prefix {
		return s[len(prefix):]
	}
	return s
}

func onlyBytes(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}

// ParseSerialFile reads ca.serial content: the last serial issued, in hex of
// either case and any number of digits, surrounded by optional whitespace.
func ParseSerialFile(data []byte) (*big.Int, error) {
	s := strings.TrimSpace(string(data))
	if s == "" {
		return nil, errors.New("empty; expected the last issued serial in hex")
	}
	if !onlyBytes(s, "0123456789abcdefABCDEF") {
		return nil, fmt.Errorf("%q is not a hex serial number", clip(s, 64))
	}
	n, _ := new(big.Int).SetString(s, 16)
	return n, nil
}

// FormatSerialFile is ca.serial content for n as OpenSSL writes it: uppercase
// hex, two digits per byte, newline ("02\n", "0A\n", "0100\n").
func FormatSerialFile(n *big.Int) []byte {
	return []byte(strings.ToUpper(serialHex(n)) + "\n")
}

// randomSerial is what `openssl x509 -CAcreateserial` and `req -x509` pick:
// a random positive number below 2^159, so its DER form fits in 20 bytes.
func randomSerial() *big.Int {
	for {
		b := make([]byte, 20)
		rand.Read(b)
		b[0] &= 0x7f
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n
		}
	}
}

// serialFitsRFC5280 reports whether n's DER encoding is at most 20 bytes.
func serialFitsRFC5280(n *big.Int) bool {
	b := n.Bytes()
	size := len(b)
	if size > 0 && b[0]&0x80 != 0 {
		size++
	}
	return n.Sign() > 0 && size <= 20
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
