package dispatch

import "context"

// The seams pkg/fleet uses for guardrails and streaming. A call is still one
// fan-out; these only decide when each host starts and who hears of each
// result first:
//
//	Admit(i)     asked, on the calling goroutine and in request order, just
//	             before host i would be contacted; a non-nil error leaves it
//	             uncontacted and its result says why (see skippedRun).
//	OnRun(i, r)  called on the calling goroutine with each run result as soon
//	OnPing(i, r) as it is ready (completion order), before Progress; it may
//	             add fields to the result (pkg/fleet adds "status").

// each runs one(i) for every target, at most Concurrency at a time, starting
// them in request order. Before each start it asks c.Admit; a refused host
// gets skip(i, why) instead of one. done(i), called on this goroutine as each
// result is ready, reports whether it counts as a failure for Progress. It
// returns when every host has a result.
func (c *Client) each(ctx context.Context, n int, one func(ctx context.Context, i int),
	skip func(i int, why error), done func(i int) bool) {
	limit := c.Concurrency
	if limit <= 0 {
		limit = DefaultConcurrency
	}
	finishedCh := make(chan int, n)
	next, running, finished, nFailed := 0, 0, 0, 0
	report := func(i int) {
		finished++
		if done(i) {
			nFailed++
		}
		if c.Progress != nil {
			c.Progress(finished, nFailed, n)
		}
	}
	for finished < n {
		// Start what the limit allows; Admit sees every result reported so far.
		for next < n && running < limit {
			i := next
			next++
			if c.Admit != nil && skip != nil {
				if why := c.Admit(i); why != nil {
					skip(i, why)
					report(i)
					continue
				}
			}
			running++
			go func() {
				one(ctx, i)
				finishedCh <- i
			}()
		}
		if running == 0 {
			continue // everything left was skipped, or nothing is left
		}
		i := <-finishedCh
		running--
		report(i)
	}
}

// skippedRun is the result of a host Admit refused: the transport-failure
// shape of §10.4 without an rtt (nothing was exchanged).
func skippedRun(t Target, script, reqid string, why error) RunResult {
	res := RunResult{Target: t}
	res.Object.Set("host", t.Host)
	res.Object.Set("script", script)
	res.Object.Set("exit", -1)
	res.Object.Set("error", why.Error())
	res.Object.Set("reqid", reqid)
	return res
}

// skippedPing is the ping counterpart: the §10.5 failure shape, no rtt.
func skippedPing(t Target, why error) PingResult {
	res := PingResult{Target: t}
	res.Object.Set("host", t.Host)
	res.Object.Set("status", "error")
	res.Object.Set("error", why.Error())
	return res
}
