package ctrlexec

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

func TestSplitRunArgs(t *testing.T) {
	tests := []struct {
		words     []string
		scriptOpt string
		hosts     []string
		script    string
		args      []string
		err       string
	}{
		{words: []string{"host-a", "backup"}, hosts: []string{"host-a"}, script: "backup", args: []string{}},
		{words: []string{"host-a", "host-b", "backup"}, hosts: []string{"host-a", "host-b"}, script: "backup", args: []string{}},
		{words: []string{"host-a", "logger", "--", "-t", "my-tag", "my message"}, hosts: []string{"host-a"}, script: "logger", args: []string{"-t", "my-tag", "my message"}},
		{words: []string{"host-a", "host-b", "deploy", "--", "--env", "prod"}, hosts: []string{"host-a", "host-b"}, script: "deploy", args: []string{"--env", "prod"}},
		{words: []string{"host-a", "check", "--"}, hosts: []string{"host-a"}, script: "check", args: []string{}},
		{words: []string{"h", "s", "--", "a", "--", "b"}, hosts: []string{"h"}, script: "s", args: []string{"a", "--", "b"}},
		// --script NAME (the seed README's quick start): every word before "--" is a host.
		{words: []string{"host-a", "--", "-t", "test", "hello"}, scriptOpt: "logger", hosts: []string{"host-a"}, script: "logger", args: []string{"-t", "test", "hello"}},
		{words: []string{"host-a", "host-b"}, scriptOpt: "logger", hosts: []string{"host-a", "host-b"}, script: "logger", args: []string{}},
		{words: []string{"--", "x"}, scriptOpt: "logger", err: "Need at least one host"},
		{words: []string{"host-a", "--", "x"}, err: "Need at least one host and a script name"},
		{words: []string{"host-a"}, err: "Need at least one host and a script name"},
		{words: nil, err: "Need at least one host and a script name"},
	}
	for _, tt := range tests {
		hosts, script, args, err := splitRunArgs(tt.words, 2, tt.scriptOpt)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("splitRunArgs(%q) error %v, want %q", tt.words, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("splitRunArgs(%q): %v", tt.words, err)
			continue
		}
		got := []any{hosts, script, args}
		if diff := cmp.Diff([]any{tt.hosts, tt.script, tt.args}, got); diff != "" {
			t.Errorf("splitRunArgs(%q) (-want +got):\n%s", tt.words, diff)
		}
	}
}

