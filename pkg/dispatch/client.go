// Package dispatch is the control host's fan-out engine (SPEC §10): it sends
// one request to many agents at once over mTLS and returns one result per
// host, in the order the hosts were given (D-17).
//
// The CLI, the API, certificate renewal and serial broadcasts all use it.
// Authorisation, locks and output belong to those callers, not here.
//
//	c := dispatch.NewClient(conf, log)
//	results, err := c.Run(ctx, dispatch.RunRequest{Hosts: hosts, Script: "backup"})
//
// Results marshal to exactly the JSON objects of §10.4-§10.6: the agent's
// reply object, members in arrival order and unknown members kept, plus the
// fields the control host adds.
package dispatch

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Limits of one call.
const (
	MaxHosts           = 500 // hard ceiling per call (§10.1)
	DefaultConcurrency = 256 // connections open at once
	DefaultTimeout     = 60 * time.Second
)

// ErrTooManyHosts is returned before any connection when a call names more
// than MaxHosts hosts. Its text is the one the CLI and API print.
var ErrTooManyHosts = fmt.Errorf("too many hosts (max %d)", MaxHosts)

// Client holds what every request needs. It keeps no state between calls,
// so a copy with other fields (say the previous cert and key for a rotation
// broadcast, D-25) is an independent client.
type Client struct {
	Cert, Key, CA string // PEM files, read afresh by every call so a rotated cert is used at once

	// Timeout is the per-host deadline: connect, handshake, request and the
	// whole reply (ctrl-exec.conf read_timeout, else timeout, else 60 s).
	Timeout time.Duration
	// Port is the agent port for host arguments without one (0: 7443).
	Port int
	// Concurrency bounds the connections open at once (0: 256). Every host
	// of a call is still contacted in the same call.
	Concurrency int
	// OutputBudget bounds the reply bytes one Run keeps across all its
	// hosts (0: DefaultOutputBudget, negative: no bound). A reply that would
	// go over it is not read; its host gets an OutputBudgetError result.
	OutputBudget int64

	Log zerolog.Logger
	Now func() time.Time // clock for rtt (nil: time.Now)

	// TLSConfig builds the client TLS configuration once per call (nil:
	// tlsx.LoadClientConfig(Cert, Key, CA)). A caller holding a key pair in
	// memory (the previous one, for a rotation broadcast) supplies it here.
	TLSConfig func() (*tls.Config, error)

	// Sessions, if set, keeps TLS sessions so repeat contacts resume
	// instead of making a full handshake. Copies of the client share it;
	// sessions are filed under the certificate that made them.
	Sessions *sessioncache.Cache

	// Identity is agent_identity (D-31): each call looks its targets up in
	// the registry and refuses an agent whose certificate names another
	// agent. nil or mode off: no check, as upstream.
	Identity *agentid.Policy

	// Progress, if set, is called on the calling goroutine after each host's
	// result arrives: done of total finished, failed of them not successful.
	Progress func(done, failed, total int)

	// Admit, OnRun and OnPing are the fleet guardrails' and streaming's
	// seams (see hooks.go); nil leaves a call as it always was.
	Admit  func(i int) error
	OnRun  func(i int, r *RunResult)
	OnPing func(i int, r *PingResult)

	// AfterPing, if set, is called with every Ping batch before Ping
	// returns. It is the hook for agent certificate renewal (§15.1): it
	// receives all results and picks the ones with status "ok" whose expiry
	// is due. It must not change the results.
	AfterPing func(ctx context.Context, results []PingResult)

	// WantTags asks each /ping for the agent's [tags] (a Go addition: the
	// request gets "want_tags":1, which Perl agents ignore). A reply's
	// "tags" goes to PingResult.Tags and is taken out of the result, so
	// what the caller prints stays the §10.5 object.
	WantTags bool
}

