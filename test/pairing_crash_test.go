package e2e

import (
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pairing-mode killed between approve and delivery (SIGSTOP holds it at
// that point; SIGKILL ends it there): the registry records of the
// certificates it never delivered are marked in list-agents, deny clears
// such a request and its record, and a pairing-mode restart clears the rest,
// so no request lingers that approve and deny cannot act on.
func TestPairingModeKilledDuringApprovals(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	pm, port := StartPairingMode(t, ctl)
	var reqids []string
	for _, name := range []string{"crash-a", "crash-b"} {
		a := NewAgent(t, name)
		res := a.MustRun("ctrl-exec-agent", "request-pairing",
			"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "120")
		reqids = append(reqids, strings.TrimSpace(res.Stdout))
	}
	waitRequests(t, ctl, 2)

	if err := pm.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for _, id := range reqids {
		ctl.MustRun("ctrl-exec", "approve", id)
	}
	if err := syscall.Kill(-pm.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := pm.Wait(30 * time.Second); !ok {
		t.Fatal("pairing-mode survived SIGKILL")
	}

	// Both agents are registered, marked as never confirmed.
	out := ctl.MustRun("ctrl-exec", "list-agents").Stdout
	if n := strings.Count(out, "(certificate delivery unconfirmed)"); n != 2 {
		t.Errorf("list-agents marks %d agents, want 2:\n%s", n, out)
	}
	var recs []map[string]any
	if err := json.Unmarshal([]byte(ctl.MustRun("ctrl-exec", "list-agents", "--json").Stdout), &recs); err != nil || len(recs) != 2 || recs[0]["cert_delivery"] != "pending" {
		t.Errorf("list-agents --json: %v %v", recs, err)
	}

	// The approved, undelivered request can be denied; approving it again
	// says why not.
	res := ctl.Run("ctrl-exec", "approve", reqids[0])
	if res.Code == 0 || !strings.Contains(res.Stderr, "stopped before delivering the answer") {
		t.Errorf("approve again: exit %d, stderr %q", res.Code, res.Stderr)
	}
	ctl.MustRun("ctrl-exec", "deny", reqids[0])
	if reqs := listRequests(t, ctl); len(reqs) != 1 || reqs[0].ID != reqids[1] {
		t.Errorf("after deny, queued: %+v", reqs)
	}
	if out := ctl.MustRun("ctrl-exec", "list-agents").Stdout; strings.Contains(out, "crash-a") {
		t.Errorf("record of the undelivered certificate kept:\n%s", out)
	}

	// A restarted pairing-mode clears what the dead one left.
	pm2, _ := StartPairingMode(t, ctl)
	defer pm2.Stop()
	if reqs := listRequests(t, ctl); len(reqs) != 0 {
		t.Errorf("after restart, queued: %+v", reqs)
	}
	if out := ctl.MustRun("ctrl-exec", "list-agents").Stdout; out != "No registered agents.\n" {
		t.Errorf("after restart, list-agents:\n%s", out)
	}
	ctl.WaitLog(5*time.Second, "ACTION=pair-abandon", "AGENT=crash-b", "REASON=server-gone")
}
