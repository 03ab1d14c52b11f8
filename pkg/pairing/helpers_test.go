package pairing

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

const testBits = 2048

// testKey returns the i-th shared test key.
func testKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	return pkitest.Key(t, testBits, i)
}

func testCSR(t testing.TB, cn string) string {
	t.Helper()
	csr, err := pki.CreateCSR(testKey(t, 1), cn)
	if err != nil {
		t.Fatal(err)
	}
	return string(csr)
}

// weakCSR is a CSR for cn from a 1024-bit key, which no signing path may
// accept (D-35).
func weakCSR(t testing.TB, cn string) []byte {
	t.Helper()
	csr, err := pki.CreateCSR(pkitest.Key(t, 1024, 0), cn)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

// logBuf collects log lines.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// Lines returns the ACTION lines without the "ident[pid]: " prefix.
func (b *logBuf) Lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok {
			out = append(out, msg)
		}
	}
	return out
}

func (b *logBuf) logger() zerolog.Logger { return logx.NewWriter("test", b) }

// control is a control host in a temp dir: CA, ctrl-exec cert, queue, registry.
type control struct {
	dir      string
	queue    *Queue
	approver *Approver
	registry *registry.Registry
	log      *logBuf
	identity *tlsx.Identity
}

func newControl(t testing.TB) *control {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, testKey(t, 0))
	files := ca.Files
	crt, key := filepath.Join(dir, "ctrl-exec.crt"), filepath.Join(dir, "ctrl-exec.key")
	if _, err := ca.IssueCtrlExecCert(key, crt, testBits, 825, time.Now()); err != nil {
		t.Fatal(err)
	}
	id, err := tlsx.LoadIdentity(crt, key, "")
	if err != nil {
		t.Fatal(err)
	}
	qdir := filepath.Join(dir, "pairing")
	if err := os.Mkdir(qdir, 0o770); err != nil {
		t.Fatal(err)
	}
	c := &control{dir: dir, queue: NewQueue(qdir, nil), registry: registry.New(filepath.Join(dir, "agents")), log: &logBuf{}, identity: id}
	c.approver = &Approver{Queue: c.queue, CA: files, CtrlExecCert: crt, Registry: c.registry, Log: c.log.logger()}
	return c
}

// listen starts srv on a loopback TLS listener until the test ends.
func (c *control) listen(t testing.TB, srv *Server) (port int, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tln := tls.NewListener(ln, tlsx.PairingServerConfig(c.identity))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, tln) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return ln.Addr().(*net.TCPAddr).Port, stop
}

// waitFor polls cond for up to 10 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
