package e2e

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Root is one throwaway installation: a control host or an agent, with its
// own CTRL_EXEC_ROOT, log file and identity.
type Root struct {
	t        testing.TB
	Dir      string // CTRL_EXEC_ROOT
	LogFile  string // CTRL_EXEC_LOG sink: one syslog-style line per event
	Hostname string // CTRL_EXEC_HOSTNAME
	ExtraEnv []string
}

// NewRoot makes an empty installation tree with the directories install.sh creates.
func NewRoot(t testing.TB, hostname string) *Root {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{
		"etc/ctrl-exec", "var/lib/ctrl-exec/pairing", "var/lib/ctrl-exec/agents",
		"etc/ctrl-exec-agent", "opt/ctrl-exec-scripts", "run",
	} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o750); err != nil {
			t.Fatal(err)
		}
	}
	return &Root{t: t, Dir: dir, LogFile: filepath.Join(dir, "log"), Hostname: hostname}
}

// Path maps an absolute installation path into the root.
func (r *Root) Path(p string) string { return filepath.Join(r.Dir, p) }

// WriteFile writes a file under the root, creating parent directories.
func (r *Root) WriteFile(p, content string, mode os.FileMode) string {
	r.t.Helper()
	full := r.Path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	return full
}

// ReadFile reads a file under the root ("" if absent).
func (r *Root) ReadFile(p string) string {
	b, _ := os.ReadFile(r.Path(p))
	return string(b)
}

// Env is the process environment for commands in this root.
func (r *Root) Env() []string {
	env := []string{
		"PATH=" + binDir + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + r.Dir,
		"USER=tester",
		"CTRL_EXEC_ROOT=" + r.Dir,
		"CTRL_EXEC_LOG=" + r.LogFile,
		"CTRL_EXEC_TEST_KEY_BITS=2048", // test build only; see giveKeys
		raceEnv,
	}
	if r.Hostname != "" {
		env = append(env, "CTRL_EXEC_HOSTNAME="+r.Hostname)
	}
	return append(env, r.ExtraEnv...)
}

// Command builds a command for one of the binary's names (e.g. "ctrl-exec"),
// or for any other program found on PATH.
func (r *Root) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	path := name
	for _, n := range roleNames {
		if n == name {
			path = filepath.Join(binDir, name)
		}
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = r.Env()
	cmd.Dir = r.Dir
	return cmd
}

// Result is what a finished command produced.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs a command to completion (60 s limit) with stdin from the given string.
func (r *Root) RunInput(stdin, name string, args ...string) Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := r.Command(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("%s %q: %v", name, args, err)
	}
	return res
}

// Run runs a command to completion with empty stdin.
func (r *Root) Run(name string, args ...string) Result {
	r.t.Helper()
	return r.RunInput("", name, args...)
}

// MustRun runs a command and fails the test unless it exits 0.
func (r *Root) MustRun(name string, args ...string) Result {
	r.t.Helper()
	res := r.Run(name, args...)
	if res.Code != 0 {
		r.t.Fatalf("%s %q: exit %d\nstdout: %s\nstderr: %s", name, args, res.Code, res.Stdout, res.Stderr)
	}
	return res
}

// Proc is a background process (a daemon) stopped at test cleanup.
type Proc struct {
	Cmd    *exec.Cmd
	out    *syncBuffer
	errOut *syncBuffer
	done   chan struct{}
	err    error
}

// Start starts a long-running command; it is sent SIGTERM (then SIGKILL) at cleanup.
func (r *Root) Start(name string, args ...string) *Proc {
	r.t.Helper()
	cmd := r.Command(context.Background(), name, args...)
	p := &Proc{Cmd: cmd, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	r.t.Cleanup(func() { p.Stop() })
	return p
}

// Stop sends SIGTERM, waits up to 10 s, then kills the process group.
func (p *Proc) Stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// Wait waits for the process to exit and returns its exit code.
func (p *Proc) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-p.done:
		if ee, ok := p.err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		return 0, true
	case <-time.After(timeout):
		return -1, false
	}
}

// Exited reports whether the process has already exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *Proc) Stdout() string { return p.out.String() }
func (p *Proc) Stderr() string { return p.errOut.String() }

// WaitOutput waits until stdout+stderr contain substr.
func (p *Proc) WaitOutput(t testing.TB, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.Stdout()+p.Stderr(), substr) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %q\nstdout: %s\nstderr: %s", substr, p.Stdout(), p.Stderr())
}

// LogLines returns the log lines written so far (prefix "ident[pid]: " removed).
func (r *Root) LogLines() []string {
	b, _ := os.ReadFile(r.LogFile)
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok {
			lines = append(lines, msg)
		}
	}
	return lines
}

// WaitLog waits until a log line contains every one of the given substrings.
func (r *Root) WaitLog(timeout time.Duration, parts ...string) string {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range r.LogLines() {
			if containsAll(l, parts) {
				return l
			}
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("no log line with %q in:\n%s", parts, strings.Join(r.LogLines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// HasLog reports whether some log line contains all parts.
func (r *Root) HasLog(parts ...string) bool {
	for _, l := range r.LogLines() {
		if containsAll(l, parts) {
			return true
		}
	}
	return false
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// FreePort returns a TCP port for a process under test to listen on, free
// on every address a moment ago and handed out once per test process.
//
// It comes from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), which the kernel never hands out for a
// listener on port 0 or an outgoing connection: however many connections
// the parallel tests make, none takes the port before the process under
// test binds it. The walk starts at a random port so that two test
// processes on one machine seldom meet.
func FreePort(t testing.TB) int {
	t.Helper()
	ports.Lock()
	defer ports.Unlock()
	if ports.span == 0 {
		ports.lo, ports.span = portRange()
		ports.next = rand.IntN(max(ports.span, 1))
	}
	for range ports.span {
		p := ports.lo + ports.next%ports.span
		ports.next++
		if l, err := net.Listen("tcp", ":"+itoa(p)); err == nil {
			l.Close()
			return p
		}
	}
	// No range below the ephemeral one: let the kernel pick.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

var ports struct {
	sync.Mutex
	lo, span, next int
}

// portRange is [lo, lo+span): the ports from 20000 up to the first
// ephemeral one (32768 by default); span 0 when there are too few.
func portRange() (lo, span int) {
	const floor = 20000
	first := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				first = n
			}
		}
	}
	if first-floor < 1000 {
		return 0, 0
	}
	return floor, first - floor
}

// WaitListening waits until something accepts TCP connections on 127.0.0.1:port.
func WaitListening(t testing.TB, port int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", itoa(port)), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listening on port %d after %v", port, timeout)
}

func itoa(n int) string { return strconv.Itoa(n) }

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
