package e2e

// Shared fixtures: a control host made the way an operator makes one, and
// agents paired with it for real (pairing-mode, request-pairing, approve).
//
//	ctl := NewControl(t, NoHook)
//	web := NewAgent(t, "web-01")
//	PairAgent(t, ctl, web.Root)
//	// web now holds agent.crt/agent.key/ca.crt/ctrl-exec-serial and is in
//	// ctl's registry with its serve port web.Port.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// HookPolicy is the auth hook NewControl installs (§13).
type HookPolicy int

const (
	NoHook    HookPolicy = iota // no auth_hook line: CLI run/ping pass (no-hook-cli)
	HookAllow                   // /etc/ctrl-exec/auth-hook exits 0
	HookDeny                    // /etc/ctrl-exec/auth-hook exits 1
)

// NewControl makes a control host in its own root: setup-ca, setup-ctrl-exec,
// and an /etc/ctrl-exec/ctrl-exec.conf naming its cert, key and CA (plus
// auth_hook for HookAllow/HookDeny, then each extraConf line verbatim, e.g.
// "cert_days = 30").
func NewControl(t testing.TB, hook HookPolicy, extraConf ...string) *Root {
	t.Helper()
	ctl := NewRoot(t, "")
	giveKeys(t, ctl, 3) // the CA's, the ctrl-exec cert's, one rotation's
	ctl.MustRun("ctrl-exec", "setup-ca")
	ctl.MustRun("ctrl-exec", "setup-ctrl-exec")
	conf := []string{
		"cert = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.crt"),
		"key = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.key"),
		"ca = " + ctl.Path("/etc/ctrl-exec/ca.crt"),
	}
	switch hook {
	case HookAllow, HookDeny:
		exit := map[HookPolicy]int{HookAllow: 0, HookDeny: 1}[hook]
		hookPath := ctl.WriteFile("/etc/ctrl-exec/auth-hook", fmt.Sprintf("#!/bin/sh\nexit %d\n", exit), 0o755)
		conf = append(conf, "auth_hook = "+hookPath)
	}
	conf = append(conf, extraConf...)
	ctl.WriteFile("/etc/ctrl-exec/ctrl-exec.conf", strings.Join(conf, "\n")+"\n", 0o640)
	return ctl
}

// AgentHost is an agent's root and the port its agent.conf serves on.
type AgentHost struct {
	*Root
	Port int
}

// NewAgent makes an unpaired agent named hostname: agent.conf (a free
// loopback port; cert, key and ca at the standard paths in the root) and an
// empty scripts.conf. Nothing is started.
func NewAgent(t testing.TB, hostname string) *AgentHost {
	t.Helper()
	a := &AgentHost{Root: NewRoot(t, hostname), Port: FreePort(t)}
	giveKeys(t, a.Root, 1) // for request-pairing
	a.WriteFile("/etc/ctrl-exec-agent/agent.conf", fmt.Sprintf(
		"port = %d\ncert = %s\nkey = %s\nca = %s\n", a.Port,
		a.Path("/etc/ctrl-exec-agent/agent.crt"),
		a.Path("/etc/ctrl-exec-agent/agent.key"),
		a.Path("/etc/ctrl-exec-agent/ca.crt")), 0o640)
	a.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "", 0o640)
	return a
}

// withEnv returns a copy of r whose commands also get env.
func withEnv(r *Root, env ...string) *Root {
	c := *r
	c.ExtraEnv = append(append([]string(nil), r.ExtraEnv...), env...)
	return &c
}

// StartPairingMode runs `ctrl-exec pairing-mode` on a free port (stopped at
// test cleanup) and waits until it listens. It polls the queue every 50 ms
// (test knob) so approvals reach agents at once; env adds more, e.g.
// "CTRL_EXEC_TEST_PAIRING_WINDOW=2s".
func StartPairingMode(t testing.TB, ctl *Root, env ...string) (*Proc, int) {
	t.Helper()
	port := FreePort(t)
	env = append([]string{"CTRL_EXEC_TEST_PAIRING_POLL=50ms"}, env...)
	p := withEnv(ctl, env...).Start("ctrl-exec", "pairing-mode", "--port", itoa(port))
	p.WaitOutput(t, "Pairing mode active on port", 30*time.Second)
	WaitListening(t, port, 10*time.Second)
	return p, port
}

// PairAgent pairs every agent with ctl for real: one pairing-mode, each agent's
// `request-pairing --background`, `ctrl-exec approve` of each request, then a
// wait for every agent's pair-complete log line.
func PairAgent(t testing.TB, ctl *Root, agents ...*Root) {
	t.Helper()
	pm, port := StartPairingMode(t, ctl)
	defer pm.Stop()
	reqids := make([]string, len(agents))
	for i, a := range agents {
		res := a.MustRun("ctrl-exec-agent", "request-pairing",
			"--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "120")
		reqids[i] = strings.TrimSpace(res.Stdout)
	}
	for _, id := range reqids {
		ctl.MustRun("ctrl-exec", "approve", id)
	}
	for _, a := range agents {
		a.WaitLog(60*time.Second, "ACTION=pair-complete")
		if _, err := os.Stat(a.Path("/etc/ctrl-exec-agent/agent.crt")); err != nil {
			t.Fatalf("%s paired but has no agent.crt: %v", a.Hostname, err)
		}
	}
}
