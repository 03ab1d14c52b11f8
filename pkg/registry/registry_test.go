package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRegistryValidHostname(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"web-01", true},
		{"web-01.example.com", true},
		{"WEB_01", true},
		{"1host", true},
		{"a", true},
		{"a..b", true},
		{"", false},
		{".", false},
		{"..", false},
		{"../x", false},
		{".hidden", false},
		{"-dash", false},
		{"_under", false},
		{"a/b", false},
		{"a b", false},
		{"a\nb", false},
		{"host:7443", false},
		{"héte", false},
		{"a" + strings.Repeat("b", 249), true},  // 250 characters: 250+".json" is 255 bytes
		{"a" + strings.Repeat("b", 250), false}, // 251: its registry file name would not fit
		{"a" + strings.Repeat("b", 252), false}, // 253: DNS's limit, still too long
	}
	for _, tt := range tests {
		if got := ValidHostname(tt.name); got != tt.want {
			t.Errorf("ValidHostname(%q) = %v, want %v", tt.name, got, tt.want)
		}
		if err := CheckHostname(tt.name); (err == nil) != tt.want {
			t.Errorf("CheckHostname(%q) = %v", tt.name, err)
		}
	}
}

// The longest valid name gets a registry file, written through a temp file
// whose name must fit in 255 bytes too; one longer is refused with a reason.
func TestRegistryLongestHostname(t *testing.T) {
	g := New(t.TempDir())
	longest := strings.Repeat("h", MaxHostnameLen)
	if err := g.Put(Record{"hostname": longest, "ip": "10.0.0.1"}); err != nil {
		t.Fatalf("Put of a %d-character hostname: %v", len(longest), err)
	}
	if rec, err := g.Get(longest); err != nil || rec.Hostname() != longest {
		t.Fatalf("Get = %v, %v", rec, err)
	}
	err := CheckHostname(longest + "h")
	if err == nil || !strings.Contains(err.Error(), "at most 250 fit") {
		t.Errorf("CheckHostname(251 characters) = %v", err)
	}
}

func TestRegistryPutGetOverwrites(t *testing.T) {
	g := New(filepath.Join(t.TempDir(), "agents")) // created on first write
	first := Record{"hostname": "host-a", "ip": "10.0.0.1", "expiry": "Jun  7 13:00:00 2027 GMT", "extra": "x"}
	if err := g.Put(first); err != nil {
		t.Fatal(err)
	}
	second := Record{"hostname": "host-a", "ip": "10.0.0.2", "expiry": "Jun  7 13:00:00 2029 GMT"}
	if err := g.Put(second); err != nil {
		t.Fatal(err)
	}
	got, err := g.Get("host-a")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(second, got); diff != "" {
		t.Errorf("record after re-pairing (-want +got):\n%s", diff)
	}
	path := filepath.Join(g.Dir, "host-a.json")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if want := `{"expiry":"Jun  7 13:00:00 2029 GMT","hostname":"host-a","ip":"10.0.0.2"}`; string(data) != want {
		t.Errorf("file %s, want compact %s", data, want)
	}
}

func TestRegistryGetMissingAndInvalid(t *testing.T) {
	g := New(t.TempDir())
	if _, err := g.Get("nobody"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(nobody) = %v, want ErrNotFound", err)
	}
	if _, err := g.Get("../etc/passwd"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get(../etc/passwd) = %v, want an invalid hostname error", err)
	}
	if err := g.Put(Record{"hostname": "../x"}); err == nil {
		t.Error("Put with hostname ../x succeeded")
	}
	if _, err := g.Delete("../x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Delete(../x) = %v, want an invalid hostname error", err)
	}
}

