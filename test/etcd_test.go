package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
func BenchmarkAPIRunBackend(b *testing.B) {
	scripts := make([]string, 16)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("true-%d", i)
	}
	for _, backend := range []string{"files", "etcd"} {
		var c *apiControl
		if backend == "etcd" {
			cl := etcdtest.Start(b, 1)
			c = newAPIControl(b, apiOptions{allow: true, extraConf: []string{"state_backend = etcd",
				"etcd_endpoints = " + strings.Join(cl.Endpoints(), ",")}}).start()
		} else {
			c = newAPIControl(b, apiOptions{allow: true}).start()
		}
		a := c.startAgent("agent-a", scripts...)
		for _, clients := range []int{1, 16} {
			b.Run(fmt.Sprintf("backend=%s/clients=%d", backend, clients), func(b *testing.B) {
				apiBenchRequests(b, clients, func(client *http.Client, worker int) (*http.Response, error) {
					body := `{"hosts":["` + a.target() + `"],"script":"` + scripts[worker] + `"}`
					return client.Post(c.url("/run"), "application/json", strings.NewReader(body))
				})
			})
		}
	}
}
