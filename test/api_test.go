package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// jsonOf re-encodes part of a decoded answer, for cmp-friendly comparison.
func apiJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAPIEndpoints(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	a := c.startAgent("localhost") // named as registered: the agent identity check holds
	c.register("localhost", "127.0.0.1", a.port)

	t.Run("index", func(t *testing.T) {
		r := c.call("GET", "/", "").want(t, 200, "")
		want := `[{"method":"GET","path":"/health"},{"method":"POST","path":"/ping"},{"method":"POST","path":"/run"},` +
			`{"method":"GET","path":"/discovery"},{"method":"POST","path":"/discovery"},{"method":"GET","path":"/status/{reqid}"},` +
			`{"method":"GET","path":"/openapi.json"},{"method":"GET","path":"/openapi-live.json"}]`
		if diff := cmp.Diff(want, apiJSON(r.JSON["endpoints"])); diff != "" {
			t.Errorf("endpoints (-want +got):\n%s", diff)
		}
	})

	t.Run("health", func(t *testing.T) {
		r := c.call("GET", "/health", "").want(t, 200, "")
		if r.JSON["version"] == "" {
			t.Errorf("no version: %s", r.Body)
		}
	})

	t.Run("ping", func(t *testing.T) {
		r := c.call("POST", "/ping", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`).want(t, 200, "")
		res := r.JSON["results"].([]any)
		ok, bad := res[0].(map[string]any), res[1].(map[string]any)
		if ok["status"] != "ok" || ok["host"] != "localhost" || bad["status"] != "error" || bad["host"] != "127.0.0.1" {
			t.Errorf("results in request order, agent-reported name on success: %s", r.Body)
		}
	})

	var reqid string
	t.Run("run", func(t *testing.T) {
		r := c.call("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"echo","args":["a b","c"],"username":"alice"}`).want(t, 200, "")
		reqid = r.JSON["reqid"].(string)
		res := r.JSON["results"].([]any)[0].(map[string]any)
		want := map[string]any{"host": "127.0.0.1", "script": "echo", "exit": 0.0, "stdout": "a b c\n", "stderr": "", "reqid": reqid, "status": "ok"}
		delete(res, "rtt")
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("run result (-want +got):\n%s", diff)
		}
		// The store: runs/ made 0750 on demand, the record 0640.
		dir := c.root.Path("/var/lib/ctrl-exec/runs")
		for path, mode := range map[string]os.FileMode{dir: 0o750 | os.ModeDir, filepath.Join(dir, reqid+".json"): 0o640} {
			if fi, err := os.Stat(path); err != nil || fi.Mode() != mode {
				t.Errorf("%s: %v, mode %v, want %v", path, err, fi.Mode(), mode)
			}
		}
		c.root.WaitLog(5*time.Second, "ACTION=api-request", "METHOD=POST", "PATH=/run", "PEER=127.0.0.1", "LEN=")
		c.root.WaitLog(5*time.Second, "ACTION=lock-release", "SCRIPT=echo")
	})

	t.Run("status", func(t *testing.T) {
		r := c.call("GET", "/status/"+reqid, "").want(t, 200, "")
		if r.JSON["reqid"] != reqid || r.JSON["script"] != "echo" || apiJSON(r.JSON["hosts"]) != `["`+a.target()+`"]` {
			t.Errorf("stored record: %s", r.Body)
		}
		if done, _ := r.JSON["completed"].(float64); time.Since(time.Unix(int64(done), 0)) > time.Minute {
			t.Errorf("completed %v is not now", r.JSON["completed"])
		}
	})

	t.Run("run failure inline", func(t *testing.T) {
		r := c.call("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"fail"}`).want(t, 200, "")
		res := r.JSON["results"].([]any)[0].(map[string]any)
		if res["exit"] != 3.0 || res["stderr"] != "oops\n" {
			t.Errorf("failing script: %s", r.Body)
		}
		r = c.call("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"nope"}`).want(t, 200, "")
		if res := r.JSON["results"].([]any)[0].(map[string]any); res["error"] != "script not permitted" {
			t.Errorf("unlisted script: %s", r.Body)
		}
	})

	t.Run("discovery", func(t *testing.T) {
		for _, method := range []string{"GET", "POST"} {
			r := c.call(method, "/discovery", "").want(t, 200, "")
			h, _ := r.JSON["hosts"].(map[string]any)["localhost"].(map[string]any)
			if h["status"] != "ok" || apiJSON(h["tags"]) != `{"role":"test"}` || len(h["scripts"].([]any)) != len(apiAgentScripts) {
				t.Errorf("%s /discovery over the registry: %s", method, r.Body)
			}
		}
		r := c.call("POST", "/discovery", `{"hosts":["`+a.target()+`","127.0.0.1:1"]}`).want(t, 200, "")
		hosts := r.JSON["hosts"].(map[string]any)
		if len(hosts) != 2 || hosts["localhost"] == nil || hosts["127.0.0.1"].(map[string]any)["status"] != "error" {
			t.Errorf("POST /discovery with hosts: keyed by agent name, failures by target without port: %s", r.Body)
		}
	})

	t.Run("openapi.json embedded", func(t *testing.T) {
		r := c.call("GET", "/openapi.json", "").want(t, 200, "")
		want, _ := os.ReadFile(apiSpecPath)
		if !bytes.Equal(r.Body, want) {
			t.Errorf("/openapi.json is not roles/api/openapi.json byte for byte")
		}
	})

	t.Run("openapi-live.json", func(t *testing.T) {
		r := c.call("GET", "/openapi-live.json", "").want(t, 200, "")
		if v := specDig(r.JSON, "info", "version").(string); !regexp.MustCompile(`^1\.0\.0\+\d+$`).MatchString(v) {
			t.Errorf("live version %q", v)
		}
	})

	t.Run("openapi.json installed", func(t *testing.T) {
		installed := `{"openapi":"3.1.0","info":{"title":"site copy","version":"7.1+123"},"paths":{"/run":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/R"}}}}}}},"components":{"schemas":{"R":{"type":"object","properties":{"hosts":{"type":"array"},"script":{"type":"string"}}}}}}` + "\n"
		c.root.WriteFile("/usr/local/lib/ctrl-exec/Exec/openapi.json", installed, 0o644)
		defer os.Remove(c.root.Path("/usr/local/lib/ctrl-exec/Exec/openapi.json"))
		r := c.call("GET", "/openapi.json", "").want(t, 200, "")
		if string(r.Body) != installed {
			t.Errorf("installed document not served byte for byte: %s", r.Body)
		}
		r = c.call("GET", "/openapi-live.json", "").want(t, 200, "")
		schema := specDig(r.JSON, "components", "schemas", "R", "properties")
		if v := specDig(r.JSON, "info", "version").(string); !regexp.MustCompile(`^7\.1\+\d+$`).MatchString(v) || v == "7.1+123" {
			t.Errorf("version %q: the old +stamp must be replaced", v)
		}
		if got := apiJSON(specDig(schema, "hosts", "items", "enum")); got != `["localhost"]` {
			t.Errorf("hosts enum %s", got)
		}
		if got := specDig(schema, "script", "enum").([]any); len(got) != len(apiAgentScripts) {
			t.Errorf("script enum %v", got)
		}
	})
}

func TestAPIAuthHook(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{hook: true}).start()
	a := c.startAgent("agent-a")
	run := `{"hosts":["` + a.target() + `"],"script":"true","username":"alice","token":"%s"}`
	cases := []struct {
		name, token string
		status      int
		err         string
		code        float64
	}{
		{"allowed", "tok-A", 200, "", 0},
		{"api denied", "api=1", 403, "denied", 1},
		{"api bad credentials", "api=2", 403, "bad credentials", 2},
		{"run insufficient privilege", "run=3", 403, "insufficient privilege", 3},
		{"run other exit", "run=7", 403, "hook exited 7", 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.call("POST", "/run", fmt.Sprintf(run, tc.token)).want(t, tc.status, tc.err)
			if tc.code != 0 && r.JSON["code"] != tc.code {
				t.Errorf("code %v, want %v", r.JSON["code"], tc.code)
			}
		})
	}
	c.call("POST", "/ping", `{"hosts":["`+a.target()+`"],"token":"ping=2"}`).want(t, 403, "bad credentials")

	// The hook runs twice for a POST: `api` first, then the operation.
	os.Remove(c.hookLog)
	c.call("POST", "/run", fmt.Sprintf(run, "tok-B")).want(t, 200, "")
	want := []string{
		"api user= token=tok-B hosts= script=",
		"run user=alice token=tok-B hosts=" + a.target() + " script=true",
	}
	if diff := cmp.Diff(want, c.hookCalls()); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}

	// A bearer token reaches the hook on GET; the body's token wins over it.
	os.Remove(c.hookLog)
	c.call("GET", "/health", "", "Authorization: Bearer api=2").want(t, 403, "bad credentials")
	c.call("GET", "/health", "", "Authorization: bearer tok-C").want(t, 200, "")
	c.call("POST", "/ping", `{"hosts":["`+a.target()+`"],"token":"tok-D"}`, "Authorization: Bearer ping=1").want(t, 200, "")
	c.call("POST", "/ping", `{"hosts":["`+a.target()+`"]}`, "Authorization: Bearer ping=1").want(t, 403, "denied")
	want = []string{
		"api user= token=api=2 hosts= script=",
		"api user= token=tok-C hosts= script=",
		"api user= token=tok-D hosts= script=",
		"ping user= token=tok-D hosts=" + a.target() + " script=",
		"api user= token=ping=1 hosts= script=",
		"ping user= token=ping=1 hosts=" + a.target() + " script=",
	}
	if diff := cmp.Diff(want, c.hookCalls()); diff != "" {
		t.Errorf("hook calls (-want +got):\n%s", diff)
	}

	// A hook that is no longer executable denies everything.
	os.Chmod(c.root.Path("/etc/ctrl-exec/auth-hook"), 0o644)
	c.call("GET", "/health", "").want(t, 403, "auth hook not found or not executable: "+c.root.Path("/etc/ctrl-exec/auth-hook"))

	// Tokens reach the hook and the agent but never a log line.
	c.root.WaitLog(5*time.Second, "ACTION=auth", "RESULT=deny", `REASON="bad credentials"`)
	for _, log := range []*Root{c.root, a.root} {
		data, _ := os.ReadFile(log.LogFile)
		for _, tok := range []string{"tok-A", "tok-B", "tok-C", "tok-D", "api=2", "ping=1"} {
			if bytes.Contains(data, []byte(tok)) {
				t.Errorf("token %q in %s", tok, log.LogFile)
			}
		}
	}
}

