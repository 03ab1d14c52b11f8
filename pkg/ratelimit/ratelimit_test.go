package ratelimit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"
)

// clock is the injected integer-second clock.
type clock struct {
	mu  sync.Mutex
	now int64
}

func (c *clock) get() int64  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t int64) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }

// lines returns each logged event as "level message K=v ..." in key order.
func (l *logBuf) lines(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	dec := json.NewDecoder(&l.b)
	for dec.More() {
		var ev map[string]any
		if err := dec.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%v %v", ev["level"], ev["message"])
		for _, k := range []string{"COUNT", "PEER", "REASON"} {
			if v, ok := ev[k]; ok {
				s += fmt.Sprintf(" %s=%v", k, v)
			}
		}
		out = append(out, s)
	}
	return out
}

func newTestLimiter(cfg Config) (*Limiter, *clock, *logBuf) {
	c, lb := &clock{}, &logBuf{}
	return New(cfg, c.get, zerolog.New(lb)), c, lb
}

// step is one event at second At: "conn" is a connection past its handshake
// as the agent handles it (Admit), "fail" a failed
// handshake (RecordFailure, then Check), "check" a bare Check. Repeat > 1
// repeats the step; the wanted outcome is that of the last one.
type step struct {
	At      int64
	Op      string
	Peer    string
	Repeat  int
	Blocked bool
}

func run(t *testing.T, l *Limiter, c *clock, steps []step) {
	t.Helper()
	for i, s := range steps {
		c.set(s.At)
		var blocked bool
		for range max(s.Repeat, 1) {
			switch s.Op {
			case "conn":
				blocked = l.Admit(s.Peer)
			case "fail":
				l.RecordFailure(s.Peer)
				blocked = l.Check(s.Peer)
			case "check":
				blocked = l.Check(s.Peer)
			default:
				t.Fatalf("step %d: op %q", i, s.Op)
			}
		}
		if blocked != s.Blocked {
			t.Errorf("step %d %+v: blocked = %v", i, s, blocked)
		}
	}
}

const a, b = "10.0.0.1", "10.0.0.2"