func TestRegistryMergeKeepsUnknownFields(t *testing.T) {
	g := New(t.TempDir())
	// Written by someone else: unknown fields, a number, an object, a null.
	orig := `{"hostname":"agent-merge","ip":"10.1.2.3","paired":"2025-01-15T08:00:00Z","reqid":"deadcafe",` +
		`"dispatcher_serial":"old","serial_status":"pending","future":{"a":[1,2]},"big":12345678901234567890,"nothing":null}`
	if err := os.WriteFile(filepath.Join(g.Dir, "agent-merge.json"), []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Merge("agent-merge", map[string]any{
		"serial_status": "current", "dispatcher_serial": "newhex0002", "serial_confirmed": "2025-06-15T09:00:00Z",
	}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(g.Dir, "agent-merge.json"))
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"hostname": "agent-merge", "ip": "10.1.2.3", "paired": "2025-01-15T08:00:00Z", "reqid": "deadcafe",
		"dispatcher_serial": "newhex0002", "serial_status": "current", "serial_confirmed": "2025-06-15T09:00:00Z",
		"future": map[string]any{"a": []any{1.0, 2.0}}, "big": 12345678901234567890.0, "nothing": nil,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("merged record (-want +got):\n%s", diff)
	}
	// The big number survives digit for digit, not as a float.
	if !strings.Contains(string(data), `"big":12345678901234567890`) {
		t.Errorf("number not preserved exactly: %s", data)
	}
}

func TestRegistryMergeMissingOrCorruptStartsFresh(t *testing.T) {
	for _, content := range []string{"", "{not json", "[1,2]", "null"} {
		t.Run(fmt.Sprintf("%q", content), func(t *testing.T) {
			g := New(t.TempDir())
			if content != "" {
				os.WriteFile(filepath.Join(g.Dir, "new-host.json"), []byte(content), 0o644)
			}
			got, err := g.Merge("new-host", map[string]any{"serial_status": "pending"})
			if err != nil {
				t.Fatal(err)
			}
			want := Record{"hostname": "new-host", "serial_status": "pending"}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if reread, err := g.Get("new-host"); err != nil || cmp.Diff(want, reread) != "" {
				t.Errorf("re-read %v, %v", reread, err)
			}
		})
	}
}

