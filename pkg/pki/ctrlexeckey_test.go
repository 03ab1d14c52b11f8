package pki_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// D-30: the control key is 0640 with its directory's group, so members of
// ctrl-exec run the CLI without sudo; an old 0600 key is replaced as 0640.
func TestWriteCtrlExecKeyTakesTheDirectorysGroup(t *testing.T) {
	dir := t.TempDir()
	gid := os.Getegid()
	if os.Geteuid() == 0 {
		// A group the process is not in: inheriting the creator's group fails.
		gid = 4242
		if err := os.Chown(dir, -1, gid); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "ctrl-exec.key")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteCtrlExecKey(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	type file struct {
		Mode    os.FileMode
		Gid     int
		Content string
	}
	got := file{fi.Mode().Perm(), int(fi.Sys().(*syscall.Stat_t).Gid), string(data)}
	if diff := cmp.Diff(file{0o640, gid, "new"}, got); diff != "" {
		t.Errorf("ctrl-exec.key (-want +got):\n%s", diff)
	}

	if err := pki.WriteCtrlExecKey(filepath.Join(dir, "missing", "k"), []byte("x")); err == nil {
		t.Error("a key in a missing directory was written")
	}
}
