package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
)

// etcdBurstRuns is how many runs the member-failure burst completes, and
// why that many: issue 13's 500 (about 45 s under -race on two cores, so
// the test is heavy: make test-etcd only), or CTRL_EXEC_ETCD_BURST.
func etcdBurstRuns() (int, string) {
	var n int
	if _, err := fmt.Sscan(os.Getenv("CTRL_EXEC_ETCD_BURST"), &n); err == nil && n > 0 {
		return n, "CTRL_EXEC_ETCD_BURST"
	}
	return 500, "issue 13's figure"
}

// excl is the burst's script. Every run appends its request context (one
// JSON line, with the reqid) to file $2, as "ran" when it holds directory
// $1 for its whole run and as "overlap" (exit 7) when another run holds it:
// the agent's own record of what it executed, independent of what the API
// answered.
const excl = `#!/bin/sh
ctx=$(cat)
if mkdir "$1" 2>/dev/null; then
	printf 'ran %s\n' "$ctx" >>"$2"
	sleep 0.02
	rmdir "$1"
else
	printf 'overlap %s\n' "$ctx" >>"$2"
	exit 7
fi
`

// A 3-member cluster loses its leader (SIGKILL) a third of the way through
// a burst of API runs of one host:script sent to two API nodes at once.
// The evidence is the agent's log of its executions and each member's own
// store (the killed one restarted), not the API's answers: no run lost its
// record (every execution has its finished record on every member, and
// the other API node serves it), no run ran twice or alongside another,
// every execution was answered 200 and every 200 was an execution, and
// the store holds nothing else (no phantom, no run left "running").
func TestEtcdMemberKilledDuringAPIBurst(t *testing.T) {
	t.Parallel()
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 3)
	nodes := etcdNodes(t, cl, 2)
	agent := nodes[0].startAgent("agent-a", "excl")
	// excl is this agent's true.sh (the test runs nothing else there).
	agent.root.WriteFile("/opt/ctrl-exec-scripts/true.sh", excl, 0o755)
	dir := t.TempDir()
	runLog := filepath.Join(dir, "runs.log")
	body := `{"hosts":["` + agent.target() + `"],"script":"excl","args":["` + filepath.Join(dir, "running") + `","` + runLog + `"]}`

	total, why := etcdBurstRuns()
	t.Logf("a burst of %d runs (%s)", total, why)
	const workers = 4
	var done, locked, unavailable, inFlight, killedAt atomic.Int32
	var killOnce sync.Once
	var mu sync.Mutex
	answered := map[string]int{} // reqid answered 200 -> node that ran it
	start := time.Now()
	deadline := start.Add(8 * time.Minute) // a hung burst fails, not the suite's timeout
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			node := w % 2
			for done.Load() < int32(total) && time.Now().Before(deadline) {
				if done.Load() >= int32(total/3) {
					// Killed aside, so every worker keeps sending meanwhile.
					killOnce.Do(func() {
						wg.Go(func() {
							at, busy := done.Load(), inFlight.Load()
							name := killLeader(t, cl)
							killedAt.Store(done.Load())
							t.Logf("killed the leader %s (SIGKILL) after %d runs, %.1f s into the burst, %d requests in flight",
								name, at, time.Since(start).Seconds(), busy)
						})
					})
				}
				inFlight.Add(1)
				r, err := nodes[node].do("POST", "/run", body)
				inFlight.Add(-1)
				switch {
				case err != nil:
					t.Errorf("node %d: %v", node, err)
					return
				case r.Status == 409:
					locked.Add(1)
					time.Sleep(5 * time.Millisecond) // back off from the holder
				case r.Status == 503:
					unavailable.Add(1)
				case r.Status == 200:
					results, _ := r.JSON["results"].([]any)
					if len(results) != 1 || results[0].(map[string]any)["exit"] != 0.0 {
						t.Errorf("node %d ran it badly: %s", node, r.Body)
					}
					mu.Lock()
					answered[r.JSON["reqid"].(string)] = node
					mu.Unlock()
					done.Add(1)
				default:
					t.Errorf("node %d: %d %s", node, r.Status, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d runs answered 200 in %.1f s (%d after the kill), %d answered 409, %d answered 503",
		len(answered), time.Since(start).Seconds(), len(answered)-int(killedAt.Load()), locked.Load(), unavailable.Load())
	if len(answered) < total {
		t.Fatalf("only %d of %d runs done before the deadline", len(answered), total)
	}

	// What the agent executed, by its own log.
	ran, overlaps := agentRuns(t, runLog)
	double := 0
	for reqid, n := range ran {
		if n != 1 {
			double++
			t.Errorf("%s ran %d times", reqid, n)
		}
		if _, ok := answered[reqid]; !ok {
			t.Errorf("%s ran but was not answered 200", reqid)
		}
	}
	for _, reqid := range overlaps {
		double++
		t.Errorf("%s ran while another run of the same host:script was running", reqid)
	}
	for reqid := range answered {
		if ran[reqid] == 0 {
			t.Errorf("%s was answered 200 but never ran", reqid)
		}
	}

	// Every execution's finished record on every member, the killed one
	// restarted; nothing else there.
	lost := map[string]bool{}
	for _, m := range cl.Members {
		if !m.Running() {
			m.Restart()
			m.WaitHealthy()
		}
	}
	for _, m := range cl.Members {
		recs := memberRuns(t, cl, m)
		for reqid := range ran {
			rec, ok := recs[reqid]
			switch {
			case !ok:
				lost[reqid] = true
				t.Errorf("member %s: no record of run %s", m.Name, reqid)
			case rec.Running || rec.Completed == 0 || len(rec.Results) != 1 || rec.Results[0].Exit != 0:
				lost[reqid] = true
				t.Errorf("member %s: run %s's record is not its finished run: %+v", m.Name, reqid, rec)
			}
		}
		for reqid := range recs {
			if ran[reqid] == 0 {
				t.Errorf("member %s holds a record of %s, which the agent did not run through", m.Name, reqid)
			}
		}
	}
	// And the API node that did not run it serves it.
	for reqid, node := range answered {
		r := nodes[1-node].call("GET", "/status/"+reqid, "")
		if r.Status != 200 {
			lost[reqid] = true
			t.Errorf("record %s (run through node %d) not served by the other: %d %s", reqid, node, r.Status, r.Body)
		} else if _, running := r.JSON["running"]; running {
			lost[reqid] = true
			t.Errorf("record %s still marked running", reqid)
		}
	}
	t.Logf("%d runs executed by the agent: %d lost records, %d double runs", len(ran), len(lost), double)
}

// agentRuns reads the excl script's log: how often each reqid ran, and
// the reqids refused because another run held the pair.
func agentRuns(t *testing.T, path string) (map[string]int, []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	var overlaps []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		what, ctxJSON, _ := strings.Cut(line, " ")
		var ctx struct {
			ReqID string `json:"reqid"`
		}
		if err := json.Unmarshal([]byte(ctxJSON), &ctx); err != nil || ctx.ReqID == "" {
			t.Fatalf("run log line %q: %v", line, err)
		}
		switch what {
		case "ran":
			ran[ctx.ReqID]++
		case "overlap":
			overlaps = append(overlaps, ctx.ReqID)
		default:
			t.Fatalf("run log line %q", line)
		}
	}
	return ran, overlaps
}

