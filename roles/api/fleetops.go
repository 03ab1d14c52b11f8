package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	ops "github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// fleetFields are the optional members of POST /run and /ping that
// upstream's API did not have (see pkg/fleet):
//
//	"tags": {"role":"web"}      registry agents whose stored tags match all (globs allowed), added to "hosts"
//	"max_concurrency": 10|"10%" hosts in flight at once
//	"max_errors": 2|"10%"       failures tolerated before the rest are skipped
//	"stream": true              NDJSON answer (also "Accept: application/x-ndjson")
//	"dry_run": true             (run) what would run where; nothing runs
//	"rerun": "<reqid>"          (run) the stored run's script and args on its hosts with…
//	"only": ["failed",…]        (run) …these statuses (default failed, unreachable, timeout)
type fleetFields struct {
	tags    []ops.TagSelector
	opts    ops.Options
	stream  bool
	dryRun  bool
	rerun   string
	only    []string
	anyTags bool
}

// fleetFields reads and checks those members; the string is a 400 detail.
func (b requestBody) fleetFields() (fleetFields, string) {
	var f fleetFields
	if b.obj.Defined("tags") {
		var m map[string]string
		raw, _ := b.obj.Raw("tags")
		if json.Unmarshal(raw, &m) != nil {
			return f, "tags must be an object of strings"
		}
		sels, err := ops.SelectorsFromMap(m)
		if err != nil {
			return f, err.Error()
		}
		f.tags, f.anyTags = sels, len(sels) > 0
	}
	var bad string
	if f.opts.MaxConcurrency, bad = b.limit("max_concurrency"); bad != "" {
		return f, bad
	}
	if f.opts.MaxConcurrency.Set && f.opts.MaxConcurrency.N == 0 {
		return f, "max_concurrency must be at least 1"
	}
	if f.opts.MaxErrors, bad = b.limit("max_errors"); bad != "" {
		return f, bad
	}
	for key, dst := range map[string]*bool{"stream": &f.stream, "dry_run": &f.dryRun} {
		if raw, ok := b.obj.Raw(key); ok && string(raw) != "null" {
			if json.Unmarshal(raw, dst) != nil {
				return f, key + " must be true or false"
			}
		}
	}
	f.stream = f.stream || strings.Contains(b.accept, ops.ContentTypeNDJSON)
	if b.obj.Defined("rerun") {
		raw, _ := b.obj.Raw("rerun")
		if json.Unmarshal(raw, &f.rerun) != nil || !statusPath().MatchString("/status/"+f.rerun) {
			return f, "rerun must be a reqid (lowercase hex)"
		}
	}
	f.only = runstore.DefaultOnly
	if b.obj.Defined("only") {
		list, isArray := b.array("only")
		names, ok := stringElements(list)
		if !isArray || !ok || len(names) == 0 {
			return f, "only must be a non-empty array of statuses"
		}
		var err error
		if f.only, err = runstore.ParseOnly(names); err != nil {
			return f, "only: " + err.Error()
		}
	}
	return f, ""
}

// limit reads a count member: a whole number or an "N%" string.
func (b requestBody) limit(key string) (ops.Limit, string) {
	raw, ok := b.obj.Raw(key)
	if !ok || string(raw) == "null" {
		return ops.Limit{}, ""
	}
	var text string
	if raw[0] == '"' {
		_ = json.Unmarshal(raw, &text)
	} else {
		text = string(raw)
	}
	l, err := ops.ParseLimit(key, text)
	if err != nil {
		return ops.Limit{}, err.Error()
	}
	return l, ""
}

// withTagged adds the registry agents matching the selectors to hosts.
func (s *Server) withTagged(hosts []string, sels []ops.TagSelector) ([]string, response, bool) {
	if len(sels) == 0 {
		return hosts, response{}, true
	}
	agents, err := s.fleet.Registered()
	if err != nil {
		return nil, errorResponse(500, "server error", err.Error()), false
	}
	tags := make([]map[string]string, len(agents))
	for i, a := range agents {
		tags[i] = a.Tags
	}
	idx, err := ops.Select(tags, sels)
	if err != nil {
		return nil, badRequest(err.Error()), false
	}
	addrs := make([]string, len(idx))
	for i, j := range idx {
		addrs[i] = agents[j].Address
	}
	hosts = ops.Union(hosts, addrs)
	if len(hosts) > dispatch.MaxHosts {
		return nil, badRequest(dispatch.ErrTooManyHosts.Error()), false
	}
	return hosts, response{}, true
}

// runTargets settles script, args and hosts of a POST /run: from the body,
// or from a stored run when "rerun" is given.
func (s *Server) runTargets(b requestBody, f fleetFields) (hosts []string, script string, args []string, r response, ok bool) {
	if f.rerun != "" {
		rec, err := s.store.Load(f.rerun)
		if r, ok := unavailable(err); ok {
			return nil, "", nil, r, false
		}
		switch {
		case errors.Is(err, runstore.ErrNoResult):
			return nil, "", nil, errorResponse(404, "not found", "no result for reqid "+f.rerun), false
		case err != nil:
			return nil, "", nil, errorResponse(500, "server error", "cannot read result: "+err.Error()), false
		}
		plan, err := runstore.PlanRerun(rec, f.only)
		if err != nil {
			return nil, "", nil, badRequest("rerun " + f.rerun + ": " + err.Error()), false
		}
		hosts, script, args = plan.Hosts, plan.Script, plan.Args
	} else {
		var bad string
		if hosts, bad = b.hosts(!f.anyTags); bad != "" {
			return nil, "", nil, badRequest(bad), false
		}
		if script, bad = b.script(); bad != "" {
			return nil, "", nil, badRequest(bad), false
		}
		if args, bad = b.args(); bad != "" {
			return nil, "", nil, badRequest(bad), false
		}
	}
	hosts, r, ok = s.withTagged(hosts, f.tags)
	return hosts, script, args, r, ok
}

