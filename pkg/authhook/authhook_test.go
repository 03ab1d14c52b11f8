package authhook

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
)

var fixedNow = func() time.Time { return time.Date(2026, 3, 13, 12, 0, 1, 0, time.FixedZone("X", 3600)) }

const secretToken = "tok-SECRET-do-not-log"

// hook writes an executable /bin/sh hook into dir.
func hook(t *testing.T, dir, name, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// capture returns a logger writing JSON lines into a buffer, and a function
// that decodes them.
func capture(t *testing.T) (zerolog.Logger, func() []map[string]any) {
	var buf bytes.Buffer
	log := zerolog.New(&buf)
	t.Cleanup(func() {
		if strings.Contains(buf.String(), secretToken) {
			t.Errorf("token in log output:\n%s", buf.String())
		}
	})
	return log, func() []map[string]any {
		var lines []map[string]any
		sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("log line %q: %v", sc.Text(), err)
			}
			lines = append(lines, m)
		}
		return lines
	}
}

func runReq() Request {
	return Request{
		Action:   ActionRun,
		Script:   "backup-mysql",
		Hosts:    []string{"web-01"},
		Args:     []string{"--db", "myapp"},
		Username: "alice",
		Token:    secretToken,
		SourceIP: "10.0.0.5",
	}
}

func passLine(user string) map[string]any {
	return map[string]any{"level": "info", "message": "auth", "RESULT": "pass", "AUTHACTION": "run", "USER": user, "IP": "10.0.0.5"}
}

func denyLine(reason string) map[string]any {
	return map[string]any{"level": "warn", "message": "auth", "RESULT": "deny", "REASON": reason, "AUTHACTION": "run", "USER": "alice", "IP": "10.0.0.5"}
}

func errorLine(reason, hookPath string, extra ...any) map[string]any {
	m := map[string]any{"level": "error", "message": "auth", "RESULT": "error", "REASON": reason, "HOOK": hookPath}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func TestCheckMapsHookExit(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, body string
		want       Decision
		logs       func(path string) []map[string]any
	}{
		{"exit 0", "exit 0", Decision{OK: true},
			func(string) []map[string]any { return []map[string]any{passLine("alice")} }},
		{"exit 1", "exit 1", Decision{Reason: "denied", Code: 1},
			func(string) []map[string]any { return []map[string]any{denyLine("denied")} }},
		{"exit 2", "exit 2", Decision{Reason: "bad credentials", Code: 2},
			func(string) []map[string]any { return []map[string]any{denyLine("bad credentials")} }},
		{"exit 3", "exit 3", Decision{Reason: "insufficient privilege", Code: 3},
			func(string) []map[string]any { return []map[string]any{denyLine("insufficient privilege")} }},
		{"exit 7", "exit 7", Decision{Reason: "hook exited 7", Code: 7},
			func(string) []map[string]any { return []map[string]any{denyLine("hook exited 7")} }},
		{"exit 127 from the hook itself", "exit 127", Decision{Reason: "hook exited 127", Code: 127},
			func(string) []map[string]any { return []map[string]any{denyLine("hook exited 127")} }},
		{"ignores stdin, exits at once", "exit 0", Decision{OK: true},
			func(string) []map[string]any { return []map[string]any{passLine("alice")} }},
		{"killed by a signal (B-7: deny)", "kill -9 $$", Decision{Reason: "denied", Code: 1},
			func(p string) []map[string]any {
				return []map[string]any{errorLine("hook-signaled", p, "SIGNAL", float64(9)), denyLine("denied")}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, lines := capture(t)
			path := hook(t, dir, strings.ReplaceAll(tt.name, " ", "-"), tt.body, 0o755)
			req := runReq()
			req.Args = append(req.Args, strings.Fields(strings.Repeat("--arg ", 9000))...) // stdin beyond a pipe buffer, env below MAX_ARG_STRLEN
			got := Check(context.Background(), log, path, req, fixedNow, 5*time.Second)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.logs(path), lines()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckTimeoutKillsHookGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "grandchild.pid")
	path := hook(t, dir, "slow", `sleep 100 & echo $! > "`+pidFile+`"; sleep 100`, 0o755)
	log, lines := capture(t)

	got := Check(context.Background(), log, path, runReq(), fixedNow, 300*time.Millisecond)
	if diff := cmp.Diff(Decision{Reason: "denied", Code: 1}, got); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
	want := []map[string]any{errorLine("hook-timeout", path), denyLine("denied")}
	if diff := cmp.Diff(want, lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); running(pid); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("hook's background process %d survived the timeout", pid)
		}
	}
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || !bytes.HasPrefix(data[i+1:], []byte(" Z"))
}

