package e2e

// Certificate lifecycle end to end (SPEC §15, issue 6): agent renewal at
// half-life over ping (CLI and API), control-certificate rotation with the
// serial broadcast, the check loop in pairing-mode and in the API, and a
// 50-agent fleet. Agents are real `ctrl-exec-agent serve` processes, paired
// for real where the test is about a handful of agents.
//
// Time is handled without sleeping through it: certificates due for renewal
// are issued short-lived (pairing with cert_days = 3, renewing with the
// 365-day default), and the overlap window is passed with the test-only
// clock knob CTRL_EXEC_TEST_NOW, read by pairing-mode's check loop.

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// slowScript marks that it started, then takes two seconds.
const slowScript = "#!/bin/sh\ntouch \"$CTRL_EXEC_ROOT/slow-started\"\nsleep 2\necho slow done\n"

// allowLifecycleScripts gives an agent the serial helper (the multicall
// binary under its role name), hello and slow, and turns its rate limiter
// off (tests connect more often than the default volume limit allows).
func allowLifecycleScripts(a *AgentHost) {
	conf := a.ReadFile("/etc/ctrl-exec-agent/agent.conf")
	a.WriteFile("/etc/ctrl-exec-agent/agent.conf", conf+"rate_limit_disable = yes\n", 0o640)
	hello := a.WriteFile("/opt/ctrl-exec-scripts/hello", "#!/bin/sh\necho hello from $(hostname)\n", 0o755)
	slow := a.WriteFile("/opt/ctrl-exec-scripts/slow", slowScript, 0o755)
	a.WriteFile("/etc/ctrl-exec-agent/scripts.conf", fmt.Sprintf(
		"update-ctrl-exec-serial = %s\nhello = %s\nslow = %s\n",
		filepath.Join(binDir, "update-ctrl-exec-serial"), hello, slow), 0o640)
}

// newLifecycleAgents makes agents named names, ready to pair.
func newLifecycleAgents(t *testing.T, names ...string) []*AgentHost {
	t.Helper()
	agents := make([]*AgentHost, len(names))
	for i, n := range names {
		agents[i] = NewAgent(t, n)
		allowLifecycleScripts(agents[i])
	}
	return agents
}

func roots(agents ...*AgentHost) []*Root {
	out := make([]*Root, len(agents))
	for i, a := range agents {
		out[i] = a.Root
	}
	return out
}