// NewClient builds a Client from ctrl-exec.conf.
func NewClient(conf *config.Control, log zerolog.Logger) *Client {
	c := &Client{Cert: conf.Cert, Key: conf.Key, CA: conf.CA, Log: log, Identity: agentid.New(conf)}
	if conf.ReadTimeout > 0 {
		c.Timeout = time.Duration(conf.ReadTimeout) * time.Second
	}
	return c
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// timeoutText is T of "read timeout after <T>s": whole seconds as configured.
func (c *Client) timeoutText() string {
	return strconv.FormatFloat(c.timeout().Seconds(), 'f', -1, 64)
}

func (c *Client) tlsConfig() (*tls.Config, error) {
	if c.TLSConfig != nil {
		return c.TLSConfig()
	}
	return tlsx.LoadClientConfig(c.Cert, c.Key, c.CA)
}

// Target resolves one host argument with the client's default port.
func (c *Client) Target(arg string) Target { return ParseTarget(arg, c.Port) }

// Do makes one request (method, path, JSON body) to one agent over a fresh
// mTLS connection, within the per-host deadline. A non-2xx status is a
// Reply, not an error; an error (a *TransportError for network and TLS
// failures, an *IdentityError for the wrong agent) means no status was
// received. A target without Agents is looked up in the registry first.
// Renewal uses it for /renew.
func (c *Client) Do(ctx context.Context, t Target, method, path string, body []byte) (Reply, error) {
	cfg, err := c.tlsConfig()
	if err != nil {
		return Reply{}, err
	}
	if t.Agents == nil && !t.Unregistered {
		one := []Target{t}
		if err := c.resolveIdentities(one, nil); err != nil {
			return Reply{}, err
		}
		t = one[0]
	}
	return c.exchange(ctx, cfg, t, method, path, body)
}

// fanOut prepares a call: checks the host count, loads the TLS material
// and the registry once and resolves the targets.
func (c *Client) fanOut(hosts []string, snap *agentid.Snapshot) (*tls.Config, []Target, error) {
	if len(hosts) > MaxHosts {
		return nil, nil, ErrTooManyHosts
	}
	cfg, err := c.tlsConfig()
	if err != nil {
		return nil, nil, err
	}
	targets := make([]Target, len(hosts))
	for i, h := range hosts {
		targets[i] = c.Target(h)
	}
	if err := c.resolveIdentities(targets, snap); err != nil {
		return nil, nil, err
	}
	return cfg, targets, nil
}

// RunRequest is one script run on many hosts.
type RunRequest struct {
	Hosts    []string // "name", "name:port", "[v6]", "[v6]:port"
	Script   string
	Args     []string
	Username string // advisory, forwarded to the agent
	Token    string // forwarded to the agent; never logged
	ReqID    string // "" = a fresh one; every host shares it
	// Identity is the registry as PrefetchIdentities read it for these
	// hosts; nil: Run reads it.
	Identity *agentid.Snapshot
}

// Run runs a script on every host at once (§10.2) and returns one result
// per host in request order. The error is for the call as a whole, before
// any connection: too many hosts, or TLS material that cannot be loaded.
func (c *Client) Run(ctx context.Context, req RunRequest) ([]RunResult, error) {
	cfg, targets, err := c.fanOut(req.Hosts, req.Identity)
	if err != nil {
		return nil, err
	}
	reqid := req.ReqID
	if reqid == "" {
		reqid = pki.NewReqID()
	}
	args := req.Args
	if args == nil {
		args = []string{}
	}
	var payload wire.Object
	payload.Set("script", req.Script)
	payload.Set("args", args)
	payload.Set("reqid", reqid)
	payload.Set("username", req.Username)
	payload.Set("token", req.Token)
	body, _ := payload.MarshalJSON()
	c.Log.Info().Str("SCRIPT", req.Script).Str("HOSTS", strings.Join(req.Hosts, ",")).
		Str("REQID", reqid).Msg("dispatch")

	budget := newOutputBudget(c.OutputBudget)
	results := make([]RunResult, len(targets))
	c.each(ctx, len(targets), func(ctx context.Context, i int) {
		results[i] = c.runOne(ctx, cfg, targets[i], req.Script, reqid, body, budget)
	}, func(i int, why error) {
		results[i] = skippedRun(targets[i], req.Script, reqid, why)
	}, func(i int) bool {
		if c.OnRun != nil {
			c.OnRun(i, &results[i])
		}
		return results[i].Failed()
	})
	return results, nil
}

func (c *Client) runOne(ctx context.Context, cfg *tls.Config, t Target, script, reqid string, body []byte, budget *outputBudget) RunResult {
	rep, err := c.exchangeWithin(ctx, cfg, t, "POST", "/run", body, budget.reserve)
	rtt := formatRTT(rep.RTT)
	res := RunResult{Target: t}
	if err != nil || !rep.OK() {
		msg := c.runError(rep, err)
		c.Log.Error().Str("SCRIPT", script).Str("TARGET", t.String()).Str("ERROR", msg).
			Str("RTT", rtt).Str("REQID", reqid).Msg("run")
		res.Object.Set("host", t.Host)
		res.Object.Set("script", script)
		res.Object.Set("exit", -1)
		res.Object.Set("error", msg)
		res.Object.Set("rtt", rtt)
		res.Object.Set("reqid", reqid)
		return res
	}
	obj, perr := wire.ParseObject(rep.Body)
	if perr != nil {
		obj = wire.Object{}
		obj.Set("host", t.Host)
		obj.Set("exit", -1)
		obj.Set("error", "invalid JSON response")
	}
	obj.SetDefault("host", t.Host)
	obj.Set("rtt", rtt)
	obj.SetDefault("reqid", reqid)
	res.Object = obj
	ev := c.Log.Info().Str("SCRIPT", script).Str("TARGET", t.String())
	if obj.Defined("exit") {
		ev = ev.Str("EXIT", obj.Str("exit"))
	} else {
		ev = ev.Str("EXIT", "")
	}
	ev.Str("RTT", rtt).Str("REQID", reqid).Msg("run")
	return res
}

// runError is the error text of a failed run (§10.3), timeouts included.
func (c *Client) runError(rep Reply, err error) string {
	var over *OutputBudgetError
	if errors.As(err, &over) {
		return over.Error()
	}
	msg := failureText(rep, err)
	var ie *IdentityError
	if errors.As(err, &ie) || (err == nil && (rep.Status == 403 || rep.Status == 413)) {
		return msg
	}
	// Upstream rewrites any other failure that mentions a timeout.
	var te *TransportError
	if errors.As(err, &te) {
		if te.Timeout {
			return "read timeout after " + c.timeoutText() + "s"
		}
		return msg
	}
	if strings.Contains(strings.ToLower(msg), "timeout") {
		return "read timeout after " + c.timeoutText() + "s"
	}
	return msg
}

// failureText classifies a failed exchange (§10.3, without the run-only
// timeout rewrite).
func failureText(rep Reply, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case rep.Status == 403:
		if obj, perr := wire.ParseObject(rep.Body); perr == nil && obj.Defined("error") {
			return "forbidden: " + obj.Str("error")
		}
		return "forbidden: " + rep.StatusLine
	case rep.Status == 413:
		return "request too large"
	}
	return rep.StatusLine
}

