package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

var reqIDLine = regexp.MustCompile(`^[0-9a-f]{16}\n$`)

// eventually polls cond every 20 ms for up to timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type listedRequest struct {
	ID, Hostname, IP, Code, Received string
}

func listRequests(t *testing.T, ctl *Root) []listedRequest {
	t.Helper()
	res := ctl.MustRun("ctrl-exec", "list-requests", "--json")
	var reqs []listedRequest
	if err := json.Unmarshal([]byte(res.Stdout), &reqs); err != nil {
		t.Fatalf("list-requests --json: %v: %q", err, res.Stdout)
	}
	return reqs
}

// waitRequest waits until exactly n requests are queued and returns them.
func waitRequests(t *testing.T, ctl *Root, n int) []listedRequest {
	t.Helper()
	var reqs []listedRequest
	eventually(t, 30*time.Second, fmt.Sprintf("%d queued requests", n), func() bool {
		reqs = listRequests(t, ctl)
		return len(reqs) == n
	})
	return reqs
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func registryRecord(t *testing.T, ctl *Root, host string) map[string]any {
	t.Helper()
	var rec map[string]any
	if err := json.Unmarshal([]byte(ctl.ReadFile("/var/lib/ctrl-exec/agents/"+host+".json")), &rec); err != nil {
		t.Fatalf("registry record of %s: %v", host, err)
	}
	return rec
}

func countLog(r *Root, parts ...string) int {
	n := 0
	for _, l := range r.LogLines() {
		if containsAll(l, parts) {
			n++
		}
	}
	return n
}

func TestPairingApproved(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "web-01")
	pm, port := StartPairingMode(t, ctl)
	banner := fmt.Sprintf("Pairing mode active on port %d. Ctrl-C to stop.\nUse 'ctrl-exec list-requests' to see pending requests.\n"+
		"CA fingerprint: %s (agents pin it with request-pairing --ca-fingerprint)\n", port, caFingerprint(t, ctl))
	pm.WaitOutput(t, banner, 30*time.Second) // the later lines may follow the listening socket
	if pm.Stdout() != banner {
		t.Errorf("non-interactive banner %q, want %q", pm.Stdout(), banner)
	}
	ctl.WaitLog(5*time.Second, "ACTION=pairing-mode-start PORT="+itoa(port))

	req := agent.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	reqs := waitRequests(t, ctl, 1)
	r := reqs[0]
	code := regexp.MustCompile(`Pairing code: (\d{6})\n`).FindStringSubmatch(req.Stdout())
	if code == nil || code[1] != r.Code {
		t.Fatalf("agent shows %q, list-requests code %q", req.Stdout(), r.Code)
	}
	if r.Hostname != "web-01" || r.IP != "127.0.0.1" || !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(r.ID) {
		t.Errorf("queued request %+v", r)
	}
	text := ctl.MustRun("ctrl-exec", "list-requests").Stdout
	wantText := fmt.Sprintf("%-10s  %-30s  %-16s  %-8s  %s\n%s\n%-10s  %-30s  %-16s  %-8s  %s\n",
		"ID", "HOSTNAME", "IP", "CODE", "RECEIVED", strings.Repeat("-", 85), r.ID, "web-01", "127.0.0.1", r.Code, r.Received)
	if diff := cmp.Diff(wantText, text); diff != "" {
		t.Errorf("list-requests (-want +got):\n%s", diff)
	}

	approve := ctl.MustRun("ctrl-exec", "approve", r.ID)
	if want := fmt.Sprintf("Approved 'web-01' (%s). Cert delivered on next poll.\n", r.ID); approve.Stdout != want {
		t.Errorf("approve printed %q, want %q", approve.Stdout, want)
	}
	if code, ok := req.Wait(30 * time.Second); !ok || code != 0 {
		t.Fatalf("request-pairing: exit %d (done %v)\nstdout %s\nstderr %s", code, ok, req.Stdout(), req.Stderr())
	}
	wantOut := "Generating key and CSR for 'web-01'...\n" +
		"Pairing code: " + r.Code + "\n" +
		"  Verify this code matches the ctrl-exec display before approving.\n\n" +
		"Connecting to ctrl-exec at 127.0.0.1 for pairing...\n" +
		"Pairing complete. Certificates stored.\n"
	if diff := cmp.Diff(wantOut, req.Stdout()); diff != "" {
		t.Errorf("request-pairing stdout (-want +got):\n%s", diff)
	}
	if e := req.Stderr(); e != "" && e != "store_certs: group 'ctrl-exec-agent' not found - set ownership manually\n" {
		t.Errorf("request-pairing stderr %q", e)
	}
	if !strings.Contains(pm.Stdout(), fmt.Sprintf("Pairing request queued: web-01 (127.0.0.1) - ID: %s\n", r.ID)) {
		t.Errorf("pairing-mode output %q", pm.Stdout())
	}

	// Agent side: files, modes, contents.
	for path, mode := range map[string]os.FileMode{
		"/etc/ctrl-exec-agent/agent.crt": 0o640, "/etc/ctrl-exec-agent/agent.key": 0o640,
		"/etc/ctrl-exec-agent/ca.crt": 0o644, "/etc/ctrl-exec-agent/ctrl-exec-serial": 0o644,
	} {
		if got := fileMode(t, agent.Path(path)); got != mode {
			t.Errorf("%s mode %v, want %v", path, got, mode)
		}
	}
	if agent.ReadFile("/etc/ctrl-exec-agent/ca.crt") != ctl.ReadFile("/etc/ctrl-exec/ca.crt") {
		t.Error("agent's ca.crt is not the control host's CA")
	}
	ctrlCert, err := pki.LoadCert(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := agent.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial"), pki.SerialHex(ctrlCert)+"\n"; got != want {
		t.Errorf("ctrl-exec-serial %q, want %q", got, want)
	}
	agentCert, err := pki.LoadCert(agent.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.LoadKey(agent.Path("/etc/ctrl-exec-agent/agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !pki.KeyMatches(key, agentCert) || agentCert.Subject.CommonName != "web-01" {
		t.Errorf("agent cert CN %q, key matches %v", agentCert.Subject.CommonName, pki.KeyMatches(key, agentCert))
	}
	if d := agentCert.NotAfter.Sub(agentCert.NotBefore); d != 825*24*time.Hour {
		t.Errorf("agent cert lifetime %v, want 825 days", d)
	}
	status := agent.MustRun("ctrl-exec-agent", "pairing-status")
	if want := "Paired. Certificate expires: " + pki.FormatOpenSSLDate(agentCert.NotAfter) + "\n"; status.Stdout != want {
		t.Errorf("pairing-status %q, want %q", status.Stdout, want)
	}
	agent.WaitLog(5*time.Second, "ACTION=pair-complete DISPATCHER=127.0.0.1 STATUS=approved")

	// Control side: registry record, listings, logs, empty queue.
	rec := registryRecord(t, ctl, "web-01")
	want := map[string]any{
		"hostname": "web-01", "ip": "127.0.0.1", "paired": rec["paired"],
		"expiry": pki.FormatOpenSSLDate(agentCert.NotAfter), "reqid": r.ID,
		"dispatcher_serial": pki.SerialHex(ctrlCert), "serial_status": "current",
		"serial_broadcast": "", "serial_confirmed": rec["paired"],
		"port": itoa(agent.Port), "agent_serial": pki.SerialHex(agentCert),
	}
	if diff := cmp.Diff(want, rec); diff != "" {
		t.Errorf("registry record (-want +got):\n%s", diff)
	}
	if fileMode(t, ctl.Path("/var/lib/ctrl-exec/agents/web-01.json")) != 0o644 {
		t.Error("registry file mode is not 0644")
	}
	list := ctl.MustRun("ctrl-exec", "list-agents").Stdout
	wantList := fmt.Sprintf("%-30s  %-16s  %-22s  %s\n%s\n%-30s  %-16s  %-22s  %s\n",
		"HOSTNAME", "IP", "PAIRED", "CERT EXPIRY", strings.Repeat("-", 85), "web-01", "127.0.0.1", rec["paired"], rec["expiry"])
	if diff := cmp.Diff(wantList, list); diff != "" {
		t.Errorf("list-agents (-want +got):\n%s", diff)
	}
	var listed []map[string]any
	if err := json.Unmarshal([]byte(ctl.MustRun("ctrl-exec", "list-agents", "--json").Stdout), &listed); err != nil || len(listed) != 1 || cmp.Diff(rec, listed[0]) != "" {
		t.Errorf("list-agents --json = %v, %v", listed, err)
	}
	if got := ctl.MustRun("ctrl-exec", "list-requests").Stdout; got != "No pending pairing requests.\n" {
		t.Errorf("queue after delivery: %q", got)
	}
	if got := ctl.MustRun("ctrl-exec", "list-requests", "--json").Stdout; got != "[]\n" {
		t.Errorf("list-requests --json after delivery: %q", got)
	}
	ctl.WaitLog(time.Second, "ACTION=pair-request AGENT=web-01 IP=127.0.0.1 REQID="+r.ID+" STATUS=pending")
	ctl.WaitLog(time.Second, "ACTION=pair-approve AGENT=web-01 REQID="+r.ID)

	// SIGTERM stops pairing-mode cleanly, logging the stop once.
	pm.Cmd.Process.Signal(syscall.SIGTERM)
	if code, ok := pm.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("pairing-mode after SIGTERM: exit %d (done %v)", code, ok)
	}
	if !strings.HasSuffix(pm.Stdout(), "\nPairing mode stopped.\n") {
		t.Errorf("pairing-mode output ends %q", pm.Stdout())
	}
	if n := countLog(ctl, "ACTION=pairing-mode-stop"); n != 1 {
		t.Errorf("pairing-mode-stop logged %d times", n)
	}
}

func TestPairingDenied(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "web-02")
	_, port := StartPairingMode(t, ctl)
	req := agent.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	r := waitRequests(t, ctl, 1)[0]
	if got := ctl.MustRun("ctrl-exec", "deny", r.ID).Stdout; got != "Denied request '"+r.ID+"'.\n" {
		t.Errorf("deny printed %q", got)
	}
	if code, ok := req.Wait(30 * time.Second); !ok || code != 255 {
		t.Fatalf("request-pairing: exit %d (done %v)", code, ok)
	}
	if req.Stderr() != "Pairing failed: rejected by operator\n" {
		t.Errorf("stderr %q", req.Stderr())
	}
	if _, err := os.Stat(agent.Path("/etc/ctrl-exec-agent/agent.crt")); err == nil {
		t.Error("denied agent has a certificate")
	}
	ctl.WaitLog(time.Second, "ACTION=pair-deny AGENT=web-02 REQID="+r.ID)
	if entries, _ := os.ReadDir(ctl.Path("/var/lib/ctrl-exec/pairing")); len(entries) != 0 {
		t.Errorf("queue not empty: %v", entries)
	}
	if res := ctl.Run("ctrl-exec", "deny", r.ID); res.Code != 255 || res.Stderr != "No pending request '"+r.ID+"'\n" {
		t.Errorf("second deny: %+v", res)
	}
}

