package registry

import (
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
