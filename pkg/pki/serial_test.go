package pki_test

import (
	"crypto/x509"
	"math/big"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

func TestSerialHexMatchesOpenSSLSpelling(t *testing.T) {
	tests := []struct {
		serial string // hex
		want   string
	}{
		{"0", "00"}, // openssl x509 -serial prints serial=00
		{"2", "02"},
		{"0f", "0f"},
		{"80", "80"}, // high bit: no sign byte
		{"100", "0100"},
		{"01000000", "01000000"},
		{"a3f9b2c10001deadbeef0102030405060708090a", "a3f9b2c10001deadbeef0102030405060708090a"},
	}
	for _, tt := range tests {
		n, _ := new(big.Int).SetString(tt.serial, 16)
		if got := pki.SerialHex(&x509.Certificate{SerialNumber: n}); got != tt.want {
			t.Errorf("SerialHex(0x%s) = %q, want %q", tt.serial, got, tt.want)
		}
	}
}

// Expected values were produced by the upstream Perl serial_to_hex; the
// entries with ok=false are the ones Perl passes to Math::BigInt (its answers
// are in the comments) and Go drops with a config-warn.
func TestSerialToHex(t *testing.T) {
	type out struct {
		Hex string
		OK  bool
	}
	tests := []struct {
		in   string
		want out
	}{
		{"", out{"", true}},
		{"deadbeef", out{"deadbeef", true}},
		{"DEADBEEF", out{"deadbeef", true}},
		{"DeAdBeEf", out{"deadbeef", true}},
		{"0xDEADBEEF", out{"deadbeef", true}},
		{"0XDEADBEEF", out{"deadbeef", true}},
		{"serial=DEADBEEF", out{"deadbeef", true}},
		{"Serial=DEADBEEF", out{"deadbeef", true}},
		{"SERIAL=0A", out{"0a", true}},
		{"0xserial=AB", out{"ab", true}},
		// Digits only: decimal, on both the file side and the peer side.
		{"serial=10", out{"a", true}},
		{"3735928559", out{"deadbeef", true}},
		{"255", out{"ff", true}},
		{"256", out{"100", true}},
		{"0", out{"0", true}},
		{"10", out{"a", true}},
		{"007", out{"7", true}},
		{"1234567890123456789012345678901234567890", out{"3a0c92075c0dbf3b8acbc5f96ce3f0ad2", true}},
		// Hex digits with a letter: kept as is, leading zeros too.
		{"a3f9b2c10001deadbeef0102030405060708090a", out{"a3f9b2c10001deadbeef0102030405060708090a", true}},
		{"00ff", out{"00ff", true}},
		{"0x00FF", out{"00ff", true}},
		{"0b101", out{"0b101", true}},
		{"1e3", out{"1e3", true}},
		// Colons: stripped, leading 00 pairs dropped while two characters remain.
		{"DE:AD:BE:EF", out{"deadbeef", true}},
		{"00:DE:AD:BE:EF", out{"deadbeef", true}},
		{"ca:fe:ba:be", out{"cafebabe", true}},
		{"00:00", out{"00", true}},
		{"00:0", out{"000", true}},
		{"0000:01", out{"01", true}},
		{"0xff:00", out{"ff00", true}},
		{"zz:1", out{"zz1", true}},
		{":", out{"", true}},
		{"0x:", out{"", true}},
		// Step 7, dropped by Go.
		{"0x", out{"", false}},          // Perl: nan
		{"serial=", out{"", false}},     // Perl: nan
		{"serial=0xAB", out{"", false}}, // Perl: ab
		{"0x0x1", out{"", false}},       // Perl: 1
		{"1_000", out{"", false}},       // Perl: 3e8
		{"+5", out{"", false}},          // Perl: 5
		{"-5", out{"", false}},          // Perl: -0x5
		{"0o17", out{"", false}},        // Perl: f
		{"12 34", out{"", false}},       // Perl: nan
		{"inf", out{"", false}},         // Perl: inf
		{"ſerial=1", out{"", false}},    // no Unicode case folding
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			h, ok := pki.SerialToHex(tt.in)
			if diff := cmp.Diff(tt.want, out{h, ok}); diff != "" {
				t.Errorf("SerialToHex(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// A revoked-serials entry copied from `openssl x509 -serial` matches the
// peer's canonical serial, because both sides read digit-only hex as decimal.
// Mixed spellings may not match (B-19), kept for compatibility.
func TestSerialToHexAgainstCanonicalPeer(t *testing.T) {
	for _, tt := range []struct {
		entry, peer string
		match       bool
	}{
		{"serial=0A", "0a", true},
		{"serial=10", "10", true},
		{"serial=01000000", "01000000", true},
		{"DE:AD:BE:EF", "deadbeef", true},
		{"01:00:00:00", "01000000", false}, // colon form stays hex, peer is read as decimal
	} {
		e, _ := pki.SerialToHex(tt.entry)
		p, _ := pki.SerialToHex(tt.peer)
		if (e == p) != tt.match {
			t.Errorf("entry %q → %q, peer %q → %q: match = %v, want %v", tt.entry, e, tt.peer, p, e == p, tt.match)
		}
	}
}

func TestParseSerialFile(t *testing.T) {
	tests := []struct {
		in      string
		want    string // hex, "" = error
		wantErr bool
	}{
		{"01", "1", false},
		{"02\n", "2", false},
		{"0a", "a", false},
		{"0A\r\n", "a", false},
		{" 1 ", "1", false},
		{"abc", "abc", false},
		{"A3F9B2C10001DEADBEEF0102030405060708090A", "a3f9b2c10001deadbeef0102030405060708090a", false},
		{"", "", true},
		{"\n", "", true},
		{"0x01", "", true},
		{"serial=01", "", true},
		{"-1", "", true},
		{"01 02", "", true},
		{"zz", "", true},
	}
	for _, tt := range tests {
		n, err := pki.ParseSerialFile([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseSerialFile(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && n.Text(16) != tt.want {
			t.Errorf("ParseSerialFile(%q) = %s, want %s", tt.in, n.Text(16), tt.want)
		}
	}
}

func TestFormatSerialFile(t *testing.T) {
	for _, tt := range []struct {
		n    int64
		want string
	}{{0, "00\n"}, {2, "02\n"}, {10, "0A\n"}, {0x7f, "7F\n"}, {0x80, "80\n"}, {256, "0100\n"}, {0x01000000, "01000000\n"}} {
		if got := string(pki.FormatSerialFile(big.NewInt(tt.n))); got != tt.want {
			t.Errorf("FormatSerialFile(%#x) = %q, want %q", tt.n, got, tt.want)
		}
	}
}
