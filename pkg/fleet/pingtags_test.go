package fleet

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// TestRefreshTags: a ping's tags go to the record of the agent reached,
// merged; an agent claiming another's name, a failed ping and a reply
// without tags (a Perl agent) change nothing.
func TestRefreshTags(t *testing.T) {
	reg := registry.New(t.TempDir())
	for _, r := range []registry.Record{
		{"hostname": "a", "ip": "127.0.0.1", "port": "7001", "serial_status": "current"},
		{"hostname": "b", "ip": "127.0.0.1", "port": "7002", "tags": map[string]any{"role": "old"}},
		{"hostname": "c", "ip": "192.0.2.9"},
	} {
		if err := reg.Put(r); err != nil {
			t.Fatal(err)
		}
	}
	ping := func(target, body string, tags map[string]string) dispatch.PingResult {
		o, err := wire.ParseObject([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return dispatch.PingResult{Target: dispatch.ParseTarget(target, 0), Object: o, Tags: tags}
	}
	now := time.Date(2026, 3, 9, 14, 30, 0, 0, time.UTC)
	RefreshTags(reg, []dispatch.PingResult{
		ping("127.0.0.1:7001", `{"status":"ok","host":"a"}`, map[string]string{"role": "web"}),
		ping("127.0.0.1:7001", `{"status":"ok","host":"b"}`, map[string]string{"role": "evil"}), // a, claiming b
		ping("127.0.0.1:7002", `{"status":"error","host":"127.0.0.1"}`, map[string]string{"role": "x"}),
		ping("127.0.0.1:7002", `{"status":"ok","host":"b"}`, nil),            // a Perl agent
		ping("c", `{"status":"ok","host":"c-renamed"}`, map[string]string{}), // by target hostname, default port
	}, zerolog.Nop(), now)

	want := map[string]registry.Record{
		"a": {"hostname": "a", "ip": "127.0.0.1", "port": "7001", "serial_status": "current",
			"tags": map[string]any{"role": "web"}, "tags_updated": "2026-03-09T14:30:00Z"},
		"b": {"hostname": "b", "ip": "127.0.0.1", "port": "7002", "tags": map[string]any{"role": "old"}},
		"c": {"hostname": "c", "ip": "192.0.2.9", "tags": map[string]any{}, "tags_updated": "2026-03-09T14:30:00Z"},
	}
	for name, w := range want {
		got, err := reg.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got); diff != "" {
			t.Errorf("record %s (-want +got):\n%s", name, diff)
		}
	}
}