func TestAPIAuthDefault(t *testing.T) {
	t.Parallel()
	deny := newAPIControl(t, apiOptions{}).start()
	deny.call("GET", "/health", "").want(t, 403, "no auth hook configured")
	r := deny.call("GET", "/status/abc", "").want(t, 403, "no auth hook configured")
	if r.JSON["code"] != 1.0 {
		t.Errorf("code %v, want 1", r.JSON["code"])
	}
	deny.root.WaitLog(5*time.Second, "ACTION=auth", "RESULT=deny", "REASON=no-hook-deny", "AUTHACTION=api")

	allow := newAPIControl(t, apiOptions{allow: true}).start()
	allow.call("GET", "/health", "").want(t, 200, "")
	allow.root.WaitLog(5*time.Second, "ACTION=auth", "RESULT=pass", "REASON=no-hook-allow", "AUTHACTION=api")
}

func TestAPIBadRequests(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	many := make([]string, 501)
	for i := range many {
		many[i] = fmt.Sprintf(`"h%d"`, i)
	}
	tooMany := `{"hosts":[` + strings.Join(many, ",") + `],"script":"true"}`
	cases := []struct {
		name, path, body, detail string
	}{
		{"empty body", "/run", "", "request body required"},
		{"not JSON", "/run", "hosts=a", "invalid JSON body"},
		{"JSON array", "/ping", `["a"]`, "invalid JSON body"},
		{"trailing data", "/ping", `{"hosts":["a"]} x`, "invalid JSON body"},
		{"hosts missing", "/ping", `{}`, "hosts must be a non-empty array"},
		{"hosts not array", "/run", `{"hosts":"a","script":"true"}`, "hosts must be a non-empty array"},
		{"hosts empty", "/run", `{"hosts":[],"script":"true"}`, "hosts must be a non-empty array"},
		{"host not string", "/ping", `{"hosts":["a",7]}`, "hosts must be a non-empty array"},
		{"script missing", "/run", `{"hosts":["a"]}`, "script name required (alphanumeric and hyphens only)"},
		{"script with slash", "/run", `{"hosts":["a"],"script":"../bin/sh"}`, "script name required (alphanumeric and hyphens only)"},
		{"script not string", "/run", `{"hosts":["a"],"script":5}`, "script name required (alphanumeric and hyphens only)"},
		{"args not array", "/run", `{"hosts":["a"],"script":"true","args":"x"}`, "args must be an array"},
		{"arg not string", "/run", `{"hosts":["a"],"script":"true","args":["x",{"y":1}]}`, "args must be an array"},
		{"501 hosts", "/run", tooMany, "too many hosts (max 500)"},
		{"501 hosts discovery", "/discovery", `{"hosts":[` + strings.Join(many, ",") + `]}`, "too many hosts (max 500)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.call("POST", tc.path, tc.body).want(t, 400, tc.detail)
		})
	}

	t.Run("body over 1 MiB", func(t *testing.T) {
		body := append([]byte(`{"hosts":["a"],"script":"true","args":["`), bytes.Repeat([]byte("x"), 1<<20)...)
		req := fmt.Sprintf("POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", (1<<20)+1)
		c.raw("POST", "/run", append([]byte(req), body[:(1<<20)+1]...)).want(t, 413, "request too large")
	})
	t.Run("body of exactly 1 MiB is read", func(t *testing.T) {
		body := `{"hosts":[],"pad":"` + strings.Repeat("x", (1<<20)-len(`{"hosts":[],"pad":""}`)) + `"}`
		req := fmt.Sprintf("POST /run HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		c.raw("POST", "/run", []byte(req)).want(t, 400, "hosts must be a non-empty array")
	})
	t.Run("33 headers", func(t *testing.T) {
		var req strings.Builder
		req.WriteString("GET /health HTTP/1.1\r\n")
		for i := range 33 {
			fmt.Fprintf(&req, "X-H%d: v\r\n", i)
		}
		req.WriteString("\r\n")
		c.raw("GET", "/health", []byte(req.String())).want(t, 431, "too many headers")
	})
	t.Run("32 headers", func(t *testing.T) {
		var req strings.Builder
		req.WriteString("GET /health HTTP/1.1\r\n")
		for i := range 32 {
			fmt.Fprintf(&req, "X-H%d: v\r\n", i)
		}
		req.WriteString("\r\n")
		c.raw("GET", "/health", []byte(req.String())).want(t, 200, "")
	})
	t.Run("empty request", func(t *testing.T) {
		c.raw("", "", []byte("\r\n")).want(t, 400, "empty request")
	})
	c.root.WaitLog(5*time.Second, "ACTION=api-reject", "STATUS=413")
}

