// Package agentid decides which agent must answer at a control-host target
// (SPEC §8.7, D-31). A target names a registered agent when its host is the
// agent's hostname, or when its host and port are the address and serve
// port the agent paired with (registry fields ip and port); the agent that
// answers there must then present a certificate whose CN is that hostname,
// as pairing issued it. Targets are matched as typed: no name is looked up.
//
//	p := agentid.New(conf)                // agent_identity and the registry dir
//	snap := p.Load()                      // once per fan-out
//	names, err := snap.Lookup(host, port) // nil: the registry does not know it
//
// pkg/dispatch applies the answer in the TLS handshake, before any request
// byte is sent.
package agentid

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// Policy is agent_identity and the registry it reads.
type Policy struct {
	Mode     string // config.IdentityRegistry, IdentityStrict or IdentityOff
	Registry *registry.Registry
}

// New is the policy ctrl-exec.conf sets.
func New(conf *config.Control) *Policy {
	return &Policy{Mode: conf.AgentIdentity, Registry: registry.New(conf.RegistryDir)}
}

// Checks reports whether agents are checked at all (not "off").
func (p *Policy) Checks() bool { return p != nil && p.Mode != config.IdentityOff }

// Strict reports whether targets the registry does not know are refused.
func (p *Policy) Strict() bool { return p != nil && p.Mode == config.IdentityStrict }

// Snapshot is the registry as one call sees it. A host that is a record's
// file name costs one file read; the whole registry is read (once) only
// for a target it does not name exactly, such as an address.
type Snapshot struct {
	reg  *registry.Registry // nil when built from records
	once sync.Once
	idx  *index
	err  error
	// looked holds the answers Prefetch found, by target; written only
	// before the snapshot is handed on, so read without a lock.
	looked map[target]answer
}

type target struct{ host, port string }

type answer struct {
	names []string
	err   error
}

type index struct {
	byName map[string][]string   // lower-case hostname → hostnames
	byAddr map[addrPort][]string // recorded ip and serve port → hostnames
}

type addrPort struct {
	addr netip.Addr
	port int
}

// Load starts a snapshot of the registry for one call; Lookup reads it.
func (p *Policy) Load() *Snapshot { return &Snapshot{reg: p.Registry} }

// NewSnapshot indexes records by hostname and by recorded address and port.
func NewSnapshot(recs []registry.Record) *Snapshot {
	s := &Snapshot{idx: newIndex(recs)}
	s.once.Do(func() {})
	return s
}

// full reads the whole registry, once. A registry file that does not parse
// still names its agent by its file name (<hostname>.json), so a target of
// that name is checked rather than waved through as unknown. A registry
// directory that cannot be read is an error: the call cannot be checked.
func (s *Snapshot) full() (*index, error) {
	s.once.Do(func() {
		recs, skipped, err := s.reg.List()
		if err != nil {
			s.err = err
			return
		}
		for _, sk := range skipped {
			name := strings.TrimSuffix(filepath.Base(sk.Path), ".json")
			recs = append(recs, registry.Record{registry.FieldHostname: name})
		}
		s.idx = newIndex(recs)
	})
	return s.idx, s.err
}

func newIndex(recs []registry.Record) *index {
	s := &index{byName: map[string][]string{}, byAddr: map[addrPort][]string{}}
	for _, rec := range recs {
		name := rec.Hostname()
		if name == "" {
			continue
		}
		key := strings.ToLower(name)
		s.byName[key] = appendNew(s.byName[key], name)
		if addr, ok := parseAddr(rec.Get(registry.FieldIP)); ok {
			k := addrPort{addr, registry.Port(rec)}
			s.byAddr[k] = appendNew(s.byAddr[k], name)
		}
	}
	return s
}

// Lookup returns the hostnames one of which the agent answering at host and
// port must carry as its certificate's CN, or nil when the registry knows
// neither the host (by hostname, any letter case) nor the address and port.
// Several names come back only when several records share a name up to
// case, or an address and port. The error is a registry that cannot be
// read.
func (s *Snapshot) Lookup(host, port string) ([]string, error) {
	if a, ok := s.looked[target{host, port}]; ok {
		return a.names, a.err
	}
	return s.lookup(host, port)
}

// Prefetch looks up every (hosts[i], ports[i]) now and keeps the answers
// for Lookup, so that the registry reads of a call can overlap other work
// (the API takes a run's locks meanwhile: with etcd both are round trips).
// It must return before the snapshot is used elsewhere.
func (s *Snapshot) Prefetch(hosts, ports []string) {
	s.looked = make(map[target]answer, len(hosts))
	for i, h := range hosts {
		names, err := s.lookup(h, ports[i])
		s.looked[target{h, ports[i]}] = answer{names, err}
	}
}

func (s *Snapshot) lookup(host, port string) ([]string, error) {
	if _, isAddr := parseAddr(host); s.reg != nil && registry.ValidHostname(host) && !isAddr {
		// The common case, a registered name as typed: its file alone. An
		// address needs the whole registry anyway (its record may be named
		// otherwise), which also finds a record named as the address: one
		// read, not two (with etcd, one round trip a run fewer).
		_, err := s.reg.Get(host)
		var pathErr *fs.PathError
		switch {
		case err == nil:
			return []string{host}, nil
		case errors.Is(err, registry.ErrNotFound):
		case errors.As(err, &pathErr):
			return nil, err // cannot be read: cannot be checked
		default:
			return []string{host}, nil // does not parse, but names its agent
		}
	}
	idx, err := s.full()
	if err != nil {
		return nil, err
	}
	if names := idx.byName[strings.ToLower(host)]; names != nil {
		return names, nil
	}
	addr, ok := parseAddr(host)
	if !ok {
		return nil, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		return nil, nil
	}
	return idx.byAddr[addrPort{addr, n}], nil
}

// parseAddr reads an IP address, an IPv4-mapped IPv6 one as IPv4 and
// without any zone, so 127.0.0.1 and ::ffff:127.0.0.1 are one address.
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}

func appendNew(names []string, name string) []string {
	for _, n := range names {
		if n == name {
			return names
		}
	}
	return append(names, name)
}
