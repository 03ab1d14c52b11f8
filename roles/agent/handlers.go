package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/spawn"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// route is an exact method and path (query string included, SPEC §9.3).
type route struct{ method, path string }

// call is one routed request with what the connection learned about it.
type call struct {
	rt           *runtime
	peer         string // normalised peer IP
	peerSerial   string // canonical hex serial of the client certificate
	storedSerial string // the ctrl-exec serial this agent trusts, "" if none
	req          *wire.Request
}

type reply struct {
	code int
	body []byte
}

type handler func(ctx context.Context, c *call) reply

func (s *Server) routeTable() map[route]handler {
	return map[route]handler{
		{"POST", "/run"}:         s.handleRun,
		{"POST", "/ping"}:        s.handlePing,
		{"GET", "/capabilities"}: s.handleCapabilities,
		// Certificate renewal (§9.7), in renew.go.
		{"POST", "/renew"}:          s.handleRenew,
		{"POST", "/renew-complete"}: s.handleRenewComplete,
	}
}

func notFound(context.Context, *call) reply { return reply{404, errorBody("not found")} }

func okReply(v any) reply { return reply{200, wire.JSON(v)} }

// serialMatches is the stored-serial check (§8.3): both serials known and
// byte-equal.
func (c *call) serialMatches() bool {
	return c.storedSerial != "" && c.peerSerial != "" && c.peerSerial == c.storedSerial
}

func (s *Server) serialReject(c *call) reply {
	s.log.Warn().Str("PEER", c.peer).Str("REQID", "(none)").Msg("serial-reject")
	return reply{403, wire.JSON(map[string]string{"error": "serial mismatch", "status": "forbidden"})}
}

