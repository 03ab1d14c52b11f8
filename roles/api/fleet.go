package api

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	ops "github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/renewal"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

// fleet is what the API asks of the agents: the dispatch engine (§10) and
// the registry (§7.5). The server holds it as an interface so its unit tests
// can count calls without agents.
type fleet interface {
	// Run and Ping go through pkg/fleet: status, guardrails, streaming, audit.
	Run(ctx context.Context, req dispatch.RunRequest, opt ops.Options) (ops.Run, error)
	Ping(ctx context.Context, hosts []string, opt ops.Options) (ops.Ping, error)
	Capabilities(ctx context.Context, hosts []string) ([]dispatch.CapResult, error)
	// Registered lists the paired agents, sorted by hostname, each with the
	// address to reach it by (registry.Address) and its stored tags.
	Registered() ([]agent, error)
	// StoreTags keeps the tags a capabilities result reported in the
	// hostname's registry record.
	StoreTags(hostname string, r dispatch.CapResult) error
	// PrefetchIdentities reads the registry entries a Run of hosts will
	// check (RunRequest.Identity); nil when agents are not checked.
	PrefetchIdentities(hosts []string) *agentid.Snapshot
}

// agent is one registry entry as the API uses it.
type agent struct {
	Hostname string            // the registry's name, shown in hook requests and the live spec
	Address  string            // host:port to contact
	Tags     map[string]string // as the last ping, discovery or pairing stored them (nil: none)
}

// liveFleet is the real fleet: the dispatch client built from ctrl-exec.conf
// and the registry in /var/lib/ctrl-exec/agents.
type liveFleet struct {
	*dispatch.Client
	registry *registry.Registry
	log      zerolog.Logger
	now      func() time.Time
}

func (f *liveFleet) Run(ctx context.Context, req dispatch.RunRequest, opt ops.Options) (ops.Run, error) {
	return ops.RunScript(ctx, f.Client, req, opt)
}

func (f *liveFleet) Ping(ctx context.Context, hosts []string, opt ops.Options) (ops.Ping, error) {
	return ops.PingHosts(ctx, f.Client, hosts, opt)
}

func (f *liveFleet) StoreTags(hostname string, r dispatch.CapResult) error {
	return ops.StoreTags(f.registry, hostname, r, f.now())
}

func newFleet(cfg *config.Control, b *state.Backend, log zerolog.Logger, now func() time.Time) *liveFleet {
	c := dispatch.NewClient(cfg, log)
	b.ShareIdentity(c)
	c.Now = now
	// Registered agents past half their certificate's life are renewed
	// after each /ping batch, before it is answered (§15.1, D-23): the
	// same hook as the CLI's ping.
	var shared *renewal.Shared
	if b.Name != "files" {
		shared = &renewal.Shared{Registry: b.Registry, Serials: b.Serials}
	}
	renewal.Attach(c, cfg, shared, log, now)
	// And each registered agent's reported [tags] are kept for "tags".
	ops.AttachTagRefresh(c, b.Registry, log, now)
	return &liveFleet{Client: c, registry: b.Registry, log: log, now: now}
}

func (f *liveFleet) Registered() ([]agent, error) {
	recs, skipped, err := f.registry.List()
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		f.log.Warn().Str("PATH", s.Path).Str("ERROR", s.Err.Error()).Msg("registry-skip")
	}
	addrs := registry.Addresses(context.Background(), recs, nil)
	agents := make([]agent, len(recs))
	for i, rec := range recs {
		agents[i] = agent{Hostname: rec.Hostname(), Tags: ops.RecordTags(rec), Address: addrs[i]}
	}
	return agents, nil
}
