package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func shortTimeouts() Timeouts {
	return Timeouts{Handshake: 2 * time.Second, Request: 2 * time.Second, Response: 5 * time.Second, Shutdown: 5 * time.Second}
}

func TestFramingLimits(t *testing.T) {
	a := startAgent(t, setup{})
	headers := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "X-H%d: v\r\n", i)
		}
		return b.String()
	}
	ping := `{"reqid":"f"}`
	tests := []struct {
		name, request, wantStatus, wantBody string
	}{
		{"32 headers", "POST /ping HTTP/1.0\r\n" + headers(31) + fmt.Sprintf("Content-Length: %d\r\n\r\n", len(ping)) + ping,
			"HTTP/1.0 200 OK", `"reqid":"f"`},
		{"33 headers", "POST /ping HTTP/1.0\r\n" + headers(33) + "\r\n",
			"HTTP/1.0 431 Request Header Fields Too Large", `{"error":"too many headers"}`},
		{"body over 1 MiB", "POST /ping HTTP/1.0\r\nContent-Length: 1048577\r\n\r\n",
			"HTTP/1.0 413 Content Too Large", `{"error":"request too large"}`},
		{"body of 1 MiB", "POST /ping HTTP/1.0\r\nContent-Length: 1048576\r\n\r\n" + strings.Repeat(" ", 1<<20),
			"HTTP/1.0 200 OK", `"reqid":""`},
		{"blank request line", "\r\n\r\n",
			"HTTP/1.0 400 Bad Request", `{"error":"empty request"}`},
		{"LF-only lines", "POST /ping HTTP/1.0\nContent-Length: 13\n\n" + ping,
			"HTTP/1.0 200 OK", `"reqid":"f"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := a.sendRaw(a.certs.control, []byte(tt.request))
			if !strings.HasPrefix(got, tt.wantStatus+"\r\n") || !strings.Contains(got, tt.wantBody) {
				t.Errorf("got %.300q", got)
			}
		})
	}

	t.Run("end of input", func(t *testing.T) {
		conn, err := a.dial(a.certs.control)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := conn.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(conn)
		want := "HTTP/1.0 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n{\"error\":\"empty request\"}"
		if diff := cmp.Diff(want, string(got)); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestRevokedSerialInEveryAcceptedForm(t *testing.T) {
	a := startAgent(t, setup{})
	// The revokable cert's serial is 0xab, stored so that only revocation stops it.
	a.write("ctrl-exec-serial", "ab\n", 0o644)
	tests := []struct {
		name, entry string
		revoked     bool
	}{
		{"hex", "ab", true},
		{"upper hex", "AB", true},
		{"0x prefix", "0xAB", true},
		{"openssl -serial output", "serial=AB", true},
		{"colon bytes", "00:AB", true},
		{"decimal", "171", true},
		{"comment and spaces", "  ab   # revoked 2026-01-01", true},
		{"other serial", "ac", false},
		{"another serial's colon form", "01:00:00:05", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a.write("revoked-serials", "# revoked\n"+tt.entry+"\n", 0o644)
			a.srv.Reload()
			status, body := a.mustDo(t, a.certs.revokable, "POST", "/ping", "{}")
			if tt.revoked {
				if status != "403 Error" || body != `{"error":"certificate revoked"}` {
					t.Errorf("%q %s", status, body)
				}
				return
			}
			if status != "200 OK" {
				t.Errorf("%q %s", status, body)
			}
		})
	}
	a.waitLog("ACTION=revoked-cert ENTRY=ab PEER=127.0.0.1 READING=serial_to_hex SERIAL=ab")

	// A revoked peer gets its answer without the agent reading a request.
	a.write("revoked-serials", "ab\n", 0o644)
	a.srv.Reload()
	conn, err := a.dial(a.certs.revokable)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(got), "HTTP/1.0 403 Error\r\n") {
		t.Errorf("without a request: %q", got)
	}
}

// D-32: the control serial 01000005 is all digits, which §8.3 reads as
// decimal; its colon and decimal spellings must revoke it all the same, and
// the log says which reading matched.
func TestRevokedControlSerialInEveryReading(t *testing.T) {
	a := startAgent(t, setup{})
	tests := []struct{ entry, reading string }{
		{"01:00:00:05", "hex"},
		{"0x1000005", "serial_to_hex"},
		{"16777221", "decimal"},
		{"serial=01000005", "serial_to_hex"},
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			a.write("revoked-serials", tt.entry+"\n", 0o644)
			a.srv.Reload()
			status, body := a.mustDo(t, a.certs.control, "POST", "/ping", "{}")
			if status != "403 Error" || body != `{"error":"certificate revoked"}` {
				t.Errorf("%q %s", status, body)
			}
			a.waitLog("ACTION=revoked-cert ENTRY="+tt.entry, "READING="+tt.reading, "SERIAL=01000005")
		})
	}
}

func TestHandshakeFailuresCountAsProbes(t *testing.T) {
	a := startAgent(t, setup{conf: "rate_limit_probe = 3/60/60\n"})

	// A TCP connect that sends nothing is a port check, not a probe.
	for range 5 {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
		t.Fatalf("after port checks: %q", status)
	}

	noCert := tls.Certificate{}
	for _, cert := range []tls.Certificate{noCert, a.certs.stranger, a.certs.stranger} {
		if _, _, err := a.do(cert, "POST", "/ping", "{}"); err == nil {
			t.Error("handshake without a valid client certificate succeeded")
		}
	}
	a.waitLog("ACTION=tls-failure PEER=127.0.0.1", "certificate")
	a.waitLog("ACTION=rate-block PEER=127.0.0.1 REASON=probe")

	if _, _, err := a.do(a.certs.control, "POST", "/ping", "{}"); err == nil {
		t.Error("blocked peer was served")
	}
	a.srv.Reload() // clears the rate state
	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("after reload: %q", status)
	}
}

func TestVolumeLimitBlocksAndExpires(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Now().Unix())
	a := startAgentWithClock(t, setup{conf: "rate_limit_volume = 3/10/20\n"}, func() time.Time { return time.Unix(clock.Load(), 0) })

	// A valid client cert without the stored serial is counted (D-33): it
	// is answered (403 serial mismatch) until the block starts.
	for i := range 3 {
		if status, _ := a.mustDo(t, a.certs.revokable, "POST", "/ping", "{}"); status != "403 Error" {
			t.Fatalf("request %d: %q", i+1, status)
		}
	}
	if _, _, err := a.do(a.certs.revokable, "POST", "/ping", "{}"); err == nil {
		t.Fatal("fourth connection in the window was served")
	}
	a.waitLog("ACTION=rate-block PEER=127.0.0.1 REASON=volume")
	clock.Add(19)
	if _, _, err := a.do(a.certs.control, "POST", "/ping", "{}"); err == nil {
		t.Fatal("served during the block")
	}
	clock.Add(1)
	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("after the block: %q", status)
	}
}

// D-33 (issue 9 item 8): the control host's own connections (CA-signed
// cert, stored serial) are not counted toward the volume limit, so it no
// longer locks itself out with 11 runs a minute; everyone else still is,
// and failed handshakes still count as probes.
func TestControlHostIsNotVolumeLimited(t *testing.T) {
	a := startAgent(t, setup{conf: "rate_limit_volume = 10/60/300\nrate_limit_probe = 3/600/3600\n"})
	for i := range 15 {
		if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
			t.Fatalf("control host request %d: %q", i+1, status)
		}
	}
	if a.hasLog("ACTION=rate-block") {
		t.Fatal("the control host was rate-blocked")
	}

	// A flood with a cert that is not the stored serial is blocked.
	for i := range 10 {
		if status, _ := a.mustDo(t, a.certs.revokable, "POST", "/ping", "{}"); status != "403 Error" {
			t.Fatalf("other client request %d: %q", i+1, status)
		}
	}
	if _, _, err := a.do(a.certs.revokable, "POST", "/ping", "{}"); err == nil {
		t.Fatal("11th connection of the flood was served")
	}
	a.waitLog("ACTION=rate-block PEER=127.0.0.1 REASON=volume")

	// Probes: a fresh limiter, three failed handshakes block the peer.
	a.srv.Reload()
	for range 3 {
		if _, _, err := a.do(a.certs.stranger, "POST", "/ping", "{}"); err == nil {
			t.Fatal("a stranger's certificate was accepted")
		}
	}
	a.waitLog("ACTION=rate-block PEER=127.0.0.1 REASON=probe")
	if _, _, err := a.do(a.certs.control, "POST", "/ping", "{}"); err == nil {
		t.Error("a probe-blocked address was served")
	}
}

func startAgentWithClock(t *testing.T, s setup, now func() time.Time) *testAgent {
	t.Helper()
	s.now = now
	return startAgent(t, s)
}

func TestAllowedIPs(t *testing.T) {
	blocked := startAgent(t, setup{conf: "allowed_ips = 10.1.2.3, 192.168.0.0/16\n"})
	if _, _, err := blocked.do(blocked.certs.control, "POST", "/ping", "{}"); err == nil {
		t.Error("peer outside allowed_ips was served")
	}
	blocked.waitLog("ACTION=ip-block PEER=127.0.0.1")

	allowed := startAgent(t, setup{conf: "allowed_ips = 127.0.0.0/24\n"})
	if status, _ := allowed.mustDo(t, allowed.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("allowed peer: %q", status)
	}
}

func TestSlowClientsStallNobody(t *testing.T) {
	a := startAgent(t, setup{timeouts: shortTimeouts()})

	// One client stuck in the handshake, one stuck in its request head.
	stuckTCP, err := net.Dial("tcp", a.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuckTCP.Close()
	if _, err := stuckTCP.Write([]byte{0x16}); err != nil { // half a TLS record header
		t.Fatal(err)
	}
	stuckTLS, err := a.dial(a.certs.control)
	if err != nil {
		t.Fatal(err)
	}
	defer stuckTLS.Close()
	if _, err := stuckTLS.Write([]byte("POST /ping HTTP/1.0\r\n")); err != nil {
		t.Fatal(err)
	}

	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("while others stall: %q", status)
	}
	for name, c := range map[string]net.Conn{"handshake": stuckTCP, "request": stuckTLS} {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("%s: the agent never closed the stalled connection", name)
		}
		if len(got) != 0 {
			t.Errorf("%s: got a reply %q", name, got)
		}
	}
	a.waitLog("ACTION=tls-failure PEER=127.0.0.1")
}

func TestReload(t *testing.T) {
	a := startAgent(t, setup{
		conf:    "[tags]\nrole = db\n",
		scripts: map[string]string{"echo": echoScript},
	})
	later := a.writeScript("later", "#!/bin/sh\necho later\n")
	run := func(script string) string {
		_, body := a.mustDo(t, a.certs.control, "POST", "/run", fmt.Sprintf(`{"script":%q}`, script))
		return body
	}
	if body := run("later"); !strings.Contains(body, "script not permitted") {
		t.Fatalf("before reload: %s", body)
	}

	a.write("scripts.conf", readFile(t, a.path("scripts.conf"))+"later = "+later+"\n", 0o640)
	a.write("agent.conf", a.baseConf()+"[tags]\nrole = web\n", 0o640)
	a.srv.Reload()
	if body := run("later"); !strings.Contains(body, `"stdout":"later\n"`) {
		t.Errorf("after reload: %s", body)
	}
	if _, body := a.mustDo(t, a.certs.control, "GET", "/capabilities", ""); !strings.Contains(body, `"tags":{"role":"web"}`) {
		t.Errorf("tags not reloaded: %s", body)
	}
	if !strings.Contains(a.stderr.String(), "Reloading allowlist, revocation list, and ctrl-exec serial...\n") {
		t.Errorf("stderr: %s", a.stderr.String())
	}

	// A broken agent.conf keeps the previous settings.
	a.write("agent.conf", a.baseConf()+"this is not a config line\n", 0o640)
	a.srv.Reload()
	if !strings.Contains(a.stderr.String(), "Config reload failed: Malformed config line") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
	if _, body := a.mustDo(t, a.certs.control, "GET", "/capabilities", ""); !strings.Contains(body, `"tags":{"role":"web"}`) {
		t.Errorf("previous config not kept: %s", body)
	}

	// An allowlist that cannot be read leaves nothing runnable (B-13).
	if err := os.Remove(a.path("scripts.conf")); err != nil {
		t.Fatal(err)
	}
	a.srv.Reload()
	if body := run("echo"); !strings.Contains(body, "script not permitted") {
		t.Errorf("after failed allowlist reload: %s", body)
	}
	if !strings.Contains(a.stderr.String(), "Allowlist reload failed: Cannot open allowlist") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
}

func TestReloadSwapsTheServingCertificate(t *testing.T) {
	a := startAgent(t, setup{})
	servedSerial := func() string {
		conn, err := a.dial(a.certs.control)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return pki.SerialHex(conn.ConnectionState().PeerCertificates[0])
	}
	if got := servedSerial(); got != "10" {
		t.Fatalf("serving serial %q", got)
	}
	certPath, keyPath := a.path("renewed.crt"), a.path("renewed.key")
	ca := &pkitest.CA{CA: a.certs.authority}
	setNextSerial(t, ca, 0x20)
	ca.Issue(t, pkitest.Key(t, 2048, 6), "agent-test", certPath, keyPath, 30)
	conf := strings.NewReplacer("cert = "+a.certs.agentCert, "cert = "+certPath, "key = "+a.certs.agentKey, "key = "+keyPath).Replace(a.baseConf())
	a.write("agent.conf", conf, 0o640)
	a.srv.Reload()
	if got := servedSerial(); got != "20" {
		t.Errorf("after reload serving serial %q", got)
	}

	// Files that do not load leave the previous certificate in service.
	a.write("agent.conf", strings.Replace(conf, "cert = "+certPath, "cert = "+a.path("gone.crt"), 1), 0o640)
	a.srv.Reload()
	if got := servedSerial(); got != "20" {
		t.Errorf("after a failed reload serving serial %q", got)
	}
	if !strings.Contains(a.stderr.String(), "Certificate reload failed: ") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
}

func TestClientDisconnectDoesNotKillTheScript(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{
		"outlive": "#!/bin/sh\nsleep 0.5\ntouch \"$0.finished\"\necho done\n",
	}})
	conn, err := a.dial(a.certs.control)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"script":"outlive","reqid":"gone"}`
	fmt.Fprintf(conn, "POST /run HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	conn.Close()
	waitFile(t, a.path("scripts/outlive.finished"))
	a.waitLog("ACTION=run EXIT=0 PEER=127.0.0.1 REQID=gone SCRIPT=outlive")
}

func TestReloadLosesNoRequestInFlight(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{"nap": "#!/bin/sh\nsleep 0.3\necho rested\n"}})
	var wg sync.WaitGroup
	errs := make(chan string, 20)
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, body, err := a.do(a.certs.control, "POST", "/run", fmt.Sprintf(`{"script":"nap","reqid":"%d"}`, i))
			if err != nil || !strings.Contains(body, `"stdout":"rested\n"`) {
				errs <- fmt.Sprintf("run %d: %v %s", i, err, body)
			}
		}()
	}
	for range 5 {
		a.srv.Reload()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestStoredSerialFileChangeIsNoticed(t *testing.T) {
	a := startAgent(t, setup{})
	if status, _ := a.mustDo(t, a.certs.revokable, "POST", "/ping", "{}"); status != "403 Error" {
		t.Fatalf("before: %q", status)
	}
	a.write("ctrl-exec-serial", pki.SerialHex(a.certs.revokable.Leaf)+"\n", 0o644)
	if status, _ := a.mustDo(t, a.certs.revokable, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("new serial not picked up: %q", status)
	}
	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", "{}"); status != "403 Error" {
		t.Errorf("old serial still accepted: %q", status)
	}
}

