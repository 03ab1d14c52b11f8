package agent

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/spawn"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

const echoScript = "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\ncat >&2\n"

func runBody(t *testing.T, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("reply %q is not a JSON object: %v", body, err)
	}
	return m
}

func TestRunPassesArgumentsAndContextUnchanged(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{"echo": echoScript}})
	args := []string{"two words", `"quoted"`, "$(id)", "a;b", "*", "line1\nline2", "", "ünï"}
	status, body := a.mustDo(t, a.certs.control, "POST", "/run", runBody(t, map[string]any{
		"script": "echo", "args": args, "reqid": "r-1", "username": "alice", "token": "s3cret",
	}))
	if status != "200 OK" {
		t.Fatalf("status %q body %s", status, body)
	}
	got := decode(t, body)
	if got["exit"] != float64(0) || got["script"] != "echo" || got["reqid"] != "r-1" {
		t.Fatalf("reply %s", body)
	}
	if diff := cmp.Diff(strings.Join(args, "\x00")+"\x00", got["stdout"]); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}

	stdin := got["stderr"].(string)
	var ctx map[string]any
	if err := json.Unmarshal([]byte(stdin), &ctx); err != nil {
		t.Fatalf("stdin %q: %v", stdin, err)
	}
	stamp, _ := ctx["timestamp"].(string)
	if _, err := pki.ParseISOTime(stamp); err != nil {
		t.Errorf("timestamp: %v", err)
	}
	want := map[string]any{
		"script": "echo", "args": toAny(args), "reqid": "r-1", "peer_ip": "127.0.0.1",
		"username": "alice", "token": "s3cret", "timestamp": stamp,
	}
	if diff := cmp.Diff(want, ctx); diff != "" {
		t.Errorf("stdin context (-want +got):\n%s", diff)
	}
	if strings.Contains(stdin, ": ") || strings.Contains(stdin, ", ") || strings.HasSuffix(stdin, "\n") {
		t.Errorf("stdin context is not compact: %q", stdin)
	}
	line := a.waitLog("ACTION=run ", "SCRIPT=echo")
	if diff := cmp.Diff("ACTION=run EXIT=0 PEER=127.0.0.1 REQID=r-1 SCRIPT=echo", line); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if strings.Contains(a.log.String(), "s3cret") {
		t.Error("token in the log")
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func TestRunRefusals(t *testing.T) {
	a := startAgent(t, setup{
		scripts:   map[string]string{"echo": echoScript},
		conf:      "script_dirs = " + "/nowhere:" + "\n",
		allowlist: "outside = /bin/true\n",
	})
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `{"script":`, `{"error":"invalid JSON","exit":-1}`},
		{"empty body", ``, `{"error":"invalid JSON","exit":-1}`},
		{"array body", `["echo"]`, `{"error":"invalid JSON","exit":-1}`},
		{"trailing garbage", `{"script":"echo"} x`, `{"error":"invalid JSON","exit":-1}`},
		{"invalid UTF-8", "{\"script\":\"\xff\"}", `{"error":"invalid JSON","exit":-1}`},
		{"args not an array", `{"script":"echo","args":"-v","reqid":"r"}`, `{"error":"args must be an array","exit":-1,"reqid":"r"}`},
		{"args nested", `{"script":"echo","args":[["-v"]],"reqid":"r"}`, `{"error":"args must be an array of strings","exit":-1,"reqid":"r"}`},
		{"unknown script", `{"script":"nope","reqid":"r"}`, `{"script":"nope","exit":-1,"error":"script not permitted","reqid":"r"}`},
		{"slash", `{"script":"a/echo","reqid":"r"}`, `{"script":"a/echo","exit":-1,"error":"script not permitted","reqid":"r"}`},
		{"dot dot", `{"script":"../echo","reqid":"r"}`, `{"script":"../echo","exit":-1,"error":"script not permitted","reqid":"r"}`},
		{"trailing newline", `{"script":"echo\n","reqid":"r"}`, `{"script":"echo\n","exit":-1,"error":"script not permitted","reqid":"r"}`},
		{"non-ASCII word", `{"script":"échо","reqid":"r"}`, `{"script":"échо","exit":-1,"error":"script not permitted","reqid":"r"}`},
		{"missing fields", `{}`, `{"script":"","exit":-1,"error":"script not permitted","reqid":""}`},
		{"numeric reqid echoed as sent", `{"script":"nope","reqid":42}`, `{"script":"nope","exit":-1,"error":"script not permitted","reqid":42}`},
		{"path outside script_dirs dropped at load", `{"script":"outside","reqid":"r"}`, `{"script":"outside","exit":-1,"error":"script not permitted","reqid":"r"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := a.mustDo(t, a.certs.control, "POST", "/run", tt.body)
			if status != "200 OK" {
				t.Errorf("status %q", status)
			}
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
	// echo itself is outside /nowhere too: every script was dropped at load.
	if !strings.Contains(a.stderr.String(), "Allowlist: skipping 'outside' - path not in approved script_dirs: /bin/true") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
	// ... and in the log, where an operator looks when a run is refused.
	if !a.hasLog("ACTION=config-warn", "ENTRY=outside", `MSG="Allowlist: skipping 'outside' - path not in approved script_dirs: /bin/true"`) {
		t.Errorf("no config-warn line for the skipped entry:\n%s", a.log.String())
	}
	if !a.hasLog("ACTION=deny", "PEER=127.0.0.1", "REQID=r", "SCRIPT=nope") {
		t.Errorf("no deny line:\n%s", a.log.String())
	}
}

func TestValidateScriptRechecksScriptDirsAtExecution(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{"echo": echoScript}})
	// An allowlist loaded under other script_dirs than the config now has.
	rt := *a.srv.rt.Load()
	cfg := *rt.cfg
	cfg.ScriptDirs = []string{"/elsewhere"}
	rt.cfg = &cfg
	if _, ok := a.srv.validateScript(&rt, "echo"); ok {
		t.Fatal("script outside script_dirs accepted")
	}
	want := "validate_script: 'echo' path rejected at execution time - not in script_dirs: " + a.path("scripts/echo") + "\n"
	if diff := cmp.Diff(want, a.stderr.String()); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

func TestRunExitMapping(t *testing.T) {
	a := startAgent(t, setup{
		scripts: map[string]string{
			"three":  "#!/bin/sh\necho out; echo err >&2; exit 3\n",
			"killed": "#!/bin/sh\nkill -9 $$\n",
		},
		allowlist: "missing = /nonexistent/script\n",
	})
	plain := a.write("scripts/plain", "#!/bin/sh\nexit 0\n", 0o644)
	a.write("scripts.conf", readFile(t, a.path("scripts.conf"))+"plain = "+plain+"\n", 0o640)
	a.srv.Reload()

	tests := []struct {
		script       string
		exit         float64
		stdout       string
		stderrSubstr string
	}{
		{"three", 3, "out\n", "err\n"},
		{"killed", 126, "", ""},
		{"plain", 127, "", "permission denied"},
		{"missing", 127, "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			_, body := a.mustDo(t, a.certs.control, "POST", "/run", fmt.Sprintf(`{"script":%q}`, tt.script))
			got := decode(t, body)
			if got["exit"] != tt.exit || got["stdout"] != tt.stdout ||
				!strings.Contains(got["stderr"].(string), tt.stderrSubstr) {
				t.Errorf("reply %s", body)
			}
		})
	}
}

func TestRunDrainsLargeOutputOnBothStreams(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{
		"flood": "#!/bin/sh\nhead -c 1048576 /dev/zero | tr '\\0' o &\nhead -c 1048576 /dev/zero | tr '\\0' e >&2\nwait\n",
	}})
	_, body := a.mustDo(t, a.certs.control, "POST", "/run", `{"script":"flood"}`)
	got := decode(t, body)
	if got["exit"] != float64(0) || got["stdout"] != strings.Repeat("o", 1<<20) || got["stderr"] != strings.Repeat("e", 1<<20) {
		t.Errorf("exit %v, %d bytes stdout, %d bytes stderr", got["exit"], len(got["stdout"].(string)), len(got["stderr"].(string)))
	}
}

func TestStdinTimeoutIsLoggedAndTheScriptCarriesOn(t *testing.T) {
	a := startAgent(t, setup{
		conf:    "stdin_timeout = 1\n",
		scripts: map[string]string{"deaf": "#!/bin/sh\nsleep 2\necho finished\n"},
	})
	token := strings.Repeat("t", 256<<10) // more than a pipe buffer holds
	_, body := a.mustDo(t, a.certs.control, "POST", "/run", runBody(t, map[string]any{"script": "deaf", "token": token}))
	got := decode(t, body)
	if got["exit"] != float64(0) || got["stdout"] != "finished\n" {
		t.Errorf("reply %.200s", body)
	}
	line := a.waitLog("ACTION=stdin-timeout")
	if !strings.HasPrefix(line, "ACTION=stdin-timeout BYTES=") || strings.HasSuffix(line, "BYTES=0") {
		t.Errorf("log %q", line)
	}
}

func TestSerialCheck(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{"echo": echoScript}})
	for _, path := range []string{"/run", "/ping"} {
		status, body := a.mustDo(t, a.certs.agent, "POST", path, `{"script":"echo"}`)
		if status != "403 Error" || body != `{"error":"serial mismatch","status":"forbidden"}` {
			t.Errorf("%s: %q %s", path, status, body)
		}
	}
	a.waitLog("ACTION=serial-reject PEER=127.0.0.1 REQID=(none)")

	none := startAgent(t, setup{noSerial: true, scripts: map[string]string{"echo": echoScript}})
	if status, body := none.mustDo(t, none.certs.control, "POST", "/run", `{"script":"echo"}`); status != "403 Error" {
		t.Errorf("no stored serial: %q %s", status, body)
	}
}

func TestPing(t *testing.T) {
	a := startAgent(t, setup{})
	expiry := pki.FormatOpenSSLDate(a.certs.agentNotAfter)
	tests := []struct{ body, want string }{
		{`{"reqid":"abc"}`, `{"expiry":"` + expiry + `","host":"agent-test","reqid":"abc","status":"ok","version":"9.9.9-test"}`},
		{`not json`, `{"expiry":"` + expiry + `","host":"agent-test","reqid":"","status":"ok","version":"9.9.9-test"}`},
		{`[1,2]`, `{"expiry":"` + expiry + `","host":"agent-test","reqid":"","status":"ok","version":"9.9.9-test"}`},
	}
	for _, tt := range tests {
		status, body := a.mustDo(t, a.certs.control, "POST", "/ping", tt.body)
		if status != "200 OK" {
			t.Errorf("status %q", status)
		}
		if diff := cmp.Diff(tt.want, body); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.body, diff)
		}
	}
	a.waitLog("ACTION=ping PEER=127.0.0.1 REQID=abc")

	// Without the configured key the expiry is unknown (§20.4).
	rt := a.srv.rt.Load()
	cfg := *rt.cfg
	cfg.Key = a.path("absent.key")
	if got := certExpiry(&cfg); got != "unknown" {
		t.Errorf("expiry without key file = %q", got)
	}
}

func TestCapabilities(t *testing.T) {
	a := startAgent(t, setup{
		conf:    "[tags]\nrole = db\nsite = lon\n",
		scripts: map[string]string{"b-script": "#!/bin/sh\n", "a-script": "#!/bin/sh\n"},
	})
	noExec := a.write("scripts/c-script", "#!/bin/sh\n", 0o644)
	a.write("scripts.conf", readFile(t, a.path("scripts.conf"))+"c-script = "+noExec+"\n", 0o640)
	a.srv.Reload()

	status, body := a.mustDo(t, a.certs.control, "GET", "/capabilities", "")
	if status != "200 OK" {
		t.Fatalf("status %q", status)
	}
	want := fmt.Sprintf(`{"host":"agent-test","scripts":[`+
		`{"name":"a-script","path":%q,"executable":true},`+
		`{"name":"b-script","path":%q,"executable":true},`+
		`{"name":"c-script","path":%q,"executable":false}],`+
		`"status":"ok","tags":{"role":"db","site":"lon"},"version":"9.9.9-test"}`,
		a.path("scripts/a-script"), a.path("scripts/b-script"), noExec)
	if diff := cmp.Diff(want, body); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
	a.waitLog("ACTION=capabilities PEER=127.0.0.1 SCRIPTS=3")

	status, body = a.mustDo(t, a.certs.agent, "GET", "/capabilities", "")
	if status != "403 Error" || body != `{"error":"forbidden"}` {
		t.Errorf("mismatch: %q %s", status, body)
	}
	a.waitLog("ACTION=capabilities-deny PEER=127.0.0.1 PEER_SERIAL=10 REASON=serial-mismatch")

	open := startAgent(t, setup{noSerial: true})
	status, body = open.mustDo(t, open.certs.agent, "GET", "/capabilities", "")
	if status != "200 OK" || body != `{"host":"agent-test","scripts":[],"status":"ok","tags":{},"version":"9.9.9-test"}` {
		t.Errorf("no stored serial: %q %s", status, body)
	}
	open.waitLog(`ACTION=capabilities-no-serial PEER=127.0.0.1 REASON="no ctrl-exec serial stored - re-pair to enable restriction"`)
}

func TestUnknownRoutesAre404(t *testing.T) {
	a := startAgent(t, setup{})
	for _, r := range []struct{ method, path string }{
		// POST /renew and /renew-complete are routed since issue 6 (renew_test.go).
		{"GET", "/renew"}, {"GET", "/run"}, {"POST", "/run?x=1"},
		{"post", "/ping"}, {"GET", "/"}, {"POST", "/capabilities"},
	} {
		status, body := a.mustDo(t, a.certs.control, r.method, r.path, "{}")
		if status != "404 Not Found" || body != `{"error":"not found"}` {
			t.Errorf("%s %s: %q %s", r.method, r.path, status, body)
		}
	}
	raw := a.sendRaw(a.certs.control, []byte("GET /nothing HTTP/1.0\r\n\r\n"))
	want := "HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n{\"error\":\"not found\"}"
	if diff := cmp.Diff(want, raw); diff != "" {
		t.Errorf("raw response (-want +got):\n%s", diff)
	}
}

func TestAuthHook(t *testing.T) {
	a := startAgent(t, setup{
		scripts:  map[string]string{"echo": echoScript},
		timeouts: Timeouts{Handshake: 10e9, Request: 30e9, Response: 60e9, Shutdown: 10e9, Hook: 2e9},
	})
	record := a.path("hook-input")
	hookFor := func(behaviour string) {
		a.write("hook", "#!/bin/sh\nenv | grep ^ENVEXEC_ | sort > "+record+".env\ncat > "+record+"\n"+behaviour+"\n", 0o755)
		a.write("agent.conf", a.baseConf()+"auth_hook = "+a.path("hook")+"\n", 0o640)
		a.srv.Reload()
	}
	run := `{"script":"echo","args":["x"],"reqid":"h1","username":"bob","token":"hook-token"}`

	hookFor("exit 0")
	_, body := a.mustDo(t, a.certs.control, "POST", "/run", run)
	if got := decode(t, body); got["exit"] != float64(0) {
		t.Errorf("allowed: %s", body)
	}
	stdin := readFile(t, record)
	var hookCtx map[string]any
	if err := json.Unmarshal([]byte(stdin), &hookCtx); err != nil {
		t.Fatalf("hook stdin %q: %v", stdin, err)
	}
	delete(hookCtx, "timestamp")
	want := map[string]any{"action": "run", "script": "echo", "hosts": []any{}, "args": []any{"x"},
		"username": "bob", "token": "hook-token", "source_ip": "127.0.0.1"}
	if diff := cmp.Diff(want, hookCtx); diff != "" {
		t.Errorf("hook stdin (-want +got):\n%s", diff)
	}
	if env := readFile(t, record+".env"); !strings.Contains(env, "ENVEXEC_HOSTS=\n") || !strings.Contains(env, "ENVEXEC_ACTION=run\n") {
		t.Errorf("hook env:\n%s", env)
	}

	denials := []struct{ behaviour, reason string }{
		{"exit 1", "denied"},
		{"exit 2", "bad credentials"},
		{"exit 7", "hook exited 7"},
		{"kill -SEGV $$", "denied"},
		{"sleep 5", "denied"},
	}
	for _, d := range denials {
		hookFor(d.behaviour)
		_, body := a.mustDo(t, a.certs.control, "POST", "/run", run)
		want := `{"script":"echo","exit":-1,"error":"not authorised: ` + d.reason + `","reqid":"h1"}`
		if body != want {
			t.Errorf("%s: %s", d.behaviour, body)
		}
		a.waitLog("ACTION=deny", `REASON=`+quoteIfSpace(d.reason), "SCRIPT=echo", "REQID=h1")
	}

	hookFor("exit 3")
	status, body := a.mustDo(t, a.certs.control, "GET", "/capabilities", "")
	if status != "403 Error" || body != `{"error":"not authorised"}` {
		t.Errorf("capabilities: %q %s", status, body)
	}
	a.waitLog(`ACTION=capabilities-deny PEER=127.0.0.1 REASON="insufficient privilege"`)
	if got := readFile(t, record); !strings.Contains(got, `"action":"discovery"`) || !strings.Contains(got, `"token":""`) {
		t.Errorf("discovery hook stdin %s", got)
	}
	if strings.Contains(a.log.String(), "hook-token") {
		t.Error("token in the log")
	}
}

func quoteIfSpace(s string) string {
	if strings.ContainsAny(s, " \t") {
		return `"` + s + `"`
	}
	return s
}

// The default max_output keeps the largest /run reply under what a Go
// control host reads (wire.MaxClientBody): both streams at the cap with the
// marker, every byte in JSON's longest escaped form, and script and reqid
// echoed from the largest request the agent reads.
func TestDefaultMaxOutputFitsTheControlHost(t *testing.T) {
	widest := 0 // bytes of JSON per byte of output, after the UTF-8 repair the reply applies
	for b := 0; b < 256; b++ {
		widest = max(widest, len(wire.JSON(spawn.ValidUTF8([]byte{byte(b)})))-2)
	}
	for _, r := range []rune{'\u2028', '\u2029', '\ufffd'} { // 3 bytes each
		widest = max(widest, (len(wire.JSON(string(r)))-2+2)/3)
	}
	stream := config.DefaultMaxOutput + len(spawn.CutMarker(math.MaxInt64))
	echo := 2 * int(wire.AgentLimits().MaxBody) // decoded, then re-encoded at most twice as long
	reply := 2*stream*widest + echo + 256
	if reply >= wire.MaxClientBody {
		t.Errorf("worst /run reply %d bytes (%d per output byte), control hosts read at most %d", reply, widest, wire.MaxClientBody)
	}
}

// A script printing more than max_output gets its first and last halves
// back around the marker, on both streams.
func TestRunOutputIsCutToMaxOutput(t *testing.T) {
	a := startAgent(t, setup{
		conf:    "max_output = 1000\n",
		scripts: map[string]string{"flood": "#!/bin/sh\nhead -c 100000 /dev/zero | tr '\\0' o\necho end\nhead -c 3000 /dev/zero | tr '\\0' e >&2\n"},
	})
	_, body := a.mustDo(t, a.certs.control, "POST", "/run", runBody(t, map[string]any{"script": "flood", "reqid": "f"}))
	got := decode(t, body)
	want := map[string]any{
		"script": "flood", "exit": 0.0, "reqid": "f",
		"stdout": strings.Repeat("o", 500) + spawn.CutMarker(100004-1000) + strings.Repeat("o", 496) + "end\n",
		"stderr": strings.Repeat("e", 500) + spawn.CutMarker(2000) + strings.Repeat("e", 500),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reply (-want +got):\n%s", diff)
	}
}