func TestPairingModeStopTellsWaitingAgents(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "web-06")
	pm, port := StartPairingMode(t, ctl)
	req := agent.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	r := waitRequests(t, ctl, 1)[0]
	pm.Cmd.Process.Signal(syscall.SIGINT)
	if code, ok := pm.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("pairing-mode after SIGINT: exit %d (done %v)", code, ok)
	}
	if code, ok := req.Wait(10 * time.Second); !ok || code != 255 || req.Stderr() != "Pairing failed: pairing mode stopped\n" {
		t.Errorf("waiting agent: exit %d (done %v), stderr %q", code, ok, req.Stderr())
	}
	ctl.WaitLog(time.Second, "ACTION=pair-abandon AGENT=web-06", "REASON=pairing-mode-stopped", "REQID="+r.ID)
	if n := countLog(ctl, "ACTION=pairing-mode-stop"); n != 1 {
		t.Errorf("pairing-mode-stop logged %d times", n)
	}
	if reqs := listRequests(t, ctl); len(reqs) != 0 {
		t.Errorf("requests left after stop: %v", reqs)
	}
}

func TestPairingTimedOut(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "web-03")
	_, port := StartPairingMode(t, ctl, "CTRL_EXEC_TEST_PAIRING_WINDOW=1s")
	res := agent.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	if res.Code != 255 || res.Stderr != "Pairing failed: approval timeout\n" {
		t.Errorf("request-pairing: %+v", res)
	}
	if reqs := listRequests(t, ctl); len(reqs) != 0 {
		t.Errorf("timed-out request still queued: %v", reqs)
	}
}