// dryRunResponse answers "dry_run": per host, the status it would get now.
func dryRunResponse(hosts []string, script string, args []string, d authhook.Decision, conflicts []string) response {
	held := map[string]bool{}
	for _, c := range conflicts {
		held[strings.TrimSuffix(c, ":"+script)] = true
	}
	entries := make([]wire.Object, len(hosts))
	for i, h := range hosts {
		var o wire.Object
		o.Set("host", h)
		o.Set("script", script)
		switch {
		case !d.OK:
			o.Set("error", "denied: "+d.Reason)
			o.Set("status", ops.StatusDenied)
		case held[h]:
			o.Set("error", "locked")
			o.Set("status", ops.StatusLocked)
		default:
			o.Set("status", ops.StatusOK)
		}
		entries[i] = o
	}
	var out wire.Object
	out.Set("ok", true)
	out.Set("dry_run", true)
	out.Set("script", script)
	out.Set("args", args)
	out.Set("results", entries)
	return jsonResponse(200, out)
}

// runFleet is POST /run after the checks and BeginRun: dispatch with the
// fleet options, store the run (held.Finish, which lets the locks go),
// answer whole or as a stream. done releases the in-flight slot.
func (s *Server) runFleet(ctx context.Context, req dispatch.RunRequest, f fleetFields, rerunOf string, held state.Run, done func()) response {
	finish := func(run ops.Run) {
		done()
		s.store.finish(held, runstore.Record{ReqID: req.ReqID, Script: req.Script, Hosts: req.Hosts,
			Results: run.Results, Args: req.Args, RerunOf: rerunOf})
	}
	if !f.stream {
		run, err := s.fleet.Run(ctx, req, f.opts)
		if err != nil {
			done()
			held.Release()
			return engineFailure(err)
		}
		finish(run)
		return jsonResponse(200, map[string]any{"ok": true, "reqid": req.ReqID, "results": run.Results})
	}
	return streamResponse(func(w io.Writer) {
		st := ops.NewStream(w)
		opts := f.opts
		opts.OnResult = st.Result
		run, err := s.fleet.Run(ctx, req, opts)
		if err != nil {
			done()
			held.Release()
			st.Error(err)
			return
		}
		finish(run)
		st.Summary(run.Counts, ops.Statuses, req.ReqID)
	})
}

// pingFleet is POST /ping after the checks.
func (s *Server) pingFleet(ctx context.Context, hosts []string, f fleetFields, done func()) response {
	if !f.stream {
		defer done()
		ping, err := s.fleet.Ping(ctx, hosts, f.opts)
		if err != nil {
			return engineFailure(err)
		}
		return jsonResponse(200, map[string]any{"ok": true, "results": ping.Results})
	}
	return streamResponse(func(w io.Writer) {
		defer done()
		st := ops.NewStream(w)
		opts := f.opts
		opts.OnResult = st.Result
		ping, err := s.fleet.Ping(ctx, hosts, opts)
		if err != nil {
			st.Error(err)
			return
		}
		st.Summary(ping.Counts, ops.PingStatuses, ping.ReqID)
	})
}

// lockAndRun takes the locks and records the run as started (D-27,
// BeginRun), takes an in-flight slot, then runs.
func (s *Server) lockAndRun(ctx context.Context, req dispatch.RunRequest, f fleetFields, rerunOf string) response {
	req.ReqID = pki.NewReqID()
	// The registry reads of the identity checks overlap taking the locks:
	// with etcd both are round trips, and a run needs both before it starts.
	prefetched := make(chan *agentid.Snapshot, 1)
	go func() { prefetched <- s.fleet.PrefetchIdentities(req.Hosts) }()
	held, conflicts, err := s.state.BeginRun(req.Hosts, req.Script, runstore.Record{ReqID: req.ReqID,
		Script: req.Script, Hosts: req.Hosts, Args: req.Args, RerunOf: rerunOf}, s.log)
	req.Identity = <-prefetched
	if r, ok := unavailable(err); ok {
		return r
	}
	if err != nil {
		return errorResponse(500, "server error", err.Error())
	}
	if len(conflicts) > 0 {
		return lockedResponse(conflicts)
	}
	release, ok := s.acquireSlot(ctx)
	if !ok {
		held.Release()
		return busy(cap(s.slots))
	}
	return s.runFleet(ctx, req, f, rerunOf, held, release)
}

// streamResponse is a 200 whose body fn writes line by line: no
// Content-Length, the end of the body is the end of the connection (HTTP/1.0
// framing, which HTTP/1.1 clients read too).
func streamResponse(fn func(w io.Writer)) response {
	return response{status: 200, stream: fn}
}

// writeStream sends the head and lets r.stream write the body, each write
// with a fresh writeTimeout so a long run is not cut off.
func writeStream(conn net.Conn, r response) {
	w := &deadlineWriter{conn: conn}
	head := "HTTP/1.0 200 " + wire.APIPhrase(200) + "\r\nContent-Type: " + ops.ContentTypeNDJSON + "\r\n\r\n"
	if _, err := io.WriteString(w, head); err != nil {
		return
	}
	r.stream(w)
}

type deadlineWriter struct{ conn net.Conn }

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	return d.conn.Write(p)
}