func TestCheckCanceledContextDenies(t *testing.T) {
	dir := t.TempDir()
	path := hook(t, dir, "ok", "exit 0", 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	log, lines := capture(t)
	got := Check(ctx, log, path, runReq(), fixedNow, time.Second)
	if diff := cmp.Diff(Decision{Reason: "denied", Code: 1}, got); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
	want := []map[string]any{errorLine("hook-canceled", path), denyLine("denied")}
	if diff := cmp.Diff(want, lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

func TestCheckUnusableHook(t *testing.T) {
	dir := t.TempDir()
	plain := hook(t, dir, "plain", "exit 0", 0o644)
	if err := os.Symlink(plain, filepath.Join(dir, "link-to-plain")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path string }{
		{"missing", filepath.Join(dir, "does-not-exist")},
		{"not executable", plain},
		{"symlink to non-executable", filepath.Join(dir, "link-to-plain")},
		{"directory", dir},
		{"empty path", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, lines := capture(t)
			got := Check(context.Background(), log, tt.path, runReq(), fixedNow, time.Second)
			want := Decision{Reason: "auth hook not found or not executable: " + tt.path, Code: 1}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]map[string]any{errorLine("hook-not-executable", tt.path)}, lines()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckExecFailureDenies(t *testing.T) {
	dir := t.TempDir()
	noShebang := filepath.Join(dir, "noshebang")
	if err := os.WriteFile(noShebang, []byte("exit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	badInterp := filepath.Join(dir, "badinterp")
	if err := os.WriteFile(badInterp, []byte("#!/nonexistent/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{noShebang, badInterp} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			log, lines := capture(t)
			got := Check(context.Background(), log, path, runReq(), fixedNow, time.Second)
			if diff := cmp.Diff(Decision{Reason: "denied", Code: 1}, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			l := lines()
			if len(l) != 2 || l[0]["REASON"] != "hook-exec-failed" || l[0]["ERROR"] == nil {
				t.Errorf("log: want an exec-failed error line then a deny line, got %v", l)
			}
		})
	}
}

func TestCheckDeliversEnvAndStdin(t *testing.T) {
	t.Setenv("AUTHHOOK_TEST_INHERITED", "yes")
	t.Setenv("ENVEXEC_TOKEN", "stale-from-parent")

	tests := []struct {
		name      string
		req       Request
		wantEnv   map[string]string
		wantStdin string
	}{
		{
			name: "control host run",
			req: Request{Action: ActionRun, Script: "deploy-app", Hosts: []string{"web-01", "web-02:7443"},
				Args: []string{"--env", "prod & <dev>", "it's \"q\""}, Username: "bob", Token: secretToken, SourceIP: "10.0.0.5"},
			wantEnv: map[string]string{
				"ENVEXEC_ACTION":    "run",
				"ENVEXEC_SCRIPT":    "deploy-app",
				"ENVEXEC_HOSTS":     "web-01,web-02:7443",
				"ENVEXEC_ARGS":      `--env prod & <dev> it's "q"`,
				"ENVEXEC_ARGS_JSON": `["--env","prod & <dev>","it's \"q\""]`,
				"ENVEXEC_USERNAME":  "bob",
				"ENVEXEC_TOKEN":     secretToken,
				"ENVEXEC_SOURCE_IP": "10.0.0.5",
				"ENVEXEC_TIMESTAMP": "2026-03-13T11:00:01Z",
			},
			wantStdin: `{"action":"run","script":"deploy-app","hosts":["web-01","web-02:7443"],"args":["--env","prod & <dev>","it's \"q\""],"username":"bob","token":"` + secretToken + `","source_ip":"10.0.0.5","timestamp":"2026-03-13T11:00:01Z"}`,
		},
		{
			name: "agent discovery: empty everything, hosts []",
			req:  Request{Action: ActionDiscovery, SourceIP: "10.9.8.7"},
			wantEnv: map[string]string{
				"ENVEXEC_ACTION":    "discovery",
				"ENVEXEC_SCRIPT":    "",
				"ENVEXEC_HOSTS":     "",
				"ENVEXEC_ARGS":      "",
				"ENVEXEC_ARGS_JSON": "[]",
				"ENVEXEC_USERNAME":  "",
				"ENVEXEC_TOKEN":     "",
				"ENVEXEC_SOURCE_IP": "10.9.8.7",
				"ENVEXEC_TIMESTAMP": "2026-03-13T11:00:01Z",
			},
			wantStdin: `{"action":"discovery","script":"","hosts":[],"args":[],"username":"","token":"","source_ip":"10.9.8.7","timestamp":"2026-03-13T11:00:01Z"}`,
		},
		{
			name: "CLI ping without source IP",
			req:  Request{Action: ActionPing, Hosts: []string{"db-01"}},
			wantEnv: map[string]string{
				"ENVEXEC_ACTION":    "ping",
				"ENVEXEC_SCRIPT":    "",
				"ENVEXEC_HOSTS":     "db-01",
				"ENVEXEC_ARGS":      "",
				"ENVEXEC_ARGS_JSON": "[]",
				"ENVEXEC_USERNAME":  "",
				"ENVEXEC_TOKEN":     "",
				"ENVEXEC_SOURCE_IP": "127.0.0.1",
				"ENVEXEC_TIMESTAMP": "2026-03-13T11:00:01Z",
			},
			wantStdin: `{"action":"ping","script":"","hosts":["db-01"],"args":[],"username":"","token":"","source_ip":"127.0.0.1","timestamp":"2026-03-13T11:00:01Z"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			envOut, stdinOut := filepath.Join(dir, "env"), filepath.Join(dir, "stdin")
			path := hook(t, dir, "recorder", `/usr/bin/env -0 > "`+envOut+`"; cat > "`+stdinOut+`"; echo noise; echo noise >&2`, 0o755)
			log, _ := capture(t)
			if d := Check(context.Background(), log, path, tt.req, fixedNow, 5*time.Second); !d.OK {
				t.Fatalf("recording hook denied: %+v", d)
			}

			envData, err := os.ReadFile(envOut)
			if err != nil {
				t.Fatal(err)
			}
			gotEnv := map[string]string{}
			var tokens, inherited int
			for _, kv := range strings.Split(strings.TrimSuffix(string(envData), "\x00"), "\x00") {
				name, value, _ := strings.Cut(kv, "=")
				switch {
				case name == "AUTHHOOK_TEST_INHERITED" && value == "yes":
					inherited++
				case strings.HasPrefix(name, "ENVEXEC_"):
					gotEnv[name] = value
					if name == "ENVEXEC_TOKEN" {
						tokens++
					}
				}
			}
			if diff := cmp.Diff(tt.wantEnv, gotEnv); diff != "" {
				t.Errorf("ENVEXEC_* (-want +got):\n%s", diff)
			}
			if tokens != 1 || inherited != 1 {
				t.Errorf("ENVEXEC_TOKEN appears %d times, inherited variable %d times; want 1 and 1", tokens, inherited)
			}

			stdinData, err := os.ReadFile(stdinOut)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantStdin, string(stdinData)); diff != "" {
				t.Errorf("stdin JSON (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNoHookPolicies(t *testing.T) {
	req := runReq()
	tests := []struct {
		name string
		call func(zerolog.Logger) Decision
		want Decision
		log  map[string]any
	}{
		{"CLI passes", func(l zerolog.Logger) Decision { return NoHookCLI(l, req) }, Decision{OK: true},
			map[string]any{"level": "info", "message": "auth", "RESULT": "pass", "REASON": "no-hook-cli", "AUTHACTION": "run", "USER": "alice", "IP": "10.0.0.5"}},
		{"API allow", func(l zerolog.Logger) Decision { return NoHookAPI(l, req, "allow") }, Decision{OK: true},
			map[string]any{"level": "info", "message": "auth", "RESULT": "pass", "REASON": "no-hook-allow", "AUTHACTION": "run", "USER": "alice", "IP": "10.0.0.5"}},
		{"API Allow any case", func(l zerolog.Logger) Decision { return NoHookAPI(l, req, "ALLOW") }, Decision{OK: true},
			map[string]any{"level": "info", "message": "auth", "RESULT": "pass", "REASON": "no-hook-allow", "AUTHACTION": "run", "USER": "alice", "IP": "10.0.0.5"}},
		{"API deny", func(l zerolog.Logger) Decision { return NoHookAPI(l, req, "deny") }, Decision{Reason: "no auth hook configured", Code: 1},
			map[string]any{"level": "warn", "message": "auth", "RESULT": "deny", "REASON": "no-hook-deny", "AUTHACTION": "run", "USER": "alice", "IP": "10.0.0.5"}},
		{"API unset", func(l zerolog.Logger) Decision {
			return NoHookAPI(l, Request{Action: ActionAPI, SourceIP: "10.0.0.5"}, "")
		},
			Decision{Reason: "no auth hook configured", Code: 1},
			map[string]any{"level": "warn", "message": "auth", "RESULT": "deny", "REASON": "no-hook-deny", "AUTHACTION": "api", "USER": "(none)", "IP": "10.0.0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, lines := capture(t)
			if diff := cmp.Diff(tt.want, tt.call(log)); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]map[string]any{tt.log}, lines()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckLogsUserNone(t *testing.T) {
	path := hook(t, t.TempDir(), "ok", "exit 0", 0o755)
	log, lines := capture(t)
	req := runReq()
	req.Username = ""
	Check(context.Background(), log, path, req, fixedNow, time.Second)
	if diff := cmp.Diff([]map[string]any{passLine("(none)")}, lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// The hook runs in its own process group, so a hook killing its group
// cannot take this process with it.
func TestHookKillingItsGroupIsDenied(t *testing.T) {
	path := hook(t, t.TempDir(), "killgroup", "kill -TERM 0; sleep 5", 0o755)
	log, _ := capture(t)
	got := Check(context.Background(), log, path, runReq(), fixedNow, 5*time.Second)
	if diff := cmp.Diff(Decision{Reason: "denied", Code: 1}, got); diff != "" {
		t.Errorf("decision (-want +got):\n%s", diff)
	}
}

// The lines as they reach syslog (SPEC §17.1), through pkg/logx.
func TestCheckSyslogLines(t *testing.T) {
	dir := t.TempDir()
	pass := hook(t, dir, "pass", "exit 0", 0o755)
	deny := hook(t, dir, "deny", "exit 2", 0o755)
	var buf bytes.Buffer
	log := logx.NewWriter("ctrl-exec-api", &buf)

	Check(context.Background(), log, pass, runReq(), fixedNow, time.Second)
	Check(context.Background(), log, deny, runReq(), fixedNow, time.Second)
	Check(context.Background(), log, filepath.Join(dir, "gone"), runReq(), fixedNow, time.Second)

	prefix := "ctrl-exec-api[" + strconv.Itoa(os.Getpid()) + "]: "
	want := prefix + "ACTION=auth AUTHACTION=run IP=10.0.0.5 RESULT=pass USER=alice\n" +
		prefix + `ACTION=auth AUTHACTION=run IP=10.0.0.5 REASON="bad credentials" RESULT=deny USER=alice` + "\n" +
		prefix + "ACTION=auth HOOK=" + filepath.Join(dir, "gone") + " REASON=hook-not-executable RESULT=error\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}
