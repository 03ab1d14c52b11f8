package etcdstate_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

func open(t *testing.T, endpoints []string) *etcdstate.Client {
	t.Helper()
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: endpoints, Prefix: "/t/"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Two clients (two nodes) race for the same pair 200 times: each time
// exactly one wins, the other sees the conflict.
func TestLockRaceExactlyOneWins(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b := etcdstate.Locks{C: open(t, cl.Endpoints())}, etcdstate.Locks{C: open(t, cl.Endpoints())}
	for i := 0; i < 200; i++ {
		var wins atomic.Int32
		var held [2]*etcdstate.Held
		var wg sync.WaitGroup
		for j, l := range []etcdstate.Locks{a, b} {
			wg.Go(func() {
				h, conflicts, err := l.Acquire([]string{"web-01", "web-02"}, "deploy", zerolog.Nop())
				if err != nil {
					t.Error(err)
					return
				}
				if h != nil {
					wins.Add(1)
					held[j] = h
				} else if len(conflicts) == 0 {
					t.Error("no lock and no conflict")
				}
			})
		}
		wg.Wait()
		if n := wins.Load(); n != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", i, n)
		}
		held[0].Release()
		held[1].Release()
	}
	if held, err := a.ListHeld(); err != nil || len(held) != 0 {
		t.Fatalf("locks left after release: %v %v", held, err)
	}
}

func TestLockConflictsAndList(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b := etcdstate.Locks{C: open(t, cl.Endpoints())}, etcdstate.Locks{C: open(t, cl.Endpoints())}
	h, conflicts, err := a.Acquire([]string{"web-01:7443", "web-02"}, "deploy", zerolog.Nop())
	if err != nil || h == nil || conflicts != nil {
		t.Fatalf("acquire: %v %v %v", h, conflicts, err)
	}
	got, err := b.CheckAvailable([]string{"web-02", "web-03", "web-01:7443"}, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"web-02:deploy", "web-01:7443:deploy"}, got); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	// All or nothing: web-03 is free but not taken.
	h2, conflicts, err := b.Acquire([]string{"web-03", "web-02"}, "deploy", zerolog.Nop())
	if err != nil || h2 != nil || len(conflicts) != 1 {
		t.Fatalf("second acquire: %v %v %v", h2, conflicts, err)
	}
	held, err := b.ListHeld()
	if err != nil {
		t.Fatal(err)
	}
	want := []locks.Lock{{Host: "web-01:7443", Script: "deploy"}, {Host: "web-02", Script: "deploy"}}
	if diff := cmp.Diff(want, held); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	h.Release()
	h.Release()
	if got, _ := b.CheckAvailable([]string{"web-01:7443", "web-02", "web-03"}, "deploy"); len(got) != 0 {
		t.Errorf("after release: %v", got)
	}
}

// holderEnv makes the test binary a lock holder that waits to be killed.
const holderEnv = "CTRL_EXEC_TEST_LOCK_HOLDER"