// serve starts the agent's server and waits until it listens.
func serve(t *testing.T, a *AgentHost) *Proc {
	t.Helper()
	p := a.Start("ctrl-exec-agent", "serve")
	// Its own start line: something else on the port would also listen.
	deadline := time.Now().Add(30 * time.Second)
	for !a.HasLog("ACTION=start", "PORT="+itoa(a.Port)) {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("agent %s did not start on port %d (exited: %v)\nstderr: %s\nlog:\n%s",
				a.Hostname, a.Port, p.Exited(), p.Stderr(), strings.Join(a.LogLines(), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func (a *AgentHost) target() string { return "127.0.0.1:" + itoa(a.Port) }

// setConf rewrites ctrl-exec.conf: the three identity lines plus extra.
func setConf(ctl *Root, extra ...string) {
	conf := []string{
		"cert = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"),
		"key = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.key"),
		"ca = " + ctl.Path("/etc/ctrl-exec/ca.crt"),
	}
	ctl.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", strings.Join(append(conf, extra...), "\n")+"\n", 0o640)
}

// record is a registry record of the control host: its string fields
// (a ping also stores the agent's "tags" object).
func record(t testing.TB, ctl *Root, host string) map[string]string {
	t.Helper()
	var raw map[string]any
	if err := json.Unmarshal([]byte(ctl.ReadFile("/var/lib/ctrl-exec/agents/"+host+".json")), &raw); err != nil {
		t.Fatalf("registry record of %s: %v", host, err)
	}
	rec := map[string]string{}
	for k, v := range raw {
		if s, ok := v.(string); ok {
			rec[k] = s
		}
	}
	return rec
}

// waitFor polls cond for up to timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func certFile(t *testing.T, path string) (serial string, notAfter time.Time) {
	t.Helper()
	c, err := pki.LoadCert(path)
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(c), c.NotAfter
}

// servedSerial is the serial of the certificate the agent presents to a
// new connection made with the control host's identity.
func servedSerial(t *testing.T, ctl *Root, a *AgentHost) string {
	t.Helper()
	conf, err := tlsx.LoadClientConfig(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"), ctl.Path("/etc/ctrl-exec/ctrl-exec.key"), ctl.Path("/etc/ctrl-exec/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", a.target(), conf)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return pki.SerialHex(conn.ConnectionState().PeerCertificates[0])
}

// ctrlClient is a dispatch client with the control host's current identity.
func ctrlClient(ctl *Root) *dispatch.Client {
	return &dispatch.Client{
		Cert: ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"), Key: ctl.Path("/etc/ctrl-exec/ctrl-exec.key"),
		CA: ctl.Path("/etc/ctrl-exec/ca.crt"), Timeout: 30 * time.Second,
	}
}

// startAPI runs ctrl-exec-api on a free port (plain HTTP, no hook, allow).
func startAPI(t *testing.T, ctl *Root, env []string, extra ...string) (*Proc, int) {
	t.Helper()
	port := FreePort(t)
	setConf(ctl, append([]string{"api_bind = 127.0.0.1", "api_port = " + itoa(port), "api_auth_default = allow"}, extra...)...)
	p := withEnv(ctl, env...).Start("ctrl-exec-api")
	p.WaitOutput(t, "ctrl-exec API listening on", 30*time.Second)
	return p, port
}

func apiPing(t *testing.T, port int, hosts ...string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"hosts": hosts})
	conn, err := net.Dial("tcp", "127.0.0.1:"+itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	fmt.Fprintf(conn, "POST /ping HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	var all strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		all.Write(buf[:n])
		if err != nil {
			break
		}
	}
	_, payload, _ := strings.Cut(all.String(), "\r\n\r\n")
	var out map[string]any
	if err := json.Unmarshal([]byte(payload), &out); err != nil {
		t.Fatalf("API /ping answer %q: %v", all.String(), err)
	}
	return out
}

// TestRenewDueCertificateOverPing: an agent past half-life is renewed after
// a CLI ping (and another after an API /ping), keeps serving throughout, and
// presents the new certificate to new connections; a fresh one is left alone.
func TestRenewDueCertificateOverPing(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook, "cert_days = 3")
	agents := newLifecycleAgents(t, "due-01", "due-02", "fresh-01")
	due, due2, fresh := agents[0], agents[1], agents[2]
	PairAgent(t, ctl, due.Root, due2.Root) // 3-day certificates
	setConf(ctl)                           // pairing 825 days again, renewal 365
	PairAgent(t, ctl, fresh.Root)
	for _, a := range agents {
		serve(t, a)
	}
	oldSerial, oldNotAfter := certFile(t, due.Path("/etc/ctrl-exec-agent/agent.crt"))
	if servedSerial(t, ctl, due) != oldSerial {
		t.Fatal("agent does not serve its agent.crt")
	}

	// A run in flight while the agent's certificate changes.
	run := ctl.Start("ctrl-exec", "run", due.target(), "slow")
	waitFor(t, 30*time.Second, "slow to start", func() bool {
		_, err := os.Stat(due.Path("/slow-started"))
		return err == nil
	})

	res := ctl.Run("ctrl-exec", "ping", due.target(), fresh.target())
	if res.Code != 0 {
		t.Fatalf("ping: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	// The table shows what the agents answered before renewal.
	if !strings.Contains(res.Stdout, pki.FormatOpenSSLDate(oldNotAfter)) {
		t.Errorf("ping output does not show the pinged expiry:\n%s", res.Stdout)
	}
	line := ctl.WaitLog(10*time.Second, "ACTION=renew-complete", "TARGET="+due.target())
	due.WaitLog(10*time.Second, "ACTION=renew-complete", "STATUS=cert-stored")
	if ctl.HasLog("ACTION=renew ", "TARGET="+fresh.target()) {
		t.Error("a fresh certificate was renewed")
	}

	newSerial, newNotAfter := certFile(t, due.Path("/etc/ctrl-exec-agent/agent.crt"))
	if newSerial == oldSerial {
		t.Fatal("agent.crt not replaced")
	}
	if left := time.Until(newNotAfter); left < 364*24*time.Hour || left > 366*24*time.Hour {
		t.Errorf("renewed certificate lasts %v, want 365 days", left)
	}
	if !strings.Contains(line, `EXPIRY="`+pki.FormatOpenSSLDate(newNotAfter)+`"`) {
		t.Errorf("renew-complete line %q", line)
	}
	if fi, _ := os.Stat(due.Path("/etc/ctrl-exec-agent/agent.crt")); fi.Mode().Perm() != 0o640 {
		t.Errorf("agent.crt mode %v", fi.Mode().Perm())
	}
	rec := record(t, ctl, "due-01")
	if rec["expiry"] != pki.FormatOpenSSLDate(newNotAfter) || rec["agent_serial"] != newSerial || rec["reqid"] == "" {
		t.Errorf("registry after renewal: %v", rec)
	}
	if got := servedSerial(t, ctl, due); got != newSerial {
		t.Errorf("new connections see serial %s, want %s", got, newSerial)
	}
	if code, ok := run.Wait(30 * time.Second); !ok || code != 0 || !strings.Contains(run.Stdout(), "slow done") {
		t.Errorf("run in flight during renewal: exit %d\n%s%s", code, run.Stdout(), run.Stderr())
	}

	// Pinged again: the new expiry, nothing to renew.
	res = ctl.MustRun("ctrl-exec", "ping", "--json", due.target())
	if !strings.Contains(res.Stdout, pki.FormatOpenSSLDate(newNotAfter)) {
		t.Errorf("second ping %s", res.Stdout)
	}
	if n := countLog(ctl, "ACTION=renew ", "STATUS=starting"); n != 1 {
		t.Errorf("%d renewals started, want 1", n)
	}

	// The API's /ping renews through the same hook.
	api, port := startAPI(t, ctl, nil)
	defer api.Stop()
	out := apiPing(t, port, due2.target())
	if out["ok"] != true {
		t.Fatalf("API /ping %v", out)
	}
	ctl.WaitLog(10*time.Second, "ACTION=renew-complete", "TARGET="+due2.target())
	if s, _ := certFile(t, due2.Path("/etc/ctrl-exec-agent/agent.crt")); s == record(t, ctl, "due-01")["agent_serial"] || s != record(t, ctl, "due-02")["agent_serial"] {
		t.Errorf("due-02 serial %s, registry %v", s, record(t, ctl, "due-02"))
	}
	// Ping and run keep working with the renewed agents.
	ctl.MustRun("ctrl-exec", "run", due.target(), due2.target(), "hello")
}

// TestRenewRejectsBadDeliveries: a real agent refuses a certificate that is
// tampered with, from another CA, or for another key, and keeps serving
// with the one it has.
func TestRenewRejectsBadDeliveries(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a := newLifecycleAgents(t, "strict-01")[0]
	PairAgent(t, ctl, a.Root)
	serve(t, a)
	before := a.ReadFile("/etc/ctrl-exec-agent/agent.crt")

	ca, err := pki.LoadCA(pki.CAFilesIn(ctl.Path("/etc/ctrl-exec")))
	if err != nil {
		t.Fatal(err)
	}
	agentKey, err := pki.LoadKey(a.Path("/etc/ctrl-exec-agent/agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	theirs := takeKeys(t, 2)
	otherKey, otherCAKey := theirs[0], theirs[1]
	sign := func(ca *pki.CA, key crypto.Signer) []byte {
		csr, err := pki.CreateCSR(key, "strict-01")
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.SignCSR(csr, 365, time.Now(), pki.SignOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pki.CertPEM(cert)
	}
	goodCert, _ := pki.ParseCertPEM(sign(ca, agentKey))
	der := append([]byte(nil), goodCert.Raw...)
	der[len(der)-3] ^= 0x55 // inside the signature
	tampered := pki.CertPEM(mustCert(t, der))
	otherCA, err := pki.CreateCAWithKey(pki.CAFilesIn(t.TempDir()), otherCAKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	client := ctrlClient(ctl)
	target := dispatch.ParseTarget(a.target(), 0)
	for _, tt := range []struct {
		name   string
		cert   []byte
		ca     []byte
		reason string
	}{
		{"tampered", tampered, ca.CertPEM, "does not chain to the trusted CA"},
		{"other CA", sign(otherCA, agentKey), nil, "does not chain to the trusted CA"},
		{"other CA as ca", sign(otherCA, agentKey), otherCA.CertPEM, "ca differs"},
		{"other key", sign(ca, otherKey), ca.CertPEM, "does not match the agent key"},
	} {
		body, _ := json.Marshal(map[string]string{"cert": string(tt.cert), "ca": string(tt.ca), "reqid": "bad-" + tt.name})
		rep, err := client.Do(context.Background(), target, "POST", "/renew-complete", body)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if rep.Status != 400 || !strings.Contains(string(rep.Body), tt.reason) {
			t.Errorf("%s: %s %s, want 400 with %q", tt.name, rep.StatusLine, rep.Body, tt.reason)
		}
	}
	if a.ReadFile("/etc/ctrl-exec-agent/agent.crt") != before {
		t.Error("a refused certificate replaced agent.crt")
	}
	if a.HasLog("ACTION=renew-complete") {
		t.Error("renew-complete logged for a refused certificate")
	}
	ctl.MustRun("ctrl-exec", "ping", a.target())

	// Only the control host whose serial the agent stores may renew it.
	stranger := otherKey
	csr, _ := pki.CreateCSR(stranger, "ctrl-exec")
	cert, err := ca.SignCSR(csr, 30, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "c.crt"), pki.CertPEM(cert), 0o600)
	keyPEM, _ := pki.EncodeKeyPEM(stranger)
	os.WriteFile(filepath.Join(dir, "c.key"), keyPEM, 0o600)
	other := &dispatch.Client{Cert: filepath.Join(dir, "c.crt"), Key: filepath.Join(dir, "c.key"), CA: client.CA, Timeout: 30 * time.Second}
	rep, err := other.Do(context.Background(), target, "POST", "/renew", []byte(`{"reqid":"x"}`))
	if err != nil || rep.Status != 403 || string(rep.Body) != `{"error":"serial mismatch","status":"forbidden"}` {
		t.Errorf("renew with another serial: %v %s %s", err, rep.StatusLine, rep.Body)
	}
}

func mustCert(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRotationLifecycle: rotate-cert with two agents up and two down; the
// API's opt-in check loop brings the third up to date when it returns;
// pairing-mode's loop, its clock past the overlap window, marks the fourth
// stale and deletes the previous key pair.
func TestRotationLifecycle(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	agents := newLifecycleAgents(t, "rot-a", "rot-b", "rot-c", "rot-d")
	a, b, c, d := agents[0], agents[1], agents[2], agents[3]
	PairAgent(t, ctl, roots(agents...)...)
	serve(t, a)
	serve(t, b)
	oldSerial, _ := certFile(t, ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	oldKey := ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.key")
	for _, x := range agents {
		if rec := record(t, ctl, x.Hostname); rec["serial_status"] != "current" || rec["dispatcher_serial"] != oldSerial {
			t.Fatalf("%s after pairing: %v", x.Hostname, rec)
		}
	}

	res := ctl.Run("ctrl-exec", "rotate-cert")
	if res.Code != 0 {
		t.Fatalf("rotate-cert: exit %d\n%s\n%s", res.Code, res.Stdout, res.Stderr)
	}
	newSerial, _ := certFile(t, ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	n, _ := new(big.Int).SetString(newSerial, 16)
	if n.Cmp(big.NewInt(pki.CtrlExecSerialFloor)) < 0 {
		t.Errorf("new serial %s below 0x01000000", newSerial)
	}
	var state map[string]any
	if err := json.Unmarshal([]byte(ctl.ReadFile("/var/lib/ctrl-exec/rotation.json")), &state); err != nil {
		t.Fatal(err)
	}
	overlap, _ := state["overlap_expires"].(string)
	if exp, err := pki.ParseISOTime(overlap); err != nil || time.Until(exp) < 29*24*time.Hour || time.Until(exp) > 31*24*time.Hour {
		t.Errorf("overlap_expires %q", overlap)
	}
	want := "Rotating ctrl-exec certificate...\n" +
		"New serial:      " + newSerial + "\n" +
		"Old serial:      " + oldSerial + "\n" +
		"Overlap expires: " + overlap + "\n" +
		"Agents pending:  4\n" +
		"\nBroadcasting new serial to agents...\n" +
		"  Updated: 2\n" +
		"  Failed:  2\n" +
		"\nAgents requiring attention:\n" +
		fmt.Sprintf("  %-30s  %s\n", "rot-c", "500 Can't connect to 127.0.0.1:"+itoa(c.Port)+" (Connection refused)") +
		fmt.Sprintf("  %-30s  %s\n", "rot-d", "500 Can't connect to 127.0.0.1:"+itoa(d.Port)+" (Connection refused)") +
		"\nFailed agents will be retried automatically by the check loop.\n" +
		"Agents offline longer than the overlap window will require re-pairing.\n"
	if diff := cmp.Diff(want, res.Stdout); diff != "" {
		t.Errorf("rotate-cert output (-want +got):\n%s", diff)
	}
	for _, x := range []*AgentHost{a, b} {
		if got := strings.TrimSpace(x.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial")); got != newSerial {
			t.Errorf("%s stores %s, want %s", x.Hostname, got, newSerial)
		}
		if rec := record(t, ctl, x.Hostname); rec["serial_status"] != "current" || rec["dispatcher_serial"] != newSerial || rec["serial_confirmed"] == "" {
			t.Errorf("%s: %v", x.Hostname, rec)
		}
	}
	for _, x := range []*AgentHost{c, d} {
		if rec := record(t, ctl, x.Hostname); rec["serial_status"] != "pending" || rec["dispatcher_serial"] != oldSerial {
			t.Errorf("%s: %v", x.Hostname, rec)
		}
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.key.prev") != oldKey {
		t.Error("ctrl-exec.key.prev is not the previous key")
	}
	ctl.WaitLog(time.Second, "ACTION=cert-rotated", "AGENTS=4", "NEW_SERIAL="+newSerial, "OLD_SERIAL="+oldSerial)

	// Run and ping work with the new certificate on the agents that took it.
	ctl.MustRun("ctrl-exec", "run", a.target(), b.target(), "hello")
	ctl.MustRun("ctrl-exec", "ping", a.target(), b.target())

	status := ctl.MustRun("ctrl-exec", "serial-status").Stdout
	for _, line := range []string{
		"Current serial:  " + newSerial + "\n",
		"Previous serial: " + oldSerial + "\n",
		fmt.Sprintf("%-30s  %-10s  %-24s  %s\n", "rot-c", "pending", record(t, ctl, "rot-c")["serial_confirmed"], oldSerial),
		fmt.Sprintf("%-30s  %-10s  %-24s  %s\n", "rot-a", "current", record(t, ctl, "rot-a")["serial_confirmed"], newSerial),
	} {
		if !strings.Contains(status, line) {
			t.Errorf("serial-status lacks %q:\n%s", line, status)
		}
	}

	// rot-c returns; the API, with api_rotation_loop, retries it.
	serve(t, c)
	api, _ := startAPI(t, ctl, []string{"CTRL_EXEC_TEST_CHECK_DELAY=100ms"}, "api_rotation_loop = yes", "cert_check_interval = 1")
	waitFor(t, 60*time.Second, "rot-c to confirm", func() bool { return record(t, ctl, "rot-c")["serial_status"] == "current" })
	api.Stop()
	if got := strings.TrimSpace(c.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial")); got != newSerial {
		t.Errorf("rot-c stores %s", got)
	}
	ctl.MustRun("ctrl-exec", "run", c.target(), "hello")
	if record(t, ctl, "rot-d")["serial_status"] != "pending" {
		t.Errorf("rot-d: %v", record(t, ctl, "rot-d"))
	}
	if _, err := os.Stat(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt.prev")); err != nil {
		t.Error(".prev deleted while rot-d is pending within the overlap")
	}

	// 31 days later by pairing-mode's clock, rot-d has not come back.
	later := pki.ISOTime(time.Now().Add(31 * 24 * time.Hour))
	pm, _ := StartPairingMode(t, ctl, "CTRL_EXEC_TEST_CHECK_DELAY=100ms", "CTRL_EXEC_TEST_NOW="+later)
	waitFor(t, 60*time.Second, "rot-d to go stale", func() bool { return record(t, ctl, "rot-d")["serial_status"] == "stale" })
	waitFor(t, 30*time.Second, ".prev to be deleted", func() bool {
		_, errK := os.Stat(ctl.Path("/etc/ctrl-exec/ctrl-exec.key.prev"))
		_, errC := os.Stat(ctl.Path("/etc/ctrl-exec/ctrl-exec.crt.prev"))
		return errK != nil && errC != nil
	})
	pm.Stop()
	ctl.WaitLog(time.Second, "ACTION=serial-stale", "AGENT=rot-d", `REASON="overlap window expired without confirmation"`)
	if !strings.Contains(ctl.MustRun("ctrl-exec", "serial-status").Stdout, fmt.Sprintf("%-30s  %-10s", "rot-d", "stale")) {
		t.Error("serial-status does not show rot-d stale")
	}
	// The other three kept working throughout.
	ctl.MustRun("ctrl-exec", "ping", a.target(), b.target(), c.target())

	var doc struct {
		State  map[string]any   `json:"state"`
		Agents []map[string]any `json:"agents"` // records: strings, and tags since a ping
	}
	out := ctl.MustRun("ctrl-exec", "serial-status", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &doc); err != nil || !strings.HasPrefix(out, "{") {
		t.Fatalf("serial-status --json is not pure JSON: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, rec := range doc.Agents {
		got[fmt.Sprint(rec["hostname"])] = fmt.Sprint(rec["serial_status"])
	}
	if diff := cmp.Diff(map[string]string{"rot-a": "current", "rot-b": "current", "rot-c": "current", "rot-d": "stale"}, got); diff != "" {
		t.Errorf("serial-status --json agents (-want +got):\n%s", diff)
	}
	if doc.State["current_serial"] != newSerial || doc.State["previous_serial"] != oldSerial || doc.State["overlap_days"] != float64(30) {
		t.Errorf("serial-status --json state %v", doc.State)
	}
}

// TestSerialStatusWithoutRotation: the empty cases, and a corrupt
// rotation.json read as absent.
func TestSerialStatusWithoutRotation(t *testing.T) {
	t.Parallel()
	ctl := NewRoot(t, "")
	if got := ctl.MustRun("ctrl-exec", "serial-status").Stdout; got != "No rotation has been performed.\n\nNo registered agents.\n" {
		t.Errorf("text %q", got)
	}
	if got := ctl.MustRun("ctrl-exec", "serial-status", "--json").Stdout; got != `{"state":null,"agents":[]}`+"\n" {
		t.Errorf("json %q", got)
	}
	ctl.WriteFile("/var/lib/ctrl-exec/rotation.json", "{broken", 0o640)
	ctl.WriteFile("/var/lib/ctrl-exec/agents/web-01.json", `{"hostname":"web-01","ip":"10.0.0.1","dispatcher_serial":"0123456789abcdef0123"}`, 0o644)
	res := ctl.MustRun("ctrl-exec", "serial-status")
	want := "No rotation has been performed.\n\n" +
		fmt.Sprintf("%-30s  %-10s  %-24s  %s\n", "HOSTNAME", "STATUS", "CONFIRMED", "SERIAL") +
		strings.Repeat("-", 85) + "\n" +
		fmt.Sprintf("%-30s  %-10s  %-24s  %s\n", "web-01", "unknown", "-", "0123456789abcdef...")
	if diff := cmp.Diff(want, res.Stdout); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	ctl.WaitLog(time.Second, "ACTION=rotation-state-corrupt", `REASON="JSON parse failed - rotation state unreadable"`)
	if got := ctl.MustRun("ctrl-exec", "serial-status", "--json").Stdout; !strings.HasPrefix(got, `{"state":null,"agents":[{`) {
		t.Errorf("json %q", got)
	}
}

// TestRotateCertFailure: without the CA key nothing changes and the exit
// status says so.
func TestRotateCertFailure(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	before := ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt")
	os.Rename(ctl.Path("/etc/ctrl-exec/ca.key"), ctl.Path("/etc/ctrl-exec/ca.key.away"))
	res := ctl.Run("ctrl-exec", "rotate-cert")
	if res.Code != 255 || res.Stdout != "Rotating ctrl-exec certificate...\n" ||
		res.Stderr != "Rotation failed: cert generation failed: CA key not found at '"+ctl.Path("/etc/ctrl-exec/ca.key")+"'\n" {
		t.Errorf("exit %d\nstdout %q\nstderr %q", res.Code, res.Stdout, res.Stderr)
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") != before {
		t.Error("ctrl-exec.crt changed")
	}
	ctl.WaitLog(time.Second, "ACTION=cert-rotation-fail")
}

// TestAgentNoticesChangedSerialFile: a Go agent rereads ctrl-exec-serial when
// the file changes, without a signal (D-26).
func TestAgentNoticesChangedSerialFile(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a := newLifecycleAgents(t, "watch-01")[0]
	PairAgent(t, ctl, a.Root)
	serve(t, a)
	ctl.MustRun("ctrl-exec", "ping", a.target())
	stored := a.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial")
	a.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", "deadbeef\n", 0o644)
	res := ctl.Run("ctrl-exec", "ping", "--json", a.target())
	if res.Code != 1 || !strings.Contains(res.Stdout, `"error":"forbidden: serial mismatch"`) {
		t.Errorf("ping with another stored serial: exit %d\n%s", res.Code, res.Stdout)
	}
	a.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", stored, 0o644)
	ctl.MustRun("ctrl-exec", "ping", a.target())
}

// TestConcurrentRenewalsAndPairings: renewals (three ping processes) and
// approvals (three approve processes) sign at the same moment; every
// certificate gets its own serial.
func TestConcurrentRenewalsAndPairings(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook, "cert_days = 3")
	renewing := newLifecycleAgents(t, "ren-1", "ren-2", "ren-3")
	PairAgent(t, ctl, roots(renewing...)...)
	setConf(ctl)
	for _, a := range renewing {
		serve(t, a)
	}
	fresh := newLifecycleAgents(t, "new-1", "new-2", "new-3")
	pm, port := StartPairingMode(t, ctl)
	defer pm.Stop()
	var reqids []string
	for _, a := range fresh {
		res := a.MustRun("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "120")
		reqids = append(reqids, strings.TrimSpace(res.Stdout))
	}

	var wg sync.WaitGroup
	errs := make(chan string, 6)
	start := make(chan struct{})
	launch := func(args ...string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			cmd := ctl.Command(context.Background(), "ctrl-exec", args...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Sprintf("ctrl-exec %v: %v\n%s", args, err, out)
			}
		}()
	}
	for i := range renewing {
		launch("ping", renewing[i].target())
		launch("approve", reqids[i])
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	for _, a := range fresh {
		a.WaitLog(60*time.Second, "ACTION=pair-complete")
	}
	for _, a := range renewing {
		ctl.WaitLog(30*time.Second, "ACTION=renew-complete", "TARGET="+a.target())
	}

	ctrlSerial, _ := certFile(t, ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	seen := map[string]string{ctrlSerial: "ctrl-exec"}
	for _, a := range append(renewing, fresh...) {
		s, _ := certFile(t, a.Path("/etc/ctrl-exec-agent/agent.crt"))
		if other, dup := seen[s]; dup {
			t.Errorf("serial %s issued to %s and %s", s, other, a.Hostname)
		}
		seen[s] = a.Hostname
		if rec := record(t, ctl, a.Hostname); rec["agent_serial"] != s {
			t.Errorf("%s: registry agent_serial %q, cert %s", a.Hostname, rec["agent_serial"], s)
		}
	}
}
