package tlsx_test

import (
	"bufio"
	"crypto/rsa"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// key returns the i-th (0–4) shared 2048-bit key: the smallest size the CA
// signs (D-35) and OpenSSL peers accept at their default security level.
func key(t *testing.T, i int) *rsa.PrivateKey {
	t.Helper()
	return pkitest.Key(t, 2048, i)
}

// files names a certificate, its key and the CA bundle its peers trust.
type files struct{ Cert, Key, CA string }

// testPKI is one ctrl-exec deployment: a CA, an agent cert and a ctrl-exec
// cert, written under a temp dir.
type testPKI struct {
	ca       *pkitest.CA
	dir      string
	agent    files
	ctrlExec files
}

// newPKI builds a deployment from 2048-bit keys whose CA uses key caKey.
func newPKI(t *testing.T, caKey int) *testPKI {
	t.Helper()
	return newPKIFrom(t, 2048, caKey)
}

func newPKIFrom(t *testing.T, bits, caKey int) *testPKI {
	t.Helper()
	dir := t.TempDir()
	p := &testPKI{ca: pkitest.NewCA(t, dir, pkitest.Key(t, bits, caKey)), dir: dir}
	p.agent = p.issue(t, "agent", "web-01", pkitest.Key(t, bits, 3))
	p.ctrlExec = p.issue(t, "ctrl-exec", "ctrl-exec", pkitest.Key(t, bits, 4))
	return p
}

// issue signs a cert for k and writes name.crt / name.key beside the CA.
func (p *testPKI) issue(t *testing.T, name, cn string, k *rsa.PrivateKey) files {
	t.Helper()
	f := files{Cert: filepath.Join(p.dir, name+".crt"), Key: filepath.Join(p.dir, name+".key"), CA: p.ca.Files.Cert}
	p.ca.Issue(t, k, cn, f.Cert, f.Key, 30)
	return f
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func serialOf(t *testing.T, certFile string) string {
	t.Helper()
	c, err := pki.LoadCert(certFile)
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(c)
}

// handshake is what the test server saw of one connection.
type handshake struct {
	state tls.ConnectionState
	err   error
}

// serve runs a TLS server on 127.0.0.1:0 that completes the handshake of each
// connection, reports it on the returned channel, answers "ok\n" on success
// and closes. It stops when the test ends.
func serve(t *testing.T, cfg *tls.Config) (addr string, seen <-chan handshake) {
	t.Helper()
	ch := make(chan handshake, 16)
	return pkitest.Listen(t, cfg, func(conn *tls.Conn) {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		err := conn.Handshake()
		ch <- handshake{conn.ConnectionState(), err}
		if err == nil {
			conn.Write([]byte("ok\n"))
			bufio.NewReader(conn).ReadString('\n') // until the client is done
		}
	}).String(), ch
}

// talk connects with cfg, reads the server's "ok\n" and returns the client's
// view of the connection, or the first error.
func talk(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return tls.ConnectionState{}, err
	}
	if line != "ok\n" {
		t.Fatalf("server said %q", line)
	}
	conn.Write([]byte("bye\n"))
	return conn.ConnectionState(), nil
}

func mustIdentity(t *testing.T, f files) *tlsx.Identity {
	t.Helper()
	id, err := tlsx.LoadIdentity(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func mustClient(t *testing.T, f files) *tls.Config {
	t.Helper()
	cfg, err := tlsx.LoadClientConfig(f.Cert, f.Key, f.CA)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// next returns the server's report of the next connection, or a timeout
// error if the peer never got as far as the server.
func next(t *testing.T, seen <-chan handshake) handshake {
	t.Helper()
	select {
	case hs := <-seen:
		return hs
	case <-time.After(15 * time.Second):
		return handshake{err: errors.New("no connection reached the server")}
	}
}
