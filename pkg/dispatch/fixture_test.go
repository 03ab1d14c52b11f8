package dispatch

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// testPKI is a CA with a ctrl-exec identity on disk and two agent
// identities: one from that CA and one from a stranger CA.
type testPKI struct {
	Dir                   string
	CAFile, Cert, KeyFile string  // control host side, as ctrl-exec.conf names them
	Agent                 agentID // signed by the CA
	StrangerAgent         agentID // signed by another CA
}

// agentID is an agent's certificate and key files and the CA it trusts.
type agentID struct{ Cert, Key, CA string }

var (
	pkiOnce sync.Once
	pkiVal  *testPKI
	pkiErr  error
)

// sharedPKI builds the package's keys once (1024 bits: fast, still real RSA).
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = newTestPKI(1024) })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, p := range []*testPKI{pkiVal, bigPKI} {
		if p != nil {
			os.RemoveAll(p.Dir)
		}
	}
	os.Exit(code)
}

func newTestPKI(bits int) (*testPKI, error) {
	dir, err := os.MkdirTemp("", "dispatch-pki")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ca, err := pki.CreateCA(pki.CAFilesIn(filepath.Join(dir, "ca")), bits, now)
	if err != nil {
		return nil, err
	}
	p := &testPKI{Dir: dir, CAFile: ca.Files.Cert, Cert: filepath.Join(dir, "ctrl-exec.crt"), KeyFile: filepath.Join(dir, "ctrl-exec.key")}
	if _, err := ca.IssueCtrlExecCert(p.KeyFile, p.Cert, bits, 30, now); err != nil {
		return nil, err
	}
	if p.Agent, err = issueAgent(ca, bits, filepath.Join(dir, "agent"), now); err != nil {
		return nil, err
	}
	stranger, err := pki.CreateCA(pki.CAFilesIn(filepath.Join(dir, "stranger")), bits, now)
	if err != nil {
		return nil, err
	}
	if p.StrangerAgent, err = issueAgent(stranger, bits, filepath.Join(dir, "stranger-agent"), now); err != nil {
		return nil, err
	}
	p.StrangerAgent.CA = p.CAFile // it trusts us; we must not trust it
	return p, nil
}

// issueAgent writes <prefix>.key and <prefix>.crt for CN agent-01.
func issueAgent(ca *pki.CA, bits int, prefix string, now time.Time) (agentID, error) {
	key, err := pki.GenerateKey(bits)
	if err != nil {
		return agentID{}, err
	}
	csr, err := pki.CreateCSR(key, "agent-01")
	if err != nil {
		return agentID{}, err
	}
	cert, err := ca.SignCSR(csr, 30, now, pki.SignOptions{})
	if err != nil {
		return agentID{}, err
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		return agentID{}, err
	}
	id := agentID{Cert: prefix + ".crt", Key: prefix + ".key", CA: ca.Files.Cert}
	if err := os.WriteFile(id.Key, keyPEM, 0o600); err != nil {
		return agentID{}, err
	}
	return id, os.WriteFile(id.Cert, pki.CertPEM(cert), 0o644)
}

// agentHandler answers one request on a fake agent's connection.
type agentHandler func(conn net.Conn, req *wire.Request)

// fakeAgent is an mTLS server on 127.0.0.1:0 with the agent's TLS policy
// (client certificate required, chained to our CA) that answers with handler.
type fakeAgent struct {
	Port     string
	Host     string // "127.0.0.1:<port>"
	mu       sync.Mutex
	requests []*wire.Request
}

func startAgent(t testing.TB, idFiles agentID, handler agentHandler) *fakeAgent {
	t.Helper()
	id, err := tlsx.LoadIdentity(idFiles.Cert, idFiles.Key, idFiles.CA)
	if err != nil {
		t.Fatal(err)
	}
	conf := tlsx.AgentServerConfig(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &fakeAgent{Port: strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)}
	a.Host = "127.0.0.1:" + a.Port
	var wg sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer raw.Close()
				stop := make(chan struct{})
				defer close(stop)
				go func() { // unblock a hanging handler when the test ends
					select {
					case <-done:
						raw.Close()
					case <-stop:
					}
				}()
				conn := tls.Server(raw, conf)
				if err := conn.Handshake(); err != nil {
					return
				}
				req, err := wire.ReadRequest(bufio.NewReader(conn), wire.AgentLimits())
				if err != nil {
					return
				}
				a.mu.Lock()
				a.requests = append(a.requests, req)
				a.mu.Unlock()
				handler(conn, req)
			}()
		}
	}()
	return a
}

func (a *fakeAgent) Requests() []*wire.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*wire.Request(nil), a.requests...)
}

// reply answers with status and body the way the agent frames responses.
func reply(status int, body string) agentHandler {
	return func(conn net.Conn, _ *wire.Request) {
		wire.WriteResponse(conn, status, []byte(body), wire.AgentPhrase)
	}
}

// hang never answers; the connection closes when the client gives up or the
// test ends.
func hang(conn net.Conn, _ *wire.Request) {
	buf := make([]byte, 1)
	conn.Read(buf)
}

// closedPort returns a loopback port with nothing listening on it.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	return port
}

// logBuffer is a concurrency-safe sink for a test logger.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testClient is a Client for the shared PKI with a frozen clock (rtt "0ms")
// and a log captured in the returned buffer.
func testClient(t testing.TB) (*Client, *logBuffer) {
	p := sharedPKI(t)
	logs := &logBuffer{}
	frozen := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Client{
		Cert: p.Cert, Key: p.KeyFile, CA: p.CAFile,
		Timeout: 5 * time.Second,
		Log:     logx.NewWriter("ctrl-exec-dispatcher", logs),
		Now:     func() time.Time { return frozen },
	}, logs
}
