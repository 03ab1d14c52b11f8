package pki_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

var lowerHex = regexp.MustCompile(`^[0-9a-f]*$`)

func FuzzSerialToHex(f *testing.F) {
	for _, s := range []string{"", "deadbeef", "0xDEADBEEF", "serial=0A", "Serial=10", "3735928559",
		"00:DE:AD:BE:EF", "00:0", "0b101", "0x", "1_000", "-5", "0o17", "zz:1", "\n00:00\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, ok := pki.SerialToHex(s)
		if !ok && h != "" {
			t.Fatalf("SerialToHex(%q) = %q with ok=false", s, h)
		}
		// Outside the colon branch (which keeps whatever is left, as Perl
		// does) the result is lowercase hex.
		if ok && !strings.Contains(s, ":") && !lowerHex.MatchString(h) {
			t.Fatalf("SerialToHex(%q) = %q, not lowercase hex", s, h)
		}
	})
}

func FuzzParseOpenSSLDate(f *testing.F) {
	for _, s := range []string{"Jun  7 16:28:00 2027 GMT", "Jun 7 16:28:00 2027 GMT", "Dec 31 23:59:59 9999 GMT",
		"Feb 29 00:00:00 2028 GMT", "Feb 30 00:00:00 2027 GMT", "unknown", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		at, err := pki.ParseOpenSSLDate(s)
		if err != nil {
			return
		}
		again, err := pki.ParseOpenSSLDate(pki.FormatOpenSSLDate(at))
		if err != nil || !again.Equal(at.Truncate(1e9)) {
			t.Fatalf("%q → %v → %q → %v, %v", s, at, pki.FormatOpenSSLDate(at), again, err)
		}
	})
}

func FuzzParseCSR(f *testing.F) {
	f.Add(mustCSR(f, testKey(f, 1), "web-01"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nYQ==\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := pki.ParseCSR(data)
		if err != nil {
			return
		}
		if len(data) > pki.MaxCSRSize {
			t.Fatalf("accepted %d bytes", len(data))
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a CSR whose signature fails: %v", err)
		}
	})
}

func FuzzReadSerialFile(f *testing.F) {
	for _, s := range []string{"01", "02\n", "0a", "0A\r\n", " ff ", "", "0x01", "-1", "zz",
		"A3F9B2C10001DEADBEEF0102030405060708090A\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := pki.ParseSerialFile(data)
		if err != nil {
			return
		}
		if n.Sign() < 0 {
			t.Fatalf("%q parsed as negative %v", data, n)
		}
		out := pki.FormatSerialFile(n)
		back, err := pki.ParseSerialFile(out)
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("%q → %v → %q → %v, %v", data, n, out, back, err)
		}
	})
}

func FuzzParseFingerprint(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("0f", 32), "SHA256:" + strings.Repeat("A0:", 31) + "A0",
		"sha256:", "sha256::", "sha1:00", strings.Repeat("ab", 32), ""} {
		f.Add(s)
	}
	canonical := regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	f.Fuzz(func(t *testing.T, s string) {
		fp, err := pki.ParseFingerprint(s)
		if err != nil {
			return
		}
		if !canonical.MatchString(fp) {
			t.Fatalf("ParseFingerprint(%q) = %q, not canonical", s, fp)
		}
		if again, err := pki.ParseFingerprint(fp); err != nil || again != fp {
			t.Fatalf("ParseFingerprint(%q) = %q, %v; want it unchanged", fp, again, err)
		}
	})
}
