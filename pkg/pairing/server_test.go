package pairing

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// syncBuf is an io.Writer safe for the server's goroutines.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newServer(c *control) (*Server, *syncBuf) {
	out := &syncBuf{}
	return &Server{
		Queue:        c.queue,
		MaxQueue:     DefaultMaxQueue,
		PollInterval: 10 * time.Millisecond,
		Window:       10 * time.Second,
		IOTimeout:    5 * time.Second,
		Log:          c.log.logger(),
		Out:          out,
	}, out
}

func submission(t *testing.T, host string) Submission {
	return Submission{Hostname: host, CSR: testCSR(t, host), Port: 7543}
}

func hasLine(lines []string, parts ...string) bool {
	for _, l := range lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func TestPairingApprovedEndToEnd(t *testing.T) {
	c := newControl(t)
	srv, out := newServer(c)
	srv.Registry = c.registry
	port, _ := c.listen(t, srv)

	client := &Client{}
	sub := submission(t, "web-01")
	sub.Tags = map[string]string{"role": "web"}
	p, err := client.Submit(context.Background(), "127.0.0.1", port, sub)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidReqID(p.ReqID) || len(p.ReqID) != 16 {
		t.Fatalf("reqid %q", p.ReqID)
	}
	req, err := c.queue.Get(p.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	if req.Hostname != "web-01" || req.IP != "127.0.0.1" || req.Port != 7543 || req.Code != pki.PairingCode([]byte(req.CSR)) || len(req.Nonce) != 32 {
		t.Errorf("queued request %+v", req)
	}
	if diff := cmp.Diff(map[string]string{"role": "web"}, req.Tags); diff != "" {
		t.Errorf("queued tags (-want +got):\n%s", diff)
	}
	if want := fmt.Sprintf("Pairing request queued: web-01 (127.0.0.1) - ID: %s\n", p.ReqID); out.String() != want {
		t.Errorf("server output %q, want %q", out.String(), want)
	}
	if _, err := c.approver.Approve(p.ReqID); err != nil {
		t.Fatal(err)
	}
	res, err := p.Await(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctrl, _ := pki.LoadCert(filepath.Join(c.dir, "ctrl-exec.crt"))
	if res.DispatcherSerial != pki.SerialHex(ctrl) {
		t.Errorf("dispatcher serial %q", res.DispatcherSerial)
	}
	waitFor(t, "delivered files removed", func() bool {
		return !exists(filepath.Join(c.queue.Dir, p.ReqID+".json")) && !exists(filepath.Join(c.queue.Dir, p.ReqID+".approved"))
	})
	waitFor(t, "delivery confirmed in the registry", func() bool {
		rec, err := c.registry.Get("web-01")
		_, marked := rec[registry.FieldCertDelivery]
		return err == nil && !marked
	})
	lines := c.log.Lines()
	if !hasLine(lines, "ACTION=pair-request AGENT=web-01 IP=127.0.0.1 REQID="+p.ReqID+" STATUS=pending") {
		t.Errorf("no pair-request line in %q", lines)
	}

	// The agent stores what it got (key 1 made the CSR).
	root := t.TempDir()
	pp := paths.Paths{Root: root}
	os.MkdirAll(pp.AgentDir(), 0o750)
	warns, err := StoreCerts(pp, res, testKey(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "group 'ctrl-exec-agent' not found") {
		t.Logf("warnings: %q", warns) // the group exists on some hosts
	}
	for path, mode := range map[string]os.FileMode{pp.AgentCert(): 0o640, pp.AgentKey(): 0o640, pp.AgentCA(): 0o644, pp.AgentSerial(): 0o644} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, info.Mode().Perm(), mode)
		}
	}
	if got, _ := os.ReadFile(pp.AgentSerial()); string(got) != res.DispatcherSerial+"\n" {
		t.Errorf("ctrl-exec-serial = %q", got)
	}
	paired, expiry, reason := Status(pp)
	if !paired || reason != "" {
		t.Fatalf("Status = %v %q %q", paired, expiry, reason)
	}
	cert, _ := pki.ParseCertPEM([]byte(res.CertPEM))
	if expiry != pki.FormatOpenSSLDate(cert.NotAfter) {
		t.Errorf("expiry %q", expiry)
	}
	// A certificate for another key is refused before anything is written.
	if _, err := StoreCerts(pp, res, testKey(t, 2)); err == nil || !strings.Contains(err.Error(), "not for this agent's key") {
		t.Errorf("StoreCerts with the wrong key = %v", err)
	}
}

func TestPairingDeniedAndTimeout(t *testing.T) {
	t.Run("denied", func(t *testing.T) {
		t.Parallel()
		c := newControl(t)
		srv, _ := newServer(c)
		port, _ := c.listen(t, srv)
		p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-02"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.approver.Deny(p.ReqID); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Await(context.Background()); err == nil || err.Error() != "rejected by operator" {
			t.Errorf("Await = %v, want rejected by operator", err)
		}
		waitFor(t, ".denied removed", func() bool { return !exists(filepath.Join(c.queue.Dir, p.ReqID+".denied")) })
	})
	t.Run("timeout", func(t *testing.T) {
		t.Parallel()
		c := newControl(t)
		srv, _ := newServer(c)
		srv.Window = 100 * time.Millisecond
		port, _ := c.listen(t, srv)
		p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-03"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Await(context.Background()); err == nil || err.Error() != "approval timeout" {
			t.Errorf("Await = %v, want approval timeout", err)
		}
		if exists(filepath.Join(c.queue.Dir, p.ReqID+".json")) {
			t.Error("request left after timeout")
		}
	})
}

