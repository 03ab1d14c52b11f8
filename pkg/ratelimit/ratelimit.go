// Package ratelimit is the agent's per-peer connection limiter and its
// allowed_ips filter (SPEC §18).
package ratelimit

import (
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// MaxEntries bounds the peer table; a check on a full table evicts one peer.
const MaxEntries = 1000

// Spec is one threshold: Limit events within Window seconds start a block of
// Block seconds. Limit 0 switches the threshold off.
type Spec struct{ Limit, Window, Block int64 }

// Config is the agent's rate_limit_* settings.
type Config struct {
	Disabled bool
	Volume   Spec // connections that passed the check
	Probe    Spec // TLS handshake failures
}

// DefaultConfig: 10 connections per 60 s → 300 s block; 3 handshake
// failures per 600 s → 3600 s block.
func DefaultConfig() Config {
	return Config{
		Volume: Spec{Limit: 10, Window: 60, Block: 300},
		Probe:  Spec{Limit: 3, Window: 600, Block: 3600},
	}
}

type entry struct {
	connections  []int64
	failures     []int64
	blockedUntil int64 // 0 = never blocked
}

// Limiter is safe for concurrent use. Its state lives in memory only and is
// lost on restart, as upstream's.
type Limiter struct {
	cfg   Config
	now   func() int64
	log   zerolog.Logger
	mu    sync.Mutex
	peers map[string]*entry
}

// New returns a Limiter. now gives Unix seconds; nil means the wall clock.
func New(cfg Config, now func() int64, log zerolog.Logger) *Limiter {
	if now == nil {
		now = func() int64 { return time.Now().Unix() }
	}
	return &Limiter{cfg: cfg, now: now, log: log, peers: map[string]*entry{}}
}

// Check reports whether peer must be refused now, applying §18.1 step by
// step: a running block refuses silently; an ended block forgives the peer
// entirely; otherwise the thresholds are counted and may start a block,
// which is logged as rate-block. The agent calls it after RecordFailure.
func (l *Limiter) Check(peer string) (blocked bool) {
	if l.cfg.Disabled {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, blocked = l.check(peer, l.now())
	return blocked
}

// Admit is Check for a connection that completed its handshake, counting
// it when it is let through, all under one lock: of a burst of connections
// at once exactly the volume limit gets through. Like RecordFailure it
// records nothing when the limiter is disabled (upstream kept recording,
// growing its table without bound).
func (l *Limiter) Admit(peer string) (blocked bool) {
	if l.cfg.Disabled {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	e, blocked := l.check(peer, now)
	if !blocked {
		if e == nil {
			e = l.entry(peer)
		}
		e.connections = append(e.connections, now)
	}
	return blocked
}

// check is Check with l.mu held. It returns the peer's entry when it has
// one after the check (nil when an ended block just forgave it).
func (l *Limiter) check(peer string, now int64) (*entry, bool) {
	if e, ok := l.peers[peer]; ok && e.blockedUntil != 0 {
		if e.blockedUntil > now {
			return e, true
		}
		delete(l.peers, peer)
		return nil, false
	}

	if len(l.peers) >= MaxEntries {
		l.evictOne()
	}
	e := l.entry(peer)
	prune := max(l.cfg.Volume.Window, l.cfg.Probe.Window)
	e.connections = within(e.connections, now, prune)
	e.failures = within(e.failures, now, prune)

	if v := l.cfg.Volume; v.Limit > 0 && count(e.connections, now, v.Window) >= v.Limit {
		e.blockedUntil = now + v.Block
		l.log.Warn().Str("PEER", peer).Str("REASON", "volume").Msg("rate-block")
		return e, true
	}
	if p := l.cfg.Probe; p.Limit > 0 && count(e.failures, now, p.Window) >= p.Limit {
		e.blockedUntil = now + p.Block
		l.log.Warn().Str("PEER", peer).Str("REASON", "probe").Msg("rate-block")
		return e, true
	}
	return e, false
}

// Blocked reports a running block without counting or changing anything:
// the cheap test the agent may make before the TLS handshake (D-15).
func (l *Limiter) Blocked(peer string) bool {
	if l.cfg.Disabled {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peers[peer]
	return ok && e.blockedUntil > l.now()
}

// RecordFailure counts a failed TLS handshake; call Check right after.
func (l *Limiter) RecordFailure(peer string) {
	if l.cfg.Disabled {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entry(peer)
	e.failures = append(e.failures, l.now())
}

// Clear forgets every peer (SIGHUP).
func (l *Limiter) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.peers)
}

func (l *Limiter) entry(peer string) *entry {
	e, ok := l.peers[peer]
	if !ok {
		e = &entry{}
		l.peers[peer] = e
	}
	return e
}

// evictOne drops the peer whose block ends first, never-blocked peers
// first of all (ties: whichever the map yields first, as upstream).
func (l *Limiter) evictOne() {
	victim, least, found := "", int64(0), false
	for p, e := range l.peers {
		if !found || e.blockedUntil < least {
			victim, least, found = p, e.blockedUntil, true
		}
	}
	delete(l.peers, victim)
	l.log.Warn().Int("COUNT", MaxEntries).Msg("rate-evict")
}

// within keeps the timestamps less than window seconds old, in place.
func within(ts []int64, now, window int64) []int64 {
	kept := ts[:0]
	for _, t := range ts {
		if now-t < window {
			kept = append(kept, t)
		}
	}
	return kept
}

func count(ts []int64, now, window int64) int64 {
	var n int64
	for _, t := range ts {
		if now-t < window {
			n++
		}
	}
	return n
}
