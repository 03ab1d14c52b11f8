// Package sessioncache keeps the control host's TLS 1.3 sessions with agents
// so that a repeat contact resumes instead of paying a full handshake. The
// API and pairing-mode keep a Cache in memory; the CLI loads one from a file
// and saves it after its run.
//
// Each session is filed under the agent's address and the fingerprint of the
// control host's own certificate: after a rotation the sessions made with the
// old certificate are never offered again. Entries expire after MaxAge and
// the cache holds at most MaxEntries.
//
// What it holds is secret: a session's resumption secret lets whoever has it
// talk to the agent as the control host until the ticket expires, exactly as
// the ctrl-exec key does. The file is therefore private to its owner (0600)
// and a file that is not is ignored.
package sessioncache

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"sync"
	"time"
)

// Bounds of a cache.
const (
	MaxAge     = 24 * time.Hour // an entry older than this is never offered
	MaxEntries = 1024           // the oldest entries go first beyond this
	// refreshAfter is how old an entry must be before a fresh ticket for the
	// same agent replaces it: a warm run reuses its tickets and leaves the
	// file alone.
	refreshAfter = time.Hour
)

// Cache is a set of client sessions, safe for concurrent use.
type Cache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[key]*entry
	gone    map[string]bool // addresses dropped: not merged back by Save
	dirty   bool            // changed since load or the last Save
}

type key struct{ owner, addr string }

type entry struct {
	saved  time.Time
	ticket []byte // as received from the agent
	state  []byte // tls.SessionState.Bytes
	cs     *tls.ClientSessionState
}

// New returns an empty cache; now is its clock (nil: time.Now).
func New(now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{now: now, entries: map[key]*entry{}, gone: map[string]bool{}}
}

// Owner is the fingerprint the cache files sessions under for a client
// certificate (its leaf, DER): SHA-256, hex.
func Owner(leafDER []byte) string {
	sum := sha256.Sum256(leafDER)
	return hex.EncodeToString(sum[:])
}

// For returns the session slot of one connection to the agent at addr made
// with the client certificate owner. Use it as the connection's
// tls.Config.ClientSessionCache; it ignores the key crypto/tls passes, which
// is the server name without the port.
func (c *Cache) For(owner, addr string) *Slot {
	return &Slot{c: c, k: key{owner, addr}}
}

// Drop forgets the sessions with addr, whatever certificate made them.
func (c *Cache) Drop(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone[addr] = true
	c.dirty = true
	for k := range c.entries {
		if k.addr == addr {
			delete(c.entries, k)
			c.dirty = true
		}
	}
}

// Clear forgets every session (the control host's certificate changed).
func (c *Cache) Clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.entries {
		c.gone[k.addr] = true
	}
	clear(c.entries)
	c.dirty = true
}

// Len is the number of entries, expired ones included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// Slot is one connection's view of the cache.
type Slot struct {
	c       *Cache
	k       key
	offered bool // Get handed crypto/tls a session
	resumed bool // the connection resumed it
}

// Offered reports whether the connection offered a cached session.
func (s *Slot) Offered() bool { return s.offered }

// Resumed records that the handshake resumed the offered session. The
// agent's fresh ticket then replaces the cached one only once that is
// getting old; after a full handshake it always does.
func (s *Slot) Resumed() { s.resumed = true }

// Holds reports whether the cache has a session for this slot young
// enough to be offered: when it has none the connection will make a full
// handshake.
func (s *Slot) Holds() bool {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[s.k]
	return ok && c.now().Sub(e.saved) <= MaxAge
}

// Get implements tls.ClientSessionCache.
func (s *Slot) Get(string) (*tls.ClientSessionState, bool) {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[s.k]
	if !ok {
		return nil, false
	}
	if c.now().Sub(e.saved) > MaxAge {
		delete(c.entries, s.k)
		c.dirty = true
		return nil, false
	}
	if e.cs == nil {
		ss, err := tls.ParseSessionState(e.state)
		if err == nil {
			e.cs, err = tls.NewResumptionState(e.ticket, ss)
		}
		if err != nil {
			delete(c.entries, s.k)
			c.dirty = true
			return nil, false
		}
	}
	s.offered = true
	return e.cs, true
}

// Put implements tls.ClientSessionCache.
func (s *Slot) Put(_ string, cs *tls.ClientSessionState) {
	c := s.c
	if cs == nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.entries[s.k]; ok {
			delete(c.entries, s.k)
			c.dirty = true
		}
		return
	}
	now := c.now()
	c.mu.Lock()
	if e, ok := c.entries[s.k]; ok && s.resumed && now.Sub(e.saved) < refreshAfter {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	ticket, ss, err := cs.ResumptionState()
	if err != nil || ticket == nil {
		return
	}
	state, err := ss.Bytes()
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries[s.k] = &entry{saved: now, ticket: ticket, state: state, cs: cs}
	c.dirty = true
	c.trimLocked()
}

// trimLocked drops expired entries and then the oldest beyond MaxEntries.
func (c *Cache) trimLocked() {
	now := c.now()
	for k, e := range c.entries {
		if now.Sub(e.saved) > MaxAge {
			delete(c.entries, k)
			c.dirty = true
		}
	}
	for len(c.entries) > MaxEntries {
		var oldest key
		var at time.Time
		first := true
		for k, e := range c.entries {
			if first || e.saved.Before(at) {
				oldest, at, first = k, e.saved, false
			}
		}
		delete(c.entries, oldest)
		c.dirty = true
	}
}