func TestShutdownLetsRunningScriptsFinish(t *testing.T) {
	a := startAgent(t, setup{scripts: map[string]string{
		"slow": "#!/bin/sh\ntouch \"$0.started\"\nsleep 0.5\necho finished\n",
	}})
	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		_, body, err := a.do(a.certs.control, "POST", "/run", `{"script":"slow"}`)
		got <- result{body, err}
	}()
	waitFile(t, a.path("scripts/slow.started"))

	a.stop()
	r := <-got
	if r.err != nil || !strings.Contains(r.body, `"stdout":"finished\n"`) {
		t.Errorf("run across shutdown: %v %s", r.err, r.body)
	}
	if err := <-a.done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	a.done <- nil // for the cleanup
	if _, err := net.Dial("tcp", a.addr); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestShutdownWaitIsBounded(t *testing.T) {
	timeouts := shortTimeouts()
	timeouts.Shutdown = 100 * time.Millisecond
	a := startAgent(t, setup{timeouts: timeouts, scripts: map[string]string{
		"long": "#!/bin/sh\ntouch \"$0.started\"\nsleep 3\n",
	}})
	go func() { _, _, _ = a.do(a.certs.control, "POST", "/run", `{"script":"long"}`) }()
	waitFile(t, a.path("scripts/long.started"))
	a.stop()
	select {
	case err := <-a.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		a.done <- nil
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("Serve waited for the script beyond its shutdown bound")
	}
	if !strings.Contains(a.stderr.String(), "Stopping with requests still running") {
		t.Errorf("stderr: %s", a.stderr.String())
	}
}

