package e2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// ctrlSerial is the serial of a root's ctrl-exec.crt.
func ctrlSerial(t *testing.T, r *Root) string {
	t.Helper()
	c, err := pki.LoadCert(r.Path("/etc/ctrl-exec/ctrl-exec.crt"))
	if err != nil {
		t.Fatal(err)
	}
	return pki.SerialHex(c)
}

// serialStatuses is serial-status --json on r: the state's current serial
// and each agent's serial_status.
func serialStatuses(t *testing.T, r *Root) (string, map[string]string) {
	t.Helper()
	var doc struct {
		State  map[string]any   `json:"state"`
		Agents []map[string]any `json:"agents"`
	}
	out := r.MustRun("ctrl-exec", "serial-status", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("serial-status --json: %v\n%s", err, out)
	}
	agents := map[string]string{}
	for _, a := range doc.Agents {
		agents[a["hostname"].(string)] = a["serial_status"].(string)
	}
	current, _ := doc.State["current_serial"].(string)
	return current, agents
}

// rotate-cert on node A: serial-status on B shows the rotation; B's first
// command takes the new certificate and key from etcd (modes as
// setup-ctrl-exec writes them), so its run reaches the agent that now
// refuses the old certificate.
func TestEtcdRotationAcrossNodes(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	agent := newLifecycleAgents(t, "rot-01")[0]
	PairAgent(t, a, agent.Root)
	serve(t, agent)
	oldSerial := ctrlSerial(t, b)

	out := a.MustRun("ctrl-exec", "rotate-cert").Stdout
	if !strings.Contains(out, "Updated: 1") {
		t.Fatalf("rotate-cert on A:\n%s", out)
	}
	newSerial := ctrlSerial(t, a)
	if got := strings.TrimSpace(agent.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial")); got != newSerial {
		t.Fatalf("agent stores %s, want %s", got, newSerial)
	}
	if ctrlSerial(t, b) != oldSerial {
		t.Fatal("B's certificate changed before B ran anything")
	}

	current, agents := serialStatuses(t, b)
	if current != newSerial || agents["rot-01"] != "current" {
		t.Errorf("serial-status on B: current %q agents %v, want %s and rot-01 current", current, agents, newSerial)
	}
	if b.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") != a.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") ||
		b.ReadFile("/etc/ctrl-exec/ctrl-exec.key") != a.ReadFile("/etc/ctrl-exec/ctrl-exec.key") {
		t.Fatal("B's identity is not A's rotated one")
	}
	if m := fileMode(t, b.Path("/etc/ctrl-exec/ctrl-exec.key")); m != 0o640 {
		t.Errorf("B's ctrl-exec.key mode %o, want 640", m)
	}
	if m := fileMode(t, b.Path("/etc/ctrl-exec/ctrl-exec.crt")); m != 0o644 {
		t.Errorf("B's ctrl-exec.crt mode %o, want 644", m)
	}
	if out := b.MustRun("ctrl-exec", "run", agent.target(), "hello").Stdout; !strings.Contains(out, "hello from") {
		t.Errorf("run from B after the rotation:\n%s", out)
	}
	b.WaitLog(time.Second, "ACTION=ctrl-exec-identity-sync", "SERIAL="+newSerial)
	for _, line := range b.LogLines() {
		if strings.Contains(line, "PRIVATE KEY") {
			t.Errorf("a log line carries key material: %s", line)
		}
	}
}

// A rotation on A that could not reach the agent: the check loop runs on
// B (pairing-mode there, the only candidate, leads), sees the rotation in
// etcd and reaches the agent with the previous pair B took from etcd. Once
// nobody is pending, B drops the previous pair for every node: A's next
// command removes its copy.
func TestEtcdRotationLoopOnOtherNode(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	setConf(b, "state_backend = etcd", "etcd_endpoints = "+strings.Join(cl.Endpoints(), ","), "etcd_prefix = /e2e/", "cert_check_interval = 1")
	agent := newLifecycleAgents(t, "rot-02")[0]
	PairAgent(t, a, agent.Root)

	out := a.MustRun("ctrl-exec", "rotate-cert").Stdout
	if !strings.Contains(out, "Agents pending:  1") || !strings.Contains(out, "Failed:  1") {
		t.Fatalf("rotate-cert on A with the agent down:\n%s", out)
	}
	newSerial := ctrlSerial(t, a)
	serve(t, agent)
	StartPairingMode(t, b, "CTRL_EXEC_TEST_CHECK_DELAY=100ms")
	if _, err := os.Stat(b.Path("/etc/ctrl-exec/ctrl-exec.key.prev")); err != nil {
		// Taken from etcd when pairing-mode opened the backend; gone again
		// only after the agent confirmed.
		if _, agents := serialStatuses(t, a); agents["rot-02"] != "current" {
			t.Fatalf("B has no previous key while the agent is pending: %v", err)
		}
	}
	waitFor(t, 60*time.Second, "B's check loop to confirm rot-02", func() bool {
		_, agents := serialStatuses(t, a)
		return agents["rot-02"] == "current"
	})
	if got := strings.TrimSpace(agent.ReadFile("/etc/ctrl-exec-agent/ctrl-exec-serial")); got != newSerial {
		t.Errorf("agent stores %s, want %s", got, newSerial)
	}
	b.WaitLog(10*time.Second, "ACTION=serial-confirmed", "AGENT=rot-02")
	waitFor(t, 30*time.Second, "A's previous pair to go", func() bool {
		a.MustRun("ctrl-exec", "list-agents") // syncs A with etcd
		_, errK := os.Stat(a.Path("/etc/ctrl-exec/ctrl-exec.key.prev"))
		_, errC := os.Stat(a.Path("/etc/ctrl-exec/ctrl-exec.crt.prev"))
		return errK != nil && errC != nil
	})
	if out := a.MustRun("ctrl-exec", "run", agent.target(), "hello").Stdout; !strings.Contains(out, "hello from") {
		t.Errorf("run from A:\n%s", out)
	}
}