func TestPairingQueueFull(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook, "pairing_max_queue = 1")
	agent := NewAgent(t, "web-04")
	// Someone else's request fills the only slot.
	ctl.WriteFile("/var/lib/ctrl-exec/pairing/00000000000000aa.json",
		`{"id":"00000000000000aa","hostname":"other","ip":"192.0.2.1","csr":"x","nonce":"","received":"2026-01-01T00:00:00Z","code":"123456"}`, 0o644)
	_, port := StartPairingMode(t, ctl)
	res := agent.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	if res.Code != 255 || res.Stderr != "Pairing failed: pairing queue full\n" {
		t.Errorf("request-pairing: %+v", res)
	}
	ctl.WaitLog(5*time.Second, "ACTION=pair-reject IP=127.0.0.1 REASON=queue-full")
	if reqs := listRequests(t, ctl); len(reqs) != 1 || reqs[0].ID != "00000000000000aa" {
		t.Errorf("queue %v", reqs)
	}
}

// A man in the middle (or a broken server) answering with someone else's
// nonce is refused and nothing is stored.
func TestPairingNonceMismatch(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "web-05")
	id, err := tlsx.LoadIdentity(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"), ctl.Path("/etc/ctrl-exec/ctrl-exec.key"), "")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsx.PairingServerConfig(id))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		if _, err := wire.ReadPairingRequest(br); err != nil {
			return
		}
		wire.WritePairingFrame(conn, []byte(`{"status":"pending","reqid":"0123456789abcdef"}`))
		wire.WritePairingFrame(conn, wire.JSON(map[string]string{
			"status": "approved", "cert": "junk", "ca": ctl.ReadFile("/etc/ctrl-exec/ca.crt"),
			"nonce": "00000000000000000000000000000000", "dispatcher_serial": "01000000",
		}))
		br.ReadByte() // until the agent hangs up
	}()
	res := agent.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(ln.Addr().(*net.TCPAddr).Port))
	if res.Code != 255 || res.Stderr != "Pairing failed: nonce mismatch in pairing result\n" {
		t.Errorf("request-pairing: %+v", res)
	}
	for _, f := range []string{"agent.crt", "agent.key", "ca.crt", "ctrl-exec-serial"} {
		if _, err := os.Stat(agent.Path("/etc/ctrl-exec-agent/" + f)); err == nil {
			t.Errorf("%s written after a nonce mismatch", f)
		}
	}
}

