package fleet

import (
	"context"
	"strings"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Options are the guardrails and the stream of one call.
type Options struct {
	MaxConcurrency Limit // hosts in flight at once (unset: the engine's default)
	MaxErrors      Limit // failures tolerated before hosts not yet started are skipped (unset: no limit)
	// OnResult, if set, hears each result (status set) as soon as it is
	// ready, in completion order, on the calling goroutine.
	OnResult func(wire.Object)
}

// Run is one script run with status, guardrails, streaming and the audit
// event. Results are in request order, each with "status".
type Run struct {
	ReqID   string
	Results []dispatch.RunResult
	Counts  Counts
}

// RunScript runs req on c's copy with opt applied and logs one "audit"
// event per host: REQID HOST SCRIPT ARGS USER STATUS EXIT DURATION_MS.
// The error is the engine's, for the call as a whole.
func RunScript(ctx context.Context, c *dispatch.Client, req dispatch.RunRequest, opt Options) (Run, error) {
	if req.ReqID == "" {
		req.ReqID = pki.NewReqID()
	}
	cc := *c // a copy is an independent client (see dispatch.Client)
	cc.Concurrency = orDefault(opt.MaxConcurrency.Concurrency(len(req.Hosts)), c.Concurrency)
	g := newGuard(opt.MaxErrors, len(req.Hosts))
	if g != nil {
		cc.Admit = g.admit
	}
	counts := Counts{}
	cc.OnRun = func(i int, r *dispatch.RunResult) {
		status := Annotate(r)
		g.record(status)
		counts.Add(status)
		audit(c, req, *r, status)
		if opt.OnResult != nil {
			opt.OnResult(r.Object)
		}
	}
	results, err := cc.Run(ctx, req)
	if err != nil {
		return Run{}, err
	}
	return Run{ReqID: req.ReqID, Results: results, Counts: counts}, nil
}

func orDefault(n, def int) int {
	if n > 0 {
		return n
	}
	return def
}

// audit logs the per-host event. The token is never part of it.
func audit(c *dispatch.Client, req dispatch.RunRequest, r dispatch.RunResult, status string) {
	ev := c.Log.Info().Str("REQID", req.ReqID).Str("HOST", r.Target.String()).
		Str("SCRIPT", req.Script).Int("ARGS", len(req.Args)).Str("USER", user(req.Username)).
		Str("STATUS", status)
	if code, ok := r.Exit(); ok {
		ev = ev.Int64("EXIT", code)
	} else {
		ev = ev.Str("EXIT", "")
	}
	ev.Int64("DURATION_MS", rttMillis(r.Str("rtt"))).Msg("audit")
}

func user(u string) string {
	if u == "" {
		return "(none)"
	}
	return u
}

// rttMillis reads "123ms" (0 when absent: a skipped host exchanged nothing).
func rttMillis(rtt string) int64 {
	d, err := time.ParseDuration(strings.TrimSpace(rtt))
	if err != nil {
		return 0
	}
	return d.Milliseconds()
}

// Ping is one ping batch with guardrails and streaming. Ping results keep
// their §10.5 "status" ("ok" or "error"); Counts tallies those two.
type Ping struct {
	ReqID   string
	Results []dispatch.PingResult
	Counts  Counts
}

// PingStatuses are the keys of a ping summary.
var PingStatuses = []string{"ok", "error"}

// PingHosts pings hosts on c's copy with opt applied. A host skipped by
// MaxErrors is an "error" result whose error starts "skipped: ".
func PingHosts(ctx context.Context, c *dispatch.Client, hosts []string, opt Options) (Ping, error) {
	reqid := pki.NewReqID()
	cc := *c
	cc.Concurrency = orDefault(opt.MaxConcurrency.Concurrency(len(hosts)), c.Concurrency)
	g := newGuard(opt.MaxErrors, len(hosts))
	if g != nil {
		cc.Admit = g.admit
	}
	counts := Counts{}
	cc.OnPing = func(i int, r *dispatch.PingResult) {
		status := "error"
		if r.OK() {
			status = StatusOK
		}
		if !strings.HasPrefix(r.Str("error"), skippedPrefix) {
			g.record(status)
		}
		counts.Add(status)
		if opt.OnResult != nil {
			opt.OnResult(r.Object)
		}
	}
	results, err := cc.PingReqID(ctx, hosts, reqid)
	if err != nil {
		return Ping{}, err
	}
	return Ping{ReqID: reqid, Results: results, Counts: counts}, nil
}
