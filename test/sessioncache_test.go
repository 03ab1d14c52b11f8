package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
)

// TestCLISessionCacheFile: the CLI keeps its TLS sessions in a 0600 file of
// its own user; a file with the wrong mode or corrupt content is ignored
// with a warning (the run still works, with a full handshake) and replaced;
// rotate-cert and setup-ctrl-exec remove it; session_cache = off never
// writes it.
func TestCLISessionCacheFile(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a := newLifecycleAgents(t, "cache-01")[0]
	PairAgent(t, ctl, a.Root)
	serve(t, a)
	file := sessioncache.FileName(ctl.Path("/var/lib/ctrl-exec"), os.Geteuid())
	mode := func() os.FileMode {
		fi, err := os.Stat(file)
		if err != nil {
			t.Fatalf("session cache: %v", err)
		}
		return fi.Mode().Perm()
	}
	run := func(wantWarning string) {
		t.Helper()
		res := ctl.MustRun("ctrl-exec", "run", a.target(), "hello")
		if wantWarning == "" && res.Stderr != "" || !strings.Contains(res.Stderr, wantWarning) {
			t.Errorf("stderr %q, want %q", res.Stderr, wantWarning)
		}
	}

	run("")
	if mode() != 0o600 {
		t.Errorf("session cache mode %04o, want 0600", mode())
	}
	run("") // warm

	if err := os.Chmod(file, 0o644); err != nil {
		t.Fatal(err)
	}
	run("Warning: ignoring TLS session cache " + file + ": mode 0644, want 0600")
	if mode() != 0o600 {
		t.Errorf("the ignored file was not replaced: mode %04o", mode())
	}

	data, _ := os.ReadFile(file)
	data[len(data)/2] ^= 0xff
	os.WriteFile(file, data, 0o600)
	run("Warning: ignoring TLS session cache " + file + ": corrupt")
	run("")

	ctl.MustRun("ctrl-exec", "rotate-cert")
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("session cache after rotate-cert: %v", err)
	}
	run("")
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("no cache after a run with the rotated certificate: %v", err)
	}
	setConf(ctl, "session_cache = off")
	os.Remove(file)
	run("")
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("session_cache = off wrote %s: %v", file, err)
	}

	setConf(ctl)
	run("")
	ctl.RunInput("y\n", "ctrl-exec", "setup-ctrl-exec")
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("session cache after setup-ctrl-exec: %v", err)
	}
}
