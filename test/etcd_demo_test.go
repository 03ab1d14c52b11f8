package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
)

// make demo-ha runs to the end and leaves no process behind: none whose
// command line or environment names its temporary directory.
func TestEtcdDemoHA(t *testing.T) {
	t.Parallel()
	etcdtest.Heavy(t)
	etcdtest.Binary(t)
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo-ha.sh")
	cmd.Env = append(os.Environ(), "DEMO_BIN="+binDir, "TMPDIR="+tmp, raceEnv)
	cmd.WaitDelay = 5 * time.Second // a process left holding the output pipe
	// Whatever a broken demo leaves is ended here, after the check.
	t.Cleanup(func() {
		for _, p := range processesNaming(t, tmp) {
			if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Demo complete")) {
		t.Fatalf("demo-ha: %v\n%s", err, out)
	}
	if left := processesNaming(t, tmp); len(left) > 0 {
		t.Errorf("left running after demo-ha: %s", strings.Join(left, "; "))
	}
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
		t.Errorf("left in TMPDIR: %v", entries)
	}
}

// processesNaming lists this user's processes that mention s in their
// command line or environment.
func processesNaming(t *testing.T, s string) []string {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range procs {
		for _, f := range []string{"cmdline", "environ"} {
			data, err := os.ReadFile(filepath.Join(p, f))
			if err == nil && bytes.Contains(data, []byte(s)) {
				out = append(out, filepath.Base(p)+" "+string(bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
				break
			}
		}
	}
	return out
}
