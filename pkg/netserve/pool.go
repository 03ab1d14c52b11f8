package netserve

import (
	"context"
	"net"
	"sync"
	"time"
)

// DefaultShedAfter is how long a connection must have been reading its
// request before a new connection may shed it: a busy server's ordinary
// clients take milliseconds, slow or idle ones hold on for seconds.
const DefaultShedAfter = time.Second

// Pool bounds the connections a server handles at once. A connection is
// "reading" from Admit until Slot.Read (handshake, request head and body),
// then "served". When every slot is taken, admitting a new connection sheds
// the connection that has been reading longest, once it has been reading for
// ShedAfter: a flood of slow or idle clients cannot keep new ones out.
// Served connections are never shed; when every slot holds one, Admit waits
// (new clients wait in the kernel's listen queue).
type Pool struct {
	ShedAfter time.Duration // 0 = DefaultShedAfter; negative = shed at once
	Now       func() time.Time

	slots    chan struct{}
	mu       sync.Mutex
	reading  map[*Slot]struct{}
	stopping bool
}

// Slot is one admitted connection's place in a Pool.
type Slot struct {
	pool  *Pool
	conn  net.Conn
	since time.Time
	shed  bool // cut by a newer connection or by Stop
}

// NewPool returns a pool of n slots (at least 1).
func NewPool(n int) *Pool {
	return &Pool{slots: make(chan struct{}, max(n, 1)), reading: map[*Slot]struct{}{}}
}

// Cap is the number of slots.
func (p *Pool) Cap() int { return cap(p.slots) }

// Reading is how many admitted connections have not finished their request.
func (p *Pool) Reading() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reading)
}

// Admit takes a slot for c, shedding a slow reader if every slot is taken.
// It returns false, with c untouched, when ctx ends or the pool is stopping.
func (p *Pool) Admit(ctx context.Context, c net.Conn) (*Slot, bool) {
	for {
		select {
		case p.slots <- struct{}{}:
			return p.register(c)
		default:
		}
		if s, ok, done := p.waitSlot(ctx, c, p.shedOldest()); done {
			return s, ok
		}
	}
}

// waitSlot waits for a free slot, for ctx, or (wait > 0) for wait to pass;
// done is false only in the last case.
func (p *Pool) waitSlot(ctx context.Context, c net.Conn, wait time.Duration) (s *Slot, ok, done bool) {
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	select {
	case p.slots <- struct{}{}:
		s, ok = p.register(c)
		return s, ok, true
	case <-timer: // the oldest reader may be shed now
		return nil, false, false
	case <-ctx.Done():
		return nil, false, true
	}
}

func (p *Pool) register(c net.Conn) (*Slot, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		<-p.slots
		return nil, false
	}
	s := &Slot{pool: p, conn: c, since: p.now()}
	p.reading[s] = struct{}{}
	return s, true
}

// shedOldest cuts the longest-reading connection if it has read for
// ShedAfter. Otherwise it returns how long until it will have (0: there is
// no reader to wait for).
func (p *Pool) shedOldest() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var oldest *Slot
	for s := range p.reading {
		if oldest == nil || s.since.Before(oldest.since) {
			oldest = s
		}
	}
	if oldest == nil {
		return 0
	}
	if left := p.shedAfter() - p.now().Sub(oldest.since); left > 0 {
		return left
	}
	oldest.cutLocked()
	return 0
}

// cutLocked ends the slot's reads and writes at once; its handler sees an
// I/O error and releases the slot.
func (s *Slot) cutLocked() {
	s.shed = true
	delete(s.pool.reading, s)
	s.conn.SetDeadline(time.Unix(1, 0))
}

// SetDeadline sets the connection's deadline unless it was shed: a handler
// sets its deadlines through its slot so that it never undoes a cut.
func (s *Slot) SetDeadline(t time.Time) {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	if !s.shed {
		s.conn.SetDeadline(t)
	}
}

// SetReadDeadline is SetDeadline for reads only.
func (s *Slot) SetReadDeadline(t time.Time) {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	if !s.shed {
		s.conn.SetReadDeadline(t)
	}
}

// Read marks the request read: the connection is served from now on and
// never shed. False means it was shed (or the pool is stopping) and the
// handler should close it without answering.
func (s *Slot) Read() bool {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	if s.shed {
		return false
	}
	delete(s.pool.reading, s)
	return true
}

// Shed reports whether the slot's connection was cut by a newer one or by
// Stop, so a handler need not log the failure it caused.
func (s *Slot) Shed() bool {
	s.pool.mu.Lock()
	defer s.pool.mu.Unlock()
	return s.shed
}

// Release gives the slot back; call it once, when the connection is done.
func (s *Slot) Release() {
	s.pool.mu.Lock()
	delete(s.pool.reading, s)
	s.pool.mu.Unlock()
	<-s.pool.slots
}

// Stop cuts every connection still reading (a shutdown need not wait for
// idle or slow clients) and makes later Admits fail.
func (p *Pool) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	for s := range p.reading {
		s.cutLocked()
	}
}

func (p *Pool) shedAfter() time.Duration {
	switch {
	case p.ShedAfter == 0:
		return DefaultShedAfter
	case p.ShedAfter < 0:
		return 0
	}
	return p.ShedAfter
}

func (p *Pool) now() time.Time {
	if p.Now == nil {
		return time.Now()
	}
	return p.Now()
}
