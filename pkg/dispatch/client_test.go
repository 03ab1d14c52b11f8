package dispatch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

const testReqID = "a3f9b2c10001dead"

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := wire.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Each kind of agent reply becomes the §10.4 object, byte for byte.
func TestRunResultObjects(t *testing.T) {
	p := sharedPKI(t)
	tests := []struct {
		name    string
		handler agentHandler
		timeout time.Duration
		want    string // with PORT for the agent's port
	}{
		{
			name:    "agent reply passes through with unknown fields",
			handler: reply(200, `{"script":"hello","exit":0,"stdout":"hi\n","stderr":"","reqid":"fromagent","extra":{"a":[1,2]},"html":"<b>&"}`),
			want:    `{"script":"hello","exit":0,"stdout":"hi\n","stderr":"","reqid":"fromagent","extra":{"a":[1,2]},"html":"<b>&","host":"127.0.0.1","rtt":"0ms"}`,
		},
		{
			name:    "agent denial without reqid gets ours, null host is filled, rtt replaced",
			handler: reply(200, `{"host":null,"exit":-1,"error":"invalid JSON","rtt":"9ms"}`),
			want:    `{"host":"127.0.0.1","exit":-1,"error":"invalid JSON","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "agent-reported host is kept",
			handler: reply(200, `{"host":"web-01","script":"hello","exit":3,"stdout":"","stderr":"x","reqid":"r"}`),
			want:    `{"host":"web-01","script":"hello","exit":3,"stdout":"","stderr":"x","reqid":"r","rtt":"0ms"}`,
		},
		{
			name:    "reply not JSON",
			handler: reply(200, `<html>`),
			want:    `{"host":"127.0.0.1","exit":-1,"error":"invalid JSON response","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "reply JSON but not an object",
			handler: reply(200, `[1,2]`),
			want:    `{"host":"127.0.0.1","exit":-1,"error":"invalid JSON response","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "403 with a JSON error",
			handler: reply(403, `{"error":"serial mismatch","status":"forbidden"}`),
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"forbidden: serial mismatch","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "403 without JSON shows the status line",
			handler: reply(403, `nope`),
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"forbidden: 403 Error","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "413",
			handler: reply(413, `{"error":"request too large"}`),
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"request too large","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "500",
			handler: reply(500, `{"error":"boom"}`),
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"500 Error","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "404",
			handler: reply(404, `{"error":"not found"}`),
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"404 Not Found","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "hang past the deadline",
			handler: hang,
			timeout: 300 * time.Millisecond,
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"read timeout after 0.3s","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
		{
			name:    "closes without answering",
			handler: func(net.Conn, *wire.Request) {},
			want:    `{"host":"127.0.0.1","script":"hello","exit":-1,"error":"500 Server closed connection without sending any data back","rtt":"0ms","reqid":"` + testReqID + `"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, p.Agent, tt.handler)
			c, _ := testClient(t)
			if tt.timeout > 0 {
				c.Timeout = tt.timeout
			}
			res, err := c.Run(context.Background(), RunRequest{Hosts: []string{a.Host}, Script: "hello", ReqID: testReqID})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, mustJSON(t, res[0])); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

// Failures before any HTTP status: refused connections and an agent whose
// certificate does not chain to our CA.
func TestRunConnectFailures(t *testing.T) {
	p := sharedPKI(t)
	stranger := startAgent(t, p.StrangerAgent, reply(200, `{"exit":0}`))
	port := closedPort(t)
	c, logs := testClient(t)
	res, err := c.Run(context.Background(), RunRequest{
		Hosts: []string{"127.0.0.1:" + port, stranger.Host, "no-such-host.invalid:7443"}, Script: "hello", ReqID: testReqID,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"500 Can't connect to 127.0.0.1:" + port + " (Connection refused)",
		"500 Can't connect to 127.0.0.1:" + stranger.Port + " (SSL connect attempt failed: certificate verify failed: ",
		"500 Can't connect to no-such-host.invalid:7443 (",
	}
	for i, r := range res {
		if got := r.Str("error"); !strings.HasPrefix(got, want[i]) {
			t.Errorf("result %d error = %q, want prefix %q", i, got, want[i])
		}
		if !r.Failed() {
			t.Errorf("result %d not failed", i)
		}
	}
	wantLine := "ACTION=run ERROR=\"500 Can't connect to 127.0.0.1:" + port + " (Connection refused)\" REQID=" + testReqID + " RTT=0ms SCRIPT=hello TARGET=127.0.0.1:" + port
	if !strings.Contains(logs.String(), wantLine) {
		t.Errorf("log lacks %q:\n%s", wantLine, logs)
	}
}

// What the agent receives, and what the log says (never the token).
func TestRunRequestAndLog(t *testing.T) {
	p := sharedPKI(t)
	a := startAgent(t, p.Agent, reply(200, `{"script":"hello","exit":0,"stdout":"","stderr":"","reqid":"`+testReqID+`"}`))
	c, logs := testClient(t)
	_, err := c.Run(context.Background(), RunRequest{
		Hosts: []string{a.Host}, Script: "hello", Args: []string{"--db", "my app"},
		Username: "alice", Token: "s3cret-token", ReqID: testReqID,
	})
	if err != nil {
		t.Fatal(err)
	}
	reqs := a.Requests()
	if len(reqs) != 1 {
		t.Fatalf("agent saw %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != "POST" || r.Path != "/run" || r.Header["content-type"] != "application/json" {
		t.Errorf("request %s %s %q", r.Method, r.Path, r.Header)
	}
	wantBody := `{"script":"hello","args":["--db","my app"],"reqid":"` + testReqID + `","username":"alice","token":"s3cret-token"}`
	if diff := cmp.Diff(wantBody, string(r.Body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	log := logs.String()
	for _, want := range []string{
		"ACTION=dispatch HOSTS=" + a.Host + " REQID=" + testReqID + " SCRIPT=hello",
		"ACTION=run EXIT=0 REQID=" + testReqID + " RTT=0ms SCRIPT=hello TARGET=" + a.Host,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "s3cret") {
		t.Errorf("token in log:\n%s", log)
	}
}

// Results come back in request order whatever order the agents answer in.
func TestResultsInRequestOrder(t *testing.T) {
	p := sharedPKI(t)
	const n = 12
	var hosts []string
	for i := 0; i < n; i++ {
		delay := time.Duration(n-i) * 15 * time.Millisecond // the first host answers last
		a := startAgent(t, p.Agent, func(conn net.Conn, _ *wire.Request) {
			time.Sleep(delay)
			wire.WriteResponse(conn, 200, []byte(fmt.Sprintf(`{"exit":0,"n":%d}`, i)), wire.AgentPhrase)
		})
		hosts = append(hosts, a.Host)
	}
	c, _ := testClient(t)
	var progress []string
	c.Progress = func(done, failed, total int) {
		progress = append(progress, fmt.Sprintf("%d/%d:%d", done, total, failed))
	}
	res, err := c.Run(context.Background(), RunRequest{Hosts: hosts, Script: "s"})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if got := r.Str("n"); got != fmt.Sprint(i) {
			t.Errorf("result %d came from agent %s", i, got)
		}
		if r.Target.Arg != hosts[i] {
			t.Errorf("result %d target %q, want %q", i, r.Target.Arg, hosts[i])
		}
	}
	if len(progress) != n || progress[n-1] != fmt.Sprintf("%d/%d:0", n, n) {
		t.Errorf("progress = %v", progress)
	}
}

// No more than Concurrency requests are open at once, and all still finish.
func TestConcurrencyBound(t *testing.T) {
	p := sharedPKI(t)
	var active, peak atomic.Int32
	a := startAgent(t, p.Agent, func(conn net.Conn, _ *wire.Request) {
		n := active.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		active.Add(-1) // before answering, so the client's slot is still taken
		wire.WriteResponse(conn, 200, []byte(`{"status":"ok","host":"a"}`), wire.AgentPhrase)
	})
	c, _ := testClient(t)
	c.Concurrency = 3
	hosts := make([]string, 10)
	for i := range hosts {
		hosts[i] = a.Host
	}
	res, err := c.Ping(context.Background(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if !r.OK() {
			t.Errorf("result %d: %s", i, mustJSON(t, r))
		}
	}
	if got := peak.Load(); got > 3 || got < 1 {
		t.Errorf("peak concurrent requests %d, want 1..3", got)
	}
}

// More than 500 hosts fails before any connection; exactly 500 is fine.
func TestHostCeiling(t *testing.T) {
	var accepted atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conn.Close()
		}
	}()
	many := func(n int, host string) []string {
		hosts := make([]string, n)
		for i := range hosts {
			hosts[i] = host
		}
		return hosts
	}
	c, _ := testClient(t)
	ctx := context.Background()
	if _, err := c.Run(ctx, RunRequest{Hosts: many(501, ln.Addr().String()), Script: "s"}); !errors.Is(err, ErrTooManyHosts) || err.Error() != "too many hosts (max 500)" {
		t.Errorf("Run 501: %v", err)
	}
	if _, err := c.Ping(ctx, many(501, ln.Addr().String())); !errors.Is(err, ErrTooManyHosts) {
		t.Errorf("Ping 501: %v", err)
	}
	if _, err := c.Capabilities(ctx, many(501, ln.Addr().String())); !errors.Is(err, ErrTooManyHosts) {
		t.Errorf("Capabilities 501: %v", err)
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("%d connections made for a refused call", n)
	}

	port := closedPort(t)
	res, err := c.Ping(ctx, many(500, "127.0.0.1:"+port))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 500 {
		t.Fatalf("%d results for 500 hosts", len(res))
	}
	for i, r := range res {
		if r.OK() || !strings.Contains(r.Str("error"), "Connection refused") {
			t.Fatalf("result %d: %s", i, mustJSON(t, r))
		}
	}
}

func TestPingResultObjects(t *testing.T) {
	p := sharedPKI(t)
	tests := []struct {
		name    string
		handler agentHandler
		timeout time.Duration
		want    string
	}{
		{
			name:    "ok keeps the agent's host and fields",
			handler: reply(200, `{"status":"ok","host":"agent-01.example","version":"0.8.4","expiry":"Jun  7 10:00:00 2028 GMT","reqid":"r","new":true}`),
			want:    `{"status":"ok","host":"agent-01.example","version":"0.8.4","expiry":"Jun  7 10:00:00 2028 GMT","reqid":"r","new":true,"rtt":"0ms"}`,
		},
		{
			name:    "403",
			handler: reply(403, `{"error":"serial mismatch","status":"forbidden"}`),
			want:    `{"host":"127.0.0.1","status":"error","error":"forbidden: serial mismatch","rtt":"0ms"}`,
		},
		{
			name:    "not JSON",
			handler: reply(200, `ok`),
			want:    `{"host":"127.0.0.1","status":"error","error":"invalid JSON","rtt":"0ms"}`,
		},
		{
			name:    "timeout is not rewritten for ping",
			handler: hang,
			timeout: 1500 * time.Millisecond, // long enough that the handshake is over
			want:    `{"host":"127.0.0.1","status":"error","error":"500 read timeout","rtt":"0ms"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, p.Agent, tt.handler)
			c, _ := testClient(t)
			if tt.timeout > 0 {
				c.Timeout = tt.timeout
			}
			var hooked []PingResult
			c.AfterPing = func(_ context.Context, rs []PingResult) { hooked = rs }
			res, err := c.Ping(context.Background(), []string{a.Host})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, mustJSON(t, res[0])); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if len(hooked) != 1 || hooked[0].Target.Port != a.Port {
				t.Errorf("AfterPing got %v", hooked)
			}
			if body := string(a.Requests()[0].Body); !strings.HasPrefix(body, `{"reqid":"`) {
				t.Errorf("ping body %s", body)
			}
		})
	}
}

// TestPingWantTags: with WantTags the request asks for tags, a Go agent's
// "tags" lands in PingResult.Tags and never in the result object; a reply
// without tags (a Perl agent) gives none. Without WantTags, nothing asks.
func TestPingWantTags(t *testing.T) {
	p := sharedPKI(t)
	goAgent := startAgent(t, p.Agent, reply(200, `{"status":"ok","host":"a","tags":{"role":"web"},"reqid":"r"}`))
	perlAgent := startAgent(t, p.Agent, reply(200, `{"status":"ok","host":"b","reqid":"r"}`))
	c, _ := testClient(t)
	c.WantTags = true
	res, err := c.PingReqID(context.Background(), []string{goAgent.Host, perlAgent.Host}, "r")
	if err != nil {
		t.Fatal(err)
	}
	if got := mustJSON(t, res[0]); got != `{"status":"ok","host":"a","reqid":"r","rtt":"0ms"}` {
		t.Errorf("result with tags taken out = %s", got)
	}
	if diff := cmp.Diff(map[string]string{"role": "web"}, res[0].Tags); diff != "" {
		t.Errorf("tags (-want +got):\n%s", diff)
	}
	if res[1].Tags != nil {
		t.Errorf("tags from a reply without them: %v", res[1].Tags)
	}
	if body := string(goAgent.Requests()[0].Body); body != `{"reqid":"r","want_tags":1}` {
		t.Errorf("ping body %s", body)
	}
	c.WantTags = false
	if _, err := c.PingReqID(context.Background(), []string{goAgent.Host}, "r"); err != nil {
		t.Fatal(err)
	}
	if body := string(goAgent.Requests()[1].Body); body != `{"reqid":"r"}` {
		t.Errorf("ping body without WantTags %s", body)
	}
}

func TestCapabilitiesResultObjects(t *testing.T) {
	p := sharedPKI(t)
	tests := []struct {
		name    string
		handler agentHandler
		want    string
		log     string
	}{
		{
			name:    "ok",
			handler: reply(200, `{"status":"ok","host":"a1","version":"0.8.4","scripts":[{"name":"x","path":"/x","executable":true}],"tags":{}}`),
			want:    `{"status":"ok","host":"a1","version":"0.8.4","scripts":[{"name":"x","path":"/x","executable":true}],"tags":{},"rtt":"0ms"}`,
			log:     "ACTION=capabilities RTT=0ms SCRIPTS=1 TARGET=",
		},
		{
			name:    "403 is the plain status line",
			handler: reply(403, `{"error":"forbidden"}`),
			want:    `{"host":"127.0.0.1","status":"error","error":"403 Error","rtt":"0ms"}`,
			log:     `ACTION=capabilities ERROR="403 Error" RTT=0ms TARGET=`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, p.Agent, tt.handler)
			c, logs := testClient(t)
			res, err := c.Capabilities(context.Background(), []string{a.Host})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, mustJSON(t, res[0])); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
			if r := a.Requests()[0]; r.Method != "GET" || r.Path != "/capabilities" {
				t.Errorf("request %s %s", r.Method, r.Path)
			}
			if !strings.Contains(logs.String(), tt.log+a.Host) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs)
			}
		})
	}
}

