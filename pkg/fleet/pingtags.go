package fleet

import (
	"context"
	"net"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// AttachTagRefresh makes every Ping of client ask the agents for their
// [tags] and store them in the registry records of the agents that
// answered, before Ping returns; then any AfterPing hook already attached
// (renewal) runs. Results are never changed: dispatch has already taken
// the tags out of them. Agents that send no tags (Perl agents, Go agents
// with an auth_hook) keep their stored tags.
func AttachTagRefresh(client *dispatch.Client, reg *registry.Registry, log zerolog.Logger, now func() time.Time) {
	client.WantTags = true
	next := client.AfterPing
	client.AfterPing = func(ctx context.Context, results []dispatch.PingResult) {
		RefreshTags(reg, results, log, now())
		if next != nil {
			next(ctx, results)
		}
	}
}

// RefreshTags stores the tags of every successful ping result that carries
// them in the registry record of the agent reached (see pingRecord).
// A failure is logged, never fatal.
func RefreshTags(reg *registry.Registry, results []dispatch.PingResult, log zerolog.Logger, now time.Time) {
	for _, res := range results {
		if !res.OK() || res.Tags == nil {
			continue
		}
		name, ok := pingRecord(reg, res)
		if !ok {
			continue
		}
		if err := StoreTagMap(reg, name, res.Tags, now); err != nil {
			log.Warn().Str("AGENT", name).Str("ERROR", err.Error()).Msg("registry-tags-fail")
		}
	}
}

// pingRecord finds the registry record a ping reached: the one named by
// the hostname the agent reported, else by the target's host (as renewal
// does), and only if the target is that record's own address (its
// hostname or ip, and its port). An agent cannot so write another agent's
// tags by reporting that agent's name.
func pingRecord(reg *registry.Registry, res dispatch.PingResult) (string, bool) {
	for _, name := range []string{res.Str("host"), res.Target.Host} {
		if !registry.ValidHostname(name) {
			continue
		}
		rec, err := reg.Get(name)
		if err != nil {
			continue
		}
		return name, reachedAt(rec, res.Target)
	}
	return "", false
}

// reachedAt reports whether t is rec's address.
func reachedAt(rec registry.Record, t dispatch.Target) bool {
	port := registry.DefaultAgentPort
	if t.Port != "" {
		n, err := strconv.Atoi(t.Port)
		if err != nil {
			return false
		}
		port = n
	}
	if port != registry.Port(rec) {
		return false
	}
	if t.Host == rec.Hostname() {
		return true
	}
	ip, recIP := net.ParseIP(t.Host), net.ParseIP(rec.Get(registry.FieldIP))
	return ip != nil && ip.Equal(recIP)
}
