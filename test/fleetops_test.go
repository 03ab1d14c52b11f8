package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// opsScripts are the fleet-operations test agents' allowlisted scripts.
var opsScripts = map[string]string{
	"true":   "/bin/true",
	"fail":   "#!/bin/sh\necho oops >&2\nexit 3\n",
	"whoami": "#!/bin/sh\necho \"$CTRL_EXEC_HOSTNAME\"\n",
	// holdif: on the agent named $1, wait until the file $2 exists (at most 30 s).
	"holdif": "#!/bin/sh\nif [ \"$CTRL_EXEC_HOSTNAME\" = \"$1\" ]; then i=0; while [ ! -e \"$2\" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; fi\necho \"$CTRL_EXEC_HOSTNAME\"\n",
	// inflight: mark start and end in the shared file $1, working 0.3 s between.
	"inflight": "#!/bin/sh\necho + >> \"$1\"\nsleep 0.3\necho - >> \"$1\"\n",
	"touch":    "#!/bin/sh\ntouch \"$1\"\n",
	// spawner: a child in the script's process group, then wait (killed by [timeouts]).
	"spawner": "#!/bin/sh\nsleep 30 &\necho $! > \"$1\"\nwait\n",
	// flaky: fails on the agent named $1 until the file $2 exists.
	"flaky": "#!/bin/sh\n[ -e \"$2\" ] && exit 0\n[ \"$CTRL_EXEC_HOSTNAME\" = \"$1\" ] && exit 3\nexit 0\n",
}

// opsAgentConf is what differs between the test agents.
type opsAgentConf struct {
	tags     map[string]string
	denyHook bool // an agent auth_hook that refuses every run
}

