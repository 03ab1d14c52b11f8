package rotation

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// control is a control host in a temp dir: CA, ctrl-exec cert and
// ctrl-exec.conf-equivalent Rotator with 2048-bit keys.
type control struct {
	dir string
	ca  *pkitest.CA
	reg *registry.Registry
	log *syncBuffer
	r   *Rotator
}

func newControl(t *testing.T) *control {
	t.Helper()
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, pkitest.Key(t, 2048, 0))
	c := &control{dir: dir, ca: ca, reg: registry.New(filepath.Join(dir, "agents")), log: &syncBuffer{}}
	if _, err := ca.IssueCtrlExecCert(filepath.Join(dir, "ctrl-exec.key"), filepath.Join(dir, "ctrl-exec.crt"), 2048, 825, time.Now()); err != nil {
		t.Fatal(err)
	}
	log := logx.NewWriter(logx.IdentDispatcher, c.log)
	client := &dispatch.Client{
		Cert: filepath.Join(dir, "ctrl-exec.crt"), Key: filepath.Join(dir, "ctrl-exec.key"), CA: ca.Files.Cert,
		Timeout: 10 * time.Second, Log: log,
	}
	c.r = &Rotator{
		CADir: dir, StateFile: filepath.Join(dir, "state", "rotation.json"), Registry: c.reg,
		RenewalDays: 90, OverlapDays: 30, KeyBits: 2048, Client: client, Log: log,
		Lookup: func(context.Context, string) ([]string, error) { return nil, errors.New("no DNS in tests") },
	}
	return c
}

func (c *control) serial(t *testing.T) string {
	t.Helper()
	cert, err := pki.LoadCert(c.r.CertPath())
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(cert)
}

func (c *control) status(t *testing.T, host string) (status, serial string) {
	t.Helper()
	rec, err := c.reg.Get(host)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Get(registry.FieldSerialStatus), rec.Get(registry.FieldDispatcherSerial)
}

// fakeAgent stores one ctrl-exec serial and, like a real agent, answers
// only a client presenting it; POST /run of update-ctrl-exec-serial stores
// the serial given.
type fakeAgent struct {
	name string
	port int
	ln   net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	stored string
	runs   int
}

func (c *control) agentTLS(t *testing.T) *tls.Config {
	t.Helper()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tlsx.TLS12CipherSuites(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.ca.Roots(),
		// one shared key for every fake agent; each gets its own certificate
		Certificates: []tls.Certificate{c.ca.Pair(t, pkitest.Key(t, 2048, 1), "fake-agent", 365)},
	}
}

// addAgent registers name with a pending or other status and the serial it
// was last known to trust; the agent itself stores stored. It is started
// unless down.
func (c *control) addAgent(t *testing.T, name, status, recSerial, stored string, down bool) *fakeAgent {
	t.Helper()
	a := &fakeAgent{name: name, stored: stored, port: freePort(t)}
	rec := registry.Record{
		registry.FieldHostname: name, registry.FieldIP: "127.0.0.1", registry.FieldPort: strconv.Itoa(a.port),
		registry.FieldDispatcherSerial: recSerial, "custom": "kept",
	}
	if status != "" {
		rec[registry.FieldSerialStatus] = status
	}
	if err := c.reg.Put(rec); err != nil {
		t.Fatal(err)
	}
	if !down {
		a.start(t, c.agentTLS(t))
	}
	return a
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func (a *fakeAgent) start(t *testing.T, conf *tls.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(a.port))
	if err != nil {
		t.Fatal(err)
	}
	a.ln = ln
	t.Cleanup(func() { ln.Close(); a.wg.Wait() })
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				defer raw.Close()
				raw.SetDeadline(time.Now().Add(60 * time.Second)) // generous: hundreds of handshakes at once under -race
				a.serve(t, tls.Server(raw, conf))
			}()
		}
	}()
}

func (a *fakeAgent) storedSerial() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stored
}

// serve reads the request with one read, as the Perl agent does: a
// broadcast split over TLS records fails the test (issue 9 A).
func (a *fakeAgent) serve(t *testing.T, conn *tls.Conn) {
	if conn.Handshake() != nil {
		return
	}
	data, err := pkitest.ReadOneRecord(conn)
	if errors.Is(err, pkitest.ErrSplitRequest) {
		t.Errorf("fake agent %s: %v", a.name, err)
	}
	if err != nil {
		return
	}
	req, err := wire.ReadRequest(bufio.NewReader(bytes.NewReader(data)), wire.AgentLimits())
	if err != nil {
		return
	}
	peer := tlsx.PeerSerialHex(conn.ConnectionState())
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stored == "" || peer != a.stored {
		wire.WriteResponse(conn, 403, []byte(`{"error":"serial mismatch","status":"forbidden"}`), wire.AgentPhrase)
		return
	}
	var body struct {
		Script string   `json:"script"`
		Args   []string `json:"args"`
		Reqid  string   `json:"reqid"`
	}
	json.Unmarshal(req.Body, &body)
	if req.Path != "/run" || body.Script != SerialScript || len(body.Args) != 1 {
		wire.WriteResponse(conn, 200, wire.JSON(map[string]any{"script": body.Script, "exit": -1, "error": "script not permitted", "reqid": body.Reqid}), wire.AgentPhrase)
		return
	}
	a.stored = strings.ToLower(body.Args[0])
	a.runs++
	wire.WriteResponse(conn, 200, wire.JSON(map[string]any{"script": body.Script, "exit": 0,
		"stdout": "Serial updated to " + a.stored + ".\n", "stderr": "", "reqid": body.Reqid}), wire.AgentPhrase)
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines are the log lines starting with prefix, "ident[pid]: " removed.
func (s *syncBuffer) lines(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok && strings.HasPrefix(msg, prefix) {
			out = append(out, msg)
		}
	}
	return out
}