// Concurrent read-modify-write merges of one record lose nothing.
func TestRegistryConcurrentMerges(t *testing.T) {
	g := New(t.TempDir())
	if err := g.Put(Record{"hostname": "busy", "keep": "me"}); err != nil {
		t.Fatal(err)
	}
	const n = 40
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A fresh Registry per writer, as separate processes would have.
			_, err := New(g.Dir).Merge("busy", map[string]any{fmt.Sprintf("f%02d", i): fmt.Sprint(i)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := g.Get("busy")
	if err != nil {
		t.Fatal(err)
	}
	want := Record{"hostname": "busy", "keep": "me"}
	for i := range n {
		want[fmt.Sprintf("f%02d", i)] = fmt.Sprint(i)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lost updates (-want +got):\n%s", diff)
	}
}

func TestRegistryListSortsAndSkips(t *testing.T) {
	g := New(t.TempDir())
	for _, h := range []string{"host-c", "host-a", "host-b"} {
		if err := g.Put(Record{"hostname": h}); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(g.Dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("broken.json", "{truncated")
	write("notes.txt", "not a record")
	write(".host-a.json.tmp123", `{"hostname":"temp"}`)
	write(".json", `{"hostname":"nameless"}`)
	write("HOST-Z.json", `{"hostname":"HOST-Z"}`) // upper case sorts first in byte order

	recs, skipped, err := g.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Hostname())
	}
	if diff := cmp.Diff([]string{"HOST-Z", "host-a", "host-b", "host-c"}, names); diff != "" {
		t.Errorf("hostnames (-want +got):\n%s", diff)
	}
	if len(skipped) != 1 || filepath.Base(skipped[0].Path) != "broken.json" || skipped[0].Err == nil {
		t.Errorf("skipped = %+v, want broken.json with an error", skipped)
	}
}

func TestRegistryListMissingDir(t *testing.T) {
	recs, skipped, err := New(filepath.Join(t.TempDir(), "absent")).List()
	if err != nil || len(recs) != 0 || len(skipped) != 0 {
		t.Errorf("List of a missing dir = %v, %v, %v; want empty", recs, skipped, err)
	}
}

func TestRegistryListUnreadableDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any directory")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0)
	defer os.Chmod(dir, 0o755)
	if _, _, err := New(dir).List(); !errors.Is(err, os.ErrPermission) {
		t.Errorf("List = %v, want a permission error", err)
	}
}

func TestRegistryDelete(t *testing.T) {
	g := New(t.TempDir())
	rec := Record{"hostname": "host-to-remove", "expiry": "Jun  7 13:00:00 2027 GMT"}
	if err := g.Put(rec); err != nil {
		t.Fatal(err)
	}
	got, err := g.Delete("host-to-remove")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rec, got); diff != "" {
		t.Errorf("deleted record (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(g.Dir, "host-to-remove.json")); !os.IsNotExist(err) {
		t.Errorf("file still there: %v", err)
	}
	if _, err := g.Delete("host-to-remove"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete = %v, want ErrNotFound", err)
	} else if err.Error() != "no registry entry for 'host-to-remove'" {
		t.Errorf("message %q", err)
	}
}

func TestRegistryRecordString(t *testing.T) {
	rec, err := ParseRecord([]byte(`{"s":"x","n":7443,"e":"","z":null,"b":true,"o":{"a":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"s", "x", true}, {"n", "7443", true}, {"e", "", true}, {"z", "", false},
		{"missing", "", false}, {"b", "1", true}, {"o", `{"a":1}`, true},
	}
	for _, tt := range tests {
		got, ok := rec.String(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("String(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
	for _, bad := range []string{"", "[]", "null", `{"a":1} x`, `{"a":1}}`, "7"} {
		if _, err := ParseRecord([]byte(bad)); err == nil {
			t.Errorf("ParseRecord(%q) succeeded", bad)
		}
	}
}

func TestRegistryAddress(t *testing.T) {
	resolves := func(names ...string) func(context.Context, string) ([]string, error) {
		return func(_ context.Context, host string) ([]string, error) {
			for _, n := range names {
				if n == host {
					return []string{"192.0.2.1"}, nil
				}
			}
			return nil, &netError{host}
		}
	}
	tests := []struct {
		name string
		rec  Record
		dns  []string
		want string
	}{
		{"resolvable hostname, default port", Record{"hostname": "web-01", "ip": "10.0.0.5"}, []string{"web-01"}, "web-01:7443"},
		{"unresolvable hostname falls back to ip", Record{"hostname": "web-01", "ip": "10.0.0.5"}, nil, "10.0.0.5:7443"},
		{"recorded port", Record{"hostname": "web-01", "ip": "10.0.0.5", "port": "7543"}, []string{"web-01"}, "web-01:7543"},
		{"numeric port", Record{"hostname": "web-01", "ip": "10.0.0.5", "port": json.Number("9000")}, nil, "10.0.0.5:9000"},
		{"bad port", Record{"hostname": "web-01", "ip": "10.0.0.5", "port": "70000"}, nil, "10.0.0.5:7443"},
		{"IPv6 ip", Record{"hostname": "web-01", "ip": "::1", "port": "7443"}, nil, "[::1]:7443"},
		{"no ip keeps hostname", Record{"hostname": "web-01"}, nil, "web-01:7443"},
		{"unknown ip keeps hostname", Record{"hostname": "web-01", "ip": "unknown"}, nil, "web-01:7443"},
		{"hostname that is an address", Record{"hostname": "10.9.9.9", "ip": "10.0.0.5"}, nil, "10.9.9.9:7443"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := AddressWith(context.Background(), tt.rec, resolves(tt.dns...)); got != tt.want {
				t.Errorf("Address = %q, want %q", got, tt.want)
			}
		})
	}
}

type netError struct{ host string }

func (e *netError) Error() string { return "no such host " + e.host }

// A boolean field reads as Perl prints it: false is "0", not "" (issue 14).
func TestRecordBooleanAsPerlPrints(t *testing.T) {
	r := Record{"t": true, "f": false}
	if got := r.Get("t") + "," + r.Get("f"); got != "1,0" {
		t.Errorf("true,false read as %q, want \"1,0\"", got)
	}
}