// storedRun is what a member holds of a run.
type storedRun struct {
	Running   bool  `json:"running"`
	Completed int64 `json:"completed"`
	Results   []struct {
		Exit int `json:"exit"`
	} `json:"results"`
}

// memberRuns reads the run records in member m's own store (serializable
// reads through m alone), once m has applied everything the cluster had
// committed when it was called.
func memberRuns(t *testing.T, cl *etcdtest.Cluster, m *etcdtest.Member) map[string]storedRun {
	t.Helper()
	open := func(endpoints []string) *clientv3.Client {
		c, err := etcdstate.Open(etcdstate.Config{Endpoints: endpoints, Prefix: "/e2e/"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.Raw()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	head, err := open(cl.Endpoints()).Get(ctx, "/e2e/runs/", clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	only := open([]string{m.ClientURL})
	for {
		resp, err := only.Get(ctx, "/e2e/runs/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err == nil && resp.Header.Revision >= head.Header.Revision {
			recs := map[string]storedRun{}
			for _, kv := range resp.Kvs {
				var r storedRun
				if err := json.Unmarshal(kv.Value, &r); err != nil {
					t.Errorf("member %s: %s: %v", m.Name, kv.Key, err)
				}
				recs[strings.TrimPrefix(string(kv.Key), "/e2e/runs/")] = r
			}
			return recs
		}
		if ctx.Err() != nil {
			t.Fatalf("member %s has not caught up with revision %d: %v", m.Name, head.Header.Revision, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// killLeader kills the cluster's current leader (SIGKILL) and names it.
func killLeader(t *testing.T, cl *etcdtest.Cluster) string {
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: cl.Endpoints(), Prefix: "/e2e/"})
	if err != nil {
		t.Error(err)
		return ""
	}
	defer c.Close()
	for _, m := range cl.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Raw().Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			m.Kill()
			return m.Name
		}
	}
	t.Log("no leader found; killing m0")
	cl.Members[0].Kill()
	return cl.Members[0].Name + " (not known to lead)"
}