func TestAPINotFound(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	for _, tc := range []struct{ method, path, detail string }{
		{"GET", "/nope", "no route for GET /nope"},
		{"POST", "/health", "no route for POST /health"},
		{"DELETE", "/run", "no route for DELETE /run"},
		{"GET", "/status/ABC", "no route for GET /status/ABC"},
		{"GET", "/health?x=1", "no route for GET /health?x=1"},
		{"GET", "/status/deadbeef", "no result for reqid deadbeef"},
	} {
		c.call(tc.method, tc.path, "").want(t, 404, tc.detail)
	}
	// Upstream uppercases the method.
	c.raw("get", "/health", []byte("get /health HTTP/1.0\r\n\r\n")).want(t, 200, "")
}

func TestAPIRunLock(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	a := c.startAgent("agent-a")
	started, release := apiScratch(t, "started"), apiScratch(t, "release")
	body := `{"hosts":["` + a.target() + `"],"script":"hold","args":["` + started + `","` + release + `"]}`

	first := make(chan apiReply, 1)
	go func() {
		r, err := c.do("POST", "/run", body)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	apiWaitFile(t, started, 20*time.Second)

	r := c.call("POST", "/run", body).want(t, 409, "locked")
	if apiJSON(r.JSON["conflicts"]) != `["`+a.target()+`:hold"]` || r.JSON["code"] != 4.0 {
		t.Errorf("conflict answer: %s", r.Body)
	}
	// Another script on the same host, and a ping, are not held up.
	c.call("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"true"}`).want(t, 200, "")
	c.call("POST", "/ping", `{"hosts":["`+a.target()+`"]}`).want(t, 200, "")

	os.WriteFile(release, nil, 0o644)
	if r := <-first; r.Status != 200 || !strings.Contains(string(r.Body), `"stdout":"held\n"`) {
		t.Fatalf("first run: %d %s", r.Status, r.Body)
	}
	os.Remove(started)
	c.call("POST", "/run", body).want(t, 200, "") // the lock was released
}

func TestAPIStatusExpires(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	a := c.startAgent("agent-a")
	r := c.call("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"true"}`).want(t, 200, "")
	reqid := r.JSON["reqid"].(string)
	c.call("GET", "/status/"+reqid, "").want(t, 200, "")

	// The purge reads the file's age: make it 23 h, then 25 h old.
	file := c.root.Path("/var/lib/ctrl-exec/runs/" + reqid + ".json")
	os.Chtimes(file, time.Now(), time.Now().Add(-23*time.Hour))
	c.call("GET", "/status/"+reqid, "").want(t, 200, "")
	os.Chtimes(file, time.Now(), time.Now().Add(-25*time.Hour))
	c.call("GET", "/status/"+reqid, "").want(t, 404, "no result for reqid "+reqid)
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("expired result not deleted: %v", err)
	}

	// Corrupt and unreadable records.
	c.root.WriteFile("/var/lib/ctrl-exec/runs/abc.json", "[1,2]", 0o640)
	c.call("GET", "/status/abc", "").want(t, 500, "corrupt result record")
}

func TestAPIDiscoveryAndLiveSpec(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()

	// Empty registry: no hosts, no agent contacted, hosts enum null.
	c.call("GET", "/discovery", "").want(t, 200, "")
	r := c.call("GET", "/openapi-live.json", "").want(t, 200, "")
	for _, schema := range []string{"PingRequest", "RunRequest", "DiscoveryRequest"} {
		items := specDig(r.JSON, "components", "schemas", schema, "properties", "hosts", "items").(map[string]any)
		if v, ok := items["enum"]; !ok || v != nil {
			t.Errorf("%s hosts enum %v, want null", schema, v)
		}
	}
	if specDig(r.JSON, "components", "schemas", "RunRequest", "properties", "script", "enum") != nil {
		t.Errorf("script enum without agents")
	}

	// A newly registered agent appears, with its scripts.
	a := c.startAgent("localhost") // named as registered (agent identity check)
	c.register("localhost", "127.0.0.1", a.port)
	r = c.call("GET", "/openapi-live.json", "").want(t, 200, "")
	if got := apiJSON(specDig(r.JSON, "components", "schemas", "RunRequest", "properties", "hosts", "items", "enum")); got != `["localhost"]` {
		t.Errorf("hosts enum %s", got)
	}
	if got := apiJSON(specDig(r.JSON, "components", "schemas", "RunRequest", "properties", "script", "enum")); got != `["echo","fail","hold","true"]` {
		t.Errorf("script enum %s", got)
	}

	// A second agent (reached by IP) and a newly allowlisted script.
	b := c.startAgent("127.0.0.2")
	c.register("127.0.0.2", "127.0.0.2", b.port)
	b.addScript(t, "deploy")
	b.root.WaitLog(10*time.Second, "ACTION=") // the agent is logging: the reload has been seen
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = c.call("GET", "/openapi-live.json", "").want(t, 200, "")
		got := apiJSON(specDig(r.JSON, "components", "schemas", "RunRequest", "properties", "script", "enum"))
		if got == `["deploy","echo","fail","hold","true"]` {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("script enum %s never listed deploy", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := apiJSON(specDig(r.JSON, "components", "schemas", "PingRequest", "properties", "hosts", "items", "enum")); got != `["127.0.0.2","localhost"]` {
		t.Errorf("hosts enum %s", got)
	}
	r = c.call("GET", "/discovery", "").want(t, 200, "")
	hosts := r.JSON["hosts"].(map[string]any)
	if len(hosts) != 2 || hosts["localhost"] == nil || hosts["127.0.0.2"] == nil {
		t.Errorf("discovery over two registered agents: %s", r.Body)
	}

	// An agent that is down is reported, keyed by its address without port.
	b.proc.Stop()
	r = c.call("POST", "/discovery", `{}`).want(t, 200, "")
	if h := r.JSON["hosts"].(map[string]any)["127.0.0.2"].(map[string]any); h["status"] != "error" {
		t.Errorf("stopped agent: %s", r.Body)
	}
}

// 100 clients at once, while a few slow ones dribble half a request or say
// nothing: every fast client gets its full answer.
func TestAPIConcurrentClients(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	scripts := make([]string, 100)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("t-%d", i)
	}
	a := c.startAgent("agent-a", scripts...)

	var slow []net.Conn
	for i := range 6 {
		conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(c.port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if i%2 == 0 {
			conn.Write([]byte("POST /run HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"ho"))
		}
		slow = append(slow, conn)
	}

	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r apiReply
			var err error
			switch i % 3 {
			case 0:
				r, err = c.do("GET", "/health", "")
			case 1:
				r, err = c.do("POST", "/ping", `{"hosts":["`+a.target()+`"]}`)
			case 2:
				r, err = c.do("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"`+scripts[i]+`"}`)
			}
			switch {
			case err != nil:
				errs <- err
			case r.Status != 200:
				errs <- fmt.Errorf("client %d: %d %s", i, r.Status, r.Body)
			case i%3 == 2 && !strings.Contains(string(r.Body), `"exit":0`):
				errs <- fmt.Errorf("client %d: run did not succeed: %s", i, r.Body)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// The slow clients got no answer: still waiting, or, when the clients
	// above took longer than the head timeout, cut without one.
	for _, conn := range slow {
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, err := conn.Read(make([]byte, 1)); n != 0 {
			t.Errorf("slow client got an answer: n=%d err=%v", n, err)
		}
	}
}

func TestAPIGracefulStop(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	a := c.startAgent("agent-a")
	started, release := apiScratch(t, "started"), apiScratch(t, "release")
	done := make(chan apiReply, 1)
	go func() {
		r, err := c.do("POST", "/run", `{"hosts":["`+a.target()+`"],"script":"hold","args":["`+started+`","`+release+`"]}`)
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	apiWaitFile(t, started, 20*time.Second)
	c.proc.Cmd.Process.Signal(syscall.SIGTERM)
	// New connections are refused while the run finishes.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(c.port))
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.WriteFile(release, nil, 0o644)
	if r := <-done; r.Status != 200 {
		t.Errorf("in-flight run after SIGTERM: %d %s", r.Status, r.Body)
	}
	code, exited := c.proc.Wait(20 * time.Second)
	if !exited || code != 0 {
		t.Fatalf("exit %d (exited %v)", code, exited)
	}
	if !strings.HasSuffix(c.proc.Stdout(), "\nAPI server stopped.\n") {
		t.Errorf("stdout %q", c.proc.Stdout())
	}
	c.root.WaitLog(5*time.Second, "ACTION=api-stop")
	c.root.WaitLog(5*time.Second, "ACTION=api-start", "BIND=127.0.0.1", "PORT="+itoa(c.port), "TLS=no")
}

func TestAPIStartup(t *testing.T) {
	t.Parallel()
	t.Run("TLS", func(t *testing.T) {
		c := newAPIControl(t, apiOptions{allow: true})
		// Any certificate will do for the API; reuse the ctrl-exec one.
		conf := c.root.Path("/etc/ctrl-exec/ctrl-exec.conf")
		f, _ := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
		fmt.Fprintf(f, "api_cert = %s\napi_key = %s\n", c.root.Path("/etc/ctrl-exec/ctrl-exec.crt"), c.root.Path("/etc/ctrl-exec/ctrl-exec.key"))
		f.Close()
		p := c.root.Start("ctrl-exec-api", "--config", conf)
		p.WaitOutput(t, "ctrl-exec API listening on 127.0.0.1:"+itoa(c.port)+" (TLS)", 20*time.Second)
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12}}}
		resp, err := client.Get("https://127.0.0.1:" + itoa(c.port) + "/health")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if _, err := c.checked("GET", "/health", apiReply{Status: resp.StatusCode, Header: resp.Header, Body: body}); err != nil || resp.StatusCode != 200 {
			t.Errorf("over TLS: %d %s %v", resp.StatusCode, body, err)
		}
		// A client that offers only TLS 1.0-1.1: the server must refuse it.
		old := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		conn, err := tls.Dial("tcp", "127.0.0.1:"+itoa(c.port), old)
		if err == nil {
			conn.Close()
			t.Error("TLS 1.1 accepted")
		} else if !strings.Contains(err.Error(), "protocol version") {
			t.Errorf("TLS 1.1 refused for another reason: %v", err)
		}
	})

	fail := func(t *testing.T, confLines []string, args []string, wantErr string) {
		t.Helper()
		c := newAPIControl(t, apiOptions{allow: true, extraConf: confLines})
		if args == nil {
			args = []string{"--config", c.root.Path("/etc/ctrl-exec/ctrl-exec.conf")}
		}
		res := c.root.Run("ctrl-exec-api", args...)
		if res.Code != 255 || !strings.Contains(res.Stderr, wantErr) {
			t.Errorf("exit %d, stderr %q; want 255 and %q", res.Code, res.Stderr, wantErr)
		}
	}
	t.Run("TLS file missing", func(t *testing.T) {
		fail(t, []string{"api_cert = /nonexistent/api.crt", "api_key = /nonexistent/api.key"}, nil,
			"api_cert file '/nonexistent/api.crt' does not exist")
	})
	t.Run("TLS half configured", func(t *testing.T) {
		fail(t, []string{"api_cert = /nonexistent/api.crt"}, nil, "api_cert is set but api_key is not")
	})
	t.Run("config missing", func(t *testing.T) {
		fail(t, nil, []string{"--config", "/nonexistent.conf"}, "/nonexistent.conf")
	})
	t.Run("stray argument", func(t *testing.T) {
		fail(t, nil, []string{"serve"}, "Unexpected argument 'serve'")
	})
	t.Run("port taken", func(t *testing.T) {
		c := newAPIControl(t, apiOptions{allow: true})
		l, err := net.Listen("tcp", "127.0.0.1:"+itoa(c.port))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		res := c.root.Run("ctrl-exec-api", "--config", c.root.Path("/etc/ctrl-exec/ctrl-exec.conf"))
		if res.Code != 255 || !strings.Contains(res.Stderr, "Cannot start API server on 127.0.0.1:"+itoa(c.port)) {
			t.Errorf("exit %d, stderr %q", res.Code, res.Stderr)
		}
	})
}