// Ping pings every host at once (§10.5), then calls AfterPing, and returns
// one result per host in request order.
func (c *Client) Ping(ctx context.Context, hosts []string) ([]PingResult, error) {
	return c.PingReqID(ctx, hosts, "")
}

// PingReqID is Ping with the request id given ("" = a fresh one), so a
// caller can report the REQID its log lines carry.
func (c *Client) PingReqID(ctx context.Context, hosts []string, reqid string) ([]PingResult, error) {
	cfg, targets, err := c.fanOut(hosts, nil)
	if err != nil {
		return nil, err
	}
	if reqid == "" {
		reqid = pki.NewReqID()
	}
	var payload wire.Object
	payload.Set("reqid", reqid)
	if c.WantTags {
		payload.Set("want_tags", 1)
	}
	body, _ := payload.MarshalJSON()
	results := make([]PingResult, len(targets))
	c.each(ctx, len(targets), func(ctx context.Context, i int) {
		results[i] = c.pingOne(ctx, cfg, targets[i], reqid, body)
	}, func(i int, why error) {
		results[i] = skippedPing(targets[i], why)
	}, func(i int) bool {
		if c.OnPing != nil {
			c.OnPing(i, &results[i])
		}
		return !results[i].OK()
	})
	if c.AfterPing != nil {
		c.AfterPing(ctx, results)
	}
	return results, nil
}

