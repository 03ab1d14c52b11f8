package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The seed README's quick start names the script with --script:
// `ctrl-exec run <host> --script logger -- -t test "hello"`. -s and
// --script=NAME work too, and every word before "--" is then a host.
func TestRunScriptOption(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a1 := startFakeAgent(t, p, "agent-1")
	a2 := startFakeAgent(t, p, "agent-2")
	want := "==> 127.0.0.1  [OK  exit:0  Nms  req:R]\nhello from agent-1 x,y z\n" +
		"==> 127.0.0.1  [OK  exit:0  Nms  req:R]\nhello from agent-2 x,y z\n"
	for _, args := range [][]string{
		{"run", a1.target(), a2.target(), "--script", "hello", "--", "x", "y z"},
		{"run", "-s", "hello", a1.target(), a2.target(), "--", "x", "y z"},
		{"--script=hello", "run", a1.target(), a2.target(), "--", "x", "y z"},
	} {
		res := r.Run("ctrl-exec", args...)
		if res.Code != 0 || masked(res.Stdout) != want || res.Stderr != "" {
			t.Errorf("%q: exit %d\nstdout:\n%s\nstderr:\n%s", args, res.Code, res.Stdout, res.Stderr)
		}
	}
}

// An unknown option is a usage error, never a host name to connect to.
func TestRunUnknownOptionIsUsageError(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a1 := startFakeAgent(t, p, "agent-1")
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"run", a1.target(), "--scirpt", "hello"}, "Unknown option: scirpt\n"},
		{[]string{"run", a1.target(), "hello", "-x"}, "Unknown option: x\n"},
		{[]string{"ping", "--verbose", a1.target()}, "Unknown option: verbose\n"},
		{[]string{"run", a1.target(), "--script"}, "Option script requires an argument\n"},
	} {
		res := r.Run("ctrl-exec", tt.args...)
		if res.Code != 255 || !strings.HasPrefix(res.Stderr, tt.stderr+"Usage: ctrl-exec [options] <mode>") || res.Stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 255 and %q with the usage", tt.args, res.Code, res.Stdout, res.Stderr, tt.stderr)
		}
	}
	// Nothing was dispatched.
	if log := r.ReadFile("/log"); strings.Contains(log, "ACTION=dispatch") || strings.Contains(log, "ACTION=ping") {
		t.Errorf("a refused command reached an agent:\n%s", log)
	}
}

// The names of the project before its rename still run the right role, and
// dispatcher-agent's ping-self is today's self-check.
func TestOldProgramNames(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "web-01")
	dir := t.TempDir()
	for name, want := range map[string]string{
		"dispatcher":               "ctrl-exec - run allowlisted scripts",
		"dispatcher-agent":         "ctrl-exec-agent - serve allowlisted scripts",
		"dispatcher-api":           "ctrl-exec-api - serve the ctrl-exec HTTP API",
		"update-dispatcher-serial": "update-ctrl-exec-serial - store a new ctrl-exec certificate serial",
	} {
		link := filepath.Join(dir, name)
		if err := os.Symlink(filepath.Join(binDir, "ctrl-exec"), link); err != nil {
			t.Fatal(err)
		}
		res := r.Run(link, "--help")
		if out := res.Stdout + res.Stderr; !strings.Contains(out, want) {
			t.Errorf("%s --help: exit %d, output %q; want it to mention %q", name, res.Code, out, want)
		}
	}

	r.WriteFile("/etc/ctrl-exec-agent/agent.conf", "port = 7443\ncert = /x.crt\nkey = /x.key\nca = /ca.crt\n", 0o640)
	r.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "logger = /usr/bin/logger\n", 0o640)
	res := r.Run(filepath.Join(dir, "dispatcher-agent"), "ping-self")
	if res.Code != 0 || !strings.Contains(res.Stdout, "  Script 'logger': /usr/bin/logger") || !strings.HasSuffix(res.Stdout, "Self-check complete.\n") {
		t.Errorf("dispatcher-agent ping-self: exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
}