// startOpsAgent runs a real agent with opsScripts, [timeouts] spawner = 1
// and the given tags.
func startOpsAgent(t *testing.T, p *fleetPKI, name string, oc opsAgentConf) *realAgent {
	t.Helper()
	dir := t.TempDir()
	r := &Root{t: t, Dir: dir, LogFile: filepath.Join(dir, "log"), Hostname: name}
	ids := p.installAgentIdentity(t, dir, name)
	writeAllowlist(t, dir, opsScripts)
	port := FreePort(t)
	lines := []string{
		"port = " + itoa(port), "cert = " + ids.cert, "key = " + ids.key, "ca = " + ids.ca,
		"dispatcher_serial_path = " + filepath.Join(dir, "/etc/ctrl-exec-agent/ctrl-exec-serial"),
		"revoked_serials = " + filepath.Join(dir, "/etc/ctrl-exec-agent/revoked-serials"),
		"rate_limit_disable = yes",
	}
	if oc.denyHook {
		lines = append(lines, "auth_hook = "+writeFile(t, dir, "/etc/ctrl-exec-agent/hook", "#!/bin/sh\nexit 1\n", 0o755))
	}
	lines = append(lines, "[timeouts]", "spawner = 1", "[tags]")
	for k, v := range oc.tags {
		lines = append(lines, k+" = "+v)
	}
	conf := writeFile(t, dir, "/etc/ctrl-exec-agent/agent.conf", strings.Join(lines, "\n")+"\n", 0o640)
	a := &realAgent{root: r, name: name, port: port}
	a.proc = r.Start("ctrl-exec-agent", "serve", "--config", conf,
		"--allowlist", filepath.Join(dir, "/etc/ctrl-exec-agent/scripts.conf"))
	if err := a.waitReady(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	return a
}

// registerAgent writes the control host's registry record for a.
func registerAgent(t *testing.T, r *Root, a *realAgent) {
	t.Helper()
	rec, _ := json.Marshal(map[string]string{"hostname": a.name, "ip": "127.0.0.1", "port": itoa(a.port),
		"paired": "2026-01-01T00:00:00Z", "serial_status": "current"})
	r.WriteFile("/var/lib/ctrl-exec/agents/"+a.name+".json", string(rec), 0o644)
}

// runResults parses run --json output.
type runOutput struct {
	OK      int              `json:"ok"`
	Results []map[string]any `json:"results"`
}

func parseRun(t *testing.T, res Result) runOutput {
	t.Helper()
	var out runOutput
	if err := json.Unmarshal([]byte(res.Stdout), &out); err != nil {
		t.Fatalf("not run --json output (exit %d): %v\nstdout: %s\nstderr: %s", res.Code, err, res.Stdout, res.Stderr)
	}
	return out
}

// field lists one field of every result, in order.
func field(results []map[string]any, key string) []string {
	var out []string
	for _, r := range results {
		out = append(out, strings.TrimSpace(fmt.Sprint(r[key])))
	}
	return out
}

func ranScript(a *realAgent, script string) bool {
	return a.root.HasLog("ACTION=run", "SCRIPT="+script)
}

// Targeting by tag: AND across --tag, globs, a union with explicit hosts,
// and a selection that matches nothing (exit 1, nothing run). Tags come
// from `discover`, which stores them in the registry.
func TestFleetTagTargeting(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	web := startOpsAgent(t, p, "web-1", opsAgentConf{tags: map[string]string{"role": "web", "env": "prod"}})
	dbp := startOpsAgent(t, p, "db-1", opsAgentConf{tags: map[string]string{"role": "db-primary", "env": "prod"}})
	dbr := startOpsAgent(t, p, "db-2", opsAgentConf{tags: map[string]string{"role": "db-replica", "env": "test"}})
	for _, a := range []*realAgent{web, dbp, dbr} {
		registerAgent(t, r, a)
	}

	disc := r.MustRun("ctrl-exec", "discover", "--json")
	var listed struct {
		Agents []map[string]any `json:"agents"`
	}
	if err := json.Unmarshal([]byte(disc.Stdout), &listed); err != nil || len(listed.Agents) != 3 {
		t.Fatalf("discover --json: %v\n%s", err, disc.Stdout)
	}
	var rec map[string]any
	json.Unmarshal([]byte(r.ReadFile("/var/lib/ctrl-exec/agents/db-2.json")), &rec)
	if diff := cmp.Diff(map[string]any{"role": "db-replica", "env": "test"}, rec["tags"]); diff != "" {
		t.Fatalf("registry tags of db-2 (-want +got):\n%s", diff)
	}
	if rec["serial_status"] != "current" {
		t.Errorf("discover lost other registry fields: %v", rec)
	}

	for _, tt := range []struct {
		name string
		args []string
		want []string // whoami output, in order
	}{
		{"AND of two tags, one a glob", []string{"--tag", "role=db*", "--tag", "env=prod"}, []string{"db-1"}},
		{"glob alone", []string{"--tag", "role=db*"}, []string{"db-1", "db-2"}},
		{"union with an explicit host", []string{web.target(), "--tag=env=test"}, []string{"web-1", "db-2"}},
		{"explicit host also tagged: once", []string{web.target(), "--tag", "role=web"}, []string{"web-1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := r.Run("ctrl-exec", append(append([]string{"run", "--json"}, tt.args...), "whoami")...)
			out := parseRun(t, res)
			if diff := cmp.Diff(tt.want, field(out.Results, "stdout")); diff != "" || res.Code != 0 {
				t.Errorf("exit %d, hosts (-want +got):\n%s", res.Code, diff)
			}
		})
	}

	res := r.Run("ctrl-exec", "run", "--tag", "role=nope", "--tag", "env=prod", "touch", "--", filepath.Join(r.Dir, "ran"))
	if res.Code != 1 || res.Stdout != "" || !strings.Contains(res.Stderr, "no registered agent matches tag role=nope") {
		t.Errorf("no match: exit %d stdout %q stderr %q", res.Code, res.Stdout, res.Stderr)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, "ran")); err == nil {
		t.Error("a selection that matched nothing ran the script")
	}
	if res := r.Run("ctrl-exec", "ping", "--tag", "env=prod", "--json"); res.Code != 0 || strings.Count(res.Stdout, `"status":"ok"`) != 2 {
		t.Errorf("ping --tag env=prod: exit %d\n%s", res.Code, res.Stdout)
	}
}