func TestPairingQueueFull(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	srv.MaxQueue = 2
	port, _ := c.listen(t, srv)
	for i := range 2 {
		queueRequest(t, c, fmt.Sprintf("00000000000000f%d", i), "queued", "csr", 0)
	}
	_, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-04"))
	if err == nil || err.Error() != "pairing queue full" {
		t.Fatalf("Submit = %v, want pairing queue full", err)
	}
	if n, _ := c.queue.Count(); n != 2 {
		t.Errorf("queue holds %d, want 2", n)
	}
	if !hasLine(c.log.Lines(), "ACTION=pair-reject IP=127.0.0.1 REASON=queue-full") {
		t.Errorf("log %q", c.log.Lines())
	}
	// A stale entry frees its slot.
	old := time.Now().Add(-StaleAfter - time.Minute)
	os.Chtimes(filepath.Join(c.queue.Dir, "00000000000000f0.json"), old, old)
	p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-04"))
	if err != nil {
		t.Fatalf("Submit after expiry: %v", err)
	}
	p.Close()
}

// rawExchange sends body as a pairing request and returns the first response body.
func rawExchange(t *testing.T, port int, request string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), tlsx.PairingClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	body, err := wire.ReadPairingFrame(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func post(body string) string {
	return fmt.Sprintf("POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func TestPairingInvalidRequests(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	good := testCSR(t, "web-05")
	js := func(v Submission) string { return string(wire.JSON(v)) }
	const invalid = "invalid-request"
	tests := []struct {
		name, request, reason, logPart string
	}{
		{"not JSON", post("hello"), invalid, "body is not a JSON object"},
		{"JSON array", post("[1,2]"), invalid, "not a JSON object"},
		{"empty body", "POST /pair HTTP/1.0\r\n\r\n", invalid, "not a JSON object"},
		{"missing csr", post(`{"hostname":"web-05"}`), invalid, "csr is missing"},
		{"empty hostname", post(js(Submission{CSR: good})), invalid, "hostname is empty"},
		{"path hostname", post(js(Submission{Hostname: "../x", CSR: testCSR(t, "../x")})), invalid, "not a valid agent hostname"},
		{"malformed CSR", post(js(Submission{Hostname: "web-05", CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})), invalid, "Invalid CSR format"},
		{"CN differs", post(js(Submission{Hostname: "web-05", CSR: testCSR(t, "other-host")})), invalid, "CSR is for 'other-host'"},
		{"port out of range", post(`{"hostname":"web-05","csr":` + string(wire.JSON(good)) + `,"port":70000}`), invalid, "not a port number"},
		// D-35: the agent is told "invalid request"; the log says why.
		{"RSA 1024", post(js(Submission{Hostname: "web-05", CSR: string(weakCSR(t, "web-05"))})), "weak-key", "RSA 1024 bits"},
		{"second CN", post(js(Submission{Hostname: "web-05", CSR: string(pkitest.CSR(t, testKey(t, 1), "evil", "web-05"))})), "multiple-cn", "more than one CN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawExchange(t, port, tt.request); got != `{"status":"error","reason":"invalid request"}` {
				t.Errorf("answer %s", got)
			}
			waitFor(t, "pair-reject line", func() bool {
				return hasLine(c.log.Lines(), "ACTION=pair-reject", "REASON="+tt.reason, tt.logPart)
			})
		})
	}
	if n, _ := c.queue.Count(); n != 0 {
		t.Errorf("%d requests queued", n)
	}
}

