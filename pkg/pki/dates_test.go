package pki_test

import (
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

func TestOpenSSLDateRoundTrip(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Date(2027, time.June, 7, 16, 28, 0, 0, time.UTC), "Jun  7 16:28:00 2027 GMT"},
		{time.Date(2027, time.June, 17, 6, 8, 9, 0, time.UTC), "Jun 17 06:08:09 2027 GMT"},
		{time.Date(2051, time.January, 1, 0, 0, 0, 0, time.UTC), "Jan  1 00:00:00 2051 GMT"},
		// Non-UTC input is printed in UTC.
		{time.Date(2026, time.March, 1, 1, 0, 0, 0, time.FixedZone("CET", 3600)), "Mar  1 00:00:00 2026 GMT"},
	}
	for _, tt := range tests {
		got := pki.FormatOpenSSLDate(tt.t)
		if got != tt.want {
			t.Errorf("FormatOpenSSLDate(%v) = %q, want %q", tt.t, got, tt.want)
		}
		back, err := pki.ParseOpenSSLDate(got)
		if err != nil || !back.Equal(tt.t) {
			t.Errorf("ParseOpenSSLDate(%q) = %v, %v; want %v", got, back, err, tt.t)
		}
	}
}

func TestParseOpenSSLDateAcceptsDaySpellings(t *testing.T) {
	want := time.Date(2027, time.June, 7, 16, 28, 0, 0, time.UTC)
	for _, s := range []string{
		"Jun  7 16:28:00 2027 GMT",
		"Jun 7 16:28:00 2027 GMT",
		"Jun 07 16:28:00 2027 GMT",
		" Jun  7 16:28:00 2027 GMT\n",
	} {
		got, err := pki.ParseOpenSSLDate(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("ParseOpenSSLDate(%q) = %v, %v; want %v UTC", s, got, err, want)
		}
	}
	for _, s := range []string{"", "unknown", "2027-06-07T16:28:00Z", "Jun  7 16:28:00 2027", "Jun 32 16:28:00 2027 GMT"} {
		if _, err := pki.ParseOpenSSLDate(s); err == nil {
			t.Errorf("ParseOpenSSLDate(%q): want an error", s)
		}
	}
}

func TestISOTime(t *testing.T) {
	at := time.Date(2026, time.March, 9, 15, 30, 0, 500, time.FixedZone("CET", 3600))
	if got := pki.ISOTime(at); got != "2026-03-09T14:30:00Z" {
		t.Errorf("ISOTime = %q", got)
	}
	back, err := pki.ParseISOTime("2026-03-09T14:30:00Z")
	if err != nil || !back.Equal(at.Truncate(time.Second)) {
		t.Errorf("ParseISOTime = %v, %v", back, err)
	}
}
