package pki

import (
	"fmt"
	"strings"
	"time"
)

// OpenSSLDateLayout is how OpenSSL prints certificate dates
// ("Jun  7 16:28:00 2027 GMT"): day space-padded to two columns, always UTC.
const OpenSSLDateLayout = "Jan _2 15:04:05 2006 GMT"

// ISOTimeLayout is the UTC timestamp format of the registry, the pairing queue
// and rotation.json.
const ISOTimeLayout = "2006-01-02T15:04:05Z"

// FormatOpenSSLDate spells t (in UTC) as OpenSSL prints a notAfter.
func FormatOpenSSLDate(t time.Time) string {
	return t.UTC().Format(OpenSSLDateLayout)
}

// ParseOpenSSLDate reads an OpenSSL date. The day may be one or two digits,
// space-padded or not ("Jun  7", "Jun 7", "Jun 17"); surrounding whitespace is
// ignored.
func ParseOpenSSLDate(s string) (time.Time, error) {
	t, err := time.Parse(OpenSSLDateLayout, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an OpenSSL date like %q", clip(s, 64), "Jun  7 16:28:00 2027 GMT")
	}
	return t, nil
}

// ISOTime spells t (in UTC) as 2006-01-02T15:04:05Z.
func ISOTime(t time.Time) string {
	return t.UTC().Format(ISOTimeLayout)
}

// ParseISOTime reads a timestamp written by ISOTime.
func ParseISOTime(s string) (time.Time, error) {
	t, err := time.Parse(ISOTimeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not a UTC time like %q", clip(s, 64), "2026-03-09T14:30:00Z")
	}
	return t, nil
}