// Do returns HTTP statuses as replies and only transport failures as errors.
func TestDo(t *testing.T) {
	p := sharedPKI(t)
	a := startAgent(t, p.Agent, reply(404, `{"error":"not found"}`))
	c, _ := testClient(t)
	rep, err := c.Do(context.Background(), c.Target(a.Host), "POST", "/renew", []byte(`{"reqid":"r"}`))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%d|%s|%s|%v", rep.Status, rep.StatusLine, rep.Body, rep.OK())
	if want := `404|404 Not Found|{"error":"not found"}|false`; got != want {
		t.Errorf("reply %s, want %s", got, want)
	}

	_, err = c.Do(context.Background(), c.Target("127.0.0.1:"+closedPort(t)), "POST", "/renew", nil)
	var te *TransportError
	if !errors.As(err, &te) || te.Phase != PhaseConnect || te.Timeout {
		t.Errorf("refused: %#v", err)
	}
}

// A cancelled context ends hanging exchanges without waiting for the deadline.
func TestCancel(t *testing.T) {
	p := sharedPKI(t)
	a := startAgent(t, p.Agent, hang)
	c, _ := testClient(t)
	c.Timeout = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	var res []RunResult
	go func() {
		defer wg.Done()
		res, _ = c.Run(ctx, RunRequest{Hosts: []string{a.Host, a.Host}, Script: "s"})
	}()
	for len(a.Requests()) < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	for _, r := range res {
		if !r.Failed() || strings.Contains(r.Str("error"), "read timeout") {
			t.Errorf("cancelled result %s", mustJSON(t, r))
		}
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		arg  string
		port int
		want Target
		str  string
	}{
		{"myhost", 0, Target{Arg: "myhost", Host: "myhost", Port: "7443"}, "myhost:7443"},
		{"myhost", 9000, Target{Arg: "myhost", Host: "myhost", Port: "9000"}, "myhost:9000"},
		{"myhost:9000", 7443, Target{Arg: "myhost:9000", Host: "myhost", Port: "9000"}, "myhost:9000"},
		{"192.168.1.1:8080", 7443, Target{Arg: "192.168.1.1:8080", Host: "192.168.1.1", Port: "8080"}, "192.168.1.1:8080"},
		{"fe80::1", 7443, Target{Arg: "fe80::1", Host: "fe80:", Port: "1"}, "fe80::1"}, // upstream's greedy regex
		{"[fe80::1]", 7443, Target{Arg: "[fe80::1]", Host: "fe80::1", Port: "7443"}, "[fe80::1]:7443"},
		{"[::1]:9443", 7443, Target{Arg: "[::1]:9443", Host: "::1", Port: "9443"}, "[::1]:9443"},
		{"[::1]x", 7443, Target{Arg: "[::1]x", Host: "[::1]x", Port: "7443"}, "[::1]x:7443"},
		{"a:b:12", 7443, Target{Arg: "a:b:12", Host: "a:b", Port: "12"}, "a:b:12"},
		{":7443", 7443, Target{Arg: ":7443", Host: ":7443", Port: "7443"}, ":7443:7443"},
		{"host:", 7443, Target{Arg: "host:", Host: "host:", Port: "7443"}, "host::7443"},
		{"host:07443", 7443, Target{Arg: "host:07443", Host: "host", Port: "07443"}, "host:07443"},
	}
	for _, tt := range tests {
		got := ParseTarget(tt.arg, tt.port)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseTarget(%q) (-want +got):\n%s", tt.arg, diff)
		}
		if got.String() != tt.str {
			t.Errorf("ParseTarget(%q).String() = %q, want %q", tt.arg, got.String(), tt.str)
		}
	}
}

func TestFormatRTT(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0ms", 87 * time.Millisecond: "87ms", 1499 * time.Microsecond: "1ms", 1501 * time.Microsecond: "2ms", 2 * time.Second: "2000ms",
	} {
		if got := formatRTT(d); got != want {
			t.Errorf("formatRTT(%v) = %q, want %q", d, got, want)
		}
	}
}
