package api

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	ops "github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// Test names contain "API" so that `go test -run API` selects them.

func TestAPIBodyRules(t *testing.T) {
	type want struct {
		Object  string // requireObject detail
		Hosts   []string
		HostErr string
		Script  string
		ScrErr  string
		Args    []string
		ArgsErr string
		User    string
		Token   string
	}
	cases := []struct {
		name, body, auth string
		want             want
	}{
		{"empty", "", "", want{Object: msgBodyRequired, HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"not json", "nope", "", want{Object: msgInvalidJSON, HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"array", `["a"]`, "", want{Object: msgInvalidJSON, HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"bad utf8", "{\"hosts\":[\"\xff\"]}", "", want{Object: msgInvalidJSON, HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"full", `{"hosts":["a","b:7450"],"script":"back-up_1","args":["x y",""],"username":"alice","token":"t1"}`, "Bearer t2",
			want{Hosts: []string{"a", "b:7450"}, Script: "back-up_1", Args: []string{"x y", ""}, User: "alice", Token: "t1"}},
		{"bearer when body has no token", `{"hosts":["a"],"script":"s","token":null}`, "bEaReR  t2 ",
			want{Hosts: []string{"a"}, Script: "s", Args: []string{}, Token: "t2"}},
		{"not bearer", `{}`, "Basic abc", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"empty body token wins", `{"token":""}`, "Bearer t2", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"numbers read as Perl prints them", `{"username":42,"token":true}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}, User: "42", Token: "1"}},
		{"hosts empty", `{"hosts":[]}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"host number", `{"hosts":["a",1]}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"host null", `{"hosts":[null]}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"script unicode word", `{"script":"scrïpt"}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"script path", `{"script":"a/b"}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
		{"script zero", `{"script":"0"}`, "", want{HostErr: msgHosts, Script: "0", Args: []string{}}},
		{"args object", `{"args":{}}`, "", want{HostErr: msgHosts, ScrErr: msgScript, ArgsErr: msgArgs}},
		{"args number element", `{"args":["a",2]}`, "", want{HostErr: msgHosts, ScrErr: msgScript, ArgsErr: msgArgs}},
		{"args null", `{"args":null}`, "", want{HostErr: msgHosts, ScrErr: msgScript, Args: []string{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := parseBody([]byte(c.body), c.auth)
			var got want
			got.Object = b.requireObject()
			got.Hosts, got.HostErr = b.hosts(true)
			got.Script, got.ScrErr = b.script()
			got.Args, got.ArgsErr = b.args()
			got.User, got.Token = b.username, b.token
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("host limit", func(t *testing.T) {
		for n, wantErr := range map[int]string{500: "", 501: "too many hosts (max 500)"} {
			hosts := make([]string, n)
			for i := range hosts {
				hosts[i] = "h"
			}
			body, _ := json.Marshal(map[string]any{"hosts": hosts})
			got, err := parseBody(body, "").hosts(false)
			if err != wantErr || (err == "" && len(got) != n) {
				t.Errorf("%d hosts: %d, %q; want %q", n, len(got), err, wantErr)
			}
		}
	})
	t.Run("discovery without hosts", func(t *testing.T) {
		for _, body := range []string{"", "junk", `[]`, `{"hosts":"x"}`, `{"hosts":[]}`} {
			if got, err := parseBody([]byte(body), "").hosts(false); got != nil || err != "" {
				t.Errorf("%q: %v %q, want the registry (nil, no error)", body, got, err)
			}
		}
	})
}

func FuzzAPIParseBody(f *testing.F) {
	for _, seed := range []string{"", "{}", `{"hosts":["a"],"script":"s","args":["x"],"token":"t"}`, `[1]`,
		`{"hosts":[1,"a"],"args":{"a":1}}`, `{"token":{"x":[1,2]},"username":1.5e300}`, "{\"hosts\":[\"\xfe\"]}",
		`{"hosts":["a"],"k1":1,"hosts":["b"],"k2":2,"token":"t","token":null}`} {
		f.Add([]byte(seed), "Bearer tok")
	}
	f.Fuzz(func(t *testing.T, body []byte, auth string) {
		b := parseBody(body, auth)
		detail := b.requireObject()
		if detail == "" != b.isObject {
			t.Fatalf("requireObject %q but isObject %v", detail, b.isObject)
		}
		if hosts, bad := b.hosts(true); bad == "" && (len(hosts) == 0 || len(hosts) > dispatch.MaxHosts) {
			t.Fatalf("accepted %d hosts", len(hosts))
		}
		if s, bad := b.script(); bad == "" && !config.ValidScriptName(s) {
			t.Fatalf("accepted script %q", s)
		}
		if args, bad := b.args(); bad == "" && args == nil {
			t.Fatal("accepted args must not be nil (they encode as [])")
		}
		if !b.isObject && b.token != bearerToken(auth) {
			t.Fatalf("token %q from a body that is not an object", b.token)
		}
	})
}

func TestAPILiveEnums(t *testing.T) {
	t.Run("embedded document", func(t *testing.T) {
		spec, err := decodeSpec(embeddedSpec)
		if err != nil {
			t.Fatal(err)
		}
		addLiveEnums(spec, []string{"a", "b"}, []string{"deploy", "true"})
		stampVersion(spec, "x", 1700000000)
		for _, name := range []string{"PingRequest", "RunRequest", "DiscoveryRequest"} {
			got := dig(spec, "components", "schemas", name, "properties", "hosts", "items", "enum")
			if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
				t.Errorf("%s hosts enum (-want +got):\n%s", name, diff)
			}
		}
		if diff := cmp.Diff([]string{"deploy", "true"}, dig(spec, "components", "schemas", "RunRequest", "properties", "script", "enum")); diff != "" {
			t.Errorf("script enum (-want +got):\n%s", diff)
		}
		if got := dig(spec, "info", "version"); got != "1.0.0+1700000000" {
			t.Errorf("version %v", got)
		}
	})
	t.Run("no hosts, inline schemas, old stamp", func(t *testing.T) {
		spec, err := decodeSpec([]byte(`{"info":{"version":"0.2.8+99"},"paths":{"/ping":{"post":{"requestBody":{"content":{"application/json":{"schema":{"properties":{"hosts":{"type":"array"}}}}}}}},"/run":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Gone"}}}}}}},"x":1.50}`))
		if err != nil {
			t.Fatal(err)
		}
		addLiveEnums(spec, nil, []string{"s"})
		stampVersion(spec, "x", 5)
		want := `{"info":{"version":"0.2.8+5"},"paths":{"/ping":{"post":{"requestBody":{"content":{"application/json":{"schema":{"properties":{"hosts":{"items":{"enum":null},"type":"array"}}}}}}}},"/run":{"post":{"requestBody":{"content":{"application/json":{"schema":{"$ref":"#/components/schemas/Gone"}}}}}}},"x":1.50}`
		got, _ := json.Marshal(spec)
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("not an object", func(t *testing.T) {
		if _, err := decodeSpec([]byte(`null`)); err == nil {
			t.Error("null accepted as a document")
		}
	})
}

// fakeFleet stands in for the agents: it records calls and can hold them.
type fakeFleet struct {
	mu      sync.Mutex
	agents  []agent
	batches [][]string
	gate    chan struct{} // when set, Ping waits for it
	entered chan struct{}
}

func (f *fakeFleet) Run(ctx context.Context, req dispatch.RunRequest, opt ops.Options) (ops.Run, error) {
	return ops.Run{}, nil
}

func (f *fakeFleet) Ping(ctx context.Context, hosts []string, opt ops.Options) (ops.Ping, error) {
	if f.gate != nil {
		f.entered <- struct{}{}
		<-f.gate
	}
	return ops.Ping{}, nil
}

func (f *fakeFleet) StoreTags(string, dispatch.CapResult) error { return nil }

func (f *fakeFleet) PrefetchIdentities([]string) *agentid.Snapshot { return nil }

func (f *fakeFleet) Capabilities(ctx context.Context, hosts []string) ([]dispatch.CapResult, error) {
	f.mu.Lock()
	f.batches = append(f.batches, hosts)
	f.mu.Unlock()
	out := make([]dispatch.CapResult, len(hosts))
	for i, h := range hosts {
		out[i].Set("host", h)
		out[i].Set("status", "ok")
		out[i].Set("scripts", []map[string]any{{"name": "s" + itoa(i%3)}})
	}
	return out, nil
}

func (f *fakeFleet) Registered() ([]agent, error) { return f.agents, nil }

// startTestServer serves on a loopback port until the test ends.
func startTestServer(t *testing.T, f fleet, conf *config.Control) (url string, stop func()) {
	t.Helper()
	_, url, stop = startServer(t, f, conf)
	return url, stop
}

// startServer is startTestServer that also returns the Server.
func startServer(t *testing.T, f fleet, conf *config.Control) (srv *Server, url string, stop func()) {
	t.Helper()
	return startServerLimits(t, f, conf, connLimits{})
}

// startServerLimits is startServer with connection limits.
func startServerLimits(t *testing.T, f fleet, conf *config.Control, limits connLimits) (srv *Server, url string, stop func()) {
	t.Helper()
	return startServerDeps(t, serverDeps{conf: conf, fleet: f, limits: limits})
}

// startServerDeps serves with d, whose unset conf, paths, log, now and
// version fields get test values.
func startServerDeps(t *testing.T, d serverDeps) (srv *Server, url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if d.conf == nil {
		d.conf = &config.Control{}
	}
	if d.conf.APIAuthDefault == "" {
		d.conf.APIAuthDefault = "allow"
	}
	if d.paths.Root == "" {
		d.paths = paths.Paths{Root: t.TempDir()}
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.version == "" {
		d.version, d.commit, d.goVer = "test", "abc", "go1"
	}
	d.log = zerolog.Nop()
	srv = newServer(d)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return srv, "http://" + ln.Addr().String(), stop
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A registry larger than one engine call is asked in batches of 500.
func TestAPIDiscoveryBatchesLargeRegistry(t *testing.T) {
	f := &fakeFleet{}
	for i := range 1201 {
		f.agents = append(f.agents, agent{Hostname: "h" + itoa(i), Address: "h" + itoa(i) + ":7443"})
	}
	url, _ := startTestServer(t, f, &config.Control{})
	code, body := get(t, url+"/openapi-live.json")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	var sizes []int
	for _, b := range f.batches {
		sizes = append(sizes, len(b))
	}
	if diff := cmp.Diff([]int{500, 500, 201}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	if !strings.Contains(body, `"enum":["s0","s1","s2"]`) {
		t.Errorf("script enum missing from %.300s", body)
	}
	code, body = get(t, url+"/discovery")
	if code != 200 || strings.Count(body, `"status":"ok"`) != 1201 {
		t.Errorf("discovery: %d, %d hosts", code, strings.Count(body, `"status":"ok"`))
	}
}

// Stopping waits for a request in progress and answers it.
func TestAPIServeDrainsOnStop(t *testing.T) {
	f := &fakeFleet{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	srv, url, stop := startServer(t, f, &config.Control{})
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/ping", "application/json", strings.NewReader(`{"hosts":["a"]}`))
		if err != nil {
			t.Error(err)
			answered <- 0
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-f.entered
	// A client that never sends its request must not hold the stop up for
	// its read deadline.
	silent, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	for deadline := time.Now().Add(10 * time.Second); srv.pool.Reading() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server never accepted the silent client")
		}
	}
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Serve returned with a request in progress")
	case <-time.After(100 * time.Millisecond):
	}
	close(f.gate)
	if code := <-answered; code != 200 {
		t.Errorf("in-flight request answered %d", code)
	}
	select {
	case <-stopped:
	case <-time.After(defaultConnLimits().HeadTimeout / 2):
		t.Fatal("Serve still waits for a client that never sent a request")
	}
}

// A client that connects and says nothing does not delay the next one.
func TestAPISilentClientDoesNotBlock(t *testing.T) {
	url, _ := startTestServer(t, &fakeFleet{}, &config.Control{})
	for range 3 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	if code, body := get(t, url+"/health"); code != 200 || body != `{"ok":true,"version":"test","commit":"abc","go":"go1"}` {
		t.Errorf("%d %s", code, body)
	}
}

// With every api_max_inflight slot taken, an agent operation waits slotWait
// for one, then is answered 503 busy; what contacts no agent is served, and
// a freed slot serves again.
func TestAPIBusy(t *testing.T) {
	f := &fakeFleet{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	_, url, _ := startServerDeps(t, serverDeps{conf: &config.Control{APIMaxInflight: 1}, fleet: f, slotWait: 20 * time.Millisecond})
	post := func() (int, string) {
		resp, err := http.Post(url+"/ping", "application/json", strings.NewReader(`{"hosts":["a"]}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	held := make(chan int, 1)
	go func() {
		resp, err := http.Post(url+"/ping", "application/json", strings.NewReader(`{"hosts":["a"]}`))
		if err != nil {
			t.Error(err)
			held <- 0
			return
		}
		resp.Body.Close()
		held <- resp.StatusCode
	}()
	<-f.entered // the one slot is taken

	code, body := post()
	if want := `{"ok":false,"error":"busy","detail":"all 1 api_max_inflight slots are taken; retry later"}`; code != 503 || body != want {
		t.Errorf("full: %d %s, want 503 %s", code, body, want)
	}
	if code, body := get(t, url+"/health"); code != 200 {
		t.Errorf("/health while full: %d %s", code, body)
	}
	close(f.gate)
	if code := <-held; code != 200 {
		t.Errorf("the held ping: %d", code)
	}
	if code, body := post(); code != 200 {
		t.Errorf("after the slot came free: %d %s", code, body)
	}
}
