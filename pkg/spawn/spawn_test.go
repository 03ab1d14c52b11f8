package spawn

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

// script writes an executable /bin/sh script into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestArgsArriveByteForByte(t *testing.T) {
	dir := t.TempDir()
	echo := script(t, dir, "echo-args", `for a in "$@"; do printf '%s\0' "$a"; done`)
	args := []string{
		"hello world",
		`it's "quoted"`,
		"$(id)",
		"`id`",
		"a;b && c | d",
		"*",
		"line1\nline2",
		"\xff\xfe not utf-8",
		"",
		"-n",
		"tab\there",
		"ünïcödé",
	}
	res := Run(context.Background(), Cmd{Path: echo, Args: args})
	if res.Exit != 0 || res.Err != nil {
		t.Fatalf("exit %d, err %v, stderr %q", res.Exit, res.Err, res.Stderr)
	}
	got := strings.Split(string(res.Stdout), "\x00")
	got = got[:len(got)-1] // trailing NUL
	if diff := cmp.Diff(args, got); diff != "" {
		t.Errorf("args (-sent +received):\n%s", diff)
	}
}

func TestArgv0IsPath(t *testing.T) {
	res := Run(context.Background(), Cmd{Path: "/bin/cat", Args: []string{"/proc/self/cmdline"}})
	if diff := cmp.Diff("/bin/cat\x00/proc/self/cmdline\x00", string(res.Stdout)); diff != "" {
		t.Errorf("cmdline (-want +got):\n%s", diff)
	}
}

func TestEnvIsExplicit(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"nil means empty", nil, ""},
		{"as given", []string{"A=1", "B=two words"}, "A=1\nB=two words\n"},
		{"later entry overrides", []string{"A=1", "B=2", "A=3"}, "A=3\nB=2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Run(context.Background(), Cmd{Path: "/usr/bin/env", Env: tt.env})
			if diff := cmp.Diff(tt.want, string(res.Stdout)); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStdinArrivesThenEOF(t *testing.T) {
	cat := script(t, t.TempDir(), "cat", "cat")
	ctxJSON := []byte(`{"script":"backup","args":["--db","my app"],"reqid":"a3f9b2c10001dead","token":"tok"}`)
	tests := []struct {
		name  string
		stdin []byte
	}{
		{"context JSON", ctxJSON},
		{"nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Run(context.Background(), Cmd{Path: cat, Stdin: tt.stdin, StdinTimeout: 10 * time.Second})
			if diff := cmp.Diff(string(tt.stdin), string(res.Stdout)); diff != "" {
				t.Errorf("stdin echoed (-want +got):\n%s", diff)
			}
			if res.Exit != 0 || res.StdinTimedOut {
				t.Errorf("exit %d, stdin timed out %v", res.Exit, res.StdinTimedOut)
			}
		})
	}
}

func TestLargeOutputOnBothStreamsDoesNotBlock(t *testing.T) {
	const size = 8 << 20
	// stderr first: a reader that drains stdout before stderr deadlocks here.
	s := script(t, t.TempDir(), "noisy", `head -c 8388608 /dev/zero >&2; cat; echo end >&2`)
	stdin := bytes.Repeat([]byte("x"), size)
	res := Run(context.Background(), Cmd{Path: s, Stdin: stdin})
	if res.Exit != 0 {
		t.Fatalf("exit %d: %v", res.Exit, res.Err)
	}
	if len(res.Stdout) != size || len(res.Stderr) != size+4 {
		t.Errorf("got %d bytes stdout, %d bytes stderr; want %d and %d", len(res.Stdout), len(res.Stderr), size, size+4)
	}
}

func TestStdinTimeoutReportsUnwrittenAndKeepsWaiting(t *testing.T) {
	s := script(t, t.TempDir(), "deaf", "sleep 1; echo finished")
	stdin := bytes.Repeat([]byte("y"), 1<<20) // far beyond a pipe buffer
	res := Run(context.Background(), Cmd{Path: s, Stdin: stdin, StdinTimeout: 100 * time.Millisecond})
	if !res.StdinTimedOut || res.StdinUnwritten <= 0 || res.StdinUnwritten > len(stdin) {
		t.Errorf("StdinTimedOut %v, StdinUnwritten %d; want true and 1..%d", res.StdinTimedOut, res.StdinUnwritten, len(stdin))
	}
	if res.Exit != 0 || string(res.Stdout) != "finished\n" {
		t.Errorf("exit %d, stdout %q; want 0, %q", res.Exit, res.Stdout, "finished\n")
	}
}

func TestChildNotReadingStdinIsFine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, body, stdout string }{
		{"exits at once", "exit 0", ""},
		{"redirects stdin away", "exec 0</dev/null; echo done", "done\n"},
	}
	stdin := bytes.Repeat([]byte("z"), 1<<20)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Run(context.Background(), Cmd{Path: script(t, dir, tt.name, tt.body), Stdin: stdin})
			if res.Exit != 0 || res.StdinTimedOut || string(res.Stdout) != tt.stdout {
				t.Errorf("exit %d, stdin timed out %v, stdout %q", res.Exit, res.StdinTimedOut, res.Stdout)
			}
		})
	}
}

