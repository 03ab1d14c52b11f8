package e2e

// Who answers (issue 15): the control host checks that the agent at a
// target is the one the registry names there (D-31), and an agent can pin
// the control host's CA when it pairs.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// caFingerprint is the fingerprint of ctl's CA, as setup-ca prints it.
func caFingerprint(t testing.TB, ctl *Root) string {
	t.Helper()
	ca, err := pki.LoadCert(ctl.Path("/etc/ctrl-exec/ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(ca)
}

// touchScript leaves "ran" in the root of the agent that runs it.
const touchScript = "#!/bin/sh\ntouch \"$CTRL_EXEC_ROOT/ran\"\necho ran\n"

// An agent paired as 127.0.0.3 is started on the address and port the
// registry has for "localhost": addressing localhost (by name or by its
// recorded address) is refused before the request is sent, addressing the
// agent by its own name works; strict refuses a target the registry does
// not know, off lets everything through as upstream.
func TestAgentIdentityRun(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a, b := NewAgent(t, "localhost"), NewAgent(t, "127.0.0.3")
	for _, x := range []*AgentHost{a, b} {
		x.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "touch = "+x.WriteFile("/opt/ctrl-exec-scripts/touch", touchScript, 0o755)+"\n", 0o640)
	}
	PairAgent(t, ctl, a.Root, b.Root)

	// b moves to a's registered address and port; a is not running.
	conf := b.ReadFile("/etc/ctrl-exec-agent/agent.conf")
	b.WriteFile("/etc/ctrl-exec-agent/agent.conf", strings.Replace(conf, "port = "+itoa(b.Port), "port = "+itoa(a.Port), 1)+"rate_limit_disable = yes\n", 0o640)
	b.Port = a.Port
	serve(t, b)
	ran := func() bool {
		_, err := os.Stat(b.Path("/ran"))
		return err == nil
	}
	reset := func() { os.Remove(b.Path("/ran")) }
	port := itoa(a.Port)

	mismatch := "agent identity mismatch: expected localhost, got 127.0.0.3"
	for _, args := range [][]string{
		{"--port", port, "run", "localhost", "touch"},
		{"run", "localhost:" + port, "touch"},
		{"run", "127.0.0.1:" + port, "touch"},
	} {
		res := ctl.Run("ctrl-exec", args...)
		if res.Code != 1 || !strings.Contains(res.Stdout, "  [FAIL  exit:-1  ") || !strings.Contains(res.Stdout, "\n    ERROR: "+mismatch+"\n") {
			t.Errorf("%q: exit %d\n%s%s", args, res.Code, res.Stdout, res.Stderr)
		}
		if ran() {
			t.Fatalf("%q: the script ran on the wrong agent", args)
		}
	}
	var runs struct{ Results []map[string]any }
	res := ctl.Run("ctrl-exec", "--json", "run", "127.0.0.1:"+port, "touch")
	if err := json.Unmarshal([]byte(res.Stdout), &runs); err != nil || res.Code != 1 || len(runs.Results) != 1 ||
		runs.Results[0]["error"] != mismatch || runs.Results[0]["status"] != "refused" || ran() {
		t.Errorf("run --json: exit %d, ran %v: %s", res.Code, ran(), res.Stdout)
	}
	ctl.WaitLog(5*time.Second, "ACTION=identity-mismatch", "EXPECTED=localhost", "GOT=127.0.0.3", "TARGET=127.0.0.1:"+port)
	ctl.WaitLog(5*time.Second, "ACTION=run", "ERROR=\""+mismatch+"\"")

	res = ctl.Run("ctrl-exec", "--json", "ping", "127.0.0.1:"+port)
	var pings struct{ Results []map[string]any }
	if err := json.Unmarshal([]byte(res.Stdout), &pings); err != nil || res.Code != 1 || len(pings.Results) != 1 || pings.Results[0]["error"] != mismatch {
		t.Errorf("ping: exit %d %s", res.Code, res.Stdout)
	}

	// Addressed by its own name, b answers where it now is.
	ctl.MustRun("ctrl-exec", "run", "127.0.0.3:"+port, "touch")
	if !ran() {
		t.Fatal("run as 127.0.0.3 did not run the script")
	}
	reset()

	// A target the registry does not know: allowed (and logged), refused
	// under strict without connecting.
	unknown := "127.0.0.5:" + port
	ctl.MustRun("ctrl-exec", "run", unknown, "touch")
	if !ran() {
		t.Fatal("registry mode did not run on an unknown target")
	}
	reset()
	ctl.WaitLog(5*time.Second, "ACTION=identity-unknown", "RESULT=allowed", "TARGET="+unknown)
	setConf(ctl, "agent_identity = strict")
	res = ctl.Run("ctrl-exec", "run", unknown, "touch")
	want := "    ERROR: agent identity unknown: " + unknown + " is not in the agent registry (agent_identity = strict)\n"
	if res.Code != 1 || !strings.Contains(res.Stdout, want) || ran() {
		t.Errorf("strict, unknown target: exit %d, ran %v\n%s%s", res.Code, ran(), res.Stdout, res.Stderr)
	}
	res = ctl.Run("ctrl-exec", "--json", "run", unknown, "touch")
	if err := json.Unmarshal([]byte(res.Stdout), &runs); err != nil || len(runs.Results) != 1 || runs.Results[0]["status"] != "refused" {
		t.Errorf("strict, unknown target, --json: %s", res.Stdout)
	}

	// off: upstream's behaviour, whoever answers runs it.
	setConf(ctl, "agent_identity = off")
	ctl.MustRun("ctrl-exec", "run", "127.0.0.1:"+port, "touch")
	if !ran() {
		t.Fatal("off did not run the script")
	}
}

// The API refuses the wrong agent the same way.
func TestAgentIdentityAPI(t *testing.T) {
	t.Parallel()
	c := newAPIControl(t, apiOptions{allow: true}).start()
	b := c.startAgent("b")
	c.register("a", "127.0.0.1", b.port) // the registry has "a" where b answers
	marker := apiScratch(t, "ran")
	r := c.call("POST", "/run", `{"hosts":["`+b.target()+`"],"script":"hold","args":["`+marker+`","/"]}`).want(t, 200, "")
	res := r.JSON["results"].([]any)[0].(map[string]any)
	if res["error"] != "agent identity mismatch: expected a, got b" || res["exit"] != -1.0 {
		t.Errorf("run result %s", r.Body)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script ran on the wrong agent")
	}
}

// request-pairing --ca-fingerprint: the right one pairs, a wrong one is
// refused before the request leaves the agent.
func TestPairingCAFingerprint(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	_, port := StartPairingMode(t, ctl)
	fp := caFingerprint(t, ctl)

	bad := NewAgent(t, "bad-01")
	wrong := "sha256:" + strings.Repeat("0", 64)
	res := bad.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--ca-fingerprint", wrong)
	if want := "Pairing failed: the pairing server's CA is " + fp + ", not " + wrong + " - nothing was sent.\n"; res.Code != 255 || !strings.HasPrefix(res.Stderr, want) {
		t.Errorf("wrong fingerprint: exit %d, stderr %q, want prefix %q", res.Code, res.Stderr, want)
	}
	if got := ctl.MustRun("ctrl-exec", "list-requests").Stdout; got != "No pending pairing requests.\n" {
		t.Errorf("queue after a refused pairing: %q", got)
	}
	if _, err := os.Stat(bad.Path("/etc/ctrl-exec-agent/agent.key")); err == nil {
		t.Error("refused agent stored a key")
	}
	res = bad.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--ca-fingerprint", "sha256:abc")
	if res.Code != 255 || !strings.HasPrefix(res.Stderr, `--ca-fingerprint: CA fingerprint "sha256:abc" must be`) {
		t.Errorf("malformed fingerprint: %+v", res)
	}

	// The right one, as operators paste it from openssl (colons, upper
	// case), through the background helper.
	good := NewAgent(t, "good-01")
	var colons []string
	for i := len("sha256:"); i < len(fp); i += 2 {
		colons = append(colons, strings.ToUpper(fp[i:i+2]))
	}
	id := strings.TrimSpace(good.MustRun("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port),
		"--ca-fingerprint", "SHA256:"+strings.Join(colons, ":"), "--background", "--timeout", "60").Stdout)
	ctl.MustRun("ctrl-exec", "approve", id)
	good.WaitLog(30*time.Second, "ACTION=pair-complete")
}

// A pairing server whose certificate chains to another CA than the one the
// approval delivers (an interceptor holding some other certificate) is
// refused: with a pin before the request is sent, without one after
// approval, and the agent stores nothing.
func TestPairingServerFromAnotherCA(t *testing.T) {
	t.Parallel()
	ctl, other := NewControl(t, NoHook), NewControl(t, NoHook)
	ctl.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", fmt.Sprintf("cert = %s\nkey = %s\nca = %s\n",
		other.Path("/etc/ctrl-exec/ctrl-exec.crt"), other.Path("/etc/ctrl-exec/ctrl-exec.key"), ctl.Path("/etc/ctrl-exec/ca.crt")), 0o640)
	_, port := StartPairingMode(t, ctl)

	agent := NewAgent(t, "web-07")
	res := agent.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--ca-fingerprint", caFingerprint(t, ctl))
	if want := "Pairing failed: the pairing server's certificate does not chain to the CA " + caFingerprint(t, ctl) + ": "; res.Code != 255 || !strings.HasPrefix(res.Stderr, want) {
		t.Errorf("pinned: exit %d, stderr %q, want prefix %q", res.Code, res.Stderr, want)
	}
	if got := ctl.MustRun("ctrl-exec", "list-requests").Stdout; got != "No pending pairing requests.\n" {
		t.Errorf("queue after a refused pinned pairing: %q", got)
	}

	p := agent.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	reqs := waitRequests(t, ctl, 1)
	ctl.MustRun("ctrl-exec", "approve", reqs[0].ID)
	code, done := p.Wait(60 * time.Second)
	want := "Pairing failed: the pairing server's certificate does not chain to the CA it delivered (x509: certificate signed by unknown authority"
	if !done || code != 255 || !strings.HasPrefix(p.Stderr(), want) {
		t.Errorf("unpinned: exit %d (done %v), stderr %q, want prefix %q", code, done, p.Stderr(), want)
	}
	for _, f := range []string{"agent.crt", "agent.key", "ca.crt", "ctrl-exec-serial"} {
		if _, err := os.Stat(filepath.Join(agent.Path("/etc/ctrl-exec-agent"), f)); err == nil {
			t.Errorf("%s stored", f)
		}
	}
}
