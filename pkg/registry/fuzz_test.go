package registry

import (
	"regexp"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// FuzzRegistryRecord: registry files may be written by anyone with access to the
// directory (or by Perl); parsing must never panic, and a record that parses
// must survive a write and a re-read unchanged.
func FuzzRegistryRecord(f *testing.F) {
	for _, seed := range []string{
		`{"hostname":"web-01","ip":"10.0.0.5","paired":"2026-03-09T14:30:00Z","expiry":"Jun  7 16:28:00 2027 GMT","reqid":"a3f9b2c10001dead","dispatcher_serial":"01000000","serial_status":"current","serial_broadcast":"","serial_confirmed":"2026-03-09T14:30:00Z"}`,
		`{"hostname":"x","port":7443,"big":1e999,"n":null,"o":{"a":[true,false]}}`,
		`{}`, `[]`, `null`, `{"a":1}x`, `{"\u00e9":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ParseRecord(data)
		if err != nil {
			return
		}
		out, err := wire.Marshal(rec)
		if err != nil {
			t.Fatalf("cannot re-encode %q: %v", data, err)
		}
		again, err := ParseRecord(out)
		if err != nil {
			t.Fatalf("re-encoded record %s does not parse: %v", out, err)
		}
		out2, _ := wire.Marshal(again)
		if string(out) != string(out2) {
			t.Errorf("unstable: %s then %s", out, out2)
		}
		_ = rec.Hostname()
		_ = Port(rec)
	})
}

// The hand-written check is exactly the SPEC's pattern (§11.4), cut to the
// 250 characters a registry file name can hold.
func FuzzValidHostname(f *testing.F) {
	spec := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,249}$`)
	for _, s := range []string{"web-01", "../x", ".hidden", "a", "", "x/y", "host.example.com", strings.Repeat("a", 254), "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		if got, want := ValidHostname(h), spec.MatchString(h); got != want {
			t.Errorf("ValidHostname(%q) = %v, pattern says %v", h, got, want)
		}
	})
}