func runResult(t *testing.T, js string) dispatch.RunResult {
	t.Helper()
	o, err := wire.ParseObject([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return dispatch.RunResult{Object: o}
}

func pingResult(t *testing.T, js string) dispatch.PingResult {
	t.Helper()
	o, err := wire.ParseObject([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return dispatch.PingResult{Object: o}
}

func TestWriteRunText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			name: "success with stdout",
			in:   `{"host":"host-a","exit":0,"stdout":"hello\n","stderr":"","rtt":"42ms","reqid":"r1"}`,
			want: "==> host-a  [OK  exit:0  42ms  req:r1]\nhello\n",
		},
		{
			name: "stdout without newline gets one, stderr shown",
			in:   `{"host":"host-b","exit":1,"stdout":"no newline","stderr":"something failed","rtt":"10ms","reqid":"r1"}`,
			want: "==> host-b  [FAIL  exit:1  10ms  req:r1]\nno newline\n    STDERR: something failed\n",
		},
		{
			name: "stderr keeps its own newline and gets another",
			in:   `{"host":"h","exit":0,"stdout":"a\nb\n","stderr":"warn\n","rtt":"1ms","reqid":"r"}`,
			want: "==> h  [OK  exit:0  1ms  req:r]\na\nb\n    STDERR: warn\n\n",
		},
		{
			name: "error result",
			in:   `{"host":"host-c","script":"s","exit":-1,"error":"500 Can't connect to host-c:7443 (Connection refused)","rtt":"5ms","reqid":"r"}`,
			want: "==> host-c  [FAIL  exit:-1  5ms  req:r]\n    ERROR: 500 Can't connect to host-c:7443 (Connection refused)\n",
		},
		{
			name: "whitespace-only output is not printed",
			in:   `{"host":"h","exit":0,"stdout":" \n\t","stderr":"\n","rtt":"1ms","reqid":"r"}`,
			want: "==> h  [OK  exit:0  1ms  req:r]\n",
		},
		{
			name: "missing exit, host, rtt and reqid",
			in:   `{"error":"x"}`,
			want: "==> ?  [FAIL  exit:-1    req:]\n    ERROR: x\n",
		},
		{
			name: "null exit is missing; empty error is not printed",
			in:   `{"host":"h","exit":null,"error":"","rtt":"1ms","reqid":"r"}`,
			want: "==> h  [FAIL  exit:-1  1ms  req:r]\n",
		},
		{
			name: "non-ASCII output passes through",
			in:   `{"host":"h","exit":0,"stdout":"caf\u00e9 ✓","rtt":"1ms","reqid":"r"}`,
			want: "==> h  [OK  exit:0  1ms  req:r]\ncafé ✓\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeRunText(&b, []dispatch.RunResult{runResult(t, tt.in)}, false); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWritePingTable(t *testing.T) {
	var b bytes.Buffer
	err := writePingTable(&b, []dispatch.PingResult{
		pingResult(t, `{"status":"ok","host":"host-a","version":"0.8.4","expiry":"Jun  7 10:00:00 2028 GMT","reqid":"r","rtt":"55ms"}`),
		pingResult(t, `{"host":"host-b","status":"error","error":"500 Can't connect","rtt":"3ms"}`),
		pingResult(t, `{}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "HOST                            STATUS    RTT       CERT EXPIRY                   VERSION\n" +
		strings.Repeat("-", 85) + "\n" +
		"host-a                          ok        55ms      Jun  7 10:00:00 2028 GMT      0.8.4\n" +
		"host-b                          error     3ms       ?                             ?\n" +
		"?                               error     ?         ?                             ?\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestWriteJSONOutputs(t *testing.T) {
	tests := []struct {
		name  string
		write func(*bytes.Buffer) error
		want  string
	}{
		{
			name: "run results",
			write: func(b *bytes.Buffer) error {
				return writeResultsJSON(b, []dispatch.RunResult{
					runResult(t, `{"script":"s","exit":0,"stdout":"<b>&</b>\n","stderr":"","reqid":"r","host":"h","rtt":"1ms","future":{"x":[1, 2]}}`),
				})
			},
			want: `{"ok":1,"results":[{"script":"s","exit":0,"stdout":"<b>&</b>\n","stderr":"","reqid":"r","host":"h","rtt":"1ms","future":{"x":[1,2]}}]}` + "\n",
		},
		{
			name: "ping results",
			write: func(b *bytes.Buffer) error {
				return writeResultsJSON(b, []dispatch.PingResult{pingResult(t, `{"host":"h","status":"error","error":"e","rtt":"1ms"}`)})
			},
			want: `{"ok":1,"results":[{"host":"h","status":"error","error":"e","rtt":"1ms"}]}` + "\n",
		},
		{
			name: "auth denial",
			write: func(b *bytes.Buffer) error {
				return writeDeniedJSON(b, authhook.Decision{Reason: "bad credentials", Code: 2})
			},
			want: `{"ok":0,"error":"bad credentials","code":2}` + "\n",
		},
		{
			name: "lock conflict",
			write: func(b *bytes.Buffer) error {
				return writeLockedJSON(b, []string{"web-01:backup", "web-02:7443:backup"})
			},
			want: `{"ok":0,"error":"locked","code":4,"conflicts":["web-01:backup","web-02:7443:backup"]}` + "\n",
		},
		{
			name:  "no locks",
			write: func(b *bytes.Buffer) error { return writeLocksJSON(b, nil) },
			want:  `{"ok":1,"locks":[]}` + "\n",
		},
		{
			name: "locks",
			write: func(b *bytes.Buffer) error {
				return writeLocksJSON(b, []locks.Lock{{Host: "web-01_7443", Script: "backup"}})
			},
			want: `{"ok":1,"locks":[{"host":"web-01_7443","script":"backup"}]}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.write(&b); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, b.String()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriteLocksText(t *testing.T) {
	var b bytes.Buffer
	writeLocksText(&b, nil)
	writeLocksText(&b, []locks.Lock{{Host: "web-01", Script: "backup"}, {Host: "web-02_7443", Script: "deploy"}})
	want := "No locks currently held.\n" +
		"HOST                            SCRIPT\n" + strings.Repeat("-", 50) + "\n" +
		"web-01                          backup\n" +
		"web-02_7443                     deploy\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// The counter is drawn only on a terminal and only for more than 4 hosts.
func TestProgressLine(t *testing.T) {
	var b bytes.Buffer
	if p := newProgressLine(&b, 100); p != nil {
		t.Error("progress on a buffer")
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if p := newProgressLine(f, 100); p != nil {
		t.Error("progress on a regular file")
	}
	// nil is a silent no-op.
	var none *progressLine
	none.update(1, 0, 2)
	none.clear()

	p := &progressLine{w: &b}
	p.update(9, 1, 10)
	p.update(10, 1, 10)
	p.clear()
	want := "\r[9/10] failed:1\r[10/10] failed:1\r" + strings.Repeat(" ", 16) + "\r"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%q", diff)
	}
}

// isTerminal is true on a pseudo-terminal.
func TestIsTerminal(t *testing.T) {
	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skip("no /dev/ptmx:", err)
	}
	defer tty.Close()
	if !isTerminal(tty) {
		t.Error("pty master not seen as a terminal")
	}
	if p := newProgressLine(tty, 5); p == nil {
		t.Error("no progress on a terminal for 5 hosts")
	}
	if p := newProgressLine(tty, 4); p != nil {
		t.Error("progress for 4 hosts")
	}
}
