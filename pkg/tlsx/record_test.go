package tlsx_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// request is an HTTP/1.0 POST of total bytes in all, as one buffer.
func request(total int) []byte {
	head := "POST /run HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %05d\r\n\r\n"
	n := total - len(fmt.Sprintf(head, 0))
	return append([]byte(fmt.Sprintf(head, n)), bytes.Repeat([]byte("x"), n)...)
}

// The Perl agent and pairing server read a request with one SSL_read, so
// every client config must send one Write as one TLS record (issue 9 A):
// Go's dynamic record sizing would split anything over about 1.2 KB.
func TestClientConfigsSendARequestInOneRecord(t *testing.T) {
	p := newPKI(t, 0)
	clientCert, err := tls.LoadX509KeyPair(p.ctrlExec.Cert, p.ctrlExec.Key)
	if err != nil {
		t.Fatal(err)
	}
	answer := []byte("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
	agentAddr := pkitest.ListenOneRecord(t, tlsx.AgentServerConfig(mustIdentity(t, p.agent)),
		func([]byte) []byte { return answer }).String()
	pairID, err := tlsx.LoadIdentity(p.ctrlExec.Cert, p.ctrlExec.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	pairAddr := pkitest.ListenOneRecord(t, tlsx.PairingServerConfig(pairID),
		func([]byte) []byte { return answer }).String()

	configs := []struct {
		name string
		cfg  *tls.Config
		addr string
	}{
		{"LoadClientConfig", mustClient(t, p.ctrlExec), agentAddr},
		{"ClientConfig", tlsx.ClientConfig(clientCert, p.ca.Roots()), agentAddr},
		{"PairingClientConfig", tlsx.PairingClientConfig(), pairAddr},
	}
	for _, c := range configs {
		for _, size := range []int{1 << 10, 4 << 10, 12 << 10, 16 << 10} {
			t.Run(fmt.Sprintf("%s/%d", c.name, size), func(t *testing.T) {
				conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", c.addr, c.cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := conn.Write(request(size)); err != nil {
					t.Fatal(err)
				}
				got, _ := io.ReadAll(conn)
				if !bytes.Equal(got, answer) {
					t.Errorf("answer %q: the server did not take the request", got)
				}
			})
		}
	}
}
