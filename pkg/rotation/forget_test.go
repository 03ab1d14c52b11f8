package rotation

import (
	"os"
	"path/filepath"
	"testing"
)

// After a rotation no cached TLS session survives: the files of every user
// go, and one that cannot be removed is reported, not fatal.
func TestForgetSessionsRemovesEveryUsersFile(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"tls-sessions.root", "tls-sessions.alice", "other"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A directory by a cache file's name cannot be removed with os.Remove
	// once it holds something.
	stuck := filepath.Join(dir, "tls-sessions.bob")
	if err := os.MkdirAll(filepath.Join(stuck, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	var warned []error
	ForgetSessions(nil, dir, func(err error) { warned = append(warned, err) })()
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(left) != 2 || left[0] != filepath.Join(dir, "other") || left[1] != stuck {
		t.Errorf("left %v, want other and the stuck directory", left)
	}
	if len(warned) != 1 {
		t.Errorf("warned %v, want one error", warned)
	}
}
