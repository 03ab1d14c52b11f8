package etcdstate

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// Election is one process's campaign for a role only one node may hold at
// a time (the rotation check loop), on the process's lease: a node that
// dies or loses etcd loses the role within LockTTL.
type Election struct {
	leading atomic.Bool
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

// Elect campaigns for name until Stop, in its own goroutine.
func (c *Client) Elect(name string) *Election {
	ctx, cancel := context.WithCancel(context.Background())
	e := &Election{stop: cancel}
	node, _ := os.Hostname()
	e.wg.Go(func() {
		for ctx.Err() == nil {
			s, err := c.lockSession()
			if err != nil {
				pause(ctx, time.Second) // etcd out of reach: try again
				continue
			}
			el := concurrency.NewElection(s, c.prefix+"elect/"+name)
			if err := el.Campaign(ctx, node); err != nil {
				pause(ctx, time.Second)
				continue
			}
			e.leading.Store(true)
			select {
			case <-s.Done(): // lease lost: someone else may lead now
			case <-ctx.Done():
				rctx, rcancel := c.opCtx()
				el.Resign(rctx)
				rcancel()
			}
			e.leading.Store(false)
		}
	})
	return e
}

// Leading reports whether this process holds the role now.
func (e *Election) Leading() bool { return e.leading.Load() }

// Stop resigns and waits for the campaign to end.
func (e *Election) Stop() {
	e.stop()
	e.wg.Wait()
}

func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
