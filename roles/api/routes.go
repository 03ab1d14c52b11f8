package api

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// response is one answer: a status and its JSON body.
type response struct {
	status int
	body   []byte
	stream func(w io.Writer) // set: an NDJSON body written as it happens (fleetops.go)
}

func jsonResponse(status int, v any) response {
	return response{status: status, body: wire.JSON(v)}
}

// errorResponse is the §14.3 shape; detail is left out when empty.
func errorResponse(status int, class, detail string) response {
	var o wire.Object
	o.Set("ok", false)
	o.Set("error", class)
	if detail != "" {
		o.Set("detail", detail)
	}
	return jsonResponse(status, o)
}

// denied is the 403 of a refused authorisation.
func denied(d authhook.Decision) response {
	var o wire.Object
	o.Set("ok", false)
	o.Set("error", d.Reason)
	o.Set("code", d.Code)
	return jsonResponse(403, o)
}

func badRequest(detail string) response { return errorResponse(400, "bad request", detail) }

func busy(n int) response {
	return errorResponse(503, "busy", "all "+itoa(n)+" api_max_inflight slots are taken; retry later")
}

// endpoints is the index of GET / (§14.4), in upstream's order.
var endpoints = []struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}{
	{"GET", "/health"}, {"POST", "/ping"}, {"POST", "/run"}, {"GET", "/discovery"},
	{"POST", "/discovery"}, {"GET", "/status/{reqid}"}, {"GET", "/openapi.json"}, {"GET", "/openapi-live.json"},
}

