package e2e

import (
	"bufio"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// agentTestCerts is what issueAgentCerts made: the control host's identity
// as a TLS client, its serial, and the CA to verify agents against.
type agentTestCerts struct {
	ca            *pki.CA
	roots         *x509.CertPool
	control       tls.Certificate
	controlSerial string
	clientKey     *rsa.PrivateKey // for clientCertWithSerial
}

// issueAgentCerts sets up a CA and a ctrl-exec cert in ctlRoot's
// /etc/ctrl-exec, and in agentRoot's /etc/ctrl-exec-agent the agent key,
// its cert, the CA cert and the stored ctrl-exec serial — what setup-ca,
// setup-ctrl-exec and pairing would leave behind.
func issueAgentCerts(t *testing.T, ctlRoot, agentRoot *Root) agentTestCerts {
	t.Helper()
	now := time.Now()
	keys := takeKeys(t, 4) // CA, ctrl-exec, agent, other clients
	ca, err := pki.CreateCAWithKey(pki.CAFilesIn(ctlRoot.Path("/etc/ctrl-exec")), keys[0], now)
	if err != nil {
		t.Fatal(err)
	}
	ctlKey, ctlCert := ctlRoot.Path("/etc/ctrl-exec/ctrl-exec.key"), ctlRoot.Path("/etc/ctrl-exec/ctrl-exec.crt")
	cert := issueCtrlExecCert(t, ca, keys[1], ctlKey, ctlCert, now)
	control, err := tls.LoadX509KeyPair(ctlCert, ctlKey)
	if err != nil {
		t.Fatal(err)
	}

	key := keys[2]
	csr, err := pki.CreateCSR(key, agentRoot.Hostname)
	if err != nil {
		t.Fatal(err)
	}
	agentCert, err := ca.SignCSR(csr, 825, now, pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	agentRoot.WriteFile("/etc/ctrl-exec-agent/agent.key", string(keyPEM), 0o640)
	agentRoot.WriteFile("/etc/ctrl-exec-agent/agent.crt", string(pki.CertPEM(agentCert)), 0o640)
	agentRoot.WriteFile("/etc/ctrl-exec-agent/ca.crt", string(ca.CertPEM), 0o644)
	agentRoot.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", pki.SerialHex(cert)+"\n", 0o644)

	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return agentTestCerts{ca: ca, roots: roots, control: control, controlSerial: pki.SerialHex(cert), clientKey: keys[3]}
}

// clientCertWithSerial issues another client identity from the same CA with
// a chosen serial (through ca.serial, as the signer does).
func (c agentTestCerts) clientCertWithSerial(t *testing.T, serial int64) tls.Certificate {
	t.Helper()
	if err := os.WriteFile(c.ca.Files.Serial, pki.FormatSerialFile(big.NewInt(serial-1)), 0o600); err != nil {
		t.Fatal(err)
	}
	key := c.clientKey
	csr, err := pki.CreateCSR(key, "ctrl-exec")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.ca.SignCSR(csr, 30, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// agentOpts shape one agent under test.
type agentOpts struct {
	conf      string            // extra agent.conf lines
	scripts   map[string]string // name → script text in /opt/ctrl-exec-scripts, allowlisted
	allowlist string            // extra scripts.conf lines
	launcher  []string          // command the agent binary is started under (e.g. unshare)
}

// agentProc is a real `ctrl-exec-agent serve` in its own root.
type agentProc struct {
	t     *testing.T
	root  *Root
	certs agentTestCerts
	port  int
	proc  *Proc
}

// startAgentProc installs certs, config and scripts in a fresh agent root and
// starts serve, waiting for its start line. The rate limiter is off unless
// opts.conf sets rate_limit_*.
func startAgentProc(t *testing.T, opts agentOpts) *agentProc {
	t.Helper()
	ctl := NewRoot(t, "control")
	r := NewRoot(t, "agent-e2e")
	a := &agentProc{t: t, root: r, certs: issueAgentCerts(t, ctl, r), port: FreePort(t)}

	names := make([]string, 0, len(opts.scripts))
	for name := range opts.scripts {
		names = append(names, name)
	}
	sort.Strings(names)
	var allow strings.Builder
	for _, name := range names {
		fmt.Fprintf(&allow, "%s = %s\n", name, a.script(name, opts.scripts[name]))
	}
	allow.WriteString(opts.allowlist)
	r.WriteFile("/etc/ctrl-exec-agent/scripts.conf", allow.String(), 0o640)
	r.WriteFile("/etc/ctrl-exec-agent/agent.conf", a.baseConf(opts.conf)+opts.conf, 0o640)

	if len(opts.launcher) > 0 {
		args := append(opts.launcher[1:len(opts.launcher):len(opts.launcher)], filepath.Join(binDir, "ctrl-exec-agent"), "serve")
		a.proc = r.Start(opts.launcher[0], args...)
	} else {
		a.proc = r.Start("ctrl-exec-agent", "serve")
	}
	a.waitStarted(1)
	return a
}

func (a *agentProc) baseConf(extra string) string {
	conf := strings.Join([]string{
		"port = " + strconv.Itoa(a.port),
		"cert = " + a.root.Path("/etc/ctrl-exec-agent/agent.crt"),
		"key = " + a.root.Path("/etc/ctrl-exec-agent/agent.key"),
		"ca = " + a.root.Path("/etc/ctrl-exec-agent/ca.crt"),
		"script_dirs = " + a.root.Path("/opt/ctrl-exec-scripts"),
	}, "\n") + "\n"
	if !strings.Contains(extra, "rate_limit") {
		conf += "rate_limit_disable = 1\n"
	}
	return conf
}

// waitStarted waits for the nth start line of this root's log.
func (a *agentProc) waitStarted(n int) {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		count := 0
		for _, l := range a.root.LogLines() {
			if l == "ACTION=start PORT="+strconv.Itoa(a.port) {
				count++
			}
		}
		if count >= n {
			return
		}
		if procExited(a.proc) {
			a.t.Fatalf("agent exited before listening\nstderr: %s", a.proc.Stderr())
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("agent never logged its start\nstderr: %s\nlog: %s", a.proc.Stderr(), a.root.ReadFile("log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func procExited(p *Proc) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (a *agentProc) script(name, body string) string {
	return a.root.WriteFile("/opt/ctrl-exec-scripts/"+name, body, 0o755)
}

// signal sends sig to the agent process.
func (a *agentProc) signal(sig syscall.Signal) {
	a.t.Helper()
	if err := a.proc.Cmd.Process.Signal(sig); err != nil {
		a.t.Fatal(err)
	}
}

// hup sends SIGHUP and waits until the nth reload announced itself. The
// announcement comes first, so callers that depend on the reloaded state
// poll for it.
func (a *agentProc) hup(n int) {
	a.t.Helper()
	a.signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(a.proc.Stderr(), "Reloading allowlist, revocation list, and ctrl-exec serial...\n") < n {
		if time.Now().After(deadline) {
			a.t.Fatalf("reload %d never started; stderr: %s", n, a.proc.Stderr())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (a *agentProc) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(a.port)) }

// dial connects presenting cert (tls.Certificate{} presents none).
func (a *agentProc) dial(cert tls.Certificate) (*tls.Conn, error) {
	raw, err := net.DialTimeout("tcp", a.addr(), 5*time.Second)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, tlsx.ClientConfig(cert, a.certs.roots))
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	if err := conn.Handshake(); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// do sends one request as the control host does; status is like "200 OK".
func (a *agentProc) do(cert tls.Certificate, method, path, body string) (status, reply string, err error) {
	conn, err := a.dial(cert)
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	if err := wire.WriteClientRequest(conn, method, path, "agent-e2e", []byte(body)); err != nil {
		return "", "", err
	}
	_, status, b, err := wire.ReadClientResponse(bufio.NewReader(conn))
	return status, string(b), err
}

func (a *agentProc) mustDo(t *testing.T, method, path, body string) (string, string) {
	t.Helper()
	status, reply, err := a.do(a.certs.control, method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return status, reply
}

// run posts /run as the control host and decodes the reply.
func (a *agentProc) run(t *testing.T, fields map[string]any) map[string]any {
	t.Helper()
	body, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	status, reply := a.mustDo(t, "POST", "/run", string(body))
	if status != "200 OK" {
		t.Fatalf("run %v: %s %s", fields, status, reply)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(reply), &m); err != nil {
		t.Fatalf("reply %.200q: %v", reply, err)
	}
	return m
}

// raw writes bytes after the handshake and returns what came back before close.
func (a *agentProc) raw(t *testing.T, data string) string {
	t.Helper()
	conn, err := a.dial(a.certs.control)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, data); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(conn)
	return string(got)
}

func TestAgentRunDeliversArgumentsAndContext(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{scripts: map[string]string{
		"echo": "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\0' \"$a\"; done\ncat >&2\n",
	}})
	args := []string{"two words", `"double" 'single'`, "$(touch /tmp/pwned)", "a; rm -rf /", "*", "line one\nline two", "`id`", "", "--"}
	got := a.run(t, map[string]any{"script": "echo", "args": args, "reqid": "e2e0000000000001", "username": "alice", "token": "tok-e2e-secret"})
	if got["exit"] != float64(0) {
		t.Fatalf("reply %v", got)
	}
	if diff := cmp.Diff(strings.Join(args, "\x00")+"\x00", got["stdout"]); diff != "" {
		t.Errorf("arguments (-want +got):\n%s", diff)
	}

	stdin := got["stderr"].(string)
	var ctx map[string]any
	if err := json.Unmarshal([]byte(stdin), &ctx); err != nil {
		t.Fatalf("stdin %q: %v", stdin, err)
	}
	want := fmt.Sprintf(`{"script":"echo","args":%s,"reqid":"e2e0000000000001","peer_ip":"127.0.0.1","username":"alice","token":"tok-e2e-secret","timestamp":%q}`,
		mustJSON(t, args), ctx["timestamp"])
	if diff := cmp.Diff(want, stdin); diff != "" {
		t.Errorf("stdin context is not the compact JSON (-want +got):\n%s", diff)
	}
	a.root.WaitLog(5*time.Second, "ACTION=run EXIT=0 PEER=127.0.0.1 REQID=e2e0000000000001 SCRIPT=echo")
	if log := a.root.ReadFile("log"); strings.Contains(log, "tok-e2e-secret") {
		t.Errorf("token in the log:\n%s", log)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAgentRunRefusesWhatIsNotAllowed(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{
		scripts:   map[string]string{"ok": "#!/bin/sh\necho ok\n"},
		allowlist: "outside = /bin/echo\n",
	})
	noExec := a.root.WriteFile("/opt/ctrl-exec-scripts/noexec", "#!/bin/sh\necho never\n", 0o644)
	a.root.WriteFile("/etc/ctrl-exec-agent/scripts.conf", a.root.ReadFile("/etc/ctrl-exec-agent/scripts.conf")+"noexec = "+noExec+"\n", 0o640)
	a.hup(1)
	if !strings.Contains(a.proc.Stderr(), "Allowlist: skipping 'outside' - path not in approved script_dirs: /bin/echo") {
		t.Errorf("stderr: %s", a.proc.Stderr())
	}
	// A skipped entry is a warning in the log and in self-check's report too.
	a.root.WaitLog(5*time.Second, "ACTION=config-warn ENTRY=outside", `MSG="Allowlist: skipping 'outside' - path not in approved script_dirs: /bin/echo"`)
	check := a.root.Run("ctrl-exec-agent", "self-check")
	if check.Code != 0 || !strings.Contains(check.Stdout, "\n  WARNING: Allowlist: skipping 'outside' - path not in approved script_dirs: /bin/echo\n") {
		t.Errorf("self-check: exit %d, stdout:\n%s", check.Code, check.Stdout)
	}

	for _, name := range []string{"absent", "../ok", "sub/ok", "/bin/echo", "ok\n", "outside", ""} {
		got := a.run(t, map[string]any{"script": name, "reqid": "r"})
		want := map[string]any{"script": name, "exit": float64(-1), "error": "script not permitted", "reqid": "r"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", name, diff)
		}
	}
	a.root.WaitLog(5*time.Second, "ACTION=deny PEER=127.0.0.1 REQID=r SCRIPT=absent")

	got := a.run(t, map[string]any{"script": "noexec"})
	if got["exit"] != float64(127) || !strings.Contains(got["stderr"].(string), "permission denied") {
		t.Errorf("non-executable: %v", got)
	}
	if got := a.run(t, map[string]any{"script": "ok"}); got["stdout"] != "ok\n" {
		t.Errorf("allowed script: %v", got)
	}
}

func TestAgentRunOutputFloodAndSignals(t *testing.T) {
	t.Parallel()
	const size = 1 << 20 // 16 pipe buffers (both pipes must be drained at once), under max_output
	a := startAgentProc(t, agentOpts{scripts: map[string]string{
		"flood":  fmt.Sprintf("#!/bin/sh\nhead -c %d /dev/zero | tr '\\0' o &\nhead -c %d /dev/zero | tr '\\0' e >&2\nwait\nexit 4\n", size, size),
		"killed": "#!/bin/sh\necho before\nkill -KILL $$\n",
	}})
	// Compared as bytes: decoding 16 MiB of JSON is slow under -race.
	status, body := a.mustDo(t, "POST", "/run", `{"script":"flood","reqid":"f"}`)
	want := `{"script":"flood","exit":4,"stdout":"` + strings.Repeat("o", size) + `","stderr":"` + strings.Repeat("e", size) + `","reqid":"f"}`
	if status != "200 OK" || body != want {
		t.Errorf("flood: %s, %d bytes (want %d), starting %.80q", status, len(body), len(want), body)
	}
	got := a.run(t, map[string]any{"script": "killed"})
	if got["exit"] != float64(126) || got["stdout"] != "before\n" {
		t.Errorf("killed: %v", got)
	}
}

func TestAgentAuthHook(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{scripts: map[string]string{"ok": "#!/bin/sh\necho ran\n"}})
	setHook := func(n int, body string) {
		hook := a.root.WriteFile("/etc/ctrl-exec-agent/hook", "#!/bin/sh\n"+body+"\n", 0o755)
		a.root.WriteFile("/etc/ctrl-exec-agent/agent.conf", a.baseConf("")+"auth_hook = "+hook+"\n", 0o640)
		a.hup(n)
	}
	req := map[string]any{"script": "ok", "reqid": "h", "username": "u", "token": "hook-secret"}

	setHook(1, "cat > \"$0.stdin\"\nexit 1")
	waitDenied := func(reason string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := a.run(t, req)
			if got["error"] == "not authorised: "+reason {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want denial %q, got %v", reason, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitDenied("denied")
	a.root.WaitLog(5*time.Second, "ACTION=deny PEER=127.0.0.1 REASON=denied REQID=h SCRIPT=ok")
	if stdin := a.root.ReadFile("/etc/ctrl-exec-agent/hook.stdin"); !strings.Contains(stdin, `"token":"hook-secret"`) || !strings.Contains(stdin, `"hosts":[]`) {
		t.Errorf("hook stdin %s", stdin)
	}

	setHook(2, "kill -SEGV $$")
	waitDenied("denied")
	a.root.WaitLog(5*time.Second, "ACTION=auth", "REASON=hook-signaled", "RESULT=error")

	// A slow hook holds only its own request.
	setHook(3, "sleep 2\nexit 0")
	done := make(chan map[string]any, 1)
	go func() { done <- a.run(t, req) }()
	if status, _ := a.mustDo(t, "POST", "/ping", `{}`); status != "200 OK" {
		t.Errorf("ping while the hook sleeps: %s", status)
	}
	if got := <-done; got["stdout"] != "ran\n" {
		t.Errorf("after a slow hook: %v", got)
	}

	setHook(4, "exit 3")
	status, body := a.mustDo(t, "GET", "/capabilities", "")
	if status != "403 Error" || body != `{"error":"not authorised"}` {
		t.Errorf("capabilities: %s %s", status, body)
	}
	if log := a.root.ReadFile("log"); strings.Contains(log, "hook-secret") {
		t.Error("token in the log")
	}
}

func TestAgentRejectsBadPeers(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{conf: "rate_limit_probe = 100/60/60\n", scripts: map[string]string{"ok": "#!/bin/sh\n"}})

	// No client certificate, and a certificate from another CA.
	otherCtl, otherAgent := NewRoot(t, "other"), NewRoot(t, "other-agent")
	stranger := issueAgentCerts(t, otherCtl, otherAgent).control
	for name, cert := range map[string]tls.Certificate{"no cert": {}, "other CA": stranger} {
		if status, _, err := a.do(cert, "POST", "/ping", "{}"); err == nil {
			t.Errorf("%s: served (%s)", name, status)
		}
	}
	a.root.WaitLog(5*time.Second, "ACTION=tls-failure PEER=127.0.0.1", "didn't provide a certificate")
	a.root.WaitLog(5*time.Second, "ACTION=tls-failure PEER=127.0.0.1", "unknown authority")

	// A wrong stored serial; the file change is noticed without SIGHUP.
	a.root.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", "0123456789\n", 0o644)
	status, body := a.mustDo(t, "POST", "/run", `{"script":"ok"}`)
	if status != "403 Error" || body != `{"error":"serial mismatch","status":"forbidden"}` {
		t.Errorf("wrong stored serial: %s %s", status, body)
	}
	a.root.WaitLog(5*time.Second, "ACTION=serial-reject PEER=127.0.0.1 REQID=(none)")
	a.root.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", a.certs.controlSerial+"\n", 0o644)

	// Revocation in every accepted spelling of serial 0xab.
	revokable := a.certs.clientCertWithSerial(t, 0xab)
	forms := []string{"ab", "0xAB", "serial=AB", "00:AB", "171"}
	for i, form := range forms {
		a.root.WriteFile("/etc/ctrl-exec-agent/revoked-serials", "# revoked\n"+form+"\n", 0o644)
		a.hup(i + 1)
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, body, err := a.do(revokable, "POST", "/ping", "{}")
			if err == nil && status == "403 Error" && body == `{"error":"certificate revoked"}` {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("form %q: %s %s %v", form, status, body, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		// Clear it again so the next form is what revokes.
		a.root.WriteFile("/etc/ctrl-exec-agent/revoked-serials", "", 0o644)
	}
	a.root.WaitLog(5*time.Second, "ACTION=revoked-cert", "PEER=127.0.0.1", "SERIAL=ab")
	if status, _ := a.mustDo(t, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("control host after all that: %s", status)
	}
}

func TestAgentFramingAndSlowClients(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{scripts: map[string]string{"ok": "#!/bin/sh\necho fine\n"}})

	var head strings.Builder
	head.WriteString("POST /ping HTTP/1.1\r\n")
	for i := range 33 {
		fmt.Fprintf(&head, "X-Header-%d: %d\r\n", i, i)
	}
	head.WriteString("\r\n")
	want := "HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\nContent-Length: 28\r\n\r\n{\"error\":\"too many headers\"}"
	if diff := cmp.Diff(want, a.raw(t, head.String())); diff != "" {
		t.Errorf("33 headers (-want +got):\n%s", diff)
	}
	want = "HTTP/1.0 413 Content Too Large\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n{\"error\":\"request too large\"}"
	if diff := cmp.Diff(want, a.raw(t, "POST /run HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n")); diff != "" {
		t.Errorf("1 MiB + 1 (-want +got):\n%s", diff)
	}

	// A slowloris client sends one byte a second; runs go on meanwhile.
	slow, err := a.dial(a.certs.control)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	stopDrip := make(chan struct{})
	var drip sync.WaitGroup
	drip.Add(1)
	go func() {
		defer drip.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for i := 0; ; i++ {
			if _, err := slow.Write([]byte{"POST /run HTTP/1.1\r\n"[i%20]}); err != nil {
				return
			}
			select {
			case <-stopDrip:
				return
			case <-tick.C:
			}
		}
	}()
	for range 5 {
		if got := a.run(t, map[string]any{"script": "ok"}); got["stdout"] != "fine\n" {
			t.Errorf("run beside a slowloris: %v", got)
		}
	}
	close(stopDrip)
	drip.Wait()
}

func TestAgentRateLimitBlocksAndExpires(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{conf: "rate_limit_volume = 3/2/2\n"})
	// The control host's own cert is not counted (D-33): flood with another
	// CA-signed cert, which is answered (serial mismatch) until blocked.
	flood := a.certs.clientCertWithSerial(t, 0xab)
	for range 5 {
		if status, _ := a.mustDo(t, "POST", "/ping", "{}"); status != "200 OK" {
			t.Fatalf("control host: %s", status)
		}
	}
	// Back off so the three requests share one 2 s window.
	deadline := time.Now().Add(20 * time.Second)
	for {
		start := time.Now()
		served := 0
		for range 4 {
			if _, _, err := a.do(flood, "POST", "/ping", "{}"); err == nil {
				served++
			}
		}
		if served == 3 && time.Since(start) < time.Second {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw exactly 3 of 4 served quickly (last %d)", served)
		}
		time.Sleep(2500 * time.Millisecond)
	}
	a.root.WaitLog(5*time.Second, "ACTION=rate-block PEER=127.0.0.1 REASON=volume")

	// The block ends after 2 s (whole seconds; allow one more).
	deadline = time.Now().Add(10 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		if status, _, err := a.do(a.certs.control, "POST", "/ping", "{}"); err == nil && status == "200 OK" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("block never expired")
		}
	}
}

func TestAgentReload(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{
		conf:    "[tags]\nenv = test\n",
		scripts: map[string]string{"nap": "#!/bin/sh\nsleep 0.4\necho rested\n"},
	})

	// SIGHUP during a burst of runs loses none.
	var wg sync.WaitGroup
	failures := make(chan string, 30)
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, body, err := a.do(a.certs.control, "POST", "/run", fmt.Sprintf(`{"script":"nap","reqid":"burst-%d"}`, i))
			if err != nil || status != "200 OK" || !strings.Contains(body, `"stdout":"rested\n"`) {
				failures <- fmt.Sprintf("run %d: %v %s %.200s", i, err, status, body)
			}
		}()
	}
	for n := 1; n <= 5; n++ {
		a.hup(n)
		time.Sleep(60 * time.Millisecond)
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}

	// A broken agent.conf keeps the old settings; the agent keeps serving.
	a.root.WriteFile("/etc/ctrl-exec-agent/agent.conf", a.baseConf("")+"[tags]\nenv = broken\nno equals sign here\n", 0o640)
	a.hup(6)
	a.proc.WaitOutput(t, "Config reload failed: Malformed config line", 5*time.Second)
	if _, body := a.mustDo(t, "GET", "/capabilities", ""); !strings.Contains(body, `"tags":{"env":"test"}`) {
		t.Errorf("old config not kept: %s", body)
	}

	// A good one takes effect.
	a.root.WriteFile("/etc/ctrl-exec-agent/agent.conf", a.baseConf("")+"[tags]\nenv = prod\n", 0o640)
	a.hup(7)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, body := a.mustDo(t, "GET", "/capabilities", ""); strings.Contains(body, `"tags":{"env":"prod"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("new tags never served")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if procExited(a.proc) {
		t.Fatal("agent died on reload")
	}
}

func TestAgentStopsCleanly(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{scripts: map[string]string{
		"slow": "#!/bin/sh\ntouch \"$0.started\"\nsleep 1\necho done\n",
	}})
	got := make(chan string, 1)
	go func() {
		_, body, err := a.do(a.certs.control, "POST", "/run", `{"script":"slow"}`)
		if err != nil {
			body = err.Error()
		}
		got <- body
	}()
	started := a.root.Path("/opt/ctrl-exec-scripts/slow.started")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(started); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("script never started")
		}
	}
	a.signal(syscall.SIGTERM)
	if body := <-got; !strings.Contains(body, `"stdout":"done\n"`) {
		t.Errorf("run across SIGTERM: %s", body)
	}
	if code, exited := a.proc.Wait(15 * time.Second); !exited || code != 0 {
		t.Errorf("exit %d (exited %v)", code, exited)
	}
}

func TestAgentStartupFailures(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "agent-e2e")
	res := r.Run("ctrl-exec-agent", "serve")
	want := "Cannot open config '" + r.Path("/etc/ctrl-exec-agent/agent.conf") + "': No such file or directory\n"
	if res.Code != 255 || res.Stderr != want {
		t.Errorf("no config: exit %d stderr %q", res.Code, res.Stderr)
	}

	// The port is taken.
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	issueAgentCerts(t, NewRoot(t, "control"), r)
	r.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "", 0o640)
	r.WriteFile("/etc/ctrl-exec-agent/agent.conf", strings.Join([]string{
		"port = " + strconv.Itoa(port),
		"cert = " + r.Path("/etc/ctrl-exec-agent/agent.crt"),
		"key = " + r.Path("/etc/ctrl-exec-agent/agent.key"),
		"ca = " + r.Path("/etc/ctrl-exec-agent/ca.crt"),
	}, "\n")+"\n", 0o640)
	res = r.Run("ctrl-exec-agent", "serve")
	if res.Code != 255 || !strings.HasPrefix(res.Stderr, "Cannot start server: ") || !strings.Contains(res.Stderr, "address already in use") {
		t.Errorf("port in use: exit %d stderr %q", res.Code, res.Stderr)
	}
}

func TestAgentSelfCheckAndSelfPing(t *testing.T) {
	t.Parallel()
	a := startAgentProc(t, agentOpts{scripts: map[string]string{"ok": "#!/bin/sh\n"}})
	cert, err := pki.LoadCert(a.root.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	expiry := pki.FormatOpenSSLDate(cert.NotAfter)

	res := a.root.Run("ctrl-exec-agent", "self-check")
	wantStart := strings.Join([]string{
		"Checking config...",
		"  Config OK (port " + strconv.Itoa(a.port) + ")",
		"  Allowlist OK (1 scripts)",
		"  Certs OK (expires " + expiry + ")",
		"  Script 'ok': " + a.root.Path("/opt/ctrl-exec-scripts/ok") + " [ok]",
	}, "\n") + "\n"
	if res.Code != 0 || !strings.HasPrefix(res.Stdout, wantStart) || !strings.HasSuffix(res.Stdout, "Self-check complete.\n") {
		t.Errorf("self-check: exit %d\n%s\nstderr: %s", res.Code, res.Stdout, res.Stderr)
	}

	res = a.root.Run("ctrl-exec-agent", "self-ping")
	p := strconv.Itoa(a.port)
	want := strings.Join([]string{
		"Checking config...",
		"  Config OK (port " + p + ")",
		"  Paired: yes (cert expires " + expiry + ")",
		"Connecting to 127.0.0.1:" + p + "...",
		"  Port " + p + ": listening",
		"  mTLS handshake: OK",
		"  Ping response: 403 serial mismatch (expected - agent is running and enforcing policy)",
		"Self-ping complete.",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, res.Stdout); diff != "" || res.Code != 0 {
		t.Errorf("self-ping: exit %d (-want +got):\n%s\nstderr: %s", res.Code, diff, res.Stderr)
	}

	a.proc.Stop()
	res = a.root.Run("ctrl-exec-agent", "self-ping")
	if res.Code != 1 || !strings.HasSuffix(res.Stdout, "  Port "+p+": not listening - is the agent running?\n") {
		t.Errorf("self-ping, agent stopped: exit %d\n%s", res.Code, res.Stdout)
	}
}

// As PID 1 (a container's init) the agent reaps the orphans of daemonising
// scripts (§19.2). A PID namespace makes it PID 1 here.
func TestAgentReapsOrphansAsPID1(t *testing.T) {
	t.Parallel()
	if err := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		t.Skipf("cannot make a PID namespace here: %v", err)
	}
	a := startAgentProc(t, agentOpts{
		launcher: []string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child"},
		scripts:  map[string]string{"daemonise": "#!/bin/sh\n( sleep 0.3 & )\necho detached\n"},
	})
	agentPID := childOf(t, a.proc.Cmd.Process.Pid)
	// unshare does not pass SIGTERM on; stop the agent itself, first.
	t.Cleanup(func() { _ = syscall.Kill(agentPID, syscall.SIGTERM) })
	for range 3 {
		if got := a.run(t, map[string]any{"script": "daemonise"}); got["stdout"] != "detached\n" {
			t.Fatalf("run: %v", got)
		}
	}
	// The orphaned sleeps, the agent's children now, end within 0.3 s and
	// must then be reaped: gone, not zombies.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		kids := procsWithParent(agentPID, "")
		if len(kids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("children of the agent left: %v (zombies: %v)", kids, procsWithParent(agentPID, "Z"))
		}
	}
	if status, _ := a.mustDo(t, "POST", "/ping", "{}"); status != "200 OK" {
		t.Errorf("ping after reaping: %s", status)
	}
}

// childOf is the single child process of pid (the agent under unshare).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if kids := procsWithParent(pid, ""); len(kids) == 1 {
			return kids[0]
		}
	}
	t.Fatalf("no single child of %d", pid)
	return 0
}

// procsWithParent lists the PIDs whose parent is ppid, in state (if not "").
func procsWithParent(ppid int, state string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) < 2 || fields[1] != strconv.Itoa(ppid) || (state != "" && fields[0] != state) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}
