package rotation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
)

// The files store is rotation.json exactly as before the seam: the same
// bytes and mode, read back the same, Perl's form kept as read, under
// flock on rotation.lock beside it.
func TestRotationFileStoreUnchanged(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var")
	st := FileStore{Path: filepath.Join(dir, "rotation.json")}
	var log syncBuffer
	l := logx.NewWriter(logx.IdentDispatcher, &log)
	if s, rev, err := st.Load(l); s != nil || rev != 0 || err != nil {
		t.Fatalf("absent: %v %d %v", s, rev, err)
	}
	s := &State{CurrentSerial: "01000002", PreviousSerial: "02", RotatedAt: "2026-03-09T14:30:00Z", OverlapExpires: "2026-04-08T14:30:00Z", OverlapDays: 30}
	locked := false
	err := st.Exclusive(func() error {
		_, err := os.Stat(filepath.Join(dir, "rotation.lock"))
		locked = err == nil
		return st.Replace(0, s, &Identity{Cert: []byte("c"), Key: []byte("k")})
	})
	if err != nil || !locked {
		t.Fatalf("exclusive replace: %v (lock file there: %v)", err, locked)
	}
	data, _ := os.ReadFile(st.Path)
	want := `{"current_serial":"01000002","previous_serial":"02","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-04-08T14:30:00Z","overlap_days":30}`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("rotation.json (-want +got):\n%s", diff)
	}
	if fi, _ := os.Stat(st.Path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files beside rotation.json: %v (the identity has no place there)", entries)
	}
	got, rev, err := st.Load(l)
	if err != nil || rev != 0 {
		t.Fatal(rev, err)
	}
	if diff := cmp.Diff(s, got, cmpopts.IgnoreFields(State{}, "Raw")); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}

	perl := `{"overlap_days":"14","current_serial":"01000003","previous_serial":"","rotated_at":"x","overlap_expires":"y"}`
	os.WriteFile(st.Path, []byte(perl), 0o640)
	got, _, _ = st.Load(l)
	if got.OverlapDays != 14 || got.Raw["overlap_days"] != "14" {
		t.Errorf("Perl form read as %+v", got)
	}
	if err := st.DropPrevious(nil); err != nil {
		t.Error(err)
	}
	if data, _ := os.ReadFile(st.Path); string(data) != perl {
		t.Errorf("reading changed the file: %s", data)
	}
}

// WriteIdentity makes the four files what the shared identity says, with
// setup-ctrl-exec's modes, and changes nothing when they already are.
func TestRotationWriteIdentity(t *testing.T) {
	dir := t.TempDir()
	id := &Identity{Cert: []byte("cert-2"), Key: []byte("key-2"), PrevCert: []byte("cert-1"), PrevKey: []byte("key-1")}
	read := func() map[string]string {
		out := map[string]string{}
		for _, n := range []string{"ctrl-exec.crt", "ctrl-exec.key", "ctrl-exec.crt.prev", "ctrl-exec.key.prev"} {
			p := filepath.Join(dir, n)
			if data, err := os.ReadFile(p); err == nil {
				fi, _ := os.Stat(p)
				out[n] = fmt.Sprintf("%s %o", data, fi.Mode().Perm())
			}
		}
		return out
	}
	changed, err := WriteIdentity(dir, id)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	want := map[string]string{"ctrl-exec.crt": "cert-2 644", "ctrl-exec.key": "key-2 640", "ctrl-exec.crt.prev": "cert-1 644", "ctrl-exec.key.prev": "key-1 640"}
	if diff := cmp.Diff(want, read()); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	if changed, err := WriteIdentity(dir, id); changed || err != nil {
		t.Errorf("second write: changed %v %v", changed, err)
	}
	back, err := ReadIdentity(dir)
	if err != nil || cmp.Diff(id, back) != "" {
		t.Errorf("ReadIdentity: %v %s", err, cmp.Diff(id, back))
	}

	// The previous pair dropped everywhere: the copies go.
	if changed, err := WriteIdentity(dir, &Identity{Cert: []byte("cert-2"), Key: []byte("key-2")}); !changed || err != nil {
		t.Fatalf("drop prev: %v %v", changed, err)
	}
	if diff := cmp.Diff(map[string]string{"ctrl-exec.crt": "cert-2 644", "ctrl-exec.key": "key-2 640"}, read()); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

func TestRotationIdentityJSON(t *testing.T) {
	id := &Identity{Cert: []byte("-----BEGIN CERTIFICATE-----\nA\n"), Key: []byte("-----BEGIN PRIVATE KEY-----\nSECRET\n")}
	back, err := ParseIdentity(id.Marshal())
	if err != nil || cmp.Diff(id, back) != "" {
		t.Fatalf("round trip: %v %s", err, cmp.Diff(id, back))
	}
	for _, s := range []string{fmt.Sprint(id), fmt.Sprintf("%v %+v %#v %s", id, id, id, id)} {
		if strings.Contains(s, "SECRET") {
			t.Errorf("formatting shows the key: %s", s)
		}
	}
	for in, want := range map[string]string{
		`[]`:                                    "not JSON",
		`{"cert":"c"}`:                          "lacks its cert or key",
		`{"cert":"c","key":"k","prev_key":"p"}`: "half of the previous pair",
	} {
		if _, err := ParseIdentity([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}

func FuzzParseIdentity(f *testing.F) {
	f.Add((&Identity{Cert: []byte("c"), Key: []byte("k"), PrevCert: []byte("pc"), PrevKey: []byte("pk")}).Marshal())
	f.Add([]byte(`{"cert":"c","key":"k"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := ParseIdentity(data)
		if err != nil {
			return
		}
		again, err := ParseIdentity(id.Marshal())
		if err != nil || cmp.Diff(id, again) != "" {
			t.Fatalf("round trip: %v %s", err, cmp.Diff(id, again))
		}
	})
}