// runResult is the /run reply; script and reqid echo what the client sent.
type runResult struct {
	Script any    `json:"script"`
	Exit   int    `json:"exit"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Reqid  any    `json:"reqid"`
}

type runDenied struct {
	Script any    `json:"script"`
	Exit   int    `json:"exit"`
	Error  string `json:"error"`
	Reqid  any    `json:"reqid"`
}

// runContext is the script's stdin (§12.3), compact JSON.
type runContext struct {
	Script    any    `json:"script"`
	Args      []any  `json:"args"`
	Reqid     any    `json:"reqid"`
	PeerIP    string `json:"peer_ip"`
	Username  any    `json:"username"`
	Token     any    `json:"token"`
	Timestamp string `json:"timestamp"`
}

// handleRun is POST /run (SPEC §9.4).
func (s *Server) handleRun(ctx context.Context, c *call) reply {
	if !c.serialMatches() {
		return s.serialReject(c)
	}
	body, isObject := decodeObject(c.req.Body)
	if !isObject {
		return okReply(map[string]any{"exit": -1, "error": "invalid JSON"})
	}
	name := body.get("script")
	reqid := body.get("reqid")
	username := body.get("username")
	token := body.get("token")

	rawArgs := []any{}
	if v, given := body["args"]; given && v != nil {
		list, isList := v.([]any)
		if !isList {
			return okReply(map[string]any{"exit": -1, "error": "args must be an array", "reqid": reqid})
		}
		rawArgs = list
	}
	args, allScalar := scalarTexts(rawArgs)
	if !allScalar {
		return okReply(map[string]any{"exit": -1, "error": "args must be an array of strings", "reqid": reqid})
	}

	nameText, _ := scalarText(name)
	reqidText := logText(reqid)
	path, permitted := s.validateScript(c.rt, nameText)
	if !permitted {
		s.log.Warn().Str("SCRIPT", logText(name)).Str("PEER", c.peer).Str("REQID", reqidText).Msg("deny")
		return okReply(runDenied{Script: name, Exit: -1, Error: "script not permitted", Reqid: reqid})
	}

	if hook := c.rt.cfg.AuthHook; hook != "" {
		userText, _ := scalarText(username)
		tokenText, _ := scalarText(token)
		d := authhook.Check(ctx, s.log, hook, authhook.Request{
			Action: authhook.ActionRun, Script: nameText, Args: args,
			Username: userText, Token: tokenText, SourceIP: c.peer,
		}, s.now, s.timeouts.Hook)
		if !d.OK {
			s.log.Warn().Str("REASON", d.Reason).Str("SCRIPT", nameText).Str("PEER", c.peer).Str("REQID", reqidText).Msg("deny")
			return okReply(runDenied{Script: name, Exit: -1, Error: "not authorised: " + d.Reason, Reqid: reqid})
		}
	}

	stdin := wire.JSON(runContext{
		Script: name, Args: rawArgs, Reqid: reqid, PeerIP: c.peer,
		Username: username, Token: token, Timestamp: pki.ISOTime(s.now()),
	})
	runCtx, limit, cancel := scriptDeadline(ctx, c.rt.cfg, nameText)
	defer cancel()
	res := spawn.Run(runCtx, spawn.Cmd{
		Path:         path,
		Args:         args,
		Env:          os.Environ(),
		Stdin:        stdin,
		StdinTimeout: time.Duration(c.rt.cfg.StdinTimeout) * time.Second,
		MaxOutput:    c.rt.cfg.MaxOutput,
	})
	if res.StdinTimedOut {
		s.log.Warn().Int("BYTES", res.StdinUnwritten).Msg("stdin-timeout")
	}
	if timedOut(ctx, runCtx, res) {
		return s.scriptTimedOut(c, name, nameText, reqid, reqidText, limit, res)
	}
	s.log.Info().Str("SCRIPT", nameText).Int("EXIT", res.Exit).Str("PEER", c.peer).Str("REQID", reqidText).Msg("run")
	return okReply(runResult{
		Script: name, Exit: res.Exit,
		Stdout: spawn.ValidUTF8(res.Stdout), Stderr: spawn.ValidUTF8(res.Stderr),
		Reqid: reqid,
	})
}

// validateScript is §12.1: an ASCII word name, present in the allowlist, and
// (when script_dirs is set) a path inside one of the dirs. The dirs were
// already applied when the allowlist was loaded (D-8); checking again at
// execution keeps upstream's second line of defence.
func (s *Server) validateScript(rt *runtime, name string) (string, bool) {
	if !config.ValidScriptName(name) {
		return "", false
	}
	path, found := rt.allowlist[name]
	if !found {
		return "", false
	}
	if rt.cfg.ScriptDirs != nil && !config.InScriptDirs(path, rt.cfg.ScriptDirs) {
		fmt.Fprintf(s.stderr, "validate_script: '%s' path rejected at execution time - not in script_dirs: %s\n", name, path)
		return "", false
	}
	return path, true
}

// handlePing is POST /ping (SPEC §9.5). The auth hook is never asked.
func (s *Server) handlePing(_ context.Context, c *call) reply {
	if !c.serialMatches() {
		return s.serialReject(c)
	}
	var reqid any = ""
	wantTags := false
	if body, isObject := decodeObject(c.req.Body); isObject {
		reqid = body.get("reqid")
		wantTags = truthy(body.get("want_tags"))
	}
	s.log.Info().Str("PEER", c.peer).Str("REQID", logText(reqid)).Msg("ping")
	out := map[string]any{
		"status":  "ok",
		"host":    s.hostname,
		"version": s.version,
		"expiry":  s.expiry.get(c.rt.cfg),
		"reqid":   reqid,
	}
	if wantTags && pingMayTellTags(c.rt.cfg) {
		out["tags"] = c.rt.cfg.Tags
	}
	return okReply(out)
}

// pingMayTellTags: a Go control host asks /ping for [tags] ("want_tags",
// a Go addition) to keep them fresh for targeting; a Perl one never asks,
// so its ping output is unchanged. With an auth_hook the agent gates
// /capabilities (which carries the tags) and ping never asks the hook, so
// then the tags are told by /capabilities only.
func pingMayTellTags(cfg *config.Agent) bool { return cfg.AuthHook == "" }

// truthy is Perl truth of a decoded scalar: not "", "0", 0, false or null.
func truthy(v any) bool {
	t, isScalar := scalarText(v)
	return isScalar && t != "" && t != "0"
}

// certExpiry is the notAfter of the configured agent certificate as an
// OpenSSL date (B-27: the configured cert, not the fixed path), or "unknown"
// when the cert, key or CA file is missing or the cert does not parse.
func certExpiry(cfg *config.Agent) string {
	for _, f := range []string{cfg.Cert, cfg.Key, cfg.CA} {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			return "unknown"
		}
	}
	cert, err := pki.LoadCert(cfg.Cert)
	if err != nil {
		return "unknown"
	}
	return pki.FormatOpenSSLDate(cert.NotAfter)
}

type capability struct {
	Name       string `json:"name"`
	Path       string `json:"path"`
	Executable bool   `json:"executable"`
}

// handleCapabilities is GET /capabilities (SPEC §9.6).
func (s *Server) handleCapabilities(ctx context.Context, c *call) reply {
	if c.storedSerial != "" {
		if !c.serialMatches() {
			s.log.Warn().Str("PEER", c.peer).Str("PEER_SERIAL", c.peerSerial).Str("REASON", "serial-mismatch").Msg("capabilities-deny")
			return reply{403, errorBody("forbidden")}
		}
	} else {
		s.log.Warn().Str("PEER", c.peer).Str("REASON", "no ctrl-exec serial stored - re-pair to enable restriction").Msg("capabilities-no-serial")
	}

	if hook := c.rt.cfg.AuthHook; hook != "" {
		d := authhook.Check(ctx, s.log, hook, authhook.Request{Action: authhook.ActionDiscovery, SourceIP: c.peer}, s.now, s.timeouts.Hook)
		if !d.OK {
			s.log.Warn().Str("PEER", c.peer).Str("REASON", d.Reason).Msg("capabilities-deny")
			return reply{403, errorBody("not authorised")}
		}
	}

	scripts := capabilities(c.rt.allowlist)
	s.log.Info().Str("PEER", c.peer).Int("SCRIPTS", len(scripts)).Msg("capabilities")
	return okReply(map[string]any{
		"status":  "ok",
		"host":    s.hostname,
		"version": s.version,
		"scripts": scripts,
		"tags":    c.rt.cfg.Tags,
	})
}

// capabilities lists the allowlist sorted by name with whether the agent
// process may execute each path.
func capabilities(list config.Allowlist) []capability {
	names := make([]string, 0, len(list))
	for name := range list {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]capability, 0, len(names))
	for _, name := range names {
		out = append(out, capability{Name: name, Path: list[name], Executable: executable(list[name])})
	}
	return out
}

// executable is Perl's -x: the effective user may execute path.
func executable(path string) bool {
	return unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS) == nil
}

// jsonObject is a decoded request body; numbers keep their JSON spelling.
type jsonObject map[string]any

// decodeObject decodes a body that must be exactly one JSON object in UTF-8,
// as Perl's decode_json demands (a valid non-object is rejected too, B-28).
func decodeObject(body []byte) (jsonObject, bool) {
	if !utf8.Valid(body) {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	return obj, true
}

// get is Perl's `$data->{key} // ""`: a missing key or null reads as "".
func (o jsonObject) get(key string) any {
	if v, found := o[key]; found && v != nil {
		return v
	}
	return ""
}

// scalarText is how Perl would use a decoded scalar as a string: strings as
// they are, numbers as written, booleans as 1 and 0, null as "". Arrays and
// objects have no such form.
func scalarText(v any) (string, bool) { return perltext.Scalar(v) }

func scalarTexts(vs []any) ([]string, bool) {
	out := make([]string, len(vs))
	for i, v := range vs {
		t, isScalar := scalarText(v)
		if !isScalar {
			return nil, false
		}
		out[i] = t
	}
	return out, true
}

// logText is a request value as it appears in a log field.
func logText(v any) string {
	if t, isScalar := scalarText(v); isScalar {
		return t
	}
	return string(wire.JSON(v))
}
