package renewal

import (
	"bufio"
	"bytes"
	"crypto/rsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// testPKI is a CA and a ctrl-exec identity in a temp dir, made once per test
// binary with 2048-bit keys.
type testPKI struct {
	dir                string
	caFiles            pki.CAFiles
	ctrlCert, ctrlKey  string
	ctrlSerial         string
	agentKey, otherKey *rsa.PrivateKey
}

var (
	pkiOnce sync.Once
	sharedP *testPKI
	pkiErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedP != nil {
		os.RemoveAll(sharedP.dir)
	}
	os.Exit(code)
}

func getPKI(t *testing.T) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		p := &testPKI{}
		if p.dir, pkiErr = os.MkdirTemp("", "renewal-test"); pkiErr != nil {
			return
		}
		p.caFiles = pki.CAFilesIn(p.dir)
		ca := pkitest.NewCA(t, p.dir, pkitest.Key(t, 2048, 0))
		p.ctrlCert, p.ctrlKey = filepath.Join(p.dir, "ctrl-exec.crt"), filepath.Join(p.dir, "ctrl-exec.key")
		c, err := ca.IssueCtrlExecCert(p.ctrlKey, p.ctrlCert, 2048, 825, time.Now())
		if pkiErr = err; err != nil {
			return
		}
		p.ctrlSerial = pki.SerialHex(c)
		p.agentKey, p.otherKey = pkitest.Key(t, 2048, 1), pkitest.Key(t, 2048, 2)
		sharedP = p
	})
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	if sharedP == nil {
		t.Fatal("the shared test PKI could not be built (see the first failure)")
	}
	return sharedP
}

func (p *testPKI) ca(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.LoadCA(p.caFiles)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// fakeAgent answers /ping, /renew and /renew-complete the way a Go agent
// does (or, by mode, the way a broken or Perl agent would), with its
// certificate swapped on a successful renewal.
type fakeAgent struct {
	t    *testing.T
	p    *testPKI
	name string
	// "", "perl", "badjson", "nocsr", "othercn", "refuse", or "onerecord":
	// a good agent that reads each request with one read, as the Perl
	// agent does, and fails the test when a request spans TLS records.
	mode string
	port int

	mu       sync.Mutex
	cert     tls.Certificate
	renewals int
}

func startFakeAgent(t *testing.T, p *testPKI, name string, certDays int, mode string) *fakeAgent {
	t.Helper()
	a := &fakeAgent{t: t, p: p, name: name, mode: mode}
	a.cert = (&pkitest.CA{CA: p.ca(t)}).Pair(t, p.agentKey, name, certDays)
	conf := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: tlsx.TLS12CipherSuites(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    (&pkitest.CA{CA: p.ca(t)}).Roots(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			a.mu.Lock()
			defer a.mu.Unlock()
			c := a.cert
			return &c, nil
		},
	}
	a.port = pkitest.Listen(t, conf, func(conn *tls.Conn) {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		a.serve(conn)
	}).Port
	return a
}

func (a *fakeAgent) target() string { return "127.0.0.1:" + strconv.Itoa(a.port) }

func (a *fakeAgent) leafSerial() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return pki.SerialHex(a.cert.Leaf)
}

func (a *fakeAgent) notAfter() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cert.Leaf.NotAfter
}

func (a *fakeAgent) renewCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.renewals
}

func (a *fakeAgent) serve(conn *tls.Conn) {
	if conn.Handshake() != nil {
		return
	}
	var in io.Reader = conn
	if a.mode == "onerecord" {
		data, err := pkitest.ReadOneRecord(conn)
		if errors.Is(err, pkitest.ErrSplitRequest) {
			a.t.Errorf("fake agent %s: %v", a.name, err)
		}
		if err != nil {
			return
		}
		in = bytes.NewReader(data)
	}
	req, err := wire.ReadRequest(bufio.NewReader(in), wire.AgentLimits())
	if err != nil {
		return
	}
	var body map[string]any
	json.Unmarshal(req.Body, &body)
	reply := func(code int, v any) { wire.WriteResponse(conn, code, wire.JSON(v), wire.AgentPhrase) }
	switch req.Method + " " + req.Path {
	case "POST /ping":
		host := a.name
		if a.mode == "claims-victim" {
			host = "victim-01" // says it is another, registered agent
		}
		reply(200, map[string]any{"status": "ok", "host": host, "version": "fake",
			"expiry": pki.FormatOpenSSLDate(a.notAfter()), "reqid": body["reqid"]})
	case "POST /renew":
		switch a.mode {
		case "perl":
			reply(404, map[string]string{"error": "not found"})
		case "badjson":
			wire.WriteResponse(conn, 200, []byte("<html>"), wire.AgentPhrase)
		case "nocsr":
			reply(200, map[string]any{"status": "ok", "reqid": body["reqid"]})
		default:
			cn := a.name
			switch a.mode {
			case "othercn":
				cn = "someone-else"
			case "claims-victim":
				cn = "victim-01"
			}
			csr, _ := pki.CreateCSR(a.p.agentKey, cn)
			switch a.mode {
			case "weakkey": // D-35
				csr, _ = pki.CreateCSR(pkitest.Key(a.t, 1024, 0), cn)
			case "twocn":
				csr = pkitest.CSR(a.t, a.p.agentKey, "someone-else", cn)
			}
			reply(200, map[string]any{"status": "ok", "csr": string(csr), "reqid": body["reqid"]})
		}
	case "POST /renew-complete":
		if a.mode == "refuse" {
			reply(400, map[string]string{"error": "cert public key does not match the agent key"})
			return
		}
		certPEM, _ := body["cert"].(string)
		caPEM, _ := body["ca"].(string)
		cert, err := pki.ValidateRenewedCert([]byte(certPEM), []byte(caPEM), a.p.ca(a.t).CertPEM, &a.p.agentKey.PublicKey, time.Now())
		if err != nil {
			reply(400, map[string]string{"error": err.Error()})
			return
		}
		a.mu.Lock()
		a.cert = tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: a.p.agentKey, Leaf: cert}
		a.renewals++
		a.mu.Unlock()
		reply(200, map[string]any{"status": "ok", "reqid": body["reqid"]})
	default:
		reply(404, map[string]string{"error": "not found"})
	}
}