// A running API node follows the rotation through its etcd watch: no
// restart, and its next /run reaches the agent that switched serial.
func TestEtcdAPIFollowsRotation(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdNodes(t, cl, 2)
	a, b := nodes[0], nodes[1]
	agent := a.startAgent("agent-rot")
	body := `{"hosts":["` + agent.target() + `"],"script":"true"}`
	runExit := func(c *apiControl) any {
		r := c.call("POST", "/run", body).want(t, 200, "")
		if results, _ := r.JSON["results"].([]any); len(results) == 1 {
			return results[0].(map[string]any)["exit"]
		}
		return r.Body
	}
	if got := runExit(b); got != 0.0 {
		t.Fatalf("/run on B before the rotation: %v", got)
	}

	giveKeys(t, a.root, 1)
	a.root.MustRun("ctrl-exec", "rotate-cert")
	newSerial := ctrlSerial(t, a.root)
	// The agent switches, as update-ctrl-exec-serial would have it.
	agent.root.WriteFile("/etc/ctrl-exec-agent/ctrl-exec-serial", newSerial+"\n", 0o640)

	waitFor(t, 30*time.Second, "B's API to take the new certificate", func() bool {
		return b.root.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") == a.root.ReadFile("/etc/ctrl-exec/ctrl-exec.crt")
	})
	if got := runExit(b); got != 0.0 {
		t.Errorf("/run on B after the rotation: exit %v", got)
	}
	b.root.WaitLog(10*time.Second, "ACTION=ctrl-exec-identity-sync", "SERIAL="+newSerial)
}

// With etcd neither TLS-authenticated nor on loopback, rotate-cert and
// setup-ctrl-exec refuse, naming the keys to set, and change nothing. The
// endpoint is never contacted.
func TestEtcdRotateRefusesUnsafeConnection(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	setConf(ctl, "state_backend = etcd", "etcd_endpoints = http://0.0.0.0:"+itoa(FreePort(t)))
	before := map[string]string{}
	for _, f := range []string{"ctrl-exec.crt", "ctrl-exec.key", "ca.serial"} {
		before[f] = ctl.ReadFile("/etc/ctrl-exec/" + f)
	}
	for _, cmd := range []string{"rotate-cert", "setup-ctrl-exec"} {
		res := ctl.Run("ctrl-exec", cmd)
		if res.Code != 255 {
			t.Errorf("%s: exit %d, want 255\n%s", cmd, res.Code, res.Stderr)
		}
		for _, want := range []string{"Refusing", "etcd_ca, etcd_cert and etcd_key", "http://0.0.0.0:"} {
			if !strings.Contains(res.Stderr, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", cmd, want, res.Stderr)
			}
		}
	}
	after := map[string]string{}
	for f := range before {
		after[f] = ctl.ReadFile("/etc/ctrl-exec/" + f)
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("a refused command changed files (-before +after):\n%s", diff)
	}
	for _, f := range []string{"/etc/ctrl-exec/ctrl-exec.crt.prev", "/var/lib/ctrl-exec/rotation.json"} {
		if _, err := os.Stat(ctl.Path(f)); err == nil {
			t.Errorf("%s written by a refused rotation", f)
		}
	}
}

// state import moves a single host's rotation.json (Perl's form) into
// etcd, with a dry run and idempotently; state export writes it into
// another node's files in Go's form.
func TestEtcdStateImportExportRotation(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	a.WriteFile("/var/lib/ctrl-exec/rotation.json", `{"overlap_days":"14","current_serial":"01000003","previous_serial":"01000001","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-03-23T14:30:00Z"}`, 0o640)
	lines := func(out string) []string {
		var got []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "rotation") || strings.Contains(l, "nothing") {
				got = append(got, l)
			}
		}
		return got
	}

	if diff := cmp.Diff([]string{"would rotation: add"}, lines(a.MustRun("ctrl-exec", "state", "import", "--dry-run").Stdout)); diff != "" {
		t.Errorf("import --dry-run (-want +got):\n%s", diff)
	}
	if current, _ := serialStatuses(t, b); current != "" {
		t.Fatalf("the dry run imported: B shows %s", current)
	}
	if diff := cmp.Diff([]string{"rotation: add"}, lines(a.MustRun("ctrl-exec", "state", "import").Stdout)); diff != "" {
		t.Errorf("import (-want +got):\n%s", diff)
	}
	if out := a.MustRun("ctrl-exec", "state", "import").Stdout; out != "nothing to change\n" {
		t.Errorf("second import printed %q", out)
	}
	if current, _ := serialStatuses(t, b); current != "01000003" {
		t.Errorf("B shows current serial %q after the import", current)
	}

	if _, err := os.Stat(b.Path("/var/lib/ctrl-exec/rotation.json")); err == nil {
		t.Fatal("B has a rotation.json before the export")
	}
	if diff := cmp.Diff([]string{"rotation: add"}, lines(b.MustRun("ctrl-exec", "state", "export").Stdout)); diff != "" {
		t.Errorf("export (-want +got):\n%s", diff)
	}
	want := `{"current_serial":"01000003","previous_serial":"01000001","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-03-23T14:30:00Z","overlap_days":14}`
	if got := b.ReadFile("/var/lib/ctrl-exec/rotation.json"); got != want {
		t.Errorf("exported rotation.json:\n got %s\nwant %s", got, want)
	}
	if out := b.MustRun("ctrl-exec", "state", "export").Stdout; out != "nothing to change\n" {
		t.Errorf("second export printed %q", out)
	}
}
