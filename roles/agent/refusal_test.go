package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// A run whose request is over the agent's 1 MiB limit is refused with 413
// while the control host is still sending it. The agent drains what is left
// before closing, so the control host reads the 413 instead of a connection
// reset, every time (§10.3).
func TestOversizedRunIsRequestTooLarge(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{"hello": "#!/bin/sh\necho hi\n"}})
	c := &dispatch.Client{
		Log: zerolog.Nop(),
		TLSConfig: func() (*tls.Config, error) {
			return tlsx.ClientConfig(a.certs.control, a.certs.roots), nil
		},
	}
	big := strings.Repeat("x", 2<<20)
	for i := range 20 {
		results, err := c.Run(context.Background(), dispatch.RunRequest{Hosts: []string{a.addr}, Script: "hello", Args: []string{big}})
		if err != nil {
			t.Fatal(err)
		}
		if got := results[0].Str("error"); got != "request too large" {
			t.Fatalf("run %d: error %q, want %q", i+1, got, "request too large")
		}
	}
}

// The agent itself drains the body it refused: a client that sends all of
// it is not reset, whatever the client does about write errors.
func TestRefusedBodyIsDrained(t *testing.T) {
	a := startAgent(t, setup{})
	body := []byte(strings.Repeat("x", 2<<20))
	for i := range 20 {
		conn, err := a.dial(a.certs.control)
		if err != nil {
			t.Fatal(err)
		}
		if err := wire.WriteClientRequest(conn, "POST", "/run", "agent-test", body); err != nil {
			conn.Close()
			t.Fatalf("request %d: %v", i+1, err)
		}
		_, status, _, err := wire.ReadClientResponse(bufio.NewReader(conn))
		conn.Close()
		if err != nil || status != "413 Content Too Large" {
			t.Fatalf("request %d: %q, %v", i+1, status, err)
		}
	}
}
