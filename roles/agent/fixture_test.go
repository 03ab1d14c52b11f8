package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Serials chosen so that every revoked-serials spelling of §8.3 matches
// revokableSerial (hex with a letter and no leading zero), while the control
// serial looks like a real ctrl-exec serial (≥ 0x01000000).
const (
	controlSerial   = 0x01000005
	revokableSerial = 0xab
)

// certs is the package's PKI, made once: a CA, the agent's files, client
// identities and a stranger from another CA. Shared 2048-bit keys keep it fast.
type certs struct {
	dir                     string
	authority               *pki.CA
	agentCert, agentKey, ca string // files the agent config points at
	roots                   *x509.CertPool
	agentNotAfter           time.Time

	control   tls.Certificate // the stored serial's cert
	revokable tls.Certificate // same CA, serial 0xab
	agent     tls.Certificate // the agent's own identity as a client
	stranger  tls.Certificate // valid cert from an unrelated CA
}

var (
	fixtureOnce sync.Once
	fixture     *certs
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixture != nil {
		os.RemoveAll(fixture.dir)
	}
	os.Exit(code)
}

func testCerts(t *testing.T) *certs {
	t.Helper()
	fixtureOnce.Do(func() { fixture = makeCerts(t) })
	if fixture == nil {
		t.Fatal("the shared test PKI could not be built (see the first failure)")
	}
	return fixture
}

// makeCerts gives every certificate its own shared 2048-bit key.
func makeCerts(t *testing.T) *certs {
	t.Helper()
	dir, err := os.MkdirTemp("", "agent-test-pki")
	if err != nil {
		t.Fatal(err)
	}
	ca := pkitest.NewCA(t, filepath.Join(dir, "ca"), pkitest.Key(t, 2048, 0))
	c := &certs{dir: dir, authority: ca.CA, ca: filepath.Join(dir, "ca", "ca.crt"), roots: ca.Roots()}
	c.agentCert, c.agentKey = filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	setNextSerial(t, ca, 0x10)
	c.agent = ca.Issue(t, pkitest.Key(t, 2048, 1), "agent-test", c.agentCert, c.agentKey, 30)
	c.agentNotAfter = c.agent.Leaf.NotAfter
	setNextSerial(t, ca, controlSerial)
	c.control = ca.Pair(t, pkitest.Key(t, 2048, 2), "ctrl-exec", 30)
	setNextSerial(t, ca, revokableSerial)
	c.revokable = ca.Pair(t, pkitest.Key(t, 2048, 3), "ctrl-exec", 30)
	other := pkitest.NewCA(t, filepath.Join(dir, "other"), pkitest.Key(t, 2048, 4))
	setNextSerial(t, other, controlSerial)
	c.stranger = other.Pair(t, pkitest.Key(t, 2048, 5), "ctrl-exec", 30)
	return c
}

