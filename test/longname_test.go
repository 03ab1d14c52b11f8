package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Every file named after a hostname must fit in 255 bytes. 250 characters
// is the longest a registry file ({hostname}.json) holds: such an agent
// pairs, is approved and runs. A 253-character name (DNS's limit) is refused
// before anything is spent: by the agent before it sends a request, by the
// pairing server, and by approve before a CA serial is used. A run to such a
// name still gets its lock (cut to fit) rather than failing on its file name.
func TestLongHostnames(t *testing.T) {
	t.Parallel()
	longest := strings.Repeat("a", 240) + ".long-host" // 250
	tooLong := strings.Repeat("b", 243) + ".long-host" // 253
	ctl := NewControl(t, NoHook)

	t.Run("250 pairs and runs", func(t *testing.T) {
		a := newLifecycleAgents(t, longest)[0]
		PairAgent(t, ctl, a.Root)
		if rec := record(t, ctl, longest); rec["hostname"] != longest {
			t.Errorf("registry record %v", rec)
		}
		defer serve(t, a).Stop()
		res := ctl.MustRun("ctrl-exec", "run", a.target(), "hello")
		if !strings.Contains(res.Stdout, "hello from") {
			t.Errorf("run: %q", res.Stdout)
		}
	})

	t.Run("253 is refused by the agent", func(t *testing.T) {
		a := NewAgent(t, tooLong)
		res := a.Run("ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", "1")
		if res.Code != 255 || !strings.Contains(res.Stderr, "at most 250 fit") {
			t.Errorf("request-pairing: exit %d, stderr %q", res.Code, res.Stderr)
		}
		if _, err := os.Stat(a.Path("/etc/ctrl-exec-agent/agent.key")); err == nil {
			t.Error("a key was made for a name that cannot pair")
		}
	})

	csr, err := pki.CreateCSR(takeKeys(t, 1)[0], tooLong)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("253 is refused by the pairing server", func(t *testing.T) {
		pm, port := StartPairingMode(t, ctl)
		defer pm.Stop()
		body := string(wire.JSON(map[string]string{"hostname": tooLong, "csr": string(csr), "nonce": pki.NewNonce()}))
		if got := rawPairing(t, port, body); got != `{"status":"error","reason":"invalid request"}` {
			t.Errorf("answer %s", got)
		}
		ctl.WaitLog(5*time.Second, "ACTION=pair-reject", "REASON=invalid-request", "at most 250 fit")
	})

	t.Run("253 is refused by approve before a serial is used", func(t *testing.T) {
		// As a Perl pairing server, which checks no names, would queue it.
		q := pairing.NewQueue(ctl.Path("/var/lib/ctrl-exec/pairing"), nil)
		if err := os.MkdirAll(q.Dir, 0o770); err != nil {
			t.Fatal(err)
		}
		req := pairing.Request{ID: "0123456789abcdef", Hostname: tooLong, IP: "127.0.0.1", CSR: string(csr),
			Nonce: pki.NewNonce(), Received: pki.ISOTime(time.Now()), Code: pki.PairingCode(csr)}
		if err := q.Add(req); err != nil {
			t.Fatal(err)
		}
		serial := ctl.ReadFile("/etc/ctrl-exec/ca.serial")
		res := ctl.Run("ctrl-exec", "approve", req.ID)
		if res.Code == 0 || !strings.Contains(res.Stderr, "at most 250 fit") {
			t.Errorf("approve: exit %d, stderr %q", res.Code, res.Stderr)
		}
		if got := ctl.ReadFile("/etc/ctrl-exec/ca.serial"); got != serial {
			t.Errorf("ca.serial went from %q to %q", serial, got)
		}
		ctl.MustRun("ctrl-exec", "deny", req.ID)
	})

	t.Run("253 gets a run lock", func(t *testing.T) {
		// Held here, so the run stops at the lock check, before any lookup
		// of the name.
		target := tooLong + ":7443"
		held, conflicts, err := locks.Acquire(ctl.Path("/var/lib/ctrl-exec/locks"), []string{target}, "hello", zerolog.Nop())
		if err != nil || conflicts != nil {
			t.Fatalf("Acquire: %v %v", conflicts, err)
		}
		defer held.Release()
		res := ctl.Run("ctrl-exec", "run", target, "hello")
		if res.Code != 1 || res.Stderr != "Locked: already running: "+target+":hello\n" {
			t.Errorf("run: exit %d, stderr %q", res.Code, res.Stderr)
		}
		if out := ctl.MustRun("ctrl-exec", "list-locks").Stdout; !strings.Contains(out, strings.Repeat("b", 120)+"~") {
			t.Errorf("list-locks: %q", out)
		}
	})
}
