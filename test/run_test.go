package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// newCLIControl is a control root whose ctrl-exec.conf has the fleet
// identity (2048-bit keys) and the extra lines.
func newCLIControl(t *testing.T, extra ...string) (*Root, *fleetPKI) {
	t.Helper()
	p := sharedFleetPKI(t, 2048)
	r := NewRoot(t, "control")
	p.installControl(t, r.Dir, extra...)
	return r, p
}

var (
	rttPattern   = regexp.MustCompile(`\b\d+ms\b`)
	reqidPattern = regexp.MustCompile(`\b[0-9a-f]{16}\b`)
)

// masked replaces the parts that change from run to run: rtt and reqid.
func masked(s string) string {
	return reqidPattern.ReplaceAllString(rttPattern.ReplaceAllString(s, "Nms"), "R")
}

var rttColumn = regexp.MustCompile(`\b\d+ms +`)

// maskedTable is masked for the ping table: the RTT column keeps its width.
func maskedTable(s string) string {
	return rttColumn.ReplaceAllStringFunc(s, func(m string) string {
		return "Nms" + strings.Repeat(" ", len(m)-len("Nms"))
	})
}

func closedLoopbackPort(t *testing.T) string { return strconv.Itoa(FreePort(t)) }

// run against in-test agents: text output in request order, one shared reqid,
// arguments after "--", options anywhere before it.
func TestRunCLIWithFakeAgents(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a1 := startFakeAgent(t, p, "agent-1")
	a2 := startFakeAgent(t, p, "agent-2")

	res := r.Run("ctrl-exec", "run", a1.target(), a2.target(), "hello", "--", "x", "y z")
	want := "==> 127.0.0.1  [OK  exit:0  Nms  req:R]\nhello from agent-1 x,y z\n" +
		"==> 127.0.0.1  [OK  exit:0  Nms  req:R]\nhello from agent-2 x,y z\n"
	if res.Code != 0 || masked(res.Stdout) != want || res.Stderr != "" {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", res.Code, res.Stdout, res.Stderr)
	}
	ids := reqidPattern.FindAllString(res.Stdout, -1)
	if len(ids) != 2 || ids[0] != ids[1] {
		t.Errorf("reqids %v: want one shared by both hosts", ids)
	}
	r.WaitLog(5*time.Second, "ACTION=dispatch HOSTS="+a1.target()+","+a2.target()+" REQID="+ids[0]+" SCRIPT=hello")
	r.WaitLog(5*time.Second, "ACTION=run EXIT=0 REQID="+ids[0], "SCRIPT=hello TARGET="+a2.target())

	// --json between host and script; "--json" after "--" is a script argument.
	res = r.Run("ctrl-exec", "run", a1.target(), "--json", "hello", "--", "--json")
	var got struct {
		OK      int              `json:"ok"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &got); err != nil || res.Code != 0 || !strings.HasSuffix(res.Stdout, "}\n") {
		t.Fatalf("exit %d, stdout %q: %v", res.Code, res.Stdout, err)
	}
	if len(got.Results) == 1 {
		got.Results[0]["rtt"] = masked(got.Results[0]["rtt"].(string))
		got.Results[0]["reqid"] = masked(got.Results[0]["reqid"].(string))
	}
	wantJSON := []map[string]any{{
		"script": "hello", "exit": float64(0), "stdout": "hello from agent-1 --json\n", "stderr": "",
		"reqid": "R", "host": "127.0.0.1", "rtt": "Nms", "status": "ok",
	}}
	if diff := cmp.Diff(wantJSON, got.Results); got.OK != 1 || diff != "" {
		t.Errorf("ok=%d results (-want +got):\n%s", got.OK, diff)
	}
	if !strings.HasPrefix(res.Stdout, `{"ok":1,"results":[{"script":"hello","exit":0,`) {
		t.Errorf("JSON not compact or not in agent order: %s", res.Stdout)
	}

	// A script exiting non-zero, a script the agent refuses and an
	// unreachable host: exit 1, every host still reported.
	port := closedLoopbackPort(t)
	res = r.Run("ctrl-exec", "run", a1.target(), "127.0.0.1:"+port, "fail")
	want = "==> 127.0.0.1  [FAIL  exit:3  Nms  req:R]\n    STDERR: failed\n\n" +
		"==> 127.0.0.1  [FAIL  exit:-1  Nms  req:R]\n    ERROR: 500 Can't connect to 127.0.0.1:" + port + " (Connection refused)\n"
	if res.Code != 1 || masked(res.Stdout) != want {
		t.Errorf("exit %d, stdout:\n%s\nwant:\n%s", res.Code, masked(res.Stdout), want)
	}
	res = r.Run("ctrl-exec", "--json", "run", a2.target(), "nonexistent-script")
	if res.Code != 1 || !strings.Contains(res.Stdout, `"exit":-1,"error":"script not permitted"`) {
		t.Errorf("exit %d, stdout %s", res.Code, res.Stdout)
	}
	r.WaitLog(5*time.Second, "ACTION=run ERROR=\"500 Can't connect to 127.0.0.1:"+port+" (Connection refused)\"")
}

func TestRunPingUsageErrors(t *testing.T) {
	t.Parallel()
	r, _ := newCLIControl(t)
	many := make([]string, 501)
	for i := range many {
		many[i] = "127.0.0.1:1"
	}
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"run"}, "Usage: ctrl-exec run <host>[:<port>] [<host>...] <script> [-- <arg>...]\n"},
		{[]string{"run", "host-a"}, "Usage: ctrl-exec run <host>[:<port>] [<host>...] <script> [-- <arg>...]\n"},
		{[]string{"run", "host-a", "--", "x"}, "Need at least one host and a script name\n"},
		{[]string{"ping"}, "Usage: ctrl-exec ping <host>[:<port>] [<host>...]\n"},
		{[]string{"--config", "/nonexistent.conf", "run", "h", "s"}, "Cannot open config '/nonexistent.conf': No such file or directory\n"},
		{[]string{"--config", "/nonexistent.conf", "ping", "h"}, "Cannot open config '/nonexistent.conf': No such file or directory\n"},
		{append(append([]string{"run"}, many...), "s"), "too many hosts (max 500)\n"},
		{append([]string{"ping"}, many...), "too many hosts (max 500)\n"},
	}
	for _, tt := range tests {
		res := r.Run("ctrl-exec", tt.args...)
		if res.Code != 255 || res.Stderr != tt.stderr || res.Stdout != "" {
			t.Errorf("%.60q: exit %d, stderr %q, stdout %q; want 255, %q", tt.args, res.Code, res.Stderr, res.Stdout, tt.stderr)
		}
	}
	if _, err := os.Stat(r.Path("/var/lib/ctrl-exec/locks")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused run touched the lock directory: %v", err)
	}
	if res := r.Run("ctrl-exec", "--port", "abc", "run", "h", "s"); res.Code != 255 {
		t.Errorf("--port abc: exit %d", res.Code)
	}
}

// The token and username reach the agent; the token never reaches the log.
func TestRunTokenReachesAgentNotLog(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a := startFakeAgent(t, p, "agent-1")
	r.MustRun("ctrl-exec", "run", a.target(), "--token", "s3cret-tok", "--username=alice", "hello")
	r.ExtraEnv = append(r.ExtraEnv, "ENVEXEC_TOKEN=env-tok-77")
	r.MustRun("ctrl-exec", "run", a.target(), "hello", "--", "a")
	runs := a.Runs()
	if len(runs) != 2 {
		t.Fatalf("agent saw %d runs", len(runs))
	}
	for i, want := range []map[string]any{
		{"script": "hello", "args": []any{}, "username": "alice", "token": "s3cret-tok"},
		{"script": "hello", "args": []any{"a"}, "username": "tester", "token": "env-tok-77"},
	} {
		body := runs[i].Body
		delete(body, "reqid")
		if diff := cmp.Diff(want, body); diff != "" {
			t.Errorf("run %d body (-want +got):\n%s", i, diff)
		}
	}
	log := readFileString(r.LogFile)
	if strings.Contains(log, "s3cret-tok") || strings.Contains(log, "env-tok-77") || log == "" {
		t.Errorf("log holds a token (or is empty):\n%s", log)
	}
	r.WaitLog(5*time.Second, "ACTION=auth AUTHACTION=run IP=127.0.0.1 REASON=no-hook-cli RESULT=pass USER=alice")
}

// testCLIHook records its ENVEXEC_* view and exits with the code in $HOOK_EXIT_FILE.
const testCLIHook = `#!/bin/sh
printf '%s|%s|%s|%s|%s|%s\n' "$ENVEXEC_ACTION" "$ENVEXEC_HOSTS" "$ENVEXEC_SCRIPT" "$ENVEXEC_ARGS" "$ENVEXEC_USERNAME" "$ENVEXEC_TOKEN" >> "$HOOK_LOG"
exit "$(cat "$HOOK_EXIT_FILE")"
`

func TestRunPingAuthHook(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hook := writeFile(t, dir, "/hook", testCLIHook, 0o755)
	exitFile := writeFile(t, dir, "/exit", "2", 0o644)
	hookLog := filepath.Join(dir, "hook.log")
	r, p := newCLIControl(t, "auth_hook = "+hook)
	r.ExtraEnv = append(r.ExtraEnv, "HOOK_LOG="+hookLog, "HOOK_EXIT_FILE="+exitFile)
	a := startFakeAgent(t, p, "agent-1")

	res := r.Run("ctrl-exec", "run", a.target(), "hello", "--", "a", "b")
	if res.Code != 1 || res.Stderr != "Denied: bad credentials\n" || res.Stdout != "" {
		t.Errorf("denied run: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	res = r.Run("ctrl-exec", "run", a.target(), "hello", "--json")
	if want := `{"ok":0,"error":"bad credentials","code":2}` + "\n"; res.Code != 1 || res.Stdout != want || res.Stderr != "" {
		t.Errorf("denied run --json: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	res = r.Run("ctrl-exec", "ping", a.target(), "--token", "t1")
	if res.Code != 1 || res.Stderr != "Denied: bad credentials\n" {
		t.Errorf("denied ping: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	if n := len(a.Runs()); n != 0 {
		t.Errorf("agent ran %d scripts despite the denial", n)
	}

	writeFile(t, dir, "/exit", "0", 0o644)
	r.MustRun("ctrl-exec", "run", a.target(), "hello", "--token", "tok", "--", "a", "b")
	r.MustRun("ctrl-exec", "ping", a.target())
	calls := strings.Split(strings.TrimSpace(readFileString(hookLog)), "\n")
	want := []string{
		"run|" + a.target() + "|hello|a b|tester|",
		"run|" + a.target() + "|hello||tester|",
		"ping|" + a.target() + "|||tester|t1",
		"run|" + a.target() + "|hello|a b|tester|tok",
		"ping|" + a.target() + "|||tester|",
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}
	if len(a.Runs()) != 1 {
		t.Errorf("agent runs %d, want 1", len(a.Runs()))
	}
}

// Two runs of one host:script at once: the second is refused while the
// first holds the lock (D-27), other scripts are not blocked, and the lock
// is gone afterwards.
func TestRunLockConflictAndListLocks(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a := startFakeAgent(t, p, "agent-1")
	first := r.Start("ctrl-exec", "run", a.target(), "hold")
	r.WaitLog(30*time.Second, "ACTION=lock-acquire HOST="+a.target()+" SCRIPT=hold")

	conflict := a.target() + ":hold"
	res := r.Run("ctrl-exec", "run", a.target(), "hold")
	if res.Code != 1 || res.Stderr != "Locked: already running: "+conflict+"\n" || res.Stdout != "" {
		t.Errorf("second run: exit %d, stdout %q, stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	res = r.Run("ctrl-exec", "run", "--json", a.target(), "other-host", "hold")
	want := `{"ok":0,"error":"locked","code":4,"conflicts":["` + conflict + `"]}` + "\n"
	if res.Code != 1 || res.Stdout != want {
		t.Errorf("second run --json: exit %d, stdout %q, want %q", res.Code, res.Stdout, want)
	}
	lockName := "127.0.0.1_" + strconv.Itoa(a.port)
	res = r.MustRun("ctrl-exec", "list-locks")
	wantText := "HOST                            SCRIPT\n" + strings.Repeat("-", 50) + "\n" +
		lockName + strings.Repeat(" ", 30-len(lockName)) + "  hold\n"
	if res.Stdout != wantText {
		t.Errorf("list-locks:\n%q\nwant\n%q", res.Stdout, wantText)
	}
	res = r.MustRun("ctrl-exec", "list-locks", "--json")
	if want := `{"ok":1,"locks":[{"host":"` + lockName + `","script":"hold"}]}` + "\n"; res.Stdout != want {
		t.Errorf("list-locks --json %q, want %q", res.Stdout, want)
	}
	r.MustRun("ctrl-exec", "run", a.target(), "hello") // another script on the same host runs

	a.releaseHolds()
	if code, ok := first.Wait(60 * time.Second); !ok || code != 0 || !strings.Contains(first.Stdout(), "held") {
		t.Fatalf("first run: exit %d (finished %v)\nstdout %s\nstderr %s", code, ok, first.Stdout(), first.Stderr())
	}
	if res := r.MustRun("ctrl-exec", "list-locks"); res.Stdout != "No locks currently held.\n" {
		t.Errorf("list-locks after: %q", res.Stdout)
	}
	if res := r.MustRun("ctrl-exec", "--json", "list-locks"); res.Stdout != `{"ok":1,"locks":[]}`+"\n" {
		t.Errorf("list-locks --json after: %q", res.Stdout)
	}
	r.MustRun("ctrl-exec", "run", a.target(), "hold")
	r.WaitLog(5*time.Second, "ACTION=lock-release HOSTS="+a.target()+" SCRIPT=hold")
}

// Every host is contacted at once: the three runs overlap in time.
func TestRunHostsInParallel(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	var agents []*fakeAgent
	args := []string{"run"}
	for _, name := range []string{"agent-1", "agent-2", "agent-3"} {
		a := startFakeAgent(t, p, name)
		agents = append(agents, a)
		args = append(args, a.target())
	}
	r.MustRun("ctrl-exec", append(args, "slow", "--", "1")...)
	var latestStart, earliestEnd time.Time
	for i, a := range agents {
		runs := a.Runs()
		if len(runs) != 1 {
			t.Fatalf("agent %d saw %d runs", i, len(runs))
		}
		if runs[0].Start.After(latestStart) {
			latestStart = runs[0].Start
		}
		if earliestEnd.IsZero() || runs[0].End.Before(earliestEnd) {
			earliestEnd = runs[0].End
		}
	}
	if !latestStart.Before(earliestEnd) {
		t.Errorf("runs did not overlap: last start %v, first end %v", latestStart, earliestEnd)
	}
}

func TestPingCLIWithFakeAgents(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a1 := startFakeAgent(t, p, "agent-1")
	a2 := startFakeAgent(t, p, "agent-2")
	header := "HOST                            STATUS    RTT       CERT EXPIRY                   VERSION\n" + strings.Repeat("-", 85) + "\n"
	res := r.Run("ctrl-exec", "ping", a1.target(), a2.target())
	want := header +
		"agent-1                         ok        Nms       Jan  1 00:00:00 2030 GMT      fake\n" +
		"agent-2                         ok        Nms       Jan  1 00:00:00 2030 GMT      fake\n"
	if res.Code != 0 || maskedTable(res.Stdout) != want {
		t.Errorf("exit %d, stdout\n%s\nwant\n%s", res.Code, res.Stdout, want)
	}

	port := closedLoopbackPort(t)
	res = r.Run("ctrl-exec", "ping", "127.0.0.1:"+port, a2.target())
	want = header +
		"127.0.0.1                       error     Nms       ?                             ?\n" +
		"agent-2                         ok        Nms       Jan  1 00:00:00 2030 GMT      fake\n"
	if res.Code != 1 || maskedTable(res.Stdout) != want {
		t.Errorf("D-4: exit %d, stdout\n%s\nwant\n%s", res.Code, res.Stdout, want)
	}
	res = r.Run("ctrl-exec", "ping", "--json", "127.0.0.1:"+port, a2.target())
	wantJSON := `{"ok":1,"results":[{"host":"127.0.0.1","status":"error","error":"500 Can't connect to 127.0.0.1:` + port +
		` (Connection refused)","rtt":"Nms"},{"status":"ok","host":"agent-2","version":"fake","expiry":"Jan  1 00:00:00 2030 GMT","reqid":"R","rtt":"Nms"}]}` + "\n"
	if res.Code != 1 || masked(res.Stdout) != wantJSON {
		t.Errorf("exit %d, stdout\n%s\nwant\n%s", res.Code, masked(res.Stdout), wantJSON)
	}
	r.WaitLog(5*time.Second, "ACTION=ping REQID=", "RESULT=ok", "TARGET="+a2.target())
}

// realFleet starts n real agents, or skips the test while the agent server
// does not serve yet.
func realFleet(t *testing.T, p *fleetPKI, n int) []*realAgent {
	t.Helper()
	var agents []*realAgent
	for i := 1; i <= n; i++ {
		a, err := startRealAgent(t, p, "agent-"+strconv.Itoa(i))
		if errors.Is(err, errAgentServeMissing) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	return agents
}

// The CLI against real `ctrl-exec-agent serve` processes.
func TestRunPingRealAgents(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	agents := realFleet(t, p, 3)
	var targets []string
	for _, a := range agents {
		targets = append(targets, a.target())
	}

	// 3 agents × a 2 s script run side by side.
	res := r.Run("ctrl-exec", append(append([]string{"run"}, targets...), "sleep2")...)
	if res.Code != 0 || strings.Count(res.Stdout, "slept\n") != 3 || strings.Count(res.Stdout, "[OK  exit:0") != 3 {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", res.Code, res.Stdout, res.Stderr)
	}
	var latestStart, earliestEnd float64
	for i, a := range agents {
		var begin, end float64
		times := strings.Fields(readFileString(filepath.Join(a.root.Dir, "sleep2.times")))
		if len(times) != 2 {
			t.Fatalf("agent %d sleep2.times: %q", i, times)
		}
		begin, _ = strconv.ParseFloat(times[0], 64)
		end, _ = strconv.ParseFloat(times[1], 64)
		if i == 0 || begin > latestStart {
			latestStart = begin
		}
		if i == 0 || end < earliestEnd {
			earliestEnd = end
		}
	}
	if latestStart >= earliestEnd {
		t.Errorf("the three scripts did not overlap: last start %.3f, first end %.3f", latestStart, earliestEnd)
	}

	res = r.Run("ctrl-exec", append([]string{"ping", "--json"}, targets...)...)
	var ping struct {
		OK      int              `json:"ok"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &ping); err != nil || res.Code != 0 || len(ping.Results) != 3 {
		t.Fatalf("ping: exit %d, %v\n%s\n%s", res.Code, err, res.Stdout, res.Stderr)
	}
	for i, got := range ping.Results {
		if got["status"] != "ok" || got["host"] != agents[i].name || got["expiry"] == "unknown" {
			t.Errorf("ping result %d: %v", i, got)
		}
	}

	// The token reaches the script's stdin context, never a log.
	res = r.MustRun("ctrl-exec", "run", targets[0], "context", "--token", "tok-e2e-9", "--username", "bob", "--", "a1")
	if !strings.Contains(res.Stdout, `"token":"tok-e2e-9"`) || !strings.Contains(res.Stdout, `"username":"bob"`) || !strings.Contains(res.Stdout, `"args":["a1"]`) {
		t.Errorf("context seen by the script: %s", res.Stdout)
	}
	for _, log := range []string{r.LogFile, agents[0].root.LogFile} {
		if strings.Contains(readFileString(log), "tok-e2e-9") {
			t.Errorf("token in %s", log)
		}
	}

	// Lock conflict against a real agent: hold runs until the gate file exists.
	gate := filepath.Join(t.TempDir(), "gate")
	first := r.Start("ctrl-exec", "run", targets[1], "hold", "--", gate)
	r.WaitLog(30*time.Second, "ACTION=lock-acquire HOST="+targets[1]+" SCRIPT=hold")
	res = r.Run("ctrl-exec", "--json", "run", targets[1], "hold", "--", gate)
	if want := `{"ok":0,"error":"locked","code":4,"conflicts":["` + targets[1] + `:hold"]}` + "\n"; res.Code != 1 || res.Stdout != want {
		t.Errorf("conflict: exit %d, stdout %q", res.Code, res.Stdout)
	}
	writeFile(t, filepath.Dir(gate), "gate", "", 0o644)
	if code, ok := first.Wait(60 * time.Second); !ok || code != 0 {
		t.Errorf("first run: exit %d\n%s\n%s", code, first.Stdout(), first.Stderr())
	}
	if res := r.MustRun("ctrl-exec", "list-locks"); res.Stdout != "No locks currently held.\n" {
		t.Errorf("list-locks after: %q", res.Stdout)
	}
}

// --port is the default port for host arguments without one.
func TestRunDefaultPortOption(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a := startFakeAgent(t, p, "agent-1")
	res := r.Run("ctrl-exec", "run", "127.0.0.1", "--port", strconv.Itoa(a.port), "hello")
	if res.Code != 0 || !strings.Contains(res.Stdout, "hello from agent-1") {
		t.Errorf("exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	r.WaitLog(5*time.Second, "ACTION=run EXIT=0", "TARGET=127.0.0.1:"+strconv.Itoa(a.port))
}

// With stderr on a terminal and more than 4 hosts, a live counter is drawn
// on stderr and wiped at the end; stdout stays clean.
func TestRunProgressOnTerminal(t *testing.T) {
	t.Parallel()
	master, slave, err := newRunPTY()
	if err != nil {
		t.Skip("no pseudo-terminal:", err)
	}
	defer master.Close()
	r, p := newCLIControl(t)
	args := []string{"run"}
	for i := 0; i < 5; i++ {
		args = append(args, startFakeAgent(t, p, "agent-"+strconv.Itoa(i)).target())
	}
	cmd := r.Command(context.Background(), "ctrl-exec", append(args, "hello")...)
	var stdout strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, slave
	got := make(chan string)
	go func() {
		var all []byte
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			all = append(all, buf[:n]...)
			if err != nil { // EIO once the last writer is gone
				got <- string(all)
				return
			}
		}
	}()
	err = cmd.Run()
	slave.Close()
	if err != nil {
		t.Fatal(err)
	}
	tty := <-got
	if !strings.Contains(tty, "\r[5/5] failed:0") || !strings.HasSuffix(tty, "\r"+strings.Repeat(" ", len("[5/5] failed:0"))+"\r") {
		t.Errorf("terminal saw %q", tty)
	}
	if strings.Contains(stdout.String(), "\r") || strings.Count(stdout.String(), "==> ") != 5 {
		t.Errorf("stdout %q", stdout.String())
	}
}

// newRunPTY returns a new pseudo-terminal's master and slave ends.
func newRunPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// The whole path as an operator takes it: setup, real pairing, serve, then
// ping and run through the CLI (with an allowing auth hook).
func TestRunPingPairedAgents(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, HookAllow)
	var agents []*AgentHost
	for _, name := range []string{"web-01", "web-02"} {
		a := NewAgent(t, name)
		script := a.WriteFile("/opt/ctrl-exec-scripts/greet", "#!/bin/sh\necho \"greet $*\"\n", 0o755)
		a.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "greet = "+script+"\n", 0o640)
		agents = append(agents, a)
	}
	PairAgent(t, ctl, agents[0].Root, agents[1].Root)
	var targets []string
	for _, a := range agents {
		a.Start("ctrl-exec-agent", "serve")
		WaitListening(t, a.Port, 20*time.Second)
		targets = append(targets, "127.0.0.1:"+itoa(a.Port))
	}

	res := ctl.Run("ctrl-exec", append([]string{"ping"}, targets...)...)
	if res.Code != 0 || !strings.Contains(res.Stdout, "\nweb-01 ") || !strings.Contains(res.Stdout, "\nweb-02 ") {
		t.Fatalf("ping: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	res = ctl.Run("ctrl-exec", append(append([]string{"run"}, targets...), "greet", "--", "a b", "c")...)
	want := "==> 127.0.0.1  [OK  exit:0  Nms  req:R]\ngreet a b c\n==> 127.0.0.1  [OK  exit:0  Nms  req:R]\ngreet a b c\n"
	if res.Code != 0 || masked(res.Stdout) != want {
		t.Errorf("run: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	agents[0].WaitLog(10*time.Second, "ACTION=run EXIT=0", "SCRIPT=greet")
}
