package dispatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// refusingAgent answers every request whose head is over the agent's limits
// at once and closes without reading the rest, as an agent that does not
// drain (or a body larger than it drains) does: the kernel resets the
// connection while the control host is still sending.
func refusingAgent(t *testing.T) string {
	t.Helper()
	p := sharedPKI(t)
	id, err := tlsx.LoadIdentity(p.Agent.Cert, p.Agent.Key, p.Agent.CA)
	if err != nil {
		t.Fatal(err)
	}
	conf := tlsx.AgentServerConfig(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer raw.Close()
				conn := tls.Server(raw, conf)
				if conn.Handshake() != nil {
					return
				}
				_, err := wire.ReadRequest(bufio.NewReader(conn), wire.AgentLimits())
				var re *wire.RequestError
				if errors.As(err, &re) {
					wire.WriteResponse(conn, re.Status, wire.JSON(map[string]string{"error": re.Msg}), wire.AgentPhrase)
				}
			})
		}
	})
	return ln.Addr().String()
}

// A 413 sent while the request is still being written is read even though
// the write then fails with a reset or broken pipe (§10.3: the run result
// says "request too large").
func TestRefusalSeenAfterWriteError(t *testing.T) {
	addr := refusingAgent(t)
	c, _ := testClient(t)
	// Larger than loopback's socket buffers: the agent closes mid-write.
	body := []byte(`{"args":["` + strings.Repeat("x", 8<<20) + `"]}`)
	for i := range 10 {
		rep, err := c.Do(context.Background(), c.Target(addr), "POST", "/run", body)
		if err != nil || rep.Status != 413 {
			t.Fatalf("request %d: status %d, error %v; want 413", i+1, rep.Status, err)
		}
		if got := c.runError(rep, err); got != "request too large" {
			t.Fatalf("request %d: run error %q", i+1, got)
		}
	}
}
