package agentid

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

func rec(kv ...string) registry.Record {
	r := registry.Record{}
	for i := 0; i+1 < len(kv); i += 2 {
		r[kv[i]] = kv[i+1]
	}
	return r
}

func TestLookup(t *testing.T) {
	snap := NewSnapshot([]registry.Record{
		rec("hostname", "web-01", "ip", "10.0.0.5", "port", "7443"),
		rec("hostname", "web-02", "ip", "10.0.0.6"), // Perl record: no port, 7443
		rec("hostname", "db-01", "ip", "10.0.0.7", "port", "9443"),
		rec("hostname", "nat-a", "ip", "192.0.2.1", "port", "7443"),
		rec("hostname", "nat-b", "ip", "192.0.2.1", "port", "7443"),
		rec("hostname", "127.0.0.9", "ip", "127.0.0.1", "port", "7000"), // named by its address
		rec("hostname", "v6", "ip", "2001:db8::1", "port", "7443"),
		rec("hostname", "lost", "ip", "unknown"),
		rec("ip", "10.9.9.9"), // no hostname: names nothing
	})
	for _, tt := range []struct {
		host, port string
		want       []string
	}{
		{"web-01", "7443", []string{"web-01"}},
		{"web-01", "9999", []string{"web-01"}}, // a host name matches on any port
		{"WEB-01", "7443", []string{"web-01"}},
		{"10.0.0.5", "7443", []string{"web-01"}},
		{"10.0.0.5", "07443", []string{"web-01"}},
		{"10.0.0.5", "7444", nil}, // the address alone is not enough
		{"10.0.0.6", "7443", []string{"web-02"}},
		{"10.0.0.7", "9443", []string{"db-01"}},
		{"::ffff:10.0.0.7", "9443", []string{"db-01"}},
		{"192.0.2.1", "7443", []string{"nat-a", "nat-b"}},
		{"127.0.0.9", "1", []string{"127.0.0.9"}}, // the name wins over the address
		{"127.0.0.1", "7000", []string{"127.0.0.9"}},
		{"2001:db8::1", "7443", []string{"v6"}},
		{"2001:db8:0::1", "7443", []string{"v6"}},
		{"fe80::1%eth0", "7443", nil},
		{"lost", "7443", []string{"lost"}},
		{"10.9.9.9", "7443", nil},
		{"web-01.example.com", "7443", nil}, // no name lookups
		{"", "7443", nil},
	} {
		got, err := snap.Lookup(tt.host, tt.port)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Lookup(%q, %q) (-want +got):\n%s", tt.host, tt.port, diff)
		}
	}
}

// A record that does not parse still names its agent by its file name.
func TestLoadKeepsUnparsableRecordsByName(t *testing.T) {
	dir := t.TempDir()
	reg := registry.New(dir)
	if err := reg.Put(rec("hostname", "web-01", "ip", "10.0.0.5")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "web-09.json"), []byte("{torn"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host string
		want []string
	}{
		{"web-09", []string{"web-09"}}, // by its file
		{"WEB-09", []string{"web-09"}}, // by the full read
		{"10.0.0.5", []string{"web-01"}},
		{"web-01", []string{"web-01"}},
		{"web-02", nil},
	} {
		snap := (&Policy{Mode: config.IdentityRegistry, Registry: reg}).Load()
		got, err := snap.Lookup(tt.host, "7443")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: %s", tt.host, diff)
		}
	}
}

func TestPolicyModes(t *testing.T) {
	var none *Policy
	for _, tt := range []struct {
		p              *Policy
		checks, strict bool
	}{
		{none, false, false},
		{&Policy{Mode: config.IdentityOff}, false, false},
		{&Policy{Mode: config.IdentityRegistry}, true, false},
		{&Policy{Mode: config.IdentityStrict}, true, true},
	} {
		if tt.p.Checks() != tt.checks || tt.p.Strict() != tt.strict {
			t.Errorf("%+v: Checks %v Strict %v", tt.p, tt.p.Checks(), tt.p.Strict())
		}
	}
}

// What checking one target costs with 1000 agents registered: a name is
// one file; an address reads the whole registry (once per call).
func BenchmarkLoad1000(b *testing.B) {
	reg := registry.New(b.TempDir())
	for i := 0; i < 1000; i++ {
		if err := reg.Put(rec("hostname", fmt.Sprintf("web-%04d", i), "ip", fmt.Sprintf("10.0.%d.%d", i/250, i%250), "port", "7443",
			"paired", "2026-01-01T00:00:00Z", "expiry", "Jan  1 00:00:00 2028 GMT", "serial_status", "current")); err != nil {
			b.Fatal(err)
		}
	}
	p := &Policy{Mode: config.IdentityRegistry, Registry: reg}
	for _, bb := range []struct{ name, host string }{
		{"name", "web-0999"},      // one file
		{"address", "10.0.3.249"}, // the whole registry
	} {
		b.Run(bb.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				names, err := p.Load().Lookup(bb.host, "7443")
				if err != nil || len(names) != 1 {
					b.Fatal(names, err)
				}
			}
		})
	}
}

