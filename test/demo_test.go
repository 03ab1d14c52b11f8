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

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// make demo (test/demo.sh, here with the test build) leaves nothing behind:
// when it has said "Demo complete" and exited, no process it started is
// still running (it once left pairing-mode and the agent) and its temp
// directory is gone. Every process it starts inherits a marker variable,
// even one that starts a session of its own, so a survivor is found by
// its environment.
func TestDemoLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	marker := "CTRL_EXEC_DEMO_TEST=" + pki.NewNonce()
	t.Cleanup(func() {
		for _, p := range processesWith(marker) { // only if the test failed
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	tmp := t.TempDir()
	keys := NewRoot(t, "")
	pool := giveKeys(t, keys, 3) // the CA's, the ctrl-exec cert's, the agent's

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "demo.sh")
	cmd.Env = []string{
		"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + tmp, "TMPDIR=" + tmp, "DEMO_BIN=" + binDir,
		testknobs.KeyBits + "=2048", testknobs.KeyPool + "=" + pool, marker,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("Demo complete")) {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}

	deadline := time.Now().Add(10 * time.Second)
	for left := processesWith(marker); len(left) > 0; left = processesWith(marker) {
		if time.Now().After(deadline) {
			t.Fatalf("still running after the demo ended: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "ctrl-exec-demo.*")); len(left) != 0 {
		t.Errorf("left behind: %q", left)
	}
}

type process struct {
	pid     int
	cmdline string
}

func (p process) String() string { return strconv.Itoa(p.pid) + " " + p.cmdline }

// processesWith lists the live processes whose environment holds entry.
func processesWith(entry string) []process {
	var found []process
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, err := strconv.Atoi(filepath.Base(dir))
		if err != nil || pid == os.Getpid() {
			continue
		}
		environ, err := os.ReadFile(filepath.Join(dir, "environ")) // empty for a zombie
		if err != nil || !bytes.Contains(append([]byte{0}, environ...), []byte("\x00"+entry+"\x00")) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		found = append(found, process{pid, strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " "))})
	}
	return found
}
