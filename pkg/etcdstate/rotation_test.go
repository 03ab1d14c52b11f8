package etcdstate_test

import (
	"context"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
)

// Two nodes replace the rotation state from the same revision: the first
// wins, the second is told to reload; the identity is written in the same
// transaction, and a watcher on the other node hears of it.
func TestRotationReplaceIsCompareAndSwap(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b := etcdstate.Rotation{C: open(t, cl.Endpoints())}, etcdstate.Rotation{C: open(t, cl.Endpoints())}

	heard := make(chan string, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.WatchIdentity(ctx, func() {
			data, _, err := b.Identity()
			if err != nil {
				t.Error(err)
			}
			heard <- string(data)
		})
	}()
	defer func() { cancel(); <-done }()
	if got := <-heard; got != "" {
		t.Fatalf("first call saw identity %q, want none", got)
	}

	data, rev, err := a.Load()
	if err != nil || data != nil || rev != 0 {
		t.Fatalf("empty state: %q %d %v", data, rev, err)
	}
	if ok, err := a.Replace(rev, []byte(`{"current_serial":"01"}`), []byte("id-1")); !ok || err != nil {
		t.Fatalf("first replace: %v %v", ok, err)
	}
	if ok, err := b.Replace(rev, []byte(`{"current_serial":"02"}`), []byte("id-2")); ok || err != nil {
		t.Fatalf("replace from a stale revision: %v %v, want refused", ok, err)
	}
	data, rev2, err := b.Load()
	if string(data) != `{"current_serial":"01"}` || rev2 == 0 || err != nil {
		t.Fatalf("state after the race: %q %d %v", data, rev2, err)
	}
	if id, _, _ := b.Identity(); string(id) != "id-1" {
		t.Fatalf("identity %q, want the winner's", id)
	}
	select {
	case got := <-heard:
		if got != "id-1" {
			t.Errorf("watcher heard %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher on the other node heard nothing")
	}

	// State without identity (state import) leaves the identity alone.
	if ok, err := b.Replace(rev2, []byte(`{"current_serial":"03"}`), nil); !ok || err != nil {
		t.Fatalf("replace: %v %v", ok, err)
	}
	if id, _, _ := a.Identity(); string(id) != "id-1" {
		t.Errorf("identity %q after a state-only replace", id)
	}
}

// A change made right after the watcher's first read (here: during its
// first call) is heard: the watch starts from the revision after the read,
// however late it registers.
func TestRotationWatchMissesNothing(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b := etcdstate.Rotation{C: open(t, cl.Endpoints())}, etcdstate.Rotation{C: open(t, cl.Endpoints())}
	calls := make(chan struct{}, 8)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	first := true
	go func() {
		defer close(done)
		b.WatchIdentity(ctx, func() {
			if first {
				first = false
				if ok, err := a.SwapIdentity(0, []byte("id-1")); !ok || err != nil {
					t.Errorf("swap: %v %v", ok, err)
				}
			}
			calls <- struct{}{}
		})
	}()
	defer func() { cancel(); <-done }()
	<-calls
	select {
	case <-calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the change made after the first read was never heard")
	}
}
