package agent

import (
	"bufio"
	"crypto/tls"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// oneSession is a client session cache holding one session whatever the
// key, so a ticket can be offered to another agent; it counts the offers.
type oneSession struct {
	mu      sync.Mutex
	session *tls.ClientSessionState
	offers  int
}

func (c *oneSession) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session != nil {
		c.offers++
	}
	return c.session, c.session != nil
}

func (c *oneSession) Put(_ string, cs *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = cs
}

// resumptions records, per completed handshake, whether the agent resumed.
type resumptions struct {
	mu  sync.Mutex
	got []bool
}

func (r *resumptions) record(cs tls.ConnectionState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, cs.DidResume)
}

func (r *resumptions) list() []bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bool(nil), r.got...)
}

// pingWith sends POST /ping over a connection made with conf and returns the
// status line and body.
func (a *testAgent) pingWith(t *testing.T, conf *tls.Config) (string, string) {
	t.Helper()
	conn, err := tls.Dial("tcp", a.addr, conf)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if err := wire.WriteClientRequest(conn, "POST", "/ping", "agent-test", []byte(`{"reqid":"r1"}`)); err != nil {
		t.Fatal(err)
	}
	_, status, body, err := wire.ReadClientResponse(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	return status, string(body)
}

func TestResumptionIsDeclinedWhenTheTicketNoLongerPasses(t *testing.T) {
	c := testCerts(t)
	serialOK := `"status":"ok"`
	tests := []struct {
		name string
		// between runs after the first contact; it may return a new agent
		between    func(t *testing.T, a *testAgent, seen *resumptions) *testAgent
		wantResume bool
		wantStatus string
		wantBody   string
	}{
		{"nothing changed", func(*testing.T, *testAgent, *resumptions) *testAgent { return nil }, true, "200 OK", serialOK},
		{"serial revoked after the ticket", func(t *testing.T, a *testAgent, _ *resumptions) *testAgent {
			a.write("revoked-serials", pki.SerialHex(c.control.Leaf)+"\n", 0o644)
			a.srv.Reload()
			return nil
		}, false, "403 Error", "certificate revoked"},
		{"stored serial changed (rotation)", func(t *testing.T, a *testAgent, _ *resumptions) *testAgent {
			a.write("ctrl-exec-serial", "0a0b0c0d\n", 0o644)
			return nil
		}, false, "403 Error", "serial mismatch"},
		{"agent restarted", func(t *testing.T, a *testAgent, seen *resumptions) *testAgent {
			return startAgent(t, setup{handshook: seen.record})
		}, false, "200 OK", serialOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := &resumptions{}
			a := startAgent(t, setup{handshook: seen.record})
			cache := &oneSession{}
			conf := tlsx.ClientConfig(c.control, c.roots)
			conf.ClientSessionCache = cache
			if status, body := a.pingWith(t, conf); status != "200 OK" {
				t.Fatalf("first ping: %s %s", status, body)
			}
			if next := tt.between(t, a, seen); next != nil {
				a = next
			}
			status, body := a.pingWith(t, conf)
			if status != tt.wantStatus || !containsAll(body, []string{tt.wantBody}) {
				t.Errorf("second ping: %s %s, want %s with %q", status, body, tt.wantStatus, tt.wantBody)
			}
			if cache.offers != 1 {
				t.Fatalf("the client offered a ticket %d times, want 1", cache.offers)
			}
			if diff := cmp.Diff([]bool{false, tt.wantResume}, seen.list()); diff != "" {
				t.Errorf("DidResume per handshake on the agent (-want +got):\n%s", diff)
			}
		})
	}
}

// TLS 1.2 has no forward secrecy on resumption: the agent issues no tickets.
func TestNoResumptionOverTLS12(t *testing.T) {
	c := testCerts(t)
	seen := &resumptions{}
	a := startAgent(t, setup{handshook: seen.record})
	cache := &oneSession{}
	conf := tlsx.ClientConfig(c.control, c.roots)
	conf.MaxVersion = tls.VersionTLS12
	conf.ClientSessionCache = cache
	for i := range 2 {
		if status, body := a.pingWith(t, conf); status != "200 OK" {
			t.Fatalf("ping %d: %s %s", i, status, body)
		}
	}
	if diff := cmp.Diff([]bool{false, false}, seen.list()); diff != "" {
		t.Errorf("DidResume (-want +got):\n%s", diff)
	}
	if cache.offers != 0 {
		t.Errorf("client offered %d sessions, want none issued", cache.offers)
	}
}
