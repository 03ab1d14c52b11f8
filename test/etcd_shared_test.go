package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate/etcdtest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// etcdControls is n control hosts on one etcd: the first set up by
// setup-ca and setup-ctrl-exec, the others holding copies of its CA and
// certificate (as the docs say to copy them), each in its own root.
func etcdControls(t *testing.T, cl *etcdtest.Cluster, n int) []*Root {
	t.Helper()
	extra := []string{"state_backend = etcd", "etcd_endpoints = " + strings.Join(cl.Endpoints(), ","), "etcd_prefix = /e2e/"}
	first := NewControl(t, NoHook)
	setConf(first, extra...)
	nodes := []*Root{first}
	for i := 1; i < n; i++ {
		r := NewRoot(t, "")
		for _, f := range []string{"ca.crt", "ca.key", "ca.serial", "ctrl-exec.crt", "ctrl-exec.key"} {
			data, err := os.ReadFile(first.Path("/etc/ctrl-exec/" + f))
			if err != nil {
				t.Fatal(err)
			}
			r.WriteFile("/etc/ctrl-exec/"+f, string(data), 0o600)
		}
		setConf(r, extra...)
		nodes = append(nodes, r)
	}
	return nodes
}

// An agent paired through node A is listed by, runs from (with
// agent_identity = strict, which refuses agents B's registry does not know)
// and is unpaired through node B; its serial came from the shared counter;
// nothing of it is left in A's registry directory.
func TestEtcdRegistryAcrossNodes(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	b.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", b.ReadFile("/etc/ctrl-exec/ctrl-exec.conf")+"agent_identity = strict\n", 0o640)
	agent := newLifecycleAgents(t, "shared-01")[0]
	PairAgent(t, a, agent.Root)
	serve(t, agent)

	if _, err := os.Stat(a.Path("/var/lib/ctrl-exec/agents/shared-01.json")); err == nil {
		t.Error("the registry record was written to A's directory, not etcd")
	}
	if out := b.MustRun("ctrl-exec", "list-agents").Stdout; !strings.Contains(out, "shared-01") {
		t.Errorf("list-agents on B does not show the agent paired through A:\n%s", out)
	}
	if out := b.MustRun("ctrl-exec", "run", agent.target(), "hello").Stdout; !strings.Contains(out, "hello from") {
		t.Errorf("run from B:\n%s", out)
	}

	c, err := etcdstate.Open(etcdstate.Config{Endpoints: cl.Endpoints(), Prefix: "/e2e/"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := c.Raw().Get(context.Background(), "/e2e/ca/serial")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("shared serial counter: %v %v", resp, err)
	}
	cert, err := pki.LoadCert(agent.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.ToUpper(pki.SerialHex(cert)), string(resp.Kvs[0].Value); strings.TrimLeft(got, "0") != strings.TrimLeft(want, "0") {
		t.Errorf("agent serial %s, shared counter %s", got, want)
	}

	b.MustRun("ctrl-exec", "unpair", "shared-01")
	if out := a.MustRun("ctrl-exec", "list-agents").Stdout; strings.Contains(out, "shared-01") {
		t.Errorf("list-agents on A still shows the agent unpaired through B:\n%s", out)
	}
}

// A request queued through A's pairing-mode is listed, approved or denied
// from the CLI on B; A's pairing-mode learns the answer through its etcd
// watch (its queue poll is set to an hour) and delivers it; the agent
// paired this way runs from B.
func TestEtcdPairingAcrossNodes(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	_, port := StartPairingMode(t, a, "CTRL_EXEC_TEST_PAIRING_POLL=1h")

	ok := newLifecycleAgents(t, "paired-01")[0]
	req := ok.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	r := waitRequests(t, b, 1)[0]
	if r.Hostname != "paired-01" {
		t.Fatalf("B lists %+v", r)
	}
	if entries, _ := os.ReadDir(a.Path("/var/lib/ctrl-exec/pairing")); len(entries) > 0 {
		t.Errorf("A queued into its directory: %v", entries)
	}
	b.MustRun("ctrl-exec", "approve", r.ID)
	if code, done := req.Wait(30 * time.Second); !done || code != 0 {
		t.Fatalf("request-pairing: exit %d (done %v)\n%s\n%s", code, done, req.Stdout(), req.Stderr())
	}
	serve(t, ok)
	if out := b.MustRun("ctrl-exec", "run", ok.target(), "hello").Stdout; !strings.Contains(out, "hello from") {
		t.Errorf("run from B:\n%s", out)
	}
	if out := a.MustRun("ctrl-exec", "list-agents").Stdout; !strings.Contains(out, "paired-01") {
		t.Errorf("A does not list the agent approved on B:\n%s", out)
	}

	no := NewAgent(t, "denied-01")
	req = no.Start("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port))
	r = waitRequests(t, b, 1)[0]
	b.MustRun("ctrl-exec", "deny", r.ID)
	if code, done := req.Wait(30 * time.Second); !done || code == 0 {
		t.Fatalf("denied request-pairing: exit %d (done %v)\n%s\n%s", code, done, req.Stdout(), req.Stderr())
	}
	if reqs := listRequests(t, a); len(reqs) != 0 {
		t.Errorf("queue after the denial: %+v", reqs)
	}
}

// state import moves a single host's files (a Perl-style registry record
// and ca.serial) into etcd, idempotently, with a dry run that changes
// nothing; state export writes them into another node's files.
func TestEtcdStateImportExport(t *testing.T) {
	t.Parallel()
	cl := etcdtest.Start(t, 1)
	nodes := etcdControls(t, cl, 2)
	a, b := nodes[0], nodes[1]
	rec := `{"hostname":"perl-01","ip":"10.0.0.5","paired":"2025-01-01T00:00:00Z","expiry":"Jan  1 00:00:00 2027 GMT","reqid":"ab12","dispatcher_serial":"","serial_status":"unknown","serial_broadcast":"","serial_confirmed":""}`
	a.WriteFile("/var/lib/ctrl-exec/agents/perl-01.json", rec, 0o644)
	a.WriteFile("/etc/ctrl-exec/ca.serial", "2A\n", 0o600)

	dry := a.MustRun("ctrl-exec", "state", "import", "--dry-run").Stdout
	if want := "would agents/perl-01: add\nwould ca/serial: raise to 2A\n"; dry != want {
		t.Errorf("import --dry-run printed %q, want %q", dry, want)
	}
	if out := b.MustRun("ctrl-exec", "list-agents").Stdout; strings.Contains(out, "perl-01") {
		t.Fatalf("the dry run imported:\n%s", out)
	}
	if out := a.MustRun("ctrl-exec", "state", "import").Stdout; out != "agents/perl-01: add\nca/serial: raise to 2A\n" {
		t.Errorf("import printed %q", out)
	}
	if out := a.MustRun("ctrl-exec", "state", "import").Stdout; out != "nothing to change\n" {
		t.Errorf("second import printed %q, want nothing to change", out)
	}
	if out := b.MustRun("ctrl-exec", "list-agents").Stdout; !strings.Contains(out, "perl-01") {
		t.Errorf("B does not list the imported agent:\n%s", out)
	}

	b.WriteFile("/etc/ctrl-exec/ca.serial", "05\n", 0o600)
	if out := b.MustRun("ctrl-exec", "state", "export").Stdout; out != "agents/perl-01: add\nca/serial: raise to 2A\n" {
		t.Errorf("export printed %q", out)
	}
	if got := b.ReadFile("/etc/ctrl-exec/ca.serial"); got != "2A\n" {
		t.Errorf("B's ca.serial after export: %q", got)
	}
	var got, want map[string]any
	json.Unmarshal([]byte(b.ReadFile("/var/lib/ctrl-exec/agents/perl-01.json")), &got)
	json.Unmarshal([]byte(rec), &want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("exported record (-want +got):\n%s", diff)
	}
	if out := b.MustRun("ctrl-exec", "state", "export").Stdout; out != "nothing to change\n" {
		t.Errorf("second export printed %q", out)
	}
}