// setNextSerial makes serial the CA's next one, through its ca.serial file
// as the real signer reads it.
func setNextSerial(t *testing.T, ca *pkitest.CA, serial int64) {
	t.Helper()
	if err := os.WriteFile(ca.Files.Serial, pki.FormatSerialFile(big.NewInt(serial-1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is an io.Writer shared by the server's goroutines and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// setup describes one test agent.
type setup struct {
	conf      string            // extra agent.conf lines
	scripts   map[string]string // name → script text, written executable and allowlisted
	allowlist string            // extra scripts.conf lines
	noSerial  bool              // store no ctrl-exec serial
	timeouts  Timeouts
	now       func() time.Time // nil = the wall clock
	maxConns  int              // 0 = DefaultMaxConns
	shedAfter time.Duration
	handshook func(tls.ConnectionState)
}

// testAgent is a Server on 127.0.0.1:0 in a temp dir.
type testAgent struct {
	t      *testing.T
	dir    string
	certs  *certs
	srv    *Server
	addr   string
	log    *syncBuffer
	stderr *syncBuffer
	stop   context.CancelFunc
	done   chan error
	// unlimited switches the rate limiter off unless the test configures it.
	unlimited bool
}

func startAgent(t *testing.T, s setup) *testAgent {
	t.Helper()
	c := testCerts(t)
	dir := t.TempDir()
	a := &testAgent{t: t, dir: dir, certs: c, log: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan error, 1),
		unlimited: !strings.Contains(s.conf, "rate_limit")}

	var list strings.Builder
	names := make([]string, 0, len(s.scripts))
	for name := range s.scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := a.writeScript(name, s.scripts[name])
		fmt.Fprintf(&list, "%s = %s\n", name, path)
	}
	list.WriteString(s.allowlist)
	a.write("scripts.conf", list.String(), 0o640)
	a.write("agent.conf", a.baseConf()+s.conf, 0o640)
	if !s.noSerial {
		a.write("ctrl-exec-serial", pki.SerialHex(c.control.Leaf)+"\n", 0o644)
	}

	timeouts := s.timeouts
	if timeouts == (Timeouts{}) {
		timeouts = DefaultTimeouts()
	}
	srv, err := NewServer(ServerOptions{
		ConfigPath:    a.path("agent.conf"),
		AllowlistPath: a.path("scripts.conf"),
		Paths:         paths.Paths{Root: dir},
		Log:           logx.NewWriter(logx.IdentAgent, a.log),
		Stderr:        a.stderr,
		Now:           s.now,
		Hostname:      "agent-test",
		Version:       "9.9.9-test",
		Timeouts:      timeouts,
		MaxConns:      s.maxConns,
		ShedAfter:     s.shedAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.handshook = s.handshook
	a.srv = srv
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	a.stop = cancel
	go func() { a.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	return a
}

func (a *testAgent) baseConf() string {
	conf := fmt.Sprintf("port = 0\ncert = %s\nkey = %s\nca = %s\nrevoked_serials = %s\ndispatcher_serial_path = %s\n",
		a.certs.agentCert, a.certs.agentKey, a.certs.ca, a.path("revoked-serials"), a.path("ctrl-exec-serial"))
	if a.unlimited {
		conf += "rate_limit_disable = 1\n"
	}
	return conf
}

func (a *testAgent) path(name string) string { return filepath.Join(a.dir, name) }

func (a *testAgent) write(name, content string, mode os.FileMode) string {
	a.t.Helper()
	p := a.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		a.t.Fatal(err)
	}
	return p
}

func (a *testAgent) writeScript(name, body string) string {
	return a.write(filepath.Join("scripts", name), body, 0o755)
}

// dial opens a TLS connection presenting cert.
func (a *testAgent) dial(cert tls.Certificate) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", a.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tlsx.ClientConfig(cert, a.certs.roots))
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// do sends one request as the control host would and returns the status
// line ("200 OK") and body.
func (a *testAgent) do(cert tls.Certificate, method, path, body string) (string, string, error) {
	conn, err := a.dial(cert)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	if err := wire.WriteClientRequest(conn, method, path, "agent-test", []byte(body)); err != nil {
		return "", "", err
	}
	_, status, resp, err := wire.ReadClientResponse(bufio.NewReader(conn))
	return status, string(resp), err
}

// mustDo is do that fails the test on a transport error.
func (a *testAgent) mustDo(t *testing.T, cert tls.Certificate, method, path, body string) (string, string) {
	t.Helper()
	status, resp, err := a.do(cert, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, resp
}

// sendRaw writes raw bytes after the handshake and returns everything the
// agent sent back before closing.
func (a *testAgent) sendRaw(cert tls.Certificate, data []byte) string {
	a.t.Helper()
	conn, err := a.dial(cert)
	if err != nil {
		a.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write(data); err != nil {
		a.t.Fatal(err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(conn)
	return out.String()
}

// logLines are the log lines so far without the "ident[pid]: " prefix.
func (a *testAgent) logLines() []string {
	var lines []string
	for _, l := range strings.Split(a.log.String(), "\n") {
		if _, msg, found := strings.Cut(l, "]: "); found {
			lines = append(lines, msg)
		}
	}
	return lines
}

func (a *testAgent) hasLog(parts ...string) bool {
	for _, l := range a.logLines() {
		if containsAll(l, parts) {
			return true
		}
	}
	return false
}

// waitLog waits for a log line containing every part and returns it.
func (a *testAgent) waitLog(parts ...string) string {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range a.logLines() {
			if containsAll(l, parts) {
				return l
			}
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("no log line with %q in:\n%s", parts, a.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
