package perltext

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The want column is what perl -MJSON (JSON::PP 4.07) prints for
// decode_json of the literal: `print "$_" for @{decode_json("[$lit]")}`.
func TestNumberAsPerlPrints(t *testing.T) {
	for _, c := range []struct{ lit, want string }{
		{"0", "0"},
		{"-0", "0"},
		{"-7", "-7"},
		{"30", "30"},
		{"0.0", "0"},
		{"-0.0", "0"},
		{"1.0", "1"},
		{"1.50", "1.5"},
		{"0.1", "0.1"},
		{"0.0001", "0.0001"},
		{"3.14159265358979", "3.14159265358979"},
		{"1e3", "1000"},
		{"1E-7", "1e-07"},
		{"1e-5", "1e-05"},
		{"1.0e0", "1"},
		{"1.5E+2", "150"},
		{"2.5e0", "2.5"},
		{"1e15", "1000000000000000"},
		{"1e16", "10000000000000000"},
		{"1e19", "10000000000000000000"},
		{"2e19", "2e+19"},
		{"-1e19", "-1e+19"},
		{"-9e18", "-9000000000000000000"},
		{"1.5e17", "150000000000000000"},
		{"1E400", "Inf"},
		{"123456789012345678e0", "123456789012345680"},
		{"1.25e1", "12.5"},
		{"5e-1", "0.5"},
		{"-1.5e300", "-1.5e+300"},
		{"1000000000000000.0", "1e+15"},
		{"1234567890123456.0", "1.23456789012346e+15"},
		{"123456789012345678.0", "1.23456789012346e+17"},
		{"100000000000000000000.0", "1e+20"},
		{"123456789012345678901234.5", "1.23456789012346e+23"},
		{"9223372036854775807", "9223372036854775807"},
		{"12345678901234567890", "12345678901234567890"},
		{"18446744073709551615", "18446744073709551615"},
		{"18446744073709551616", "1.84467440737096e+19"},
		{"99999999999999999999", "1e+20"},
		{"-9223372036854775809", "-9.22337203685478e+18"},
		{"-99999999999999999999", "-99999999999999999999"},
		{"123456789012345678901234", "123456789012345678901234"},
	} {
		if got := Number(c.lit); got != c.want {
			t.Errorf("Number(%s) = %q, want %q", c.lit, got, c.want)
		}
	}
}

// A decoded scalar in string context: JSON::PP::Boolean false prints "0"
// (perl -MJSON -e 'print decode_json(q([false]))->[0]' prints 0), null is
// undef and prints "".
func TestScalarAsPerlPrints(t *testing.T) {
	for _, c := range []struct {
		json   string
		want   string
		scalar bool
	}{
		{`"a b"`, "a b", true},
		{`""`, "", true},
		{`true`, "1", true},
		{`false`, "0", true},
		{`null`, "", true},
		{`1.50`, "1.5", true},
		{`-0`, "0", true},
		{`[1]`, "", false},
		{`{"a":1}`, "", false},
	} {
		for _, useNumber := range []bool{true, false} {
			var v any
			d := json.NewDecoder(strings.NewReader(c.json))
			if useNumber {
				d.UseNumber()
			}
			if err := d.Decode(&v); err != nil {
				t.Fatal(err)
			}
			got, ok := Scalar(v)
			if got != c.want || ok != c.scalar {
				t.Errorf("Scalar(%s) UseNumber=%v = %q, %v; want %q, %v", c.json, useNumber, got, ok, c.want, c.scalar)
			}
		}
	}
}

func TestSpaceIsPerlBackslashS(t *testing.T) {
	var got []byte
	for c := 0; c < 256; c++ {
		if IsSpace(byte(c)) {
			got = append(got, byte(c))
		}
	}
	// perl -e 'print join ",", map { sprintf "%02x", $_ } grep { chr($_) =~ /\s/ } 0..127'
	if want := "\t\n\v\f\r "; string(got) != want {
		t.Errorf("\\s = %q, want %q", got, want)
	}
	for _, c := range []struct{ in, trim string }{
		{" \t\v\f\r\nx y\n", "x y"},
		{"\u00a0x\u00a0", "\u00a0x\u00a0"},
		{"", ""},
	} {
		if got := TrimSpace(c.in); got != c.trim {
			t.Errorf("TrimSpace(%q) = %q, want %q", c.in, got, c.trim)
		}
	}
	if !ContainsSpace("a\vb") || ContainsSpace("a\u00a0b") {
		t.Error("ContainsSpace does not follow \\s")
	}
}

func TestLowerIsByteLc(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Content-LENGTH", "content-length"},
		{"already", "already"},
		{"ÄBC", "Äbc"},
		{"", ""},
	} {
		if got := Lower(c.in); got != c.want {
			t.Errorf("Lower(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Perl's $! for ENOENT, ECONNREFUSED, EACCES: perl -e '$!=2; print "$!"'.
func TestOSErrorIsStrerror(t *testing.T) {
	_, statErr := os.Stat("/nonexistent/x")
	for _, c := range []struct {
		err  error
		want string
	}{
		{statErr, "No such file or directory"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "Connection refused"},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}, "Permission denied"},
		{&os.LinkError{Op: "rename", Old: "a", New: "b", Err: syscall.EXDEV}, "Invalid cross-device link"},
		{errors.New("other thing"), "other thing"},
	} {
		if got := OSError(c.err); got != c.want {
			t.Errorf("OSError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}
