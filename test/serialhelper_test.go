package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUpdateSerialHelper(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "")
	serialFile := r.Path("/etc/ctrl-exec-agent/ctrl-exec-serial")

	// A stand-in agent: records each SIGHUP it receives, once its trap is
	// set (before that a SIGHUP would end it).
	hups, ready := r.Path("/hups"), r.Path("/ready")
	agent := r.Start("sh", "-c", `trap 'echo hup >> `+hups+`' HUP; : > `+ready+`; while :; do sleep 0.05; done`)
	apiWaitFile(t, ready, 30*time.Second)
	r.WriteFile("/run/ctrl-exec-agent.pid", strconv.Itoa(agent.Cmd.Process.Pid)+"\n", 0644)

	tests := []struct {
		name     string
		env      []string
		args     []string
		code     int
		stdout   string
		stderr   string
		wantFile string
	}{
		{name: "no argument", code: 1, stderr: "Usage: update-ctrl-exec-serial <hex-serial>\n"},
		{name: "two arguments", args: []string{"0a", "0b"}, code: 1, stderr: "Usage: update-ctrl-exec-serial <hex-serial>\n"},
		{name: "not hex", args: []string{"0x1g"}, code: 1, stderr: "Invalid serial format: must be hex string\n"},
		{name: "too long", args: []string{strings.Repeat("a", 41)}, code: 1,
			stderr: "Invalid serial length: expected 1–40 hex characters, got 41\n"},
		{name: "missing directory", env: []string{"ENVEXEC_SERIAL_FILE=" + r.Path("/nope/serial")}, args: []string{"0a"}, code: 2,
			stderr: "Serial directory '" + r.Path("/nope") + "' does not exist\n"},
		{name: "short CA serial accepted, lowercased, agent reloaded", args: []string{"0A"}, code: 0,
			stdout:   "Serial updated to 0a. Agent reloaded (pid " + strconv.Itoa(agent.Cmd.Process.Pid) + ").\n",
			wantFile: "0a\n"},
		{name: "DISPATCHER_SERIAL_FILE honoured", env: []string{"DISPATCHER_SERIAL_FILE=" + r.Path("/etc/other-serial")},
			args: []string{"01000002"}, code: 0,
			stdout: "Serial updated to 01000002. Agent reloaded (pid " + strconv.Itoa(agent.Cmd.Process.Pid) + ").\n"},
	}
	hupCount := func() int { return strings.Count(r.ReadFile("/hups"), "hup") }
	for _, tt := range tests {
		before := hupCount()
		r.ExtraEnv = tt.env
		res := r.Run("update-ctrl-exec-serial", tt.args...)
		if res.Code != tt.code || res.Stdout != tt.stdout || res.Stderr != tt.stderr {
			t.Errorf("%s: got exit %d stdout %q stderr %q; want exit %d stdout %q stderr %q",
				tt.name, res.Code, res.Stdout, res.Stderr, tt.code, tt.stdout, tt.stderr)
		}
		if tt.code == 0 {
			// Signals do not queue: see each one arrive before sending the next.
			deadline := time.Now().Add(20 * time.Second)
			for hupCount() == before && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if hupCount() != before+1 {
				t.Errorf("%s: the agent did not receive SIGHUP", tt.name)
			}
		}
		if tt.wantFile != "" {
			b, _ := os.ReadFile(serialFile)
			st, _ := os.Stat(serialFile)
			if string(b) != tt.wantFile || st.Mode().Perm() != 0644 {
				t.Errorf("%s: serial file %q mode %v", tt.name, b, st.Mode().Perm())
			}
		}
	}
	r.ExtraEnv = nil
	if got := r.ReadFile("/etc/other-serial"); got != "01000002\n" {
		t.Errorf("DISPATCHER_SERIAL_FILE content = %q", got)
	}
	// A PID file naming a dead process: written, but the reload fails (exit 3).
	r.WriteFile("/run/ctrl-exec-agent.pid", "999999999\n", 0644)
	res := r.Run("update-ctrl-exec-serial", "0b")
	if res.Code != 3 || !strings.HasPrefix(res.Stderr, "Serial written but SIGHUP to pid 999999999 failed.\n") {
		t.Errorf("dead pid: exit %d stderr %q", res.Code, res.Stderr)
	}
	if got, _ := os.ReadFile(serialFile); string(got) != "0b\n" {
		t.Errorf("serial after dead-pid run = %q", got)
	}
	if leftovers, _ := filepath.Glob(r.Path("/etc/ctrl-exec-agent/.*tmp*")); len(leftovers) > 0 {
		t.Errorf("temp files left: %v", leftovers)
	}
}
