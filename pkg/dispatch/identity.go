package dispatch

import (
	"crypto/tls"
	"crypto/x509"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// IdentityError is a host refused because the agent there is not the one
// the registry names (D-31): its certificate's CN differs, or, with
// agent_identity = strict, the registry does not know the target. Nothing
// was sent to it. Results carry its text as their error; callers that
// report a per-host status show it as refused.
type IdentityError struct {
	Target   Target
	Expected []string // registry names the CN had to be one of; nil: target unregistered
	Got      string   // the CN the agent presented
}

func (e *IdentityError) Error() string {
	if e.Expected == nil {
		return "agent identity unknown: " + e.Target.String() + " is not in the agent registry (agent_identity = strict)"
	}
	got := e.Got
	if got == "" {
		got = "(none)"
	}
	return "agent identity mismatch: expected " + strings.Join(e.Expected, " or ") + ", got " + got
}

// resolveIdentities fills in each target's Agents from the registry, or
// marks it Unregistered under strict, and logs the unknown ones. Without a
// checking policy it does nothing.
func (c *Client) resolveIdentities(targets []Target, snap *agentid.Snapshot) error {
	if !c.Identity.Checks() {
		return nil
	}
	if snap == nil {
		snap = c.Identity.Load()
	}
	for i := range targets {
		t := &targets[i]
		var err error
		if t.Agents, err = snap.Lookup(t.Host, t.Port); err != nil {
			return err
		}
		if t.Agents != nil {
			continue
		}
		if c.Identity.Strict() {
			t.Unregistered = true
			c.Log.Warn().Str("TARGET", t.String()).Str("RESULT", "refused").Msg("identity-unknown")
			continue
		}
		c.Log.Info().Str("TARGET", t.String()).Str("RESULT", "allowed").Msg("identity-unknown")
	}
	return nil
}

// PrefetchIdentities reads from the registry now what a later Run of hosts
// will check (D-31), for RunRequest.Identity; nil when agents are not
// checked. The API calls it while it takes the run's locks.
func (c *Client) PrefetchIdentities(hosts []string) *agentid.Snapshot {
	if !c.Identity.Checks() || len(hosts) > MaxHosts {
		return nil
	}
	names, ports := make([]string, len(hosts)), make([]string, len(hosts))
	for i, h := range hosts {
		t := c.Target(h)
		names[i], ports[i] = t.Host, t.Port
	}
	snap := c.Identity.Load()
	snap.Prefetch(names, ports)
	return snap
}

// checkIdentity makes conf's handshake refuse an agent whose certificate
// does not carry one of t.Agents as its CN.
func checkIdentity(conf *tls.Config, t Target) {
	if t.Agents == nil {
		return
	}
	tlsx.AddPeerCheck(conf, func(leaf *x509.Certificate) error {
		cn := leaf.Subject.CommonName
		for _, name := range t.Agents {
			if cn == name {
				return nil
			}
		}
		return &IdentityError{Target: t, Expected: t.Agents, Got: cn}
	})
}
