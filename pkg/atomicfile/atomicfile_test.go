package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestWriteReplacesWholeFileWithMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	if err := os.WriteFile(p, []byte("old content that is longer"), 0600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte(`{"a":1}`), 0640); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if string(got) != `{"a":1}` {
		t.Errorf("content = %q", got)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0640 {
		t.Errorf("mode = %v, want 0640", st.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestWriteMissingDirFails(t *testing.T) {
	err := Write(filepath.Join(t.TempDir(), "no", "such"), []byte("x"), 0644)
	if err == nil {
		t.Fatal("want error for a missing directory")
	}
}

// Read-modify-write under WithLock loses no increment across goroutines.
func TestWithLockSerialisesUpdates(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "n")
	if err := Write(p, []byte("0"), 0644); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := WithLock(dir, func() error {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				n, _ := strconv.Atoi(string(b))
				return Write(p, []byte(fmt.Sprint(n+1)), 0644)
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	b, _ := os.ReadFile(p)
	if string(b) != "20" {
		t.Errorf("counter = %s, want 20", b)
	}
}

// Issue 9 item 9: a directory that cannot be synced is an error, not
// silence: the rename may not survive a crash.
func TestSyncDirReportsFailure(t *testing.T) {
	dir := t.TempDir()
	if err := syncDir(dir); err != nil {
		t.Fatalf("syncDir(%s) = %v", dir, err)
	}
	gone := filepath.Join(dir, "gone")
	if err := syncDir(gone); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("syncDir of a missing directory = %v", err)
	}
}

// A target whose name is near the 255-byte limit still gets a temp file.
func TestWriteLongName(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, strings.Repeat("n", 250)+".json")
	if err := Write(p, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %d entries (%v), want only the target", len(entries), err)
	}
}
