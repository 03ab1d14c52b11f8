package dispatch

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
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
)

// sharedPKI builds the package's PKI once (2048 bits: the smallest size the CA signs).
func sharedPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() { pkiVal = newTestPKI(t, 2048) })
	if pkiVal == nil {
		t.Fatal("the shared test PKI could not be built (see the first failure)")
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

func newTestPKI(tb testing.TB, bits int) *testPKI {
	tb.Helper()
	dir, err := os.MkdirTemp("", "dispatch-pki")
	if err != nil {
		tb.Fatal(err)
	}
	ca := pkitest.NewCA(tb, filepath.Join(dir, "ca"), pkitest.Key(tb, bits, 0))
	p := &testPKI{Dir: dir, CAFile: ca.Files.Cert, Cert: filepath.Join(dir, "ctrl-exec.crt"), KeyFile: filepath.Join(dir, "ctrl-exec.key")}
	if _, err := ca.IssueCtrlExecCert(p.KeyFile, p.Cert, bits, 30, time.Now()); err != nil {
		tb.Fatal(err)
	}
	p.Agent = issueAgent(tb, ca, pkitest.Key(tb, bits, 1), filepath.Join(dir, "agent"))
	stranger := pkitest.NewCA(tb, filepath.Join(dir, "stranger"), pkitest.Key(tb, bits, 2))
	p.StrangerAgent = issueAgent(tb, stranger, pkitest.Key(tb, bits, 3), filepath.Join(dir, "stranger-agent"))
	p.StrangerAgent.CA = p.CAFile // it trusts us; we must not trust it
	return p
}

// issueAgent writes <prefix>.key and <prefix>.crt for CN agent-01.
func issueAgent(tb testing.TB, ca *pkitest.CA, key *rsa.PrivateKey, prefix string) agentID {
	tb.Helper()
	id := agentID{Cert: prefix + ".crt", Key: prefix + ".key", CA: ca.Files.Cert}
	ca.Issue(tb, key, "agent-01", id.Cert, id.Key, 30)
	return id
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
	a := &fakeAgent{}
	addr := pkitest.Listen(t, tlsx.AgentServerConfig(id), func(conn *tls.Conn) {
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
	})
	a.Port = strconv.Itoa(addr.Port)
	a.Host = "127.0.0.1:" + a.Port
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