func TestListenerFailureEndsServe(t *testing.T) {
	c := testCerts(t)
	dir := t.TempDir()
	conf := fmt.Sprintf("port = 0\ncert = %s\nkey = %s\nca = %s\n", c.agentCert, c.agentKey, c.ca)
	if err := os.WriteFile(dir+"/agent.conf", []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/scripts.conf", nil, 0o640); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	srv, err := NewServer(ServerOptions{ConfigPath: dir + "/agent.conf", AllowlistPath: dir + "/scripts.conf",
		Paths: paths.Paths{Root: dir}, Log: zerolog.New(log)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background(), ln) }()
	time.Sleep(50 * time.Millisecond)
	ln.Close()
	if err := <-done; err == nil {
		t.Error("Serve returned nil after its listener failed")
	}
	if !strings.Contains(log.String(), `"message":"accept-fatal"`) {
		t.Errorf("log: %s", log.String())
	}
}

func TestStartupErrors(t *testing.T) {
	c := testCerts(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := dir + "/" + name
		if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := fmt.Sprintf("port = 0\ncert = %s\nkey = %s\nca = %s\n", c.agentCert, c.agentKey, c.ca)
	tests := []struct {
		name, conf, allowlist, want string
	}{
		{"missing config", "", "scripts.conf", "Cannot open config '" + dir + "/absent.conf': No such file or directory"},
		{"missing allowlist", "agent.conf", "absent.conf", "Cannot open allowlist '" + dir + "/absent.conf': No such file or directory"},
		{"bad cert", "bad.conf", "scripts.conf", "Cannot start server: "},
	}
	write("agent.conf", good)
	write("scripts.conf", "")
	write("bad.conf", strings.Replace(good, "cert = "+c.agentCert, "cert = "+dir+"/none.crt", 1))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := dir + "/" + tt.conf
			if tt.conf == "" {
				conf = dir + "/absent.conf"
			}
			_, err := NewServer(ServerOptions{ConfigPath: conf, AllowlistPath: dir + "/" + tt.allowlist,
				Paths: paths.Paths{Root: dir}, Log: zerolog.Nop()})
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("error %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func waitFile(t *testing.T, path string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The agent caps its connections even with the rate limiter off: idle
// clients beyond MaxConns are shed, oldest first, and a real request is
// served. The handshake deadline is an hour, so only shedding cuts them.
func TestServerConnectionCapShedsIdleClients(t *testing.T) {
	const maxConns, idle = 4, 12
	a := startAgent(t, setup{
		maxConns: maxConns, shedAfter: -1,
		timeouts: Timeouts{Handshake: time.Hour, Request: time.Hour, Response: time.Minute, Shutdown: time.Second},
	})
	var conns []net.Conn
	for range idle {
		c, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	if status, _ := a.mustDo(t, a.certs.control, "POST", "/ping", `{}`); status != "200 OK" {
		t.Fatalf("ping behind %d idle clients: %s", idle, status)
	}
	cut := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if n, err := c.Read(make([]byte, 1)); n == 0 && !isTimeout(err) {
			cut++
		}
	}
	if cut < idle-(maxConns-1) {
		t.Errorf("%d of %d idle clients cut, want at least %d", cut, idle, idle-(maxConns-1))
	}
	if a.hasLog("ACTION=tls-failure") {
		t.Errorf("shed connections logged as handshake failures:\n%s", a.log)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