func TestMain(m *testing.M) {
	if ep := os.Getenv(holderEnv); ep != "" {
		c, err := etcdstate.Open(etcdstate.Config{Endpoints: strings.Split(ep, ","), Prefix: "/t/"})
		if err == nil {
			var h *etcdstate.Held
			h, _, err = etcdstate.Locks{C: c}.Acquire([]string{"web-01"}, "deploy", zerolog.Nop())
			if err == nil && h != nil {
				fmt.Println("held")
				select {} // until SIGKILL
			}
		}
		fmt.Println("failed", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// A holder killed with SIGKILL loses its lease: the lock frees itself
// within LockTTL and another node takes it.
func TestLockFreedWhenHolderKilled(t *testing.T) {
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 1)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holderEnv+"="+strings.Join(cl.Endpoints(), ","))
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if !strings.HasPrefix(string(buf[:n]), "held") {
		cmd.Process.Kill()
		t.Fatalf("holder: %q", buf[:n])
	}
	l := etcdstate.Locks{C: open(t, cl.Endpoints())}
	if c, err := l.CheckAvailable([]string{"web-01"}, "deploy"); err != nil || len(c) != 1 {
		t.Fatalf("lock not held by the holder: %v %v", c, err)
	}
	killed := time.Now()
	cmd.Process.Kill()
	cmd.Wait()
	deadline := killed.Add((etcdstate.LockTTL + 5) * time.Second)
	for {
		h, _, err := l.Acquire([]string{"web-01"}, "deploy", zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		if h != nil {
			h.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lock still held %v after the holder died (TTL %d s)", time.Since(killed), etcdstate.LockTTL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestRunsVisibleAcrossNodes(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	now := func() time.Time { return time.Unix(1700000000, 0) }
	a := &etcdstate.Runs{C: open(t, cl.Endpoints()), Now: now}
	b := &etcdstate.Runs{C: open(t, cl.Endpoints()), Now: now}
	rec := runstore.Record{ReqID: "abc123", Script: "deploy", Hosts: []string{"web-01"}}
	if _, err := b.Load("abc123"); !errors.Is(err, runstore.ErrNoResult) {
		t.Fatalf("before: %v", err)
	}
	if err := a.Started(rec); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load("abc123")
	if err != nil {
		t.Fatal(err)
	}
	if got.Str("script") != "deploy" || !strings.Contains(string(mustRaw(t, got, "running")), "true") {
		t.Errorf("running record: %v", got.Keys())
	}
	var r dispatch.RunResult
	r.Set("host", "web-01")
	r.Set("exit", 0)
	rec.Results = []dispatch.RunResult{r}
	if err := a.Save(rec); err != nil {
		t.Fatal(err)
	}
	got, err = b.Load("abc123")
	if err != nil {
		t.Fatal(err)
	}
	if _, running := got.Raw("running"); running || got.Str("reqid") != "abc123" {
		t.Errorf("finished record: %v", got.Keys())
	}
	if c, _ := got.Raw("completed"); string(c) != "1700000000" {
		t.Errorf("completed = %s", c)
	}
	if _, err := b.Load("../x"); !errors.Is(err, runstore.ErrNoResult) {
		t.Errorf("bad reqid: %v", err)
	}
}

func mustRaw(t *testing.T, o wire.Object, k string) []byte {
	v, ok := o.Raw(k)
	if !ok {
		t.Fatalf("no %q in %v", k, o.Keys())
	}
	return v
}

// With every member down, requests fail with an error naming the
// endpoints; once etcd is back the same client works again.
func TestUnavailableThenRecovers(t *testing.T) {
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 1)
	c, err := etcdstate.Open(etcdstate.Config{Endpoints: cl.Endpoints(), Prefix: "/t/", RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l := etcdstate.Locks{C: c}
	runs := &etcdstate.Runs{C: c, Now: time.Now}
	cl.Members[0].Kill()
	_, _, err = l.Acquire([]string{"web-01"}, "deploy", zerolog.Nop())
	if !errors.Is(err, etcdstate.ErrUnavailable) || !strings.Contains(err.Error(), cl.Endpoints()[0]) {
		t.Fatalf("acquire with etcd down: %v", err)
	}
	if _, err := runs.Load("abc"); !errors.Is(err, etcdstate.ErrUnavailable) {
		t.Fatalf("load with etcd down: %v", err)
	}
	cl.Members[0].Restart()
	cl.Members[0].WaitHealthy()
	// The client reconnects by itself (backoff at most 2 s).
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, _, err := l.Acquire([]string{"web-01"}, "deploy", zerolog.Nop())
		if err == nil && h != nil {
			h.Release()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: %v %v", h, err)
		}
	}
	if err := runs.Save(runstore.Record{ReqID: "abc"}); err != nil {
		t.Fatal(err)
	}
}

// One member of three killed during a burst of Begin+Finish cycles from two
// nodes: no record lost, no pair held twice.
func TestMemberKilledDuringBurst(t *testing.T) {
	etcdtest.Heavy(t)
	cl := etcdtest.Start(t, 3)
	nodes := []*etcdstate.Client{open(t, cl.Endpoints()), open(t, cl.Endpoints())}
	const perNode = 100
	var inside [4]atomic.Int32
	var double atomic.Int32
	saved := make(chan string, 2*perNode)
	var wg sync.WaitGroup
	for n, c := range nodes {
		wg.Go(func() {
			l := etcdstate.Locks{C: c}
			runs := &etcdstate.Runs{C: c, Now: time.Now}
			for i := 0; i < perNode; i++ {
				if n == 0 && i == perNode/3 {
					cl.Members[0].Kill()
				}
				slot := i % len(inside)
				script := fmt.Sprintf("s%d", slot)
				reqid := fmt.Sprintf("%x%04x", n+10, i)
				rec := runstore.Record{ReqID: reqid, Script: script}
				h, _, err := runs.Begin(l, []string{"web-01"}, script, rec, zerolog.Nop())
				if err != nil {
					t.Errorf("node %d begin: %v", n, err)
					continue
				}
				if h == nil {
					continue // the other node has it: a 409
				}
				if inside[slot].Add(1) > 1 {
					double.Add(1)
				}
				inside[slot].Add(-1)
				if err := runs.Finish(h, rec); err != nil {
					t.Errorf("finish %s: %v", reqid, err)
				} else {
					saved <- reqid
				}
			}
		})
	}
	wg.Wait()
	close(saved)
	if d := double.Load(); d != 0 {
		t.Errorf("%d double runs", d)
	}
	check := &etcdstate.Runs{C: open(t, cl.Endpoints()[1:]), Now: time.Now}
	count := 0
	for reqid := range saved {
		count++
		if _, err := check.Load(reqid); err != nil {
			t.Errorf("record %s lost: %v", reqid, err)
		}
	}
	if count == 0 {
		t.Fatal("no run was saved")
	}
}

// Begin takes the locks and stores the running record together; the loser
// of a race stores nothing; Finish stores the result and frees the locks,
// Release (the run never ran) removes the record too.
func TestBeginFinish(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	now := func() time.Time { return time.Unix(1700000000, 0) }
	ca, cb := open(t, cl.Endpoints()), open(t, cl.Endpoints())
	a, b := &etcdstate.Runs{C: ca, Now: now}, &etcdstate.Runs{C: cb, Now: now}
	la, lb := etcdstate.Locks{C: ca}, etcdstate.Locks{C: cb}
	hosts := []string{"web-01", "web-02"}

	h, conflicts, err := a.Begin(la, hosts, "deploy", runstore.Record{ReqID: "aaa1", Script: "deploy", Hosts: hosts}, zerolog.Nop())
	if err != nil || h == nil || conflicts != nil {
		t.Fatalf("begin: %v %v %v", h, conflicts, err)
	}
	if got, err := b.Load("aaa1"); err != nil || string(mustRaw(t, got, "running")) != "true" {
		t.Fatalf("running record on the other node: %v %v", got.Keys(), err)
	}
	h2, conflicts, err := b.Begin(lb, []string{"web-03", "web-02"}, "deploy", runstore.Record{ReqID: "bbb1", Script: "deploy"}, zerolog.Nop())
	if err != nil || h2 != nil {
		t.Fatalf("second begin: %v %v", h2, err)
	}
	if diff := cmp.Diff([]string{"web-02:deploy"}, conflicts); diff != "" {
		t.Errorf("conflicts (-want +got):\n%s", diff)
	}
	if _, err := a.Load("bbb1"); !errors.Is(err, runstore.ErrNoResult) {
		t.Errorf("the loser stored a record: %v", err)
	}
	if c, _ := lb.CheckAvailable([]string{"web-03"}, "deploy"); len(c) != 0 {
		t.Errorf("the loser took web-03: %v", c)
	}

	var r dispatch.RunResult
	r.Set("host", "web-01")
	r.Set("exit", 0)
	if err := a.Finish(h, runstore.Record{ReqID: "aaa1", Script: "deploy", Hosts: hosts, Results: []dispatch.RunResult{r}}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load("aaa1")
	if err != nil {
		t.Fatal(err)
	}
	if _, running := got.Raw("running"); running || string(mustRaw(t, got, "completed")) != "1700000000" {
		t.Errorf("finished record: %s", mustRaw(t, got, "completed"))
	}
	if c, _ := lb.CheckAvailable(hosts, "deploy"); len(c) != 0 {
		t.Errorf("locks held after Finish: %v", c)
	}
	h.Release() // after Finish: nothing more
	if _, err := b.Load("aaa1"); err != nil {
		t.Errorf("Release after Finish removed the record: %v", err)
	}

	h3, _, err := b.Begin(lb, hosts, "deploy", runstore.Record{ReqID: "ccc1", Script: "deploy"}, zerolog.Nop())
	if err != nil || h3 == nil {
		t.Fatalf("third begin: %v %v", h3, err)
	}
	h3.Release()
	if _, err := a.Load("ccc1"); !errors.Is(err, runstore.ErrNoResult) {
		t.Errorf("record of a released run: %v", err)
	}
	if c, _ := la.CheckAvailable(hosts, "deploy"); len(c) != 0 {
		t.Errorf("locks held after Release: %v", c)
	}
}

// A run whose lock was lost meanwhile (lease expired, taken by another
// node) still stores its record at Finish and leaves the other's lock.
func TestFinishAfterLockLost(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	ca, cb := open(t, cl.Endpoints()), open(t, cl.Endpoints())
	a := &etcdstate.Runs{C: ca, Now: time.Now}
	hosts := []string{"web-01", "web-02"}
	h, _, err := a.Begin(etcdstate.Locks{C: ca}, hosts, "deploy", runstore.Record{ReqID: "ddd1", Script: "deploy"}, zerolog.Nop())
	if err != nil || h == nil {
		t.Fatalf("begin: %v %v", h, err)
	}
	// What a lease expiry does to web-02's key, then another node takes it.
	ctx := t.Context()
	if _, err := cb.Raw().Delete(ctx, "/t/locks/"+locks.FileName("web-02", "deploy")); err != nil {
		t.Fatal(err)
	}
	lb := etcdstate.Locks{C: cb}
	other, _, err := lb.Acquire([]string{"web-02"}, "deploy", zerolog.Nop())
	if err != nil || other == nil {
		t.Fatalf("other node: %v %v", other, err)
	}
	defer other.Release()
	if err := a.Finish(h, runstore.Record{ReqID: "ddd1", Script: "deploy"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Load("ddd1"); err != nil {
		t.Errorf("record not stored: %v", err)
	}
	held, err := lb.ListHeld()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]locks.Lock{{Host: "web-02", Script: "deploy"}}, held); diff != "" {
		t.Errorf("held after Finish (-want +got):\n%s", diff)
	}
}
