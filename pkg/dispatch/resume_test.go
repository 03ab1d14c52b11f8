package dispatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// resumingAgent serves cfg, records per handshake whether the agent side
// resumed, and answers each request with the next of replies (the last
// repeats).
type resumingAgent struct {
	Host    string
	mu      sync.Mutex
	resumed []bool
}

func startResumingAgent(t *testing.T, cfg *tls.Config, replies ...agentHandler) *resumingAgent {
	t.Helper()
	a := &resumingAgent{}
	var n atomic.Int32
	addr := pkitest.Listen(t, cfg, func(conn *tls.Conn) {
		if err := conn.Handshake(); err != nil {
			return
		}
		a.mu.Lock()
		a.resumed = append(a.resumed, conn.ConnectionState().DidResume)
		a.mu.Unlock()
		req, err := wire.ReadRequest(bufio.NewReader(conn), wire.AgentLimits())
		if err != nil {
			return
		}
		i := min(int(n.Add(1))-1, len(replies)-1)
		replies[i](conn, req)
	})
	a.Host = addr.String()
	return a
}

func (a *resumingAgent) Resumed() []bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]bool(nil), a.resumed...)
}

func resumingConfig(t *testing.T) *tls.Config {
	id, err := tlsx.LoadIdentity(sharedPKI(t).Agent.Cert, sharedPKI(t).Agent.Key, sharedPKI(t).Agent.CA)
	if err != nil {
		t.Fatal(err)
	}
	return tlsx.ResumingAgentServerConfig(id, func(string) bool { return true })
}

const okRun = `{"exit":0,"stdout":"","stderr":""}`

func TestRunResumesWithASessionCache(t *testing.T) {
	a := startResumingAgent(t, resumingConfig(t), reply(200, okRun))
	c, _ := testClient(t)
	c.Sessions = sessioncache.New(nil)
	for range 3 {
		res, err := c.Run(context.Background(), RunRequest{Hosts: []string{a.Host}, Script: "noop"})
		if err != nil || res[0].Failed() {
			t.Fatalf("run: %v %v", err, res)
		}
	}
	if diff := cmp.Diff([]bool{false, true, true}, a.Resumed()); diff != "" {
		t.Errorf("agent-side DidResume (-want +got):\n%s", diff)
	}

	// Without a cache every contact is a full handshake.
	c.Sessions = nil
	b := startResumingAgent(t, resumingConfig(t), reply(200, okRun))
	for range 2 {
		c.Run(context.Background(), RunRequest{Hosts: []string{b.Host}, Script: "noop"})
	}
	if diff := cmp.Diff([]bool{false, false}, b.Resumed()); diff != "" {
		t.Errorf("agent-side DidResume without cache (-want +got):\n%s", diff)
	}
}

func TestSerialMismatchDropsTheSession(t *testing.T) {
	mismatch := reply(403, `{"error":"serial mismatch","status":"forbidden"}`)
	a := startResumingAgent(t, resumingConfig(t), reply(200, okRun), mismatch, reply(200, okRun))
	c, _ := testClient(t)
	c.Sessions = sessioncache.New(nil)
	var errs []string
	for range 3 {
		res, err := c.Run(context.Background(), RunRequest{Hosts: []string{a.Host}, Script: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		errs = append(errs, res[0].Str("error"))
	}
	if diff := cmp.Diff([]string{"", "forbidden: serial mismatch", ""}, errs); diff != "" {
		t.Errorf("run errors (-want +got):\n%s", diff)
	}
	// Full, resumed (answered "serial mismatch"), then full again.
	if diff := cmp.Diff([]bool{false, true, false}, a.Resumed()); diff != "" {
		t.Errorf("agent-side DidResume (-want +got):\n%s", diff)
	}
}

// An agent that aborts the handshake when offered a session (OpenSSL does
// so when a verifying server has no session id context) still gets its
// request: the client retries once with a full handshake.
func TestAgentAbortingOnResumptionGetsAFullHandshake(t *testing.T) {
	p := sharedPKI(t)
	pair, err := tls.LoadX509KeyPair(p.Agent.Cert, p.Agent.Key)
	if err != nil {
		t.Fatal(err)
	}
	var abort atomic.Bool
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAnyClientCert}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		if abort.Load() {
			return nil, errors.New("session id context uninitialized")
		}
		return cfg.DecryptTicket(identity, cs)
	}
	a := startResumingAgent(t, cfg, reply(200, okRun))
	c, _ := testClient(t)
	c.Sessions = sessioncache.New(nil)
	run := func() string {
		res, err := c.Run(context.Background(), RunRequest{Hosts: []string{a.Host}, Script: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		return res[0].Str("error")
	}
	got := []string{run(), run()}
	abort.Store(true)
	got = append(got, run(), run())
	if diff := cmp.Diff([]string{"", "", "", ""}, got); diff != "" {
		t.Errorf("run errors (-want +got):\n%s", diff)
	}
	// full, resumed, (aborted attempt not counted) full, then the new ticket
	// is offered again and the agent aborts again: full.
	if diff := cmp.Diff([]bool{false, true, false, false}, a.Resumed()); diff != "" {
		t.Errorf("agent-side DidResume (-want +got):\n%s", diff)
	}
}
