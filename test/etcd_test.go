package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
)

// etcdNodes is n API nodes sharing one etcd: node 0 is a full control host
// (CA, certificate, agent registry); the others are copies of its
// /etc/ctrl-exec (as the docs tell: copy the CA and certificates to each
// node), each in its own root with its own port.
func etcdNodes(t *testing.T, cl *etcdtest.Cluster, n int) []*apiControl {
	t.Helper()
	etcdConf := []string{"state_backend = etcd", "etcd_endpoints = " + strings.Join(cl.Endpoints(), ","), "etcd_prefix = /e2e/"}
	first := newAPIControl(t, apiOptions{allow: true, extraConf: etcdConf})
	nodes := []*apiControl{first}
	for i := 1; i < n; i++ {
		c := *first
		c.root = NewRoot(t, "control")
		c.port = FreePort(t)
		for _, f := range []string{"ca.crt", "ca.key", "ctrl-exec.crt", "ctrl-exec.key"} {
			data, err := os.ReadFile(first.root.Path("/etc/ctrl-exec/" + f))
			if err != nil {
				t.Fatal(err)
			}
			c.root.WriteFile("/etc/ctrl-exec/"+f, string(data), 0o600)
		}
		conf := strings.ReplaceAll(first.root.ReadFile("/etc/ctrl-exec/ctrl-exec.conf"), first.root.Dir, c.root.Dir)
		conf = strings.Replace(conf, "api_port = "+itoa(first.port), "api_port = "+itoa(c.port), 1)
		c.root.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", conf, 0o640)
		nodes = append(nodes, &c)
	}
	for _, c := range nodes {
		c.start()
	}
	return nodes
}

// holdArgs makes the agent's "hold" script touch started, then wait for release.
func holdArgs(t *testing.T) (started, release, body string) {
	dir := t.TempDir()
	started, release = filepath.Join(dir, "started"), filepath.Join(dir, "release")
	return started, release, `"args":["` + started + `","` + release + `"]`
}

func waitExists(t *testing.T, path string) {
	t.Helper()
	apiWaitFile(t, path, 20*time.Second)
}

// Two API nodes: a run through A blocks the same host:script on B (409
// code 4), is visible on B while running and after; racing requests to
// both nodes run exactly once.
func TestEtcdTwoAPINodes(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdNodes(t, cl, 2)
	a, b := nodes[0], nodes[1]
	agent := a.startAgent("agent-a")

	started, release, args := holdArgs(t)
	runBody := `{"hosts":["` + agent.target() + `"],"script":"hold",` + args + `}`
	answer := make(chan apiReply, 1)
	go func() {
		r, err := a.do("POST", "/run", runBody)
		if err != nil {
			t.Error(err)
		}
		answer <- r
	}()
	waitExists(t, started)

	r := b.call("POST", "/run", runBody).want(t, 409, "locked")
	if r.JSON["code"] != 4.0 || apiJSON(r.JSON["conflicts"]) != `["`+agent.target()+`:hold"]` {
		t.Errorf("409 from the other node: %s", r.Body)
	}
	// The run in progress, found through etcd, is readable on B.
	reqid := runningReqID(t, cl)
	r = b.call("GET", "/status/"+reqid, "").want(t, 200, "")
	if r.JSON["running"] != true || r.JSON["script"] != "hold" {
		t.Errorf("status of the running run on B: %s", r.Body)
	}
	os.WriteFile(release, nil, 0o644)
	done := <-answer
	if done.Status != 200 || done.JSON["reqid"] != reqid {
		t.Fatalf("run on A: %d %s (running record %s)", done.Status, done.Body, reqid)
	}
	r = b.call("GET", "/status/"+reqid, "").want(t, 200, "")
	if _, running := r.JSON["running"]; running || len(r.JSON["results"].([]any)) != 1 {
		t.Errorf("finished run on B: %s", r.Body)
	}
	// Nothing went to the files.
	for _, c := range nodes {
		if entries, _ := os.ReadDir(c.root.Path("/var/lib/ctrl-exec/runs")); len(entries) != 0 {
			t.Errorf("run files written with state_backend = etcd: %v", entries)
		}
	}

	// Racing: both nodes asked at once; the winner holds until the loser
	// has answered 409, so two winners would never answer at all.
	for round := 0; round < 5; round++ {
		_, release, args := holdArgs(t)
		body := `{"hosts":["` + agent.target() + `"],"script":"hold",` + args + `}`
		replies := make(chan apiReply, 2)
		var wg sync.WaitGroup
		for _, c := range nodes {
			wg.Go(func() {
				r, err := c.do("POST", "/run", body)
				if err != nil {
					t.Error(err)
				}
				if r.Status == 409 {
					os.WriteFile(release, nil, 0o644)
				}
				replies <- r
			})
		}
		wg.Wait()
		close(replies)
		var codes []int
		for r := range replies {
			codes = append(codes, r.Status)
		}
		if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
			t.Fatalf("round %d: answers %v, want one 200 and one 409", round, codes)
		}
	}
}

