package pairing

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var queueNow = time.Date(2026, time.March, 9, 14, 30, 0, 0, time.UTC)

// touch writes a queue file whose modification time is age before queueNow.
func touch(t *testing.T, dir, name string, age time.Duration) {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(`{"id":"x"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	mt := queueNow.Add(-age)
	if err := os.Chtimes(path, mt, mt); err != nil {
		t.Fatal(err)
	}
}

func remaining(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestPairingExpireStale(t *testing.T) {
	const old, fresh = 601 * time.Second, 10 * time.Second
	tests := []struct {
		name  string
		files map[string]time.Duration
		want  []string
	}{
		{"fresh request stays", map[string]time.Duration{"aa.json": fresh}, []string{"aa.json"}},
		{"stale request goes", map[string]time.Duration{"aa.json": old}, nil},
		{"exactly 600 s is not stale", map[string]time.Duration{"aa.json": StaleAfter}, []string{"aa.json"}},
		{"stale request with fresh approval stays",
			map[string]time.Duration{"aa.json": old, "aa.approved": fresh}, []string{"aa.approved", "aa.json"}},
		{"stale request with fresh denial stays",
			map[string]time.Duration{"aa.json": old, "aa.denied": fresh}, []string{"aa.denied", "aa.json"}},
		{"orphaned approval goes with its request (B-15)",
			map[string]time.Duration{"aa.json": old, "aa.approved": old}, nil},
		{"orphaned denial goes", map[string]time.Duration{"aa.denied": old}, nil},
		{"fresh request beside an old approval of another id",
			map[string]time.Duration{"aa.json": fresh, "bb.approved": old}, []string{"aa.json"}},
		{"other files are left alone",
			map[string]time.Duration{"notes.txt": old, "AB.json": old, ".aa.json.tmp1": old, "x-y.json": old},
			[]string{".aa.json.tmp1", "AB.json", "notes.txt", "x-y.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, age := range tt.files {
				touch(t, dir, name, age)
			}
			NewQueue(dir, func() time.Time { return queueNow }).ExpireStale()
			if diff := cmp.Diff(tt.want, remaining(t, dir)); diff != "" {
				t.Errorf("files left (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPairingExpireStaleMissingDir(t *testing.T) {
	NewQueue(filepath.Join(t.TempDir(), "absent"), nil).ExpireStale() // must not panic
}

func TestPairingQueueListAndCount(t *testing.T) {
	dir := t.TempDir()
	q := NewQueue(dir, nil)
	reqs := []Request{
		{ID: "0000000000000002", Hostname: "b", IP: "10.0.0.2", CSR: "c", Nonce: "n", Received: "2026-03-09T14:30:05Z", Code: "000002"},
		{ID: "0000000000000001", Hostname: "a", IP: "10.0.0.1", CSR: "c", Nonce: "deadbeef12345678deadbeef12345678", Received: "2026-03-09T14:30:00Z", Code: "000001", Port: 7543},
		{ID: "0000000000000003", Hostname: "c", IP: "10.0.0.3", CSR: "c", Received: "2026-03-09T14:30:05Z", Code: "000003"},
	}
	for _, r := range reqs {
		if err := q.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "00000000000000ff.json"), []byte("{broken"), 0o644)
	os.WriteFile(filepath.Join(dir, "other.json"), []byte("{}"), 0o644)

	got, err := q.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []Request{reqs[1], reqs[0], reqs[2]} // by received, then id
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	// Count is the Perl glob: every *.json, even unparsable or non-hex names.
	if n, err := q.Count(); err != nil || n != 5 {
		t.Errorf("Count = %d, %v; want 5", n, err)
	}
	// The queue file holds the §7.4 keys (+ Go's port when reported).
	data, _ := os.ReadFile(filepath.Join(dir, "0000000000000001.json"))
	wantJSON := `{"id":"0000000000000001","hostname":"a","ip":"10.0.0.1","csr":"c","nonce":"deadbeef12345678deadbeef12345678","received":"2026-03-09T14:30:00Z","code":"000001","port":7543}`
	if string(data) != wantJSON {
		t.Errorf("queue file\n got %s\nwant %s", data, wantJSON)
	}
	if info, _ := os.Stat(filepath.Join(dir, "0000000000000001.json")); info.Mode().Perm() != 0o644 {
		t.Errorf("queue file mode %v", info.Mode().Perm())
	}
}

func TestPairingQueueGetRejectsNonHexIDs(t *testing.T) {
	q := NewQueue(t.TempDir(), nil)
	for _, id := range []string{"", "../x", "ABCD", "00/11", "zz"} {
		if _, err := q.Get(id); err != errNoRequest {
			t.Errorf("Get(%q) = %v, want errNoRequest", id, err)
		}
	}
	if err := q.Add(Request{ID: "../x"}); err == nil {
		t.Error("Add with id ../x succeeded")
	}
}

func TestPairingAnswerWaitsForWholeFile(t *testing.T) {
	dir := t.TempDir()
	q := NewQueue(dir, nil)
	if _, _, ok := q.answer("aa"); ok {
		t.Fatal("answer without files")
	}
	os.WriteFile(filepath.Join(dir, "aa.approved"), []byte(`{"status":"appr`), 0o644)
	if _, _, ok := q.answer("aa"); ok {
		t.Error("half-written approval was taken")
	}
	os.WriteFile(filepath.Join(dir, "aa.approved"), []byte(`{"status":"approved"}`), 0o644)
	if body, approved, ok := q.answer("aa"); !ok || !approved || string(body) != `{"status":"approved"}` {
		t.Errorf("answer = %q, %v, %v", body, approved, ok)
	}
	os.WriteFile(filepath.Join(dir, "bb.denied"), []byte(`{"status":"denied","reason":"rejected by operator"}`), 0o644)
	if _, approved, ok := q.answer("bb"); !ok || approved {
		t.Errorf("denial: approved=%v ok=%v", approved, ok)
	}
}
