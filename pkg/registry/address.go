package registry

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"
)

// DefaultAgentPort is the agent's serve port when a record has none (Perl
// agents do not report theirs).
const DefaultAgentPort = 7443

// lookupTimeout bounds the name check of Address, so an unreachable DNS
// server costs seconds, not minutes, per agent.
const lookupTimeout = 2 * time.Second

// Address is where the control host reaches a registered agent: "host:port",
// the one spelling used by discovery, the live spec, renewal and serial
// broadcasts. host is the recorded hostname when it resolves, else the
// recorded ip (the address the agent paired from); port is the recorded
// serve port, else 7443. IPv6 literals come bracketed ("[::1]:7443").
func Address(rec Record) string {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	return AddressWith(ctx, rec, net.DefaultResolver.LookupHost)
}

// AddressWith is Address with the caller's context and name lookup.
func AddressWith(ctx context.Context, rec Record, lookup func(ctx context.Context, host string) ([]string, error)) string {
	return net.JoinHostPort(host(ctx, rec, lookup), strconv.Itoa(Port(rec)))
}

// Port is the record's serve port, or DefaultAgentPort when absent or not a
// port number.
func Port(rec Record) int {
	n, err := strconv.Atoi(rec.Get(FieldPort))
	if err != nil || n < 1 || n > 65535 {
		return DefaultAgentPort
	}
	return n
}

func host(ctx context.Context, rec Record, lookup func(ctx context.Context, host string) ([]string, error)) string {
	name, ip := rec.Hostname(), rec.Get(FieldIP)
	if name == "" || net.ParseIP(name) != nil || ip == "" || ip == "unknown" {
		if name == "" {
			return ip
		}
		return name
	}
	if addrs, err := lookup(ctx, name); err == nil && len(addrs) > 0 {
		return name
	}
	return ip
}

// MaxLookups bounds the name lookups Addresses makes at once.
const MaxLookups = 32

// Addresses is the Address of each record, at most MaxLookups name lookups
// at once, each within lookupTimeout and ctx. A nil lookup is the system
// resolver.
func Addresses(ctx context.Context, recs []Record, lookup func(ctx context.Context, host string) ([]string, error)) []string {
	if lookup == nil {
		lookup = net.DefaultResolver.LookupHost
	}
	out := make([]string, len(recs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, MaxLookups)
	for i, rec := range recs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
			defer cancel()
			out[i] = AddressWith(lctx, rec, lookup)
		}()
	}
	wg.Wait()
	return out
}