// A registry that cannot be read cannot vouch for anyone: Lookup fails
// rather than calling every target unknown.
func TestLookupUnreadableRegistry(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "agents")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	p := &Policy{Mode: config.IdentityRegistry, Registry: registry.New(notDir)}
	for _, host := range []string{"web-01", "10.0.0.1", "::1"} {
		if names, err := p.Load().Lookup(host, "7443"); err == nil {
			t.Errorf("%s: %v, no error", host, names)
		}
	}
}

// countingStore is a registry.Store in memory that counts its reads.
type countingStore struct {
	recs        map[string][]byte
	gets, lists int
}

func (c *countingStore) Get(h string) ([]byte, bool, error) {
	c.gets++
	d, ok := c.recs[h]
	return d, ok, nil
}
func (c *countingStore) List() (map[string][]byte, error)                  { c.lists++; return c.recs, nil }
func (c *countingStore) Update(string, func([]byte) ([]byte, error)) error { return nil }
func (c *countingStore) Delete(string) ([]byte, bool, error)               { return nil, false, nil }
func (c *countingStore) Where(h string) string                             { return h }

// A target named as registered costs one read of its record; an address
// costs one read of the whole registry and no lookup by name first (with
// etcd each read is a round trip; an address named record is still found).
func TestLookupReadsOnce(t *testing.T) {
	store := &countingStore{recs: map[string][]byte{
		"web-01":    []byte(`{"hostname":"web-01","ip":"10.0.0.5","port":"7443"}`),
		"127.0.0.9": []byte(`{"hostname":"127.0.0.9","ip":"127.0.0.1","port":"7000"}`),
	}}
	p := &Policy{Mode: config.IdentityRegistry, Registry: registry.NewStore(store)}
	type reads struct {
		Names       []string
		Gets, Lists int
	}
	for _, tt := range []struct {
		host, port string
		want       reads
	}{
		{"web-01", "7443", reads{[]string{"web-01"}, 1, 0}},
		{"10.0.0.5", "7443", reads{[]string{"web-01"}, 0, 1}},
		{"127.0.0.9", "1", reads{[]string{"127.0.0.9"}, 0, 1}},
		{"::1", "7443", reads{nil, 0, 1}},
		{"web-02", "7443", reads{nil, 1, 1}},
	} {
		store.gets, store.lists = 0, 0
		names, err := p.Load().Lookup(tt.host, tt.port)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, reads{names, store.gets, store.lists}); diff != "" {
			t.Errorf("Lookup(%q, %q) (-want +got):\n%s", tt.host, tt.port, diff)
		}
	}
}

// Prefetch does a call's registry reads up front (the API overlaps them
// with taking the locks); Lookup then answers those targets without
// reading again, the same as it would have, and still reads for others.
func TestPrefetchAnswersLookup(t *testing.T) {
	store := &countingStore{recs: map[string][]byte{
		"web-01": []byte(`{"hostname":"web-01","ip":"10.0.0.5","port":"7443"}`),
	}}
	p := &Policy{Mode: config.IdentityRegistry, Registry: registry.NewStore(store)}
	snap := p.Load()
	snap.Prefetch([]string{"web-01", "10.0.0.5", "web-02"}, []string{"7443", "7443", "7443"})
	gets, lists := store.gets, store.lists
	if gets == 0 || lists == 0 {
		t.Fatalf("Prefetch read %d records and %d lists, want both kinds of read", gets, lists)
	}
	for _, tt := range []struct {
		host string
		want []string
	}{{"web-01", []string{"web-01"}}, {"10.0.0.5", []string{"web-01"}}, {"web-02", nil}} {
		names, err := snap.Lookup(tt.host, "7443")
		if err != nil || !cmp.Equal(names, tt.want) {
			t.Errorf("Lookup(%q) after Prefetch: %q, %v; want %q", tt.host, names, err, tt.want)
		}
	}
	if store.gets != gets || store.lists != lists {
		t.Errorf("Lookup of prefetched targets read the registry again: %d→%d gets, %d→%d lists", gets, store.gets, lists, store.lists)
	}
	if names, _ := snap.Lookup("web-01", "9999"); !cmp.Equal(names, []string{"web-01"}) || store.gets == gets {
		t.Errorf("a target not prefetched: %q after %d gets, want a fresh read naming web-01", names, store.gets-gets)
	}
}