// --ndjson writes each host's line as it finishes: the two fast hosts'
// lines are read while the third host is still held (it cannot finish
// until the test creates the release file), then the slow line and the
// summary follow.
func TestFleetNDJSONStreamsAsHostsFinish(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	slow := startOpsAgent(t, p, "slow", opsAgentConf{})
	fast1 := startOpsAgent(t, p, "fast-1", opsAgentConf{})
	fast2 := startOpsAgent(t, p, "fast-2", opsAgentConf{})
	release := filepath.Join(t.TempDir(), "release")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := r.Command(ctx, "ctrl-exec", "run", "--ndjson", slow.target(), fast1.target(), fast2.target(),
		"holdif", "--", "slow", release)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("stream ended early: %v", lines.Err())
		}
		var m map[string]any
		if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", lines.Text(), err)
		}
		return m
	}
	var early []string
	for range 2 {
		m := next()
		early = append(early, fmt.Sprint(m["stdout"]))
		if m["status"] != "ok" {
			t.Errorf("fast line: %v", m)
		}
	}
	sort.Strings(early)
	if diff := cmp.Diff([]string{"fast-1\n", "fast-2\n"}, early); diff != "" {
		t.Fatalf("lines before the slow host was released (-want +got):\n%s", diff)
	}
	if ranScript(slow, "holdif") {
		t.Fatal("the slow host finished before it was released")
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	last := next()
	if last["stdout"] != "slow\n" {
		t.Errorf("third line: %v", last)
	}
	sum := next()
	want := map[string]any{"summary": map[string]any{"ok": 3.0, "failed": 0.0, "timeout": 0.0, "unreachable": 0.0,
		"refused": 0.0, "denied": 0.0, "locked": 0.0, "skipped": 0.0, "total": 3.0, "reqid": last["reqid"]}}
	if diff := cmp.Diff(want, sum); diff != "" {
		t.Errorf("summary (-want +got):\n%s", diff)
	}
	if lines.Scan() {
		t.Errorf("more after the summary: %q", lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// --max-errors 1 at --max-concurrency 1: the first two failures are
// tolerated up to "more than 1", the hosts after them are skipped and never
// contacted. --max-concurrency 2: the agents never see more than two runs
// at once.
func TestFleetGuardrails(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	var agents []*realAgent
	var hosts []string
	for i := range 4 {
		a := startOpsAgent(t, p, "agent-"+itoa(i+1), opsAgentConf{})
		agents = append(agents, a)
		hosts = append(hosts, a.target())
	}

	res := r.Run("ctrl-exec", append(append([]string{"run", "--json", "--max-errors", "1", "--max-concurrency", "1"}, hosts...), "fail")...)
	out := parseRun(t, res)
	if diff := cmp.Diff([]string{"failed", "failed", "skipped", "skipped"}, field(out.Results, "status")); diff != "" || res.Code != 1 {
		t.Fatalf("exit %d, statuses (-want +got):\n%s\n%s", res.Code, diff, res.Stdout)
	}
	if got := out.Results[2]["error"]; got != "skipped: error budget spent: 2 hosts failed, max-errors 1" {
		t.Errorf("skipped error: %v", got)
	}
	for i, a := range agents {
		if ran := ranScript(a, "fail"); ran != (i < 2) {
			t.Errorf("%s ran fail: %v", a.name, ran)
		}
	}

	marks := filepath.Join(t.TempDir(), "marks")
	res = r.Run("ctrl-exec", append(append([]string{"run", "--max-concurrency", "2"}, hosts...), "inflight", "--", marks)...)
	if res.Code != 0 {
		t.Fatalf("inflight: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "  status:ok]") {
		t.Errorf("text header without status despite a fleet option:\n%s", res.Stdout)
	}
	inFlight, most := 0, 0
	for _, m := range strings.Fields(readFileString(marks)) {
		if m == "+" {
			inFlight++
		} else {
			inFlight--
		}
		most = max(most, inFlight)
	}
	if most > 2 || strings.Count(readFileString(marks), "+") != 4 {
		t.Errorf("at most %d in flight (want ≤ 2); marks %q", most, readFileString(marks))
	}
}

// --dry-run runs nothing: the script would have created a file. A held
// host:script lock and an auth hook denial show as statuses, exit 1.
func TestFleetDryRun(t *testing.T) {
	t.Parallel()
	hook := filepath.Join(t.TempDir(), "hook")
	os.WriteFile(hook, []byte("#!/bin/sh\n[ \"$ENVEXEC_USERNAME\" = mallory ] && exit 3\nexit 0\n"), 0o755)
	r, p := newCLIControl(t, "auth_hook = "+hook)
	a := startOpsAgent(t, p, "agent-1", opsAgentConf{})
	touched := filepath.Join(t.TempDir(), "touched")

	res := r.Run("ctrl-exec", "run", "--dry-run", a.target(), "touch", "--", touched)
	want := "dry run: would run touch with 1 args on 1 hosts; nothing was run\n==> " + a.target() + "  [ok]\n"
	if diff := cmp.Diff(want, res.Stdout); diff != "" || res.Code != 0 {
		t.Errorf("exit %d, text (-want +got):\n%s%s", res.Code, diff, res.Stderr)
	}
	res = r.Run("ctrl-exec", "run", "--dry-run", "--json", "--username", "mallory", a.target(), "touch", "--", touched)
	if !strings.Contains(res.Stdout, `"status":"denied"`) || res.Code != 1 {
		t.Errorf("denied dry run: exit %d\n%s", res.Code, res.Stdout)
	}
	unlock := holdLock(t, r, a.target(), "touch")
	res = r.Run("ctrl-exec", "run", "--dry-run", "--json", a.target(), "touch", "--", touched)
	unlock()
	if !strings.Contains(res.Stdout, `"status":"locked"`) || res.Code != 1 {
		t.Errorf("locked dry run: exit %d\n%s", res.Code, res.Stdout)
	}
	if _, err := os.Stat(touched); err == nil || ranScript(a, "touch") {
		t.Error("--dry-run ran the script")
	}
}

// holdLock takes the host:script lock as another ctrl-exec would (flock).
func holdLock(t *testing.T, r *Root, host, script string) func() {
	t.Helper()
	safe := func(s string) string {
		return strings.Map(func(c rune) rune {
			if c == '.' || c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
				return c
			}
			return '_'
		}, s)
	}
	path := r.Path("/var/lib/ctrl-exec/locks/" + safe(host) + "--" + safe(script) + ".lock")
	os.MkdirAll(filepath.Dir(path), 0o770)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

// A script past its agent.conf [timeouts] limit is killed with its whole
// process group and reported as status timeout.
func TestFleetScriptTimeout(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	a := startOpsAgent(t, p, "agent-1", opsAgentConf{})
	pidFile := filepath.Join(t.TempDir(), "pid")
	out := parseRun(t, r.Run("ctrl-exec", "run", "--json", a.target(), "spawner", "--", pidFile))
	if diff := cmp.Diff([]string{"timeout"}, field(out.Results, "status")); diff != "" {
		t.Fatalf("status (-want +got):\n%s\n%v", diff, out.Results)
	}
	if got := out.Results[0]["error"]; got != "script timeout after 1s" {
		t.Errorf("error %v", got)
	}
	a.root.WaitLog(5*time.Second, "ACTION=script-timeout", "SCRIPT=spawner", "TIMEOUT=1")
	pid, err := strconv.Atoi(strings.TrimSpace(readFileString(pidFile)))
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the script's child %d outlived the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports a process that exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

// Every status is produced at least once, by the CLI (--json) and by the
// API for the same situation, and they agree; the API answers match the
// OpenAPI document. Reruns of a saved run take exactly the hosts with the
// statuses asked for, from the CLI and from the API.
func TestFleetStatusesCLIAndAPI(t *testing.T) {
	t.Parallel()
	apiPort := FreePort(t)
	r, p := newCLIControl(t, "api_bind = 127.0.0.1", "api_port = "+itoa(apiPort), "api_auth_default = allow", "read_timeout = 20")
	a := startOpsAgent(t, p, "agent-a", opsAgentConf{})
	b := startOpsAgent(t, p, "agent-b", opsAgentConf{denyHook: true})
	api := r.Start("ctrl-exec-api", "--config", r.Path("/etc/ctrl-exec/ctrl-exec.conf"))
	api.WaitOutput(t, "listening on 127.0.0.1:"+itoa(apiPort), 20*time.Second)
	c := &apiControl{t: t, root: r, port: apiPort, spec: loadAPISpec(t)}
	closed := "127.0.0.1:" + closedLoopbackPort(t)
	pidFile := filepath.Join(t.TempDir(), "pid")

	type call struct {
		hosts  []string
		script string
		args   []string
		opts   []string       // CLI options
		body   map[string]any // extra API members
	}
	cases := []struct {
		status string
		call   call
		want   []string
	}{
		{"ok", call{hosts: []string{a.target()}, script: "true"}, []string{"ok"}},
		{"failed", call{hosts: []string{a.target()}, script: "fail"}, []string{"failed"}},
		{"timeout", call{hosts: []string{a.target()}, script: "spawner", args: []string{pidFile}}, []string{"timeout"}},
		{"unreachable", call{hosts: []string{closed}, script: "true"}, []string{"unreachable"}},
		{"refused", call{hosts: []string{a.target()}, script: "nosuch"}, []string{"refused"}},
		{"denied", call{hosts: []string{b.target()}, script: "true"}, []string{"denied"}},
		{"skipped", call{hosts: []string{closed, a.target()}, script: "true",
			opts: []string{"--max-errors", "0", "--max-concurrency", "1"},
			body: map[string]any{"max_errors": 0, "max_concurrency": 1}}, []string{"unreachable", "skipped"}},
		{"locked", call{hosts: []string{a.target()}, script: "true", opts: []string{"--dry-run"},
			body: map[string]any{"dry_run": true}}, []string{"locked"}},
	}
	for _, tc := range cases {
		t.Run(tc.status, func(t *testing.T) {
			if tc.status == "locked" {
				defer holdLock(t, r, a.target(), "true")()
			}
			args := append(append([]string{"run", "--json"}, tc.call.opts...), tc.call.hosts...)
			args = append(append(args, tc.call.script, "--"), tc.call.args...)
			cli := parseRun(t, r.Run("ctrl-exec", args...))
			body := map[string]any{"hosts": tc.call.hosts, "script": tc.call.script, "args": append([]string{}, tc.call.args...)}
			for k, v := range tc.call.body {
				body[k] = v
			}
			reply := c.call("POST", "/run", apiJSON(body)).want(t, 200, "")
			var fromAPI []string
			for _, res := range reply.JSON["results"].([]any) {
				fromAPI = append(fromAPI, res.(map[string]any)["status"].(string))
			}
			if diff := cmp.Diff(tc.want, field(cli.Results, "status")); diff != "" {
				t.Errorf("CLI statuses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.want, fromAPI); diff != "" {
				t.Errorf("API statuses (-want +got):\n%s\n%s", diff, reply.Body)
			}
		})
	}

	// rerun: CLI --save, then rerun only the failed host, from the CLI and
	// from the API (both read the same run store).
	flag := filepath.Join(t.TempDir(), "fixed")
	saved := parseRun(t, r.Run("ctrl-exec", "run", "--json", "--save", a.target(), b.target(), closed, "flaky", "--", "agent-a", flag))
	if diff := cmp.Diff([]string{"failed", "denied", "unreachable"}, field(saved.Results, "status")); diff != "" {
		t.Fatalf("saved run statuses (-want +got):\n%s", diff)
	}
	reqid := saved.Results[0]["reqid"].(string)
	os.WriteFile(flag, nil, 0o644)
	res := r.Run("ctrl-exec", "rerun", reqid, "--only", "failed", "--json")
	again := parseRun(t, res)
	if len(again.Results) != 1 || !ranScript(a, "flaky") {
		t.Errorf("CLI rerun: %d hosts, want agent-a only", len(again.Results))
	}
	if diff := cmp.Diff([]string{"ok"}, field(again.Results, "status")); diff != "" || res.Code != 0 {
		t.Errorf("CLI rerun: exit %d (-want +got):\n%s", res.Code, diff)
	}
	reply := c.call("POST", "/run", `{"rerun":"`+reqid+`","only":["unreachable","denied"]}`).want(t, 200, "")
	var statuses []string
	for _, x := range reply.JSON["results"].([]any) {
		statuses = append(statuses, x.(map[string]any)["status"].(string))
	}
	if diff := cmp.Diff([]string{"denied", "unreachable"}, statuses); diff != "" {
		t.Errorf("API rerun statuses (-want +got):\n%s", diff)
	}
	st := c.call("GET", "/status/"+reply.JSON["reqid"].(string), "").want(t, 200, "")
	if st.JSON["rerun_of"] != reqid || cmp.Diff([]any{"agent-a", flag}, st.JSON["args"]) != "" {
		t.Errorf("stored rerun: %s", st.Body)
	}
	c.call("POST", "/run", `{"rerun":"0123456789abcdef"}`).want(t, 404, "no result for reqid 0123456789abcdef")

	// The API stream: lines as hosts finish, each a RunResult, then the summary.
	resp, err := http.Post(c.url("/run"), "application/json", strings.NewReader(
		`{"hosts":["`+a.target()+`","`+closed+`"],"script":"true","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-ndjson" {
		t.Errorf("Content-Type %q", ct)
	}
	var got []string
	scan := bufio.NewScanner(resp.Body)
	for scan.Scan() {
		ptr := "#/components/schemas/RunResult"
		if strings.HasPrefix(scan.Text(), `{"summary"`) {
			ptr = "#/components/schemas/StreamSummary"
		}
		if errs := c.spec.checkAgainst(ptr, scan.Bytes()); len(errs) > 0 {
			t.Errorf("line %s: %v", scan.Text(), errs)
		}
		var m map[string]any
		json.Unmarshal(scan.Bytes(), &m)
		if s, ok := m["status"].(string); ok {
			got = append(got, s)
		}
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"ok", "unreachable"}, got); diff != "" {
		t.Errorf("streamed statuses (-want +got):\n%s", diff)
	}
	audited := false
	for _, l := range strings.Split(readFileString(r.LogFile), "\n") {
		audited = audited || strings.HasPrefix(l, "ctrl-exec-api[") && containsAll(l, []string{"ACTION=audit", "STATUS=unreachable", "SCRIPT=true", "ARGS=0"})
	}
	if !audited {
		t.Error("no API audit event for the streamed run")
	}
}

// Tags follow every successful ping, with no discover: an agent's [tags]
// changed and reloaded (SIGHUP) are what the next `run --tag` selects by
// after one ping; the ping output never carries them. An agent with an
// auth_hook tells its tags by /capabilities only, so a ping stores none.
func TestFleetTagsRefreshedByPing(t *testing.T) {
	t.Parallel()
	r, p := newCLIControl(t)
	web := startOpsAgent(t, p, "web-1", opsAgentConf{tags: map[string]string{"role": "web"}})
	hooked := startOpsAgent(t, p, "hooked-1", opsAgentConf{tags: map[string]string{"role": "web"}, denyHook: true})
	for _, a := range []*realAgent{web, hooked} {
		registerAgent(t, r, a)
	}
	storedTags := func(a *realAgent) any {
		var rec map[string]any
		if err := json.Unmarshal([]byte(r.ReadFile("/var/lib/ctrl-exec/agents/"+a.name+".json")), &rec); err != nil {
			t.Fatal(err)
		}
		if rec["serial_status"] != "current" {
			t.Errorf("the tag update lost other registry fields of %s: %v", a.name, rec)
		}
		return rec["tags"]
	}

	ping := r.MustRun("ctrl-exec", "ping", "--json", web.target(), hooked.target())
	if strings.Contains(ping.Stdout, "tags") {
		t.Errorf("ping --json shows tags:\n%s", ping.Stdout)
	}
	if diff := cmp.Diff(map[string]any{"role": "web"}, storedTags(web)); diff != "" {
		t.Errorf("tags stored by ping (-want +got):\n%s", diff)
	}
	if got := storedTags(hooked); got != nil {
		t.Errorf("an agent with an auth_hook told its tags to ping: %v", got)
	}

	text := web.root.ReadFile("/etc/ctrl-exec-agent/agent.conf")
	web.root.WriteFile("/etc/ctrl-exec-agent/agent.conf", strings.Replace(text, "role = web", "role = api", 1), 0o640)
	if err := web.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload is announced before it is applied: ping until it shows.
	deadline := time.Now().Add(20 * time.Second)
	for cmp.Diff(map[string]any{"role": "api"}, storedTags(web)) != "" {
		if time.Now().After(deadline) {
			t.Fatalf("tags after SIGHUP and ping: %v", storedTags(web))
		}
		ping := r.MustRun("ctrl-exec", "ping", "--tag", "role=*", "--ndjson")
		if strings.Contains(ping.Stdout, "tags") {
			t.Fatalf("ping --ndjson shows tags:\n%s", ping.Stdout)
		}
	}
	res := r.Run("ctrl-exec", "run", "--json", "--tag", "role=api", "whoami")
	if diff := cmp.Diff([]string{"web-1"}, field(parseRun(t, res).Results, "stdout")); diff != "" || res.Code != 0 {
		t.Errorf("run --tag role=api: exit %d (-want +got):\n%s", res.Code, diff)
	}
	// The old tag selects nothing now (hooked-1's tags were never stored).
	res = r.Run("ctrl-exec", "run", "--tag", "role=web", "whoami")
	if res.Code != 1 || res.Stdout != "" || !strings.Contains(res.Stderr, "no registered agent matches tag role=web (tags as of each agent's last successful ping") {
		t.Errorf("run --tag role=web after the change: exit %d stdout %q stderr %q", res.Code, res.Stdout, res.Stderr)
	}
}

// A Go agent reports its [tags] when it asks to pair, so the approved agent
// is targetable by tag at once: no ping, no discover.
func TestFleetTagsFromPairing(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a := newLifecycleAgents(t, "tagged-01")[0]
	a.WriteFile("/etc/ctrl-exec-agent/agent.conf", a.ReadFile("/etc/ctrl-exec-agent/agent.conf")+"[tags]\nrole = cache\n", 0o640)
	PairAgent(t, ctl, a.Root)
	if diff := cmp.Diff(map[string]any{"role": "cache"}, registryRecord(t, ctl, "tagged-01")["tags"]); diff != "" {
		t.Errorf("registry tags after pairing (-want +got):\n%s", diff)
	}
	serve(t, a)
	res := ctl.Run("ctrl-exec", "run", "--json", "--tag", "role=cache", "hello")
	if out := parseRun(t, res); res.Code != 0 || len(out.Results) != 1 || !strings.HasPrefix(fmt.Sprint(out.Results[0]["stdout"]), "hello from") {
		t.Errorf("run --tag role=cache: exit %d %v\n%s", res.Code, out.Results, res.Stderr)
	}
}