func TestPairingClientDisconnectCleansUp(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-06"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.approver.Approve(p.ReqID); err != nil {
		t.Fatal(err)
	}
	p.Close()
	// Either delivered into the closing socket or abandoned: nothing stays.
	waitFor(t, "queue files removed", func() bool {
		return !exists(filepath.Join(c.queue.Dir, p.ReqID+".json")) && !exists(filepath.Join(c.queue.Dir, p.ReqID+".approved"))
	})
}

func TestPairingClientDisconnectBeforeAnswer(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-07"))
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	waitFor(t, "request removed", func() bool { return !exists(filepath.Join(c.queue.Dir, p.ReqID+".json")) })
	waitFor(t, "pair-abandon line", func() bool {
		return hasLine(c.log.Lines(), "ACTION=pair-abandon AGENT=web-07 IP=127.0.0.1 REASON=disconnected REQID="+p.ReqID)
	})
}

func TestPairingServerStopAnswersWaitingAgents(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	port, stop := c.listen(t, srv)
	p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-08"))
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := p.Await(context.Background()); err == nil || err.Error() != ReasonStopped {
		t.Errorf("Await = %v, want %q", err, ReasonStopped)
	}
	if exists(filepath.Join(c.queue.Dir, p.ReqID+".json")) {
		t.Error("request left after stop")
	}
}

func TestPairingAwaitContextEnds(t *testing.T) {
	c := newControl(t)
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-09"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Await(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Await = %v, want deadline exceeded", err)
	}
}

// fakeServer answers every pairing connection with the given raw bytes.
func fakeServer(t *testing.T, c *control, reply func(req Submission) string) int {
	t.Helper()
	return pkitest.Listen(t, tlsx.PairingServerConfig(c.identity), func(conn *tls.Conn) {
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		body, err := wire.ReadPairingRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		sub, _ := ParseSubmission(body)
		conn.Write([]byte(reply(sub)))
	}).Port
}

