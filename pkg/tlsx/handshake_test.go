package tlsx_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// ServerHandshake tells a port check (connect, close, nothing sent) from a
// failed handshake, and completes a good one.
func TestServerHandshake(t *testing.T) {
	p := newPKI(t, 0)
	conf := tlsx.AgentServerConfig(mustIdentity(t, p.agent))
	ctrlExec := mustClient(t, p.ctrlExec)
	tests := []struct {
		name   string
		client func(conn net.Conn)
		want   func(err error) bool
	}{
		{"port check", func(c net.Conn) { c.Close() }, func(err error) bool { return errors.Is(err, tlsx.ErrPortCheck) }},
		{"plain HTTP", func(c net.Conn) { c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); c.Close() },
			func(err error) bool { return err != nil && !errors.Is(err, tlsx.ErrPortCheck) }},
		{"no client certificate", func(c net.Conn) {
			tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
			tc.Handshake()
			tc.Close()
		}, func(err error) bool { return err != nil && !errors.Is(err, tlsx.ErrPortCheck) }},
		{"ctrl-exec client", func(c net.Conn) {
			tc := tls.Client(c, ctrlExec)
			tc.Handshake()
			tc.Close()
		}, func(err error) bool { return err == nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := loopbackPair(t)
			go tt.client(client)
			server.SetDeadline(time.Now().Add(10 * time.Second))
			conn, err := tlsx.ServerHandshake(context.Background(), server, conf)
			if !tt.want(err) {
				t.Fatalf("ServerHandshake: %v", err)
			}
			if err == nil && len(conn.ConnectionState().PeerCertificates) == 0 {
				t.Error("handshake done without the client certificate")
			}
		})
	}
}

// loopbackPair is both ends of one real TCP connection.
func loopbackPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}