var statusPath = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/status/([a-f0-9]+)$`) })

// handle logs, authorises and routes one parsed request.
func (s *Server) handle(ctx context.Context, req *wire.Request, peer string) response {
	method := strings.ToUpper(req.Method)
	path := req.Path
	if path == "" {
		path = "/"
	}
	s.log.Info().Str("METHOD", method).Str("PATH", path).Str("PEER", peer).Int64("LEN", req.ContentLength).Msg("api-request")

	body := parseBody(req.Body, req.Header["authorization"])
	body.accept = req.Header["accept"]
	if d := s.authorise(ctx, authhook.Request{Action: authhook.ActionAPI, Token: body.token, SourceIP: peer}); !d.OK {
		return denied(d)
	}

	switch {
	case path == "/" && method == "GET":
		return jsonResponse(200, map[string]any{
			"name": "ctrl-exec-api", "version": s.version,
			"spec": "/openapi.json", "live_spec": "/openapi-live.json", "endpoints": endpoints,
		})
	case path == "/health" && method == "GET":
		var o wire.Object
		o.Set("ok", true)
		o.Set("version", s.version)
		o.Set("commit", s.commit)
		o.Set("go", s.goVer)
		return jsonResponse(200, o)
	case path == "/ping" && method == "POST":
		return s.ping(ctx, body, peer)
	case path == "/run" && method == "POST":
		return s.run(ctx, body, peer)
	case path == "/discovery" && (method == "GET" || method == "POST"):
		return s.discovery(ctx, body, peer)
	case path == "/openapi.json" && method == "GET":
		return s.staticSpec()
	case path == "/openapi-live.json" && method == "GET":
		return s.liveSpec(ctx)
	case method == "GET" && statusPath().MatchString(path):
		return s.status(statusPath().FindStringSubmatch(path)[1])
	}
	return errorResponse(404, "not found", "no route for "+method+" "+path)
}

// authorise runs the auth hook, or applies api_auth_default without one.
// The hook file is looked at afresh on every call (§5). At most
// api_max_inflight hooks run at once; a request beyond that waits its turn,
// so a flood of unauthenticated requests cannot fork without bound.
func (s *Server) authorise(ctx context.Context, r authhook.Request) authhook.Decision {
	if s.conf.AuthHook == "" {
		return authhook.NoHookAPI(s.log, r, s.conf.APIAuthDefault)
	}
	select {
	case s.hookSlots <- struct{}{}:
		defer func() { <-s.hookSlots }()
	case <-ctx.Done(): // shutting down: deny as a cancelled hook would be
		return authhook.Decision{Reason: "denied", Code: authhook.CodeDenied}
	}
	return authhook.Check(ctx, s.log, s.conf.AuthHook, r, s.now, 0)
}

func (s *Server) ping(ctx context.Context, b requestBody, peer string) response {
	if bad := b.requireObject(); bad != "" {
		return badRequest(bad)
	}
	f, bad := b.fleetFields()
	if bad != "" {
		return badRequest(bad)
	}
	hosts, bad := b.hosts(!f.anyTags)
	if bad != "" {
		return badRequest(bad)
	}
	hosts, r, ok := s.withTagged(hosts, f.tags)
	if !ok {
		return r
	}
	if d := s.authorise(ctx, authhook.Request{Action: authhook.ActionPing, Hosts: hosts,
		Username: b.username, Token: b.token, SourceIP: peer}); !d.OK {
		return denied(d)
	}
	release, ok := s.acquireSlot(ctx)
	if !ok {
		return busy(cap(s.slots))
	}
	return s.pingFleet(ctx, hosts, f, release)
}

func (s *Server) run(ctx context.Context, b requestBody, peer string) response {
	if bad := b.requireObject(); bad != "" {
		return badRequest(bad)
	}
	f, bad := b.fleetFields()
	if bad != "" {
		return badRequest(bad)
	}
	hosts, script, args, r, ok := s.runTargets(b, f)
	if !ok {
		return r
	}
	d := s.authorise(ctx, authhook.Request{Action: authhook.ActionRun, Script: script, Hosts: hosts,
		Args: args, Username: b.username, Token: b.token, SourceIP: peer})
	if f.dryRun {
		conflicts, err := s.state.Locks.CheckAvailable(hosts, script)
		if r, ok := unavailable(err); ok {
			return r
		}
		if err != nil {
			return errorResponse(500, "server error", err.Error())
		}
		return dryRunResponse(hosts, script, args, d, conflicts)
	}
	if !d.OK {
		return denied(d)
	}
	// Check, then take and hold the locks for the whole dispatch (D-27).
	return s.lockAndRun(ctx, dispatch.RunRequest{Hosts: hosts, Script: script, Args: args,
		Username: b.username, Token: b.token}, f, f.rerun)
}

func lockedResponse(conflicts []string) response {
	return jsonResponse(409, map[string]any{"ok": false, "error": "locked", "code": 4, "conflicts": conflicts})
}

// engineFailure answers a call the engine refused as a whole: too many
// hosts (already ruled out by body checks) or unusable TLS material.
func engineFailure(err error) response {
	if errors.Is(err, dispatch.ErrTooManyHosts) {
		return badRequest(err.Error())
	}
	return errorResponse(500, "server error", err.Error())
}

// discovery takes an optional body; one that is not a JSON object counts as
// {} (§14.4, §20.4).
func (s *Server) discovery(ctx context.Context, b requestBody, peer string) response {
	hosts, bad := b.hosts(false)
	if bad != "" {
		return badRequest(bad)
	}
	var targets []string
	fromRegistry := len(hosts) == 0
	if !fromRegistry {
		targets = hosts
	} else {
		agents, err := s.fleet.Registered()
		if err != nil {
			return errorResponse(500, "server error", err.Error())
		}
		for _, a := range agents {
			hosts = append(hosts, a.Hostname)
			targets = append(targets, a.Address)
		}
	}
	if len(hosts) == 0 {
		return jsonResponse(200, map[string]any{"ok": true, "hosts": map[string]any{}})
	}
	if d := s.authorise(ctx, authhook.Request{Action: authhook.ActionPing, Hosts: hosts,
		Username: b.username, Token: b.token, SourceIP: peer}); !d.OK {
		return denied(d)
	}
	release, ok := s.acquireSlot(ctx)
	if !ok {
		return busy(cap(s.slots))
	}
	defer release()
	results, err := capabilities(ctx, s.fleet, targets)
	if err != nil {
		return engineFailure(err)
	}
	if fromRegistry { // keep the reported tags for targeting by tag
		for i, r := range results {
			if err := s.fleet.StoreTags(hosts[i], r); err != nil {
				s.log.Warn().Str("AGENT", hosts[i]).Str("ERROR", err.Error()).Msg("registry-tags-fail")
			}
		}
	}
	// Keyed by each result's host: the agent's own name on success, the
	// target without its port on failure; a later duplicate wins (§14.4).
	byHost := map[string]dispatch.CapResult{}
	for _, r := range results {
		if h := r.Str("host"); h != "" {
			byHost[h] = r
		}
	}
	return jsonResponse(200, map[string]any{"ok": true, "hosts": byHost})
}

// capabilities asks every target, in batches of the engine's per-call
// ceiling: a registry may hold more agents than one call may name.
func capabilities(ctx context.Context, f fleet, targets []string) ([]dispatch.CapResult, error) {
	var all []dispatch.CapResult
	for len(targets) > 0 {
		n := min(len(targets), dispatch.MaxHosts)
		results, err := f.Capabilities(ctx, targets[:n])
		if err != nil {
			return nil, err
		}
		all = append(all, results...)
		targets = targets[n:]
	}
	return all, nil
}

func (s *Server) status(reqid string) response {
	s.store.Purge()
	rec, err := s.store.Load(reqid)
	if r, ok := unavailable(err); ok {
		return r
	}
	switch {
	case errors.Is(err, runstore.ErrNoResult):
		return errorResponse(404, "not found", "no result for reqid "+reqid)
	case errors.Is(err, runstore.ErrCorrupt):
		return errorResponse(500, "server error", "corrupt result record")
	case err != nil:
		return errorResponse(500, "server error", "cannot read result: "+err.Error())
	}
	var out wire.Object
	out.Set("ok", true)
	for _, k := range rec.Keys() {
		v, _ := rec.Raw(k)
		out.Set(k, v)
	}
	return jsonResponse(200, out)
}