func frame(body string) string {
	return fmt.Sprintf("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func TestPairingClientAnswers(t *testing.T) {
	c := newControl(t)
	caPEM, err := os.ReadFile(c.approver.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	caJSON := string(wire.JSON(string(caPEM)))
	pending := frame(`{"status":"pending","reqid":"0123456789abcdef"}`)
	tests := []struct {
		name    string
		reply   func(Submission) string
		wantErr string // from Submit, or from Await when Submit succeeds
	}{
		{"nothing", func(Submission) string { return "" }, "no response from ctrl-exec"},
		{"no content length", func(Submission) string { return "HTTP/1.0 200 OK\r\n\r\n{}" }, "no Content-Length in pairing acknowledgement"},
		{"empty ack", func(Submission) string { return frame("") }, "empty acknowledgement body"},
		{"bad JSON ack", func(Submission) string { return frame("{oops") }, "bad JSON in acknowledgement"},
		{"error without reason", func(Submission) string { return frame(`{"status":"error"}`) }, "ctrl-exec returned error"},
		{"error with reason", func(Submission) string { return frame(`{"status":"error","reason":"invalid request"}`) }, "invalid request"},
		{"unexpected ack", func(Submission) string { return frame(`{"status":"ok"}`) }, `unexpected acknowledgement: {"status":"ok"}`},
		{"ack array", func(Submission) string { return frame(`[]`) }, `unexpected acknowledgement: []`},
		{"closed after ack", func(Submission) string { return pending }, "closed the connection without a pairing result"},
		{"nonce mismatch", func(Submission) string {
			return pending + frame(`{"status":"approved","cert":"x","ca":"y","nonce":"00000000000000000000000000000000","dispatcher_serial":""}`)
		}, "nonce mismatch in pairing result"},
		{"denied without reason", func(Submission) string { return pending + frame(`{"status":"denied"}`) }, "denied"},
		{"bad JSON result", func(Submission) string { return pending + frame(`{`) }, "bad JSON in result"},
		{"empty result", func(Submission) string { return pending + frame(``) }, "empty result body"},
		{"approved with a CA that is no certificate", func(s Submission) string {
			return pending + frame(`{"status":"approved","cert":"C","ca":"A","nonce":"`+s.Nonce+`"}`)
		}, "pairing result: CA certificate: no CERTIFICATE PEM block found"},
		{"approved", func(s Submission) string {
			return pending + frame(`{"status":"approved","cert":"C","ca":`+caJSON+`,"nonce":"`+s.Nonce+`"}`)
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := fakeServer(t, c, tt.reply)
			p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-10"))
			if err == nil {
				if p.ReqID != "0123456789abcdef" {
					t.Errorf("reqid %q", p.ReqID)
				}
				var res *Result
				res, err = p.Await(context.Background())
				if err == nil && (res.CertPEM != "C" || res.CAPEM != string(caPEM) || res.DispatcherSerial != "") {
					t.Errorf("result %+v", res)
				}
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return f(ctx, network, addr)
}

func TestPairingClientConnectErrors(t *testing.T) {
	// Refused: a port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err := (&Client{}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-11"))
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Errorf("refused: %T %v, want *ConnectError", err, err)
	}
	// A name that does not resolve.
	noDNS := dialFunc(func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "ctl.invalid", IsNotFound: true}}
	})
	_, err = (&Client{Dialer: noDNS}).Submit(context.Background(), "ctl.invalid", 7444, submission(t, "web-11"))
	var re *ResolveError
	if !errors.As(err, &re) || re.Host != "ctl.invalid" {
		t.Errorf("unresolvable: %T %v, want *ResolveError", err, err)
	}
	// Not TLS: a plain TCP server that hangs up.
	plain, _ := net.Listen("tcp", "127.0.0.1:0")
	defer plain.Close()
	go func() {
		for {
			conn, err := plain.Accept()
			if err != nil {
				return
			}
			conn.Write([]byte("SSH-2.0-nope\r\n"))
			conn.Close()
		}
	}()
	_, err = (&Client{}).Submit(context.Background(), "127.0.0.1", plain.Addr().(*net.TCPAddr).Port, submission(t, "web-11"))
	if !errors.As(err, &ce) {
		t.Errorf("not TLS: %T %v, want *ConnectError", err, err)
	}
}

func TestPairingStatusNotPaired(t *testing.T) {
	pp := paths.Paths{Root: t.TempDir()}
	os.MkdirAll(pp.AgentDir(), 0o750)
	paired, _, reason := Status(pp)
	if paired || reason != "missing file: "+pp.AgentCert() {
		t.Errorf("Status = %v, %q", paired, reason)
	}
	for _, f := range []string{pp.AgentCert(), pp.AgentKey(), pp.AgentCA()} {
		os.WriteFile(f, []byte("junk"), 0o644)
	}
	paired, _, reason = Status(pp)
	if diff := cmp.Diff("cannot parse cert: "+pp.AgentCert(), reason); paired || diff != "" {
		t.Errorf("Status = %v, diff %s", paired, diff)
	}
}

// The pairing server caps its connections: idle clients beyond MaxConns are
// shed, oldest first, and a real agent is queued. The I/O deadline is an
// hour, so only shedding cuts them.
func TestServerConnectionCapShedsIdleClients(t *testing.T) {
	const maxConns, idle = 3, 10
	c := newControl(t)
	srv, _ := newServer(c)
	srv.MaxConns, srv.ShedAfter, srv.IOTimeout = maxConns, -1, time.Hour
	port, _ := c.listen(t, srv)

	var conns []net.Conn
	for range idle {
		conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conns = append(conns, conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // failure detection only
	defer cancel()
	p, err := (&Client{}).Submit(ctx, "127.0.0.1", port, submission(t, "web-01"))
	if err != nil {
		t.Fatalf("submit behind %d idle clients: %v", idle, err)
	}
	if _, err := c.queue.Get(p.ReqID); err != nil {
		t.Errorf("not queued: %v", err)
	}
	cut := 0
	for _, conn := range conns {
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := conn.Read(make([]byte, 1)); n == 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
			cut++
		}
	}
	if cut < idle-(maxConns-1) {
		t.Errorf("%d of %d idle clients cut, want at least %d", cut, idle, idle-(maxConns-1))
	}
}