func (c *Client) pingOne(ctx context.Context, cfg *tls.Config, t Target, reqid string, body []byte) PingResult {
	rep, err := c.exchange(ctx, cfg, t, "POST", "/ping", body)
	rtt := formatRTT(rep.RTT)
	res := PingResult{Target: t}
	var msg string
	if err != nil || !rep.OK() {
		msg = failureText(rep, err)
	} else if obj, perr := wire.ParseObject(rep.Body); perr == nil {
		if c.WantTags {
			res.Tags = takeTags(&obj)
		}
		obj.Set("rtt", rtt)
		obj.SetDefault("host", t.Host)
		res.Object = obj
		c.Log.Info().Str("TARGET", t.String()).Str("RESULT", "ok").Str("RTT", rtt).Str("REQID", reqid).Msg("ping")
		return res
	} else {
		msg = "invalid JSON"
	}
	c.Log.Error().Str("TARGET", t.String()).Str("ERROR", msg).Str("RTT", rtt).Str("REQID", reqid).Msg("ping")
	res.Object.Set("host", t.Host)
	res.Object.Set("status", "error")
	res.Object.Set("error", msg)
	res.Object.Set("rtt", rtt)
	return res
}

// takeTags removes "tags" from a ping reply and returns it when it is an
// object of strings (nil otherwise: a Perl agent sends none).
func takeTags(obj *wire.Object) map[string]string {
	raw, ok := obj.Raw("tags")
	if !ok {
		return nil
	}
	obj.Delete("tags")
	var tags map[string]string
	if json.Unmarshal(raw, &tags) != nil || tags == nil {
		return nil
	}
	return tags
}

// Capabilities asks every host for its allowlist at once (§10.6) and
// returns one result per host in request order.
func (c *Client) Capabilities(ctx context.Context, hosts []string) ([]CapResult, error) {
	cfg, targets, err := c.fanOut(hosts, nil)
	if err != nil {
		return nil, err
	}
	results := make([]CapResult, len(targets))
	c.each(ctx, len(targets), func(ctx context.Context, i int) {
		results[i] = c.capabilitiesOne(ctx, cfg, targets[i])
	}, nil, func(i int) bool { return !results[i].OK() })
	return results, nil
}

func (c *Client) capabilitiesOne(ctx context.Context, cfg *tls.Config, t Target) CapResult {
	rep, err := c.exchange(ctx, cfg, t, "GET", "/capabilities", nil)
	rtt := formatRTT(rep.RTT)
	res := CapResult{Target: t}
	var msg string
	switch {
	case err != nil:
		msg = err.Error()
	case !rep.OK():
		msg = rep.StatusLine
	default:
		obj, perr := wire.ParseObject(rep.Body)
		if perr != nil {
			msg = "invalid JSON"
			break
		}
		obj.Set("rtt", rtt)
		obj.SetDefault("host", t.Host)
		res.Object = obj
		c.Log.Info().Str("TARGET", t.String()).Int("SCRIPTS", len(res.Scripts())).Str("RTT", rtt).Msg("capabilities")
		return res
	}
	c.Log.Error().Str("TARGET", t.String()).Str("ERROR", msg).Str("RTT", rtt).Msg("capabilities")
	res.Object.Set("host", t.Host)
	res.Object.Set("status", "error")
	res.Object.Set("error", msg)
	res.Object.Set("rtt", rtt)
	return res
}

// formatRTT is upstream's sprintf('%.0fms'): whole milliseconds, rounded.
func formatRTT(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 0, 64) + "ms"
}