func TestLimiter(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		logs  []string
	}{
		{
			name: "11th connection within 60 s starts a 300 s block; expiry forgets the peer",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 5},
				{At: 59, Op: "conn", Peer: a, Repeat: 5},
				{At: 59, Op: "conn", Peer: a, Blocked: true},
				{At: 59, Op: "conn", Peer: b},
				{At: 358, Op: "conn", Peer: a, Blocked: true},
				{At: 359, Op: "conn", Peer: a},            // block over: entry deleted, allowed
				{At: 359, Op: "conn", Peer: a, Repeat: 9}, // 10 in the window again, all allowed
				{At: 359, Op: "conn", Peer: a, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=volume", "warn rate-block PEER=10.0.0.1 REASON=volume"},
		},
		{
			name: "the volume window slides",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 5},
				{At: 30, Op: "conn", Peer: a, Repeat: 5},
				{At: 60, Op: "conn", Peer: a, Repeat: 5}, // the five from t=0 are 60 s old: gone
				{At: 89, Op: "conn", Peer: a, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=volume"},
		},
		{
			name: "3rd handshake failure within 600 s starts a 3600 s block",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "fail", Peer: a},
				{At: 100, Op: "fail", Peer: a},
				{At: 100, Op: "conn", Peer: a},
				{At: 599, Op: "fail", Peer: a, Blocked: true},
				{At: 4198, Op: "conn", Peer: a, Blocked: true},
				{At: 4199, Op: "conn", Peer: a},
				{At: 4199, Op: "fail", Peer: a},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=probe"},
		},
		{
			name: "a failure exactly 600 s old no longer counts",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "fail", Peer: a},
				{At: 300, Op: "fail", Peer: a},
				{At: 600, Op: "fail", Peer: a},
				{At: 601, Op: "fail", Peer: a, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=probe"},
		},
		{
			name: "a running block is silent and not extended",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "fail", Peer: a, Repeat: 3, Blocked: true},
				{At: 10, Op: "fail", Peer: a, Repeat: 50, Blocked: true},
				{At: 3600, Op: "check", Peer: a},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=probe"},
		},
		{
			name: "volume is checked before probe",
			cfg:  def,
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 10},
				{At: 0, Op: "fail", Peer: a, Repeat: 2, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=volume"},
		},
		{
			name: "disabled lets everything through and logs nothing",
			cfg:  Config{Disabled: true, Volume: def.Volume, Probe: def.Probe},
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 100},
				{At: 0, Op: "fail", Peer: a, Repeat: 100},
			},
		},
		{
			name: "volume limit 0 turns the volume check off only",
			cfg:  Config{Volume: Spec{0, 60, 300}, Probe: def.Probe},
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 100},
				{At: 1, Op: "fail", Peer: a, Repeat: 3, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=probe"},
		},
		{
			name: "probe limit 0 turns the probe check off only",
			cfg:  Config{Volume: def.Volume, Probe: Spec{0, 600, 3600}},
			steps: []step{
				{At: 0, Op: "fail", Peer: a, Repeat: 100},
				{At: 1, Op: "conn", Peer: a, Repeat: 10},
				{At: 1, Op: "conn", Peer: a, Blocked: true},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=volume"},
		},
		{
			name: "custom spec 2/10/5",
			cfg:  Config{Volume: Spec{2, 10, 5}, Probe: def.Probe},
			steps: []step{
				{At: 0, Op: "conn", Peer: a, Repeat: 2},
				{At: 9, Op: "conn", Peer: a, Blocked: true},
				{At: 13, Op: "conn", Peer: a, Blocked: true},
				{At: 14, Op: "conn", Peer: a},
			},
			logs: []string{"warn rate-block PEER=10.0.0.1 REASON=volume"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, c, lb := newTestLimiter(tt.cfg)
			run(t, l, c, tt.steps)
			if diff := cmp.Diff(tt.logs, lb.lines(t)); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpiryDeletesEntry(t *testing.T) {
	l, c, _ := newTestLimiter(DefaultConfig())
	run(t, l, c, []step{{At: 0, Op: "fail", Peer: a, Repeat: 3, Blocked: true}})
	c.set(3600)
	if l.Check(a) {
		t.Fatal("still blocked after 3600 s")
	}
	if _, ok := l.peers[a]; ok {
		t.Errorf("entry for %s kept after its block ended", a)
	}
}

func fill(l *Limiter, n int, blockedUntil func(i int) int64) {
	for i := range n {
		l.peers[fmt.Sprintf("192.168.%d.%d", i/256, i%256)] = &entry{blockedUntil: blockedUntil(i)}
	}
}

func TestEviction(t *testing.T) {
	t.Run("never-blocked peer goes first", func(t *testing.T) {
		l, c, lb := newTestLimiter(DefaultConfig())
		c.set(50)
		fill(l, MaxEntries-1, func(i int) int64 { return 100 + int64(i) })
		l.peers["victim"] = &entry{connections: []int64{49}}
		if l.Check(a) {
			t.Fatal("new peer blocked")
		}
		_, victim := l.peers["victim"]
		_, added := l.peers[a]
		if diff := cmp.Diff([]any{MaxEntries, false, true}, []any{len(l.peers), victim, added}); diff != "" {
			t.Errorf("[size victim-present new-present] (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"warn rate-evict COUNT=1000"}, lb.lines(t)); diff != "" {
			t.Errorf("logs (-want +got):\n%s", diff)
		}
	})
	t.Run("earliest block end goes first", func(t *testing.T) {
		l, c, _ := newTestLimiter(DefaultConfig())
		c.set(50)
		fill(l, MaxEntries, func(i int) int64 { return 1000 - int64(i) })
		l.Check(a)
		if _, ok := l.peers["192.168.3.231"]; ok { // i = 999, blocked until 1
			t.Error("entry with the earliest block end kept")
		}
		if len(l.peers) != MaxEntries {
			t.Errorf("%d entries", len(l.peers))
		}
	})
	t.Run("a full table can evict the checking peer itself", func(t *testing.T) {
		// Upstream evicts before looking at who is checking; a peer with
		// history and no block loses that history.
		l, c, lb := newTestLimiter(DefaultConfig())
		c.set(50)
		fill(l, MaxEntries-1, func(i int) int64 { return 100 })
		l.peers[a] = &entry{connections: []int64{41, 42, 43, 44, 45, 46, 47, 48, 49, 50}}
		if l.Check(a) {
			t.Error("peer blocked although its history was evicted")
		}
		if diff := cmp.Diff([]string{"warn rate-evict COUNT=1000"}, lb.lines(t)); diff != "" {
			t.Errorf("logs (-want +got):\n%s", diff)
		}
	})
}

func TestBlockedIsReadOnly(t *testing.T) {
	l, c, _ := newTestLimiter(DefaultConfig())
	run(t, l, c, []step{{At: 0, Op: "conn", Peer: a, Repeat: 11, Blocked: true}})
	for _, tt := range []struct {
		at   int64
		peer string
		want bool
	}{{299, a, true}, {299, b, false}, {300, a, false}, {300, a, false}} {
		c.set(tt.at)
		if got := l.Blocked(tt.peer); got != tt.want {
			t.Errorf("Blocked(%s) at %d = %v", tt.peer, tt.at, got)
		}
	}
	if _, ok := l.peers[a]; !ok || len(l.peers) != 1 {
		t.Errorf("Blocked changed the table: %v", l.peers)
	}
}

func TestClear(t *testing.T) {
	l, c, _ := newTestLimiter(DefaultConfig())
	run(t, l, c, []step{
		{At: 0, Op: "conn", Peer: a, Repeat: 11, Blocked: true},
		{At: 0, Op: "fail", Peer: b, Repeat: 3, Blocked: true},
	})
	l.Clear()
	run(t, l, c, []step{{At: 1, Op: "conn", Peer: a}, {At: 1, Op: "conn", Peer: b}})
}

func TestConcurrentUse(t *testing.T) {
	l := New(DefaultConfig(), nil, zerolog.Nop())
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				peer := fmt.Sprintf("10.%d.%d.1", g, i%300)
				l.RecordFailure(peer)
				l.Admit(peer)
				l.Blocked(peer)
				if i == 250 {
					l.Clear()
				}
			}
		})
	}
	wg.Wait()
	if n := len(l.peers); n > MaxEntries+8 {
		t.Errorf("%d entries", n)
	}
}

// A burst of connections from one peer at the same instant: exactly the
// volume limit is admitted, whatever the interleaving.
func TestAdmitBurst(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Volume = Spec{Limit: 10, Window: 60, Block: 300}
	for round := range 20 {
		l, _, _ := newTestLimiter(cfg)
		var admitted sync.WaitGroup
		var mu sync.Mutex
		n := 0
		start := make(chan struct{})
		for range 64 {
			admitted.Go(func() {
				<-start
				if !l.Admit(a) {
					mu.Lock()
					n++
					mu.Unlock()
				}
			})
		}
		close(start)
		admitted.Wait()
		if n != 10 {
			t.Fatalf("round %d: %d of 64 simultaneous connections admitted, want 10", round, n)
		}
	}
}
