package e2e

import (
	"net"
	"strconv"
	"strings"
	"testing"
)

// Issue 9 C: a second rotate-cert while agents are pending from the first
// would strand them; it is refused (exit 1, naming them) unless --force,
// which says who is stranded.
func TestRotateCertRefusesToStrandPendingAgents(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	for _, host := range []string{"web-01", "web-02"} {
		ctl.WriteFile("/var/lib/ctrl-exec/agents/"+host+".json",
			`{"hostname":"`+host+`","ip":"127.0.0.1","port":"`+down+`","serial_status":"current"}`, 0o644)
	}

	if res := ctl.Run("ctrl-exec", "rotate-cert"); res.Code != 0 || !strings.Contains(res.Stdout, "Agents pending:  2\n") {
		t.Fatalf("first rotate-cert: %+v", res)
	}
	cert := ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt")
	prev := ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt.prev")

	res := ctl.Run("ctrl-exec", "rotate-cert")
	want := "Refusing to rotate: 2 agent(s) still pending from the last rotation trust only the previous certificate, which this rotation would replace:\n" +
		"  web-01\n  web-02\n" +
		"Bring them up to date first (see serial-status; the check loop retries them), or re-run with --force to rotate anyway and re-pair them.\n"
	if res.Code != 1 || res.Stderr != want {
		t.Errorf("second rotate-cert: exit %d stderr %q", res.Code, res.Stderr)
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") != cert || ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt.prev") != prev {
		t.Error("the refused rotation changed the certificates")
	}

	res = ctl.Run("ctrl-exec", "rotate-cert", "--force")
	if res.Code != 0 || !strings.HasPrefix(res.Stderr, "Warning: --force: 2 agent(s) pending from the last rotation are stranded and must be re-paired:\n  web-01\n  web-02\n") {
		t.Errorf("rotate-cert --force: %+v", res)
	}
	if ctl.ReadFile("/etc/ctrl-exec/ctrl-exec.crt") == cert {
		t.Error("--force did not rotate")
	}
	ctl.WaitLog(0, "ACTION=cert-rotation-strand", "AGENTS=web-01,web-02")

	if help := ctl.Run("ctrl-exec", "rotate-cert", "--help"); !strings.Contains(help.Stdout, "--force") {
		t.Errorf("rotate-cert --help does not document --force:\n%s", help.Stdout)
	}
}
