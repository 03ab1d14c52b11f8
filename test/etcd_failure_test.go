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

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
)

// etcdBurstRuns is how many runs the member-failure burst completes: 160
// keeps it near 20 s under -race on two cores (the issue asks for 500;
// CTRL_EXEC_ETCD_BURST=500 runs that many).
func etcdBurstRuns() int {
	var n int
	if _, err := fmt.Sscan(os.Getenv("CTRL_EXEC_ETCD_BURST"), &n); err == nil && n > 0 {
		return n
	}
	return 160
}

// A 3-member cluster loses its leader (SIGKILL) a third of the way through
// a burst of API runs of one host:script sent to two API nodes at once:
// every run answered 200 has its record, readable from the other node;
// no run ran twice or alongside another (the agent's script refuses to
// overlap, and logs each run it did: exactly the 200s).
func TestEtcdMemberKilledDuringAPIBurst(t *testing.T) {
	t.Parallel()
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 3)
	nodes := etcdNodes(t, cl, 2)
	// excl holds directory $1 while it runs (exit 7 if another run holds
	// it) and appends the request's context, one line, to file $2. It is
	// this agent's true.sh (the test runs nothing else there).
	agent := nodes[0].startAgent("agent-a", "excl")
	agent.root.WriteFile("/opt/ctrl-exec-scripts/true.sh",
		"#!/bin/sh\nmkdir \"$1\" 2>/dev/null || exit 7\nprintf '%s\\n' \"$(cat)\" >>\"$2\"\nsleep 0.02\nrmdir \"$1\"\n", 0o755)
	dir := t.TempDir()
	runLog := filepath.Join(dir, "runs.log")
	body := `{"hosts":["` + agent.target() + `"],"script":"excl","args":["` + filepath.Join(dir, "running") + `","` + runLog + `"]}`

	total := etcdBurstRuns()
	const workers = 4
	var done, locked, unavailable atomic.Int32
	var killOnce sync.Once
	var mu sync.Mutex
	reqids := map[string]int{} // reqid -> node that ran it
	deadline := time.Now().Add(3 * time.Minute)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			node := w % 2
			for done.Load() < int32(total) && time.Now().Before(deadline) {
				if done.Load() >= int32(total/3) {
					killOnce.Do(func() { killLeader(t, cl) })
				}
				r, err := nodes[node].do("POST", "/run", body)
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
					reqids[r.JSON["reqid"].(string)] = node
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
	t.Logf("%d runs, %d answered 409, %d answered 503", len(reqids), locked.Load(), unavailable.Load())
	if len(reqids) < total {
		t.Fatalf("only %d of %d runs done before the deadline", len(reqids), total)
	}

	// Every 200 has its finished record, read through the other node.
	for reqid, node := range reqids {
		r := nodes[1-node].call("GET", "/status/"+reqid, "")
		if r.Status != 200 {
			t.Errorf("record %s (run through node %d) lost: %d %s", reqid, node, r.Status, r.Body)
		} else if _, running := r.JSON["running"]; running {
			t.Errorf("record %s still marked running", reqid)
		}
	}
	// The agent ran exactly the runs answered 200, each once.
	data, err := os.ReadFile(runLog)
	if err != nil {
		t.Fatal(err)
	}
	ran := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var ctx struct {
			ReqID string `json:"reqid"`
		}
		if err := json.Unmarshal([]byte(line), &ctx); err != nil || ctx.ReqID == "" {
			t.Fatalf("run log line %q: %v", line, err)
		}
		ran[ctx.ReqID]++
	}
	for reqid, n := range ran {
		if n != 1 {
			t.Errorf("%s ran %d times", reqid, n)
		}
		if _, ok := reqids[reqid]; !ok {
			t.Errorf("%s ran but was not answered 200", reqid)
		}
	}
	if len(ran) != len(reqids) {
		t.Errorf("the agent ran %d runs, %d were answered 200", len(ran), len(reqids))
	}
}

// killLeader kills the cluster's current leader (SIGKILL).
func killLeader(t *testing.T, cl *etcdtest.Cluster) {
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: cl.Endpoints(), Prefix: "/e2e/"})
	if err != nil {
		t.Error(err)
		return
	}
	defer c.Close()
	for _, m := range cl.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Raw().Status(ctx, m.ClientURL)
		cancel()
		if err == nil && st.Header.MemberId == st.Leader {
			t.Logf("killing the leader %s", m.Name)
			m.Kill()
			return
		}
	}
	t.Log("no leader found; killing m0")
	cl.Members[0].Kill()
}