// runningReqID finds the one run record marked running in etcd.
func runningReqID(t *testing.T, cl *etcdtest.Cluster) string {
	t.Helper()
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: cl.Endpoints(), Prefix: "/e2e/"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Raw().Get(ctx, "/e2e/runs/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.Contains(string(kv.Value), `"running":true`) {
			return strings.TrimPrefix(string(kv.Key), "/e2e/runs/")
		}
	}
	t.Fatalf("no running record among %d", len(resp.Kvs))
	return ""
}

// A node killed with SIGKILL while holding a lock: the other node gets 409
// until the lease ends (LockTTL), then runs.
func TestEtcdNodeKilledHoldingLock(t *testing.T) {
	t.Parallel()
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 1)
	nodes := etcdNodes(t, cl, 2)
	a, b := nodes[0], nodes[1]
	agent := a.startAgent("agent-a")
	started, release1, args := holdArgs(t)
	defer os.WriteFile(release1, nil, 0o644)
	go a.do("POST", "/run", `{"hosts":["`+agent.target()+`"],"script":"hold",`+args+`}`)
	waitExists(t, started)
	a.proc.Cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	_, release, args2 := holdArgs(t)
	os.WriteFile(release, nil, 0o644)
	body := `{"hosts":["` + agent.target() + `"],"script":"hold",` + args2 + `}`
	b.call("POST", "/run", body).want(t, 409, "locked")
	for {
		r := b.call("POST", "/run", body)
		if r.Status == 200 {
			break
		}
		if r.Status != 409 || time.Since(killed) > (etcdstate.LockTTL+5)*time.Second {
			t.Fatalf("after %v: %d %s (TTL %d s)", time.Since(killed), r.Status, r.Body, etcdstate.LockTTL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// All of etcd down: 503 naming the endpoints, then recovery without a restart.
func TestEtcdDownThen503ThenRecovery(t *testing.T) {
	t.Parallel()
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 1)
	nodes := etcdNodes(t, cl, 1)
	a := nodes[0]
	agent := a.startAgent("agent-a")
	body := `{"hosts":["` + agent.target() + `"],"script":"echo","args":["x"]}`
	a.call("POST", "/run", body).want(t, 200, "")
	cl.Members[0].Kill()
	r := a.call("POST", "/run", body).want(t, 503, "")
	if !strings.Contains(string(r.Body), cl.Endpoints()[0]) {
		t.Errorf("503 does not name the endpoint: %s", r.Body)
	}
	a.call("GET", "/status/abc", "").want(t, 503, "")
	cl.Members[0].Restart()
	cl.Members[0].WaitHealthy()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := a.call("POST", "/run", body)
		if r.Status == 200 {
			break
		}
		if r.Status != 503 || time.Now().After(deadline) {
			t.Fatalf("no recovery: %d %s", r.Status, r.Body)
		}
	}
}

// BenchmarkAPIRunBackend compares POST /run throughput against one agent
// with the files and the etcd state backend (one etcd member on loopback);
// the etcd/files ratio of req/s is the figure (issue 13 target: >= 0.8).
// The machine's load drifts more than the difference measured, so the
// backends take turns within one run, in short rounds: files, etcd, etcd,
// files (a drift that is linear over the round cancels out), each half
// round the same number of requests. Each round gives one ratio; reported
// are their median (ratio) and quartiles (ratio-q1, ratio-q3), and each
// backend's median req/s. Each b.N is one round; at least benchRounds run.
func BenchmarkAPIRunBackend(b *testing.B) {
	const benchRounds = 21
	scripts := make([]string, 16)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("true-%d", i)
	}
	type backend struct {
		name string
		c    *apiControl
		a    *apiAgent
	}
	var backends []backend
	for _, name := range []string{"files", "etcd"} {
		var c *apiControl
		if name == "etcd" {
			cl := etcdtest.Start(b, 1)
			c = newAPIControl(b, apiOptions{allow: true, extraConf: []string{"state_backend = etcd",
				"etcd_endpoints = " + strings.Join(cl.Endpoints(), ",")}}).start()
		} else {
			c = newAPIControl(b, apiOptions{allow: true}).start()
		}
		backends = append(backends, backend{name, c, c.startAgent("agent-a", scripts...)})
	}
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			half := max(12*clients, 40) // requests per backend per half round
			timed := func(be backend) time.Duration {
				d, err := apiTimed(clients, half, func(client *http.Client, worker int) (*http.Response, error) {
					body := `{"hosts":["` + be.a.target() + `"],"script":"` + scripts[worker] + `"}`
					return client.Post(be.c.url("/run"), "application/json", strings.NewReader(body))
				})
				if err != nil {
					b.Fatalf("%s: %v", be.name, err)
				}
				return d
			}
			for _, be := range backends { // warm up: connections, leases, caches
				timed(be)
			}
			rounds := max(b.N, benchRounds)
			var files, etcd, ratios []float64
			b.ResetTimer()
			for range rounds {
				f1 := timed(backends[0])
				e := timed(backends[1]) + timed(backends[1])
				f := f1 + timed(backends[0])
				fr, er := float64(2*half)/f.Seconds(), float64(2*half)/e.Seconds()
				files, etcd, ratios = append(files, fr), append(etcd, er), append(ratios, er/fr)
			}
			b.StopTimer()
			q1, med, q3 := quartiles(ratios)
			b.ReportMetric(med, "ratio")
			b.ReportMetric(q1, "ratio-q1")
			b.ReportMetric(q3, "ratio-q3")
			_, fmed, _ := quartiles(files)
			_, emed, _ := quartiles(etcd)
			b.ReportMetric(fmed, "files-req/s")
			b.ReportMetric(emed, "etcd-req/s")
			b.Logf("%d rounds of 4 x %d requests; ratios %.2f", rounds, half, ratios)
		})
	}
}

// apiTimed sends n requests from clients workers at once and returns how
// long they took; every answer must be 200.
func apiTimed(clients, n int, send func(client *http.Client, worker int) (*http.Response, error)) (time.Duration, error) {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: clients}}
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	var failed error
	var once sync.Once
	start := time.Now()
	for w := range clients {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				resp, err := send(client, w)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					once.Do(func() { failed = err })
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start), failed
}

// quartiles are the lower quartile, median and upper quartile of xs.
func quartiles(xs []float64) (q1, median, q3 float64) {
	s := slices.Clone(xs)
	slices.Sort(s)
	at := func(p float64) float64 { // linear between the nearest ranks
		x := p * float64(len(s)-1)
		i := int(x)
		if i+1 >= len(s) {
			return s[len(s)-1]
		}
		return s[i] + (x-float64(i))*(s[i+1]-s[i])
	}
	return at(0.25), at(0.5), at(0.75)
}