func TestExitStatus(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body     string
		exit           int
		signaled       bool
		signal         syscall.Signal
		stdout, stderr string
	}{
		{"zero", "echo hello", 0, false, 0, "hello\n", ""},
		{"stderr separate", "echo out; echo err >&2; exit 1", 1, false, 0, "out\n", "err\n"},
		{"forty-two", "exit 42", 42, false, 0, "", ""},
		{"255", "exit 255", 255, false, 0, "", ""},
		{"kill -9 self", "echo before; kill -9 $$", ExitSignaled, true, syscall.SIGKILL, "before\n", ""},
		{"kill -TERM self", "kill -TERM $$", ExitSignaled, true, syscall.SIGTERM, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Run(context.Background(), Cmd{Path: script(t, dir, tt.name, tt.body)})
			type outcome struct {
				Exit           int
				Signaled       bool
				Signal         syscall.Signal
				Stdout, Stderr string
				Failed         bool
			}
			want := outcome{tt.exit, tt.signaled, tt.signal, tt.stdout, tt.stderr, false}
			got := outcome{res.Exit, res.Signaled, res.Signal, string(res.Stdout), string(res.Stderr), res.Err != nil}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("outcome (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecFailureIs127(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		path string
	}{
		{"missing", filepath.Join(dir, "nope")},
		{"not executable", write("plain", "#!/bin/sh\nexit 0\n", 0o644)},
		{"directory", dir},
		{"no shebang (ENOEXEC)", write("noshebang", "echo hi\n", 0o755)},
		{"missing interpreter", write("badinterp", "#!/nonexistent/sh\nexit 0\n", 0o755)},
		{"relative path", "bin/true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Run(context.Background(), Cmd{Path: tt.path, Stdin: []byte("{}")})
			if res.Exit != ExitExecFailed || res.Err == nil || len(res.Stderr) == 0 {
				t.Errorf("exit %d, err %v, stderr %q; want 127 with an error and a message", res.Exit, res.Err, res.Stderr)
			}
		})
	}
}

func TestCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	s := script(t, dir, "sleeper", `sleep 100 & echo $! > "$1.tmp"; mv "$1.tmp" "$1"; sleep 100`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(pidFile); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	res := Run(ctx, Cmd{Path: s, Args: []string{pidFile}})
	if !res.Canceled || !res.Signaled || res.Signal != syscall.SIGKILL || res.Exit != ExitSignaled {
		t.Errorf("Canceled %v Signaled %v Signal %v Exit %d; want true, true, killed, 126", res.Canceled, res.Signaled, res.Signal, res.Exit)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}

// waitGone fails unless pid stops running (gone or a zombie) within 5 s.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		state, _, ok := procStat(pid)
		if !ok || state == 'Z' {
			return
		}
	}
	t.Errorf("process %d still running", pid)
}

func TestCanceledContextStartsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Run(ctx, Cmd{Path: "/bin/true"})
	if res.Exit != ExitNoStart || !res.Canceled || !errors.Is(res.Err, context.Canceled) {
		t.Errorf("Exit %d Canceled %v Err %v; want -1, true, context canceled", res.Exit, res.Canceled, res.Err)
	}
}

func TestDiscardOutput(t *testing.T) {
	s := script(t, t.TempDir(), "chatty", "echo out; echo err >&2; exit 3")
	res := Run(context.Background(), Cmd{Path: s, DiscardOutput: true})
	if res.Exit != 3 || res.Stdout != nil || res.Stderr != nil {
		t.Errorf("exit %d stdout %q stderr %q; want 3 and no output", res.Exit, res.Stdout, res.Stderr)
	}
}

func TestDedupEnv(t *testing.T) {
	tests := []struct {
		in, want []string
	}{
		{nil, []string{}},
		{[]string{"A=1", "B=2"}, []string{"A=1", "B=2"}},
		{[]string{"A=1", "B=2", "A=3"}, []string{"A=3", "B=2"}},
		{[]string{"A=1", "A=", "NOEQ"}, []string{"A=", "NOEQ"}},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, dedupEnv(tt.in)); diff != "" {
			t.Errorf("dedupEnv(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestValidUTF8(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain", "plain"},
		{"ünï €", "ünï €"},
		{"\xff", "\uFFFD"},
		{"a\xff\xfeb", "a\uFFFD\uFFFDb"},
		{"\xe2\x82", "\uFFFD\uFFFD"},           // truncated 3-byte sequence
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"}, // surrogate
		{"ok\xc0\xafok", "ok\uFFFD\uFFFDok"},   // overlong
	}
	for _, tt := range tests {
		if got := ValidUTF8([]byte(tt.in)); got != tt.want {
			t.Errorf("ValidUTF8(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := viaJSON(t, tt.in); got != tt.want {
			t.Errorf("JSON round trip of %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// viaJSON is what a client decodes after encoding/json encoded s.
func viaJSON(t testing.TB, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzValidUTF8(f *testing.F) {
	for _, s := range []string{"", "abc", "\xff", "a\xe2\x82", "\xf0\x9f\x98\x80", "\xed\xa0\x80"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := ValidUTF8(b)
		if !utf8.ValidString(got) {
			t.Fatalf("ValidUTF8(%q) = %q is not valid UTF-8", b, got)
		}
		if want := viaJSON(t, string(b)); got != want {
			t.Fatalf("ValidUTF8(%q) = %q, JSON gives %q", b, got, want)
		}
	})
}

func BenchmarkRunTrue(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		if res := Run(ctx, Cmd{Path: "/bin/true"}); res.Exit != 0 {
			b.Fatalf("exit %d: %v", res.Exit, res.Err)
		}
	}
}
