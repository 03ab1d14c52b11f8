// Package perltext is text as the Perl original produces it: the \s class,
// lc on byte strings, a decoded JSON scalar in string context, and $!.
// Each rule lives here once so every role prints the same thing.
package perltext

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"
)

// IsSpace reports whether c is in Perl's \s class on a byte string
// (space, \t, \n, \v, \f, \r; \v since Perl 5.18).
func IsSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// IsSpaceRune is IsSpace for strings.*Func helpers.
func IsSpaceRune(r rune) bool { return r < utf8.RuneSelf && IsSpace(byte(r)) }

// TrimSpace strips \s from both ends (`s/^\s+|\s+$//g`).
func TrimSpace(s string) string { return strings.TrimFunc(s, IsSpaceRune) }

// TrimLeftSpace strips leading \s (`s/^\s+//`).
func TrimLeftSpace(s string) string { return strings.TrimLeftFunc(s, IsSpaceRune) }

// ContainsSpace is `/\s/`.
func ContainsSpace(s string) bool { return strings.IndexFunc(s, IsSpaceRune) >= 0 }

// Lower is Perl's lc on a byte string: A-Z only.
func Lower(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return 'A' <= r && r <= 'Z' })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}

// Scalar is a decoded JSON value as Perl's JSON module hands it to print:
// a string as is, a number as Perl prints it (see Number), true "1",
// false "0" (JSON::PP::Boolean overloads to 1 and 0), null "" (undef).
// ok is false for an array or object, which has no such form.
// Values decoded with or without UseNumber are both accepted.
func Scalar(v any) (s string, ok bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case json.Number:
		return Number(string(x)), true
	case float64:
		return formatFloat(x), true
	case bool:
		return Bool(x), true
	}
	return "", false
}

// Bool is a JSON boolean in string context: "1" or "0".
func Bool(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Number is a JSON number literal as Perl prints it once JSON::PP has
// decoded it ($v/1.0 or 0+$v on a 64-bit perl). A literal with an exponent
// prints as an integer when its double is a whole number in the 64-bit range
// ("1e3" → "1000", "1.5e17" → "150000000000000000"); otherwise one with a
// "." or an exponent is a double printed like %.15g ("1.50" → "1.5",
// "1000000000000000.0" → "1e+15"). An integer keeps its digits ("-0" → "0");
// one longer than 20 characters stays the text as written, and one that
// overflows 64 bits becomes a double.
func Number(lit string) string {
	switch {
	case strings.ContainsAny(lit, "eE"):
		f, err := strconv.ParseFloat(lit, 64)
		if (err == nil || errors.Is(err, strconv.ErrRange)) && f == math.Trunc(f) && f >= -(1<<63) && f < 1<<64 {
			return strconv.FormatFloat(f, 'f', 0, 64)
		}
		return parseFloat(lit)
	case strings.Contains(lit, "."):
		return parseFloat(lit)
	case len(lit) > 20:
		return lit
	}
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return strconv.FormatInt(i, 10)
	}
	if u, err := strconv.ParseUint(lit, 10, 64); err == nil {
		return strconv.FormatUint(u, 10)
	}
	return parseFloat(lit)
}

func parseFloat(lit string) string {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return lit
	}
	return formatFloat(f)
}

func formatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case f == 0:
		return "0" // Perl prints -0.0 as 0 too
	}
	return strconv.FormatFloat(f, 'g', 15, 64)
}

// Capitalise gives Go's lower-case errno texts the C library's strerror
// form that Perl's $! shows: "connection refused" → "Connection refused".
func Capitalise(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

// OSError is $! for a failed file or system call: the operating system's
// reason alone, without the path or call name Go adds (the caller's message
// names the file), capitalised like strerror(3). Another error is its own
// text.
func OSError(err error) string {
	var errno syscall.Errno
	var pe *fs.PathError
	var le *os.LinkError
	var se *os.SyscallError
	switch {
	case errors.As(err, &errno):
		return Capitalise(errno.Error())
	case errors.As(err, &pe):
		return Capitalise(pe.Err.Error())
	case errors.As(err, &le):
		return Capitalise(le.Err.Error())
	case errors.As(err, &se):
		return Capitalise(se.Err.Error())
	}
	return err.Error()
}
