package serialhelper

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the processes of an agent host, chosen by
// SERIALHELPER_TEST_ROLE (argv[0] is what the helper looks at):
//
//	daemon  "ctrl-exec-agent": listens, records each SIGHUP, and starts a child
//	child   "ctrl-exec-agent": a per-connection child, as the Perl agent forks,
//	        holding the listening socket too; runs the helper and reports
//	helper  "update-ctrl-exec-serial"
const roleEnv = "SERIALHELPER_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "daemon":
		os.Exit(daemon())
	case "child":
		os.Exit(child())
	case "helper":
		os.Exit(Main("update-ctrl-exec-serial", os.Args[1:]))
	}
	os.Exit(m.Run())
}

func root() string { return os.Getenv("CTRL_EXEC_ROOT") }

func self(role, argv0 string, args ...string) *exec.Cmd {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, args...)
	cmd.Args[0] = argv0
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	return cmd
}

func writeAgentConf(port int) error {
	dir := filepath.Join(root(), "etc/ctrl-exec-agent")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	conf := fmt.Sprintf("port = %d\ncert = %s/agent.crt\nkey = %s/agent.key\nca = %s/ca.crt\n", port, dir, dir, dir)
	return os.WriteFile(filepath.Join(dir, "agent.conf"), []byte(conf), 0o640)
}

func daemon() int {
	hups := make(chan os.Signal, 8)
	signal.Notify(hups, syscall.SIGHUP)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 10
	}
	if err := writeAgentConf(ln.Addr().(*net.TCPAddr).Port); err != nil {
		return 11
	}
	lnFile, err := ln.(*net.TCPListener).File()
	if err != nil {
		return 12
	}
	c := self("child", "ctrl-exec-agent")
	c.ExtraFiles = []*os.File{lnFile}
	if err := c.Start(); err != nil {
		return 13
	}
	go c.Wait()
	for range hups {
		f, err := os.OpenFile(filepath.Join(root(), "daemon-hups"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			f.WriteString("hup\n")
			f.Close()
		}
	}
	return 0
}

func child() int {
	signal.Ignore(syscall.SIGHUP) // a stray HUP must not hide the outcome
	var stdout, stderr bytes.Buffer
	h := self("helper", "update-ctrl-exec-serial", "01000005")
	h.Stdout, h.Stderr = &stdout, &stderr
	code := 0
	if err := h.Run(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 20
		}
		code = ee.ExitCode()
	}
	out := fmt.Sprintf("%d\n%s\x00%s", code, stdout.String(), stderr.String())
	tmp := filepath.Join(root(), "result.tmp")
	if os.WriteFile(tmp, []byte(out), 0o644) != nil || os.Rename(tmp, filepath.Join(root(), "result")) != nil {
		return 21
	}
	return 0
}

// waitFile polls for path to exist, then returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Issue 9 B: run the way a Perl agent runs it, the helper's parent is a
// per-connection child, not the daemon. With no PID file it must signal the
// daemon (the process owning the listening socket), not its parent.
func TestSignalsTheDaemonNotItsParent(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CTRL_EXEC_ROOT", dir)
	d := self("daemon", "ctrl-exec-agent")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })

	code, rest, _ := strings.Cut(waitFile(t, filepath.Join(dir, "result")), "\n")
	stdout, stderr, _ := strings.Cut(rest, "\x00")
	want := "Serial updated to 01000005. Agent reloaded (pid " + strconv.Itoa(d.Process.Pid) + ").\n"
	if code != "0" || stdout != want {
		t.Fatalf("helper: exit %s stdout %q stderr %q; want exit 0 stdout %q", code, stdout, stderr, want)
	}
	if got := waitFile(t, filepath.Join(dir, "daemon-hups")); got != "hup\n" {
		t.Errorf("daemon saw %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/ctrl-exec-agent/ctrl-exec-serial")); string(b) != "01000005\n" {
		t.Errorf("serial file %q", b)
	}
}

// When it cannot be sure which process is the daemon, the serial is written
// but the helper exits 3 with upstream's message and the reason.
func TestNoDaemonFoundExits3(t *testing.T) {
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := free.Addr().(*net.TCPAddr).Port
	free.Close()
	other, err := net.Listen("tcp", "127.0.0.1:0") // held by this test process: not an agent
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	tests := []struct {
		name   string
		port   int // 0: no agent.conf
		reason string
	}{
		{"nothing listening", closedPort, fmt.Sprintf("(nothing listens on port %d)", closedPort)},
		{"listener is not an agent", other.Addr().(*net.TCPAddr).Port, "is not ctrl-exec-agent"},
		{"no agent.conf", 0, "(cannot tell the agent's port: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Setenv("CTRL_EXEC_ROOT", dir)
			if err := os.MkdirAll(filepath.Join(dir, "etc/ctrl-exec-agent"), 0o755); err != nil {
				t.Fatal(err)
			}
			if tt.port != 0 {
				if err := writeAgentConf(tt.port); err != nil {
					t.Fatal(err)
				}
			}
			var stdout, stderr bytes.Buffer
			h := self("helper", "update-ctrl-exec-serial", "0a")
			h.Stdout, h.Stderr = &stdout, &stderr
			err := h.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 3 {
				t.Fatalf("exit %v, stdout %q stderr %q", err, stdout.String(), stderr.String())
			}
			first, detail, _ := strings.Cut(stderr.String(), "\n")
			if first != "Serial written but agent process not found - reload manually." || !strings.Contains(detail, tt.reason) {
				t.Errorf("stderr %q, want upstream's line and %q", stderr.String(), tt.reason)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "etc/ctrl-exec-agent/ctrl-exec-serial")); string(b) != "0a\n" {
				t.Errorf("serial file %q", b)
			}
		})
	}
}