func TestPairingStaleExpiry(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	dir := ctl.Path("/var/lib/ctrl-exec/pairing")
	write := func(name, body string, age time.Duration) {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		os.Chtimes(path, mt, mt)
	}
	req := func(id, host string) string {
		return fmt.Sprintf(`{"id":"%s","hostname":"%s","ip":"192.0.2.1","csr":"x","nonce":"","received":"2026-01-01T00:00:0%sZ","code":"123456"}`, id, host, id[len(id)-1:])
	}
	write("0000000000000001.json", req("0000000000000001", "fresh"), time.Minute)
	write("0000000000000002.json", req("0000000000000002", "stale"), 11*time.Minute)
	write("0000000000000003.json", req("0000000000000003", "answered"), 11*time.Minute)
	write("0000000000000003.approved", `{"status":"approved"}`, time.Minute)
	write("0000000000000004.json", req("0000000000000004", "orphan"), 30*time.Minute)
	write("0000000000000004.approved", `{"status":"approved"}`, 20*time.Minute) // never collected (B-15)
	write("0000000000000005.denied", `{"status":"denied"}`, 20*time.Minute)

	var hosts []string
	for _, r := range listRequests(t, ctl) {
		hosts = append(hosts, r.Hostname)
	}
	if diff := cmp.Diff([]string{"fresh", "answered"}, hosts); diff != "" {
		t.Errorf("listed (-want +got):\n%s", diff)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if diff := cmp.Diff([]string{"0000000000000001.json", "0000000000000003.approved", "0000000000000003.json"}, names); diff != "" {
		t.Errorf("queue files (-want +got):\n%s", diff)
	}
}

func TestPairingTwoAgentsApprovedAtOnce(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a, b := NewAgent(t, "app-01"), NewAgent(t, "app-02")
	_, port := StartPairingMode(t, ctl)
	var ids []string
	for _, ag := range []*AgentHost{a, b} {
		res := ag.MustRun("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "60")
		ids = append(ids, strings.TrimSpace(res.Stdout))
	}
	// Two approve processes at the same time: ca.serial's lock keeps serials apart.
	procs := []*Proc{ctl.Start("ctrl-exec", "approve", ids[0]), ctl.Start("ctrl-exec", "approve", ids[1])}
	for _, p := range procs {
		if code, ok := p.Wait(30 * time.Second); !ok || code != 0 {
			t.Fatalf("approve: exit %d (done %v): %s", code, ok, p.Stderr())
		}
	}
	serials := map[string]bool{}
	for _, ag := range []*AgentHost{a, b} {
		ag.WaitLog(30*time.Second, "ACTION=pair-complete")
		cert, err := pki.LoadCert(ag.Path("/etc/ctrl-exec-agent/agent.crt"))
		if err != nil {
			t.Fatal(err)
		}
		serials[pki.SerialHex(cert)] = true
		if rec := registryRecord(t, ctl, ag.Hostname); rec["agent_serial"] != pki.SerialHex(cert) {
			t.Errorf("%s: registry agent_serial %v, cert %s", ag.Hostname, rec["agent_serial"], pki.SerialHex(cert))
		}
	}
	if len(serials) != 2 {
		t.Errorf("agents share a serial: %v", serials)
	}
	var listed []map[string]any
	json.Unmarshal([]byte(ctl.MustRun("ctrl-exec", "list-agents", "--json").Stdout), &listed)
	if len(listed) != 2 || listed[0]["hostname"] != "app-01" || listed[1]["hostname"] != "app-02" {
		t.Errorf("list-agents --json: %v", listed)
	}
}

func TestPairingBackground(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook, "cert_days = 30") // D-18: pairing honours cert_days
	agent := NewAgent(t, "bg-01")
	_, port := StartPairingMode(t, ctl)

	status := agent.Run("ctrl-exec-agent", "pairing-status")
	if want := "Not paired. Reason: missing file: " + agent.Path("/etc/ctrl-exec-agent/agent.crt") + "\n"; status.Code != 1 || status.Stdout != want {
		t.Errorf("pairing-status before: %+v", status)
	}
	res := agent.MustRun("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "60")
	if !reqIDLine.MatchString(res.Stdout) || res.Stderr != "" {
		t.Fatalf("background request printed %q / %q, want only a reqid", res.Stdout, res.Stderr)
	}
	id := strings.TrimSpace(res.Stdout)
	if reqs := listRequests(t, ctl); len(reqs) != 1 || reqs[0].ID != id || reqs[0].Hostname != "bg-01" {
		t.Fatalf("queue %v, want %s", reqs, id)
	}
	ctl.MustRun("ctrl-exec", "approve", id)
	agent.WaitLog(30*time.Second, "ACTION=pair-complete DISPATCHER=127.0.0.1 STATUS=approved")
	cert, err := pki.LoadCert(agent.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d != 30*24*time.Hour {
		t.Errorf("agent cert lifetime %v, want cert_days = 30", d)
	}
	if res := agent.MustRun("ctrl-exec-agent", "pairing-status"); res.Stdout != "Paired. Certificate expires: "+pki.FormatOpenSSLDate(cert.NotAfter)+"\n" {
		t.Errorf("pairing-status after: %q", res.Stdout)
	}
}

func TestPairingBackgroundDeniedAndTimeout(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	_, port := StartPairingMode(t, ctl)

	denied := NewAgent(t, "bg-02")
	id := strings.TrimSpace(denied.MustRun("ctrl-exec-agent", "request-pairing",
		"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "60").Stdout)
	ctl.MustRun("ctrl-exec", "deny", id)
	denied.WaitLog(30*time.Second, "ACTION=pair-denied", "REASON=\"rejected by operator\"", "REQID="+id)

	waiting := NewAgent(t, "bg-03")
	id = strings.TrimSpace(waiting.MustRun("ctrl-exec-agent", "request-pairing",
		"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "1").Stdout)
	waiting.WaitLog(30*time.Second, "ACTION=pair-timeout REQID="+id)
	// The helper hung up; pairing-mode notices and drops the request.
	ctl.WaitLog(30*time.Second, "ACTION=pair-abandon AGENT=bg-03", "REASON=disconnected", "REQID="+id)
	if reqs := listRequests(t, ctl); len(reqs) != 0 {
		t.Errorf("abandoned request still listed: %v", reqs)
	}
	if res := ctl.Run("ctrl-exec", "approve", id); res.Code != 255 || res.Stderr != "No pending request '"+id+"'\n" {
		t.Errorf("approve of an abandoned request: %+v", res)
	}
}

func TestRequestPairingRefusals(t *testing.T) {
	t.Parallel()
	agent := NewAgent(t, "ref-01")
	closed := itoa(FreePort(t))
	noDir := NewRoot(t, "ref-02")
	os.RemoveAll(noDir.Path("/etc/ctrl-exec-agent"))
	tests := []struct {
		name   string
		root   *Root
		args   []string
		stderr string
	}{
		{"no dispatcher", agent.Root, nil, "--dispatcher <host> required for request-pairing\n"},
		{"timeout over 600", agent.Root, []string{"--dispatcher", "127.0.0.1", "--background", "--timeout", "601"},
			"Error: --timeout cannot exceed 600 seconds in background mode.\n" +
				"The agent connection window is 660 seconds; values above 600 risk\n" +
				"the connection expiring before approval is received.\n"},
		{"not installed", noDir, []string{"--dispatcher", "127.0.0.1"},
			"Cert directory '" + noDir.Path("/etc/ctrl-exec-agent") + "' does not exist - has the agent been installed?\n"},
		{"nothing listening", agent.Root, []string{"--dispatcher", "127.0.0.1", "--port", closed},
			"Pairing failed: could not connect to ctrl-exec at 127.0.0.1.\n" +
				"Check the ctrl-exec address is correct and pairing mode is active:\n" +
				"  sudo ctrl-exec pairing-mode\n"},
		{"nothing listening, background", agent.Root, []string{"--dispatcher", "127.0.0.1", "--port", closed, "--background"},
			"Pairing failed: could not connect to ctrl-exec at 127.0.0.1.\n" +
				"Check the ctrl-exec address is correct and pairing mode is active:\n" +
				"  sudo ctrl-exec pairing-mode\n"},
		{"ctrl-exec alias", agent.Root, []string{"--ctrl-exec", "127.0.0.1", "--port", closed},
			"Pairing failed: could not connect to ctrl-exec at 127.0.0.1.\n" +
				"Check the ctrl-exec address is correct and pairing mode is active:\n" +
				"  sudo ctrl-exec pairing-mode\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tt.root.Run("ctrl-exec-agent", append([]string{"request-pairing"}, tt.args...)...)
			if res.Code != 255 || res.Stderr != tt.stderr {
				t.Errorf("exit %d\nstderr %q\nwant   %q", res.Code, res.Stderr, tt.stderr)
			}
		})
	}
	if _, err := os.Stat(agent.Path("/etc/ctrl-exec-agent/agent.key")); err == nil {
		t.Error("a refused request left a key behind")
	}
}

// rawPairing sends one raw pairing request over TLS and returns the first answer.
func rawPairing(t *testing.T, port int, body string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", "127.0.0.1:"+itoa(port), tlsx.PairingClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	answer, err := wire.ReadPairingFrame(bufio.NewReader(conn))
	if err != nil {
		t.Fatal(err)
	}
	return string(answer)
}

func TestPairingRejectsBadRequests(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	_, port := StartPairingMode(t, ctl)
	key := takeKeys(t, 1)[0]
	csr := func(cn string) string {
		b, err := pki.CreateCSR(key, cn)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	weak, err := pki.CreateCSR(pkitest.Key(t, 1024, 0), "raw-01")
	if err != nil {
		t.Fatal(err)
	}
	body := func(host, csr string) string {
		return string(wire.JSON(map[string]string{"hostname": host, "csr": csr, "nonce": pki.NewNonce()}))
	}
	good := csr("raw-01")
	broken := strings.Replace(good, good[100:110], "AAAAAAAAAA", 1) // signature no longer verifies, or DER broken
	const invalid = "invalid-request"
	tests := []struct{ name, body, reason, logPart string }{
		{"malformed CSR", body("raw-01", "-----BEGIN CERTIFICATE REQUEST-----\nnot base64\n-----END CERTIFICATE REQUEST-----\n"), invalid, "Invalid CSR format"},
		{"tampered CSR", body("raw-01", broken), invalid, "CSR"},
		{"CN differs from hostname", body("raw-01", csr("somebody-else")), invalid, "CSR is for 'somebody-else' but the agent claims to be 'raw-01'"},
		{"hostname ../x", body("../x", csr("../x")), invalid, "not a valid agent hostname"},
		{"not JSON", "hostname=raw-01", invalid, "not a JSON object"},
		{"JSON array", "[]", invalid, "not a JSON object"},
		// D-35: never queued for an operator to approve by mistake.
		{"RSA 1024", body("raw-01", string(weak)), "weak-key", "RSA 1024 bits"},
		{"second CN", body("raw-01", string(pkitest.CSR(t, key, "somebody-else", "raw-01"))), "multiple-cn", "more than one CN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rawPairing(t, port, tt.body); got != `{"status":"error","reason":"invalid request"}` {
				t.Errorf("answer %s", got)
			}
			ctl.WaitLog(5*time.Second, "ACTION=pair-reject", "IP=127.0.0.1", "REASON="+tt.reason, tt.logPart)
		})
	}
	if reqs := listRequests(t, ctl); len(reqs) != 0 {
		t.Errorf("bad requests were queued: %v", reqs)
	}
	if entries, _ := os.ReadDir(ctl.Path("/var/lib/ctrl-exec/agents")); len(entries) != 0 {
		t.Errorf("registry written: %v", entries)
	}
}

func TestApproveDenyUsage(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	tests := []struct {
		args   []string
		stderr string
	}{
		{[]string{"approve"}, "Usage: ctrl-exec approve <reqid>\n"},
		{[]string{"deny"}, "Usage: ctrl-exec deny <reqid>\n"},
		{[]string{"approve", "0123456789abcdef"}, "No pending request '0123456789abcdef'\n"},
		{[]string{"approve", "../../etc/passwd"}, "No pending request '../../etc/passwd'\n"},
		{[]string{"deny", "nope"}, "No pending request 'nope'\n"},
	}
	for _, tt := range tests {
		if res := ctl.Run("ctrl-exec", tt.args...); res.Code != 255 || res.Stderr != tt.stderr {
			t.Errorf("%q: exit %d stderr %q, want %q", tt.args, res.Code, res.Stderr, tt.stderr)
		}
	}
}

func TestListAgentsCorruptRegistry(t *testing.T) {
	t.Parallel()
	ctl := NewRoot(t, "")
	if res := ctl.MustRun("ctrl-exec", "list-agents"); res.Stdout != "No registered agents.\n" {
		t.Errorf("empty registry: %q", res.Stdout)
	}
	if res := ctl.MustRun("ctrl-exec", "list-agents", "--json"); res.Stdout != "[]\n" {
		t.Errorf("empty registry --json: %q", res.Stdout)
	}
	ctl.WriteFile("/var/lib/ctrl-exec/agents/good.json",
		`{"hostname":"good","ip":"10.0.0.9","paired":"2026-03-09T14:30:00Z","expiry":"","reqid":"r","future_field":{"x":1}}`, 0o644)
	bad := ctl.WriteFile("/var/lib/ctrl-exec/agents/bad.json", `{"hostname":"bad",`, 0o644)
	ctl.WriteFile("/var/lib/ctrl-exec/agents/partial.json", `{"hostname":"partial"}`, 0o644)

	res := ctl.MustRun("ctrl-exec", "list-agents")
	want := fmt.Sprintf("%-30s  %-16s  %-22s  %s\n%s\n", "HOSTNAME", "IP", "PAIRED", "CERT EXPIRY", strings.Repeat("-", 85)) +
		fmt.Sprintf("%-30s  %-16s  %-22s  %s\n", "good", "10.0.0.9", "2026-03-09T14:30:00Z", "") +
		fmt.Sprintf("%-30s  %-16s  %-22s  %s\n", "partial", "?", "?", "?")
	if diff := cmp.Diff(want, res.Stdout); diff != "" {
		t.Errorf("list-agents (-want +got):\n%s", diff)
	}
	if !strings.Contains(res.Stderr, "Warning: skipping registry file '"+bad+"'") {
		t.Errorf("stderr %q does not name %s", res.Stderr, bad)
	}
	ctl.WaitLog(time.Second, "ACTION=registry-corrupt", "PATH="+bad)
	js := ctl.MustRun("ctrl-exec", "list-agents", "--json").Stdout
	if want := `[{"expiry":"","future_field":{"x":1},"hostname":"good","ip":"10.0.0.9","paired":"2026-03-09T14:30:00Z","reqid":"r"},{"hostname":"partial"}]` + "\n"; js != want {
		t.Errorf("list-agents --json\n got %s\nwant %s", js, want)
	}
}

func TestUnpair(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agent := NewAgent(t, "gone-01")
	PairAgent(t, ctl, agent.Root)
	cert, err := pki.LoadCert(agent.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	expiry := pki.FormatOpenSSLDate(cert.NotAfter)

	refusals := []struct {
		args   []string
		stderr string
	}{
		{[]string{"unpair"}, "Usage: ctrl-exec unpair <hostname>\n"},
		{[]string{"unpair", "../x"}, "Unpair failed: '../x' is not a valid agent hostname"},
		{[]string{"unpair", ".hidden"}, "Unpair failed: '.hidden' is not a valid agent hostname"},
		{[]string{"unpair", "nobody"}, "Unpair failed: No registry entry for 'nobody'\n"},
	}
	// A file outside the registry that "../x" would have named survives.
	outside := ctl.WriteFile("/var/lib/ctrl-exec/x.json", "{}", 0o644)
	for _, tt := range refusals {
		res := ctl.Run("ctrl-exec", tt.args...)
		if res.Code != 255 || !strings.HasPrefix(res.Stderr, tt.stderr) {
			t.Errorf("%q: exit %d stderr %q, want prefix %q", tt.args, res.Code, res.Stderr, tt.stderr)
		}
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("unpair ../x touched %s: %v", outside, err)
	}

	res := ctl.MustRun("ctrl-exec", "unpair", "gone-01")
	want := "Unregistered 'gone-01'.\n" +
		"WARNING: Agent certificate remains valid until: " + expiry + "\n" +
		"Decommission the agent promptly or add its serial to the revocation list.\n" +
		"Agent certificate serial: " + pki.SerialHex(cert) + "\n"
	if diff := cmp.Diff(want, res.Stdout); diff != "" {
		t.Errorf("unpair (-want +got):\n%s", diff)
	}
	ctl.WaitLog(time.Second, "ACTION=unpair AGENT=gone-01 EXPIRY=\""+expiry+"\"")
	if _, err := os.Stat(ctl.Path("/var/lib/ctrl-exec/agents/gone-01.json")); !os.IsNotExist(err) {
		t.Errorf("registry file still there: %v", err)
	}
}

func TestSetupCommands(t *testing.T) {
	t.Parallel()
	ctl := NewRoot(t, "")
	res := ctl.Run("ctrl-exec", "setup-ctrl-exec")
	if want := "CA key not found at '" + ctl.Path("/etc/ctrl-exec/ca.key") + "' - run setup-ca first\n"; res.Code != 255 || res.Stderr != want {
		t.Errorf("setup-ctrl-exec without CA: %+v", res)
	}

	res = ctl.MustRun("ctrl-exec", "setup-ca")
	want := "Setting up ctrl-exec CA...\nCA created:\n" +
		"  Key:  " + ctl.Path("/etc/ctrl-exec/ca.key") + "\n" +
		"  Cert: " + ctl.Path("/etc/ctrl-exec/ca.crt") + "\n" +
		"  Fingerprint: " + caFingerprint(t, ctl) + "\n" +
		"Keep ca.key secure - it never leaves this host.\n"
	if diff := cmp.Diff(want, res.Stdout); diff != "" {
		t.Errorf("setup-ca (-want +got):\n%s", diff)
	}
	if fileMode(t, ctl.Path("/etc/ctrl-exec/ca.key")) != 0o600 || ctl.ReadFile("/etc/ctrl-exec/ca.serial") != "01" {
		t.Errorf("ca.key mode %v, ca.serial %q", fileMode(t, ctl.Path("/etc/ctrl-exec/ca.key")), ctl.ReadFile("/etc/ctrl-exec/ca.serial"))
	}
	res = ctl.Run("ctrl-exec", "setup-ca")
	if res.Code != 255 || !strings.HasPrefix(res.Stdout+res.Stderr, "Setting up ctrl-exec CA...\nCA already exists at '"+ctl.Path("/etc/ctrl-exec/ca.key")+"'.") {
		t.Errorf("second setup-ca: %+v", res)
	}

	created := "Generating ctrl-exec certificate...\nctrl-exec cert created:\n" +
		"  Key:  " + ctl.Path("/etc/ctrl-exec/ctrl-exec.key") + "\n" +
		"  Cert: " + ctl.Path("/etc/ctrl-exec/ctrl-exec.crt") + "\n" +
		"Run 'ctrl-exec pairing-mode' to re-pair agents as needed.\n"
	if res := ctl.MustRun("ctrl-exec", "setup-ctrl-exec"); res.Stdout != created {
		t.Errorf("setup-ctrl-exec:\n%s", cmp.Diff(created, res.Stdout))
	}
	first, err := pki.LoadCert(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if first.SerialNumber.Int64() < 0x01000000 || first.Subject.CommonName != "ctrl-exec" {
		t.Errorf("ctrl-exec cert serial %s CN %q", pki.SerialHex(first), first.Subject.CommonName)
	}
	if fileMode(t, ctl.Path("/etc/ctrl-exec/ctrl-exec.key")) != 0o640 {
		t.Error("ctrl-exec.key is not 0640 (D-30)")
	}
	if res := ctl.MustRun("ctrl-exec", "setup-ctrl-exec"); res.Stdout != "Existing ctrl-exec cert found. No registered agents - replacing.\n"+created {
		t.Errorf("replacing with no agents: %q", res.Stdout)
	}

	ctl.WriteFile("/var/lib/ctrl-exec/agents/web-01.json", `{"hostname":"web-01"}`, 0o644)
	before := ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt")
	warning := "WARNING: Existing ctrl-exec cert found.\n" +
		"  1 registered agent will require re-pairing after this operation.\n" +
		"  Agents will refuse run, ping and /capabilities from the new cert until re-paired.\n" +
		"  To replace the cert without re-pairing, use 'ctrl-exec rotate-cert' instead.\n" +
		"\nProceed? [y/N]: "
	for _, answer := range []string{"", "n\n", "yes\n"} {
		res := ctl.RunInput(answer, "ctrl-exec", "setup-ctrl-exec")
		if res.Code != 0 || res.Stdout != warning+"Aborted.\n" {
			t.Errorf("answer %q: exit %d\n%s", answer, res.Code, cmp.Diff(warning+"Aborted.\n", res.Stdout))
		}
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") != before {
		t.Error("declined setup-ctrl-exec replaced the cert")
	}
	ctl.WriteFile("/var/lib/ctrl-exec/agents/web-02.json", `{"hostname":"web-02"}`, 0o644)
	res = ctl.RunInput("Y\n", "ctrl-exec", "setup-ctrl-exec")
	if res.Code != 0 || !strings.Contains(res.Stdout, "  2 registered agents will require") || !strings.HasSuffix(res.Stdout, created) {
		t.Errorf("confirmed setup-ctrl-exec: %+v", res)
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") == before {
		t.Error("confirmed setup-ctrl-exec kept the old cert")
	}

	// A registry record that does not parse is still an agent to protect.
	if err := os.Remove(ctl.Path("/var/lib/ctrl-exec/agents/web-02.json")); err != nil {
		t.Fatal(err)
	}
	ctl.WriteFile("/var/lib/ctrl-exec/agents/web-01.json", "{not json", 0o644)
	if res := ctl.RunInput("n\n", "ctrl-exec", "setup-ctrl-exec"); res.Code != 0 || !strings.Contains(res.Stdout, "  1 registered agent will require") {
		t.Errorf("with a damaged record: %+v", res)
	}
	// A registry that cannot be read is not an empty one (issue 9 item 9).
	before = ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt")
	if err := os.RemoveAll(ctl.Path("/var/lib/ctrl-exec/agents")); err != nil {
		t.Fatal(err)
	}
	ctl.WriteFile("/var/lib/ctrl-exec/agents", "not a directory", 0o644)
	res = ctl.RunInput("y\n", "ctrl-exec", "setup-ctrl-exec")
	if res.Code != 255 || !strings.Contains(res.Stderr, "Cannot open registry dir '"+ctl.Path("/var/lib/ctrl-exec/agents")+"'") ||
		!strings.Contains(res.Stderr, "not replacing the ctrl-exec cert") {
		t.Errorf("unreadable registry: %+v", res)
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") != before {
		t.Error("setup-ctrl-exec replaced the cert with the registry unreadable")
	}
}

// openPTY returns a pseudo-terminal pair: write to master what a user types,
// hand slave to the child as its stdin.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	// Drain the terminal's echo so it never fills up.
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := m.Read(buf); err != nil {
				return
			}
		}
	}()
	return m, s
}

func TestPairingModeInteractive(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	master, slave := openPTY(t)
	port := FreePort(t)
	cmd := withEnv(ctl, "CTRL_EXEC_TEST_PAIRING_POLL=50ms").Command(context.Background(), "ctrl-exec", "pairing-mode", "--port", itoa(port))
	pm := &Proc{Cmd: cmd, out: &syncBuffer{}, errOut: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, pm.out, pm.errOut
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { pm.err = cmd.Wait(); close(pm.done) }()
	t.Cleanup(pm.Stop)
	type_ := func(line string) {
		if _, err := master.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
	}
	// seen waits for text to appear after mark and returns the new mark.
	mark := 0
	seen := func(text string) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("%q in pairing-mode output %q", text, pm.Stdout()[mark:]), func() bool {
			return strings.Contains(pm.Stdout()[mark:], text)
		})
		mark += strings.Index(pm.Stdout()[mark:], text) + len(text)
	}

	seen(fmt.Sprintf("Pairing mode active on port %d. Ctrl-C or 'quit' to stop.\nWaiting for pairing requests...\n", port))
	WaitListening(t, port, 10*time.Second)
	type_("list")
	seen("No pending pairing requests.\nWaiting... (Commands: list, quit)\n")
	type_("a")
	seen("No pending requests.\n")
	type_("bogus")
	seen("Unknown command 'bogus'. Commands: a/d/s/list/quit or a1/d1 for multiple.\n")

	agent := NewAgent(t, "tty-01")
	id := strings.TrimSpace(agent.MustRun("ctrl-exec-agent", "request-pairing",
		"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "60").Stdout)
	r := waitRequests(t, ctl, 1)[0]
	seen(fmt.Sprintf("Pairing request queued: tty-01 (127.0.0.1) - ID: %s\n", id))
	prompt := fmt.Sprintf("\nPairing request from tty-01 (127.0.0.1) - ID: %s\n"+
		"  Code:     %s   (verify this matches the agent display)\n"+
		"  Received: %s\n"+
		"Accept, Deny, or Skip? [a/d/s]: ", id, r.Code, r.Received)
	seen(prompt)
	type_("s")
	seen("Skipped. Request remains pending.\n")
	type_("list")
	seen(prompt)
	type_("a2")
	seen("No request at position 2.\n")
	type_("  a  ")
	seen(fmt.Sprintf("Approved 'tty-01' (%s). Cert delivered on next poll.\nWaiting for next request... (Ctrl-C to exit pairing mode)\n", id))
	agent.WaitLog(30*time.Second, "ACTION=pair-complete")

	// Two at once: the numbered list, then d2 / a1.
	byName := map[string]*AgentHost{"tty-02": NewAgent(t, "tty-02"), "tty-03": NewAgent(t, "tty-03")}
	for _, ag := range byName {
		ag.MustRun("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "60")
	}
	reqs := waitRequests(t, ctl, 2) // in the queue's order: received time, then ID
	first, second := byName[reqs[0].Hostname], byName[reqs[1].Hostname]
	type_("list")
	seen(fmt.Sprintf("\n2 pending pairing requests:\n"+
		"  [1] %-30s  %-16s  code: %s  %s\n"+
		"  [2] %-30s  %-16s  code: %s  %s\n"+
		"Command (a1/d1/a2/d2/list/quit): ",
		reqs[0].Hostname, "127.0.0.1", reqs[0].Code, reqs[0].Received, reqs[1].Hostname, "127.0.0.1", reqs[1].Code, reqs[1].Received))
	type_("d")
	seen("Multiple requests pending - use d1, d2, etc.\n")
	type_("d2")
	seen(fmt.Sprintf("Denied request '%s'.\nWaiting for next request... (Ctrl-C to exit pairing mode)\n", reqs[1].ID))
	second.WaitLog(30*time.Second, "ACTION=pair-denied", "REQID="+reqs[1].ID)
	type_("a1")
	seen(fmt.Sprintf("Approved '%s' (%s).", reqs[0].Hostname, reqs[0].ID))
	first.WaitLog(30*time.Second, "ACTION=pair-complete")

	type_("quit")
	if code, ok := pm.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("pairing-mode after quit: exit %d (done %v)\n%s", code, ok, pm.Stderr())
	}
	seen("Pairing mode stopped.\n")
	if n := countLog(ctl, "ACTION=pairing-mode-stop"); n != 1 {
		t.Errorf("pairing-mode-stop logged %d times", n)
	}
}
