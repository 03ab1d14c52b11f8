package e2e

// ECDSA fleets end to end (issue 11): setup-ca --key-type ecdsa-p256, agents
// pairing with either key type, run, renewal over ping, rotation; and an
// RSA control host with an ECDSA agent.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// keyKind is "ecdsa" or "rsa" for the private key in a root's file.
func keyKind(t *testing.T, r *Root, path string) string {
	t.Helper()
	key, err := pki.LoadKey(r.Path(path))
	if err != nil {
		t.Fatal(err)
	}
	return kindOf(key.Public())
}

func kindOf(pub crypto.PublicKey) string {
	switch pub.(type) {
	case *ecdsa.PublicKey:
		return "ecdsa"
	case *rsa.PublicKey:
		return "rsa"
	}
	return fmt.Sprintf("%T", pub)
}

// pairWithKeyTypes pairs each agent, passing its --key-type ("" = default).
func pairWithKeyTypes(t *testing.T, ctl *Root, agents []*AgentHost, types []string) {
	t.Helper()
	pm, port := StartPairingMode(t, ctl)
	defer pm.Stop()
	for i, a := range agents {
		args := []string{"request-pairing", "--dispatcher", "127.0.0.1", "--port", itoa(port), "--background", "--timeout", "120"}
		if types[i] != "" {
			args = append(args, "--key-type", types[i])
		}
		reqid := strings.TrimSpace(a.MustRun("ctrl-exec-agent", args...).Stdout)
		ctl.MustRun("ctrl-exec", "approve", reqid)
	}
	for _, a := range agents {
		a.WaitLog(60*time.Second, "ACTION=pair-complete")
	}
}

func TestECDSAFleet(t *testing.T) {
	t.Parallel()
	ctl := NewRoot(t, "")
	ctl.MustRun("ctrl-exec", "setup-ca", "--key-type", "ecdsa-p256")
	ctl.MustRun("ctrl-exec", "setup-ctrl-exec")
	setConf(ctl, "cert_days = 3") // short-lived agent certs: due for renewal at once
	for path, want := range map[string]string{"/etc/ctrl-exec/ca.key": "ecdsa", "/etc/ctrl-exec/ctrl-exec.key": "ecdsa"} {
		if got := keyKind(t, ctl, path); got != want {
			t.Errorf("%s is %s, want %s", path, got, want)
		}
	}

	agents := newLifecycleAgents(t, "ec-01", "rsa-01")
	ec, rs := agents[0], agents[1]
	pairWithKeyTypes(t, ctl, agents, []string{"ecdsa-p256", ""})
	setConf(ctl)
	for a, want := range map[*AgentHost]string{ec: "ecdsa", rs: "rsa"} {
		if got := keyKind(t, a.Root, "/etc/ctrl-exec-agent/agent.key"); got != want {
			t.Errorf("%s agent.key is %s, want %s", a.Hostname, got, want)
		}
		serve(t, a)
	}

	if res := ctl.MustRun("ctrl-exec", "run", ec.target(), rs.target(), "hello"); strings.Count(res.Stdout, "[OK  exit:0") != 2 {
		t.Errorf("run:\n%s", res.Stdout)
	}

	// Renewal over ping keeps each agent's key (and so its type).
	ecKey := ec.ReadFile("/etc/ctrl-exec-agent/agent.key")
	oldSerial, _ := certFile(t, ec.Path("/etc/ctrl-exec-agent/agent.crt"))
	ctl.MustRun("ctrl-exec", "ping", ec.target(), rs.target())
	ctl.WaitLog(30*time.Second, "ACTION=renew-complete", "TARGET="+ec.target())
	ctl.WaitLog(30*time.Second, "ACTION=renew-complete", "TARGET="+rs.target())
	newSerial, _ := certFile(t, ec.Path("/etc/ctrl-exec-agent/agent.crt"))
	cert, err := pki.LoadCert(ec.Path("/etc/ctrl-exec-agent/agent.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if newSerial == oldSerial || ec.ReadFile("/etc/ctrl-exec-agent/agent.key") != ecKey || kindOf(cert.PublicKey) != "ecdsa" {
		t.Errorf("ec-01 after renewal: serial %s (was %s), key kept %v, cert key %s",
			newSerial, oldSerial, ec.ReadFile("/etc/ctrl-exec-agent/agent.key") == ecKey, kindOf(cert.PublicKey))
	}

	// Rotation: the new ctrl-exec key is ECDSA and both agents take its serial.
	out := ctl.MustRun("ctrl-exec", "rotate-cert").Stdout
	if !strings.Contains(out, "Updated: 2") {
		t.Errorf("rotate-cert:\n%s", out)
	}
	if got := keyKind(t, ctl, "/etc/ctrl-exec/ctrl-exec.key"); got != "ecdsa" {
		t.Errorf("rotated ctrl-exec key is %s", got)
	}
	ctl.MustRun("ctrl-exec", "run", ec.target(), rs.target(), "hello")
}

// An RSA control host (the default) pairs and runs an ECDSA agent.
func TestECDSAAgentUnderRSACA(t *testing.T) {
	t.Parallel()
	ctl := NewControl(t, NoHook)
	a := newLifecycleAgents(t, "ec-02")[0]
	pairWithKeyTypes(t, ctl, []*AgentHost{a}, []string{"ecdsa-p256"})
	if got := keyKind(t, a.Root, "/etc/ctrl-exec-agent/agent.key"); got != "ecdsa" {
		t.Errorf("agent.key is %s", got)
	}
	if got := keyKind(t, ctl, "/etc/ctrl-exec/ca.key"); got != "rsa" {
		t.Errorf("default CA key is %s", got)
	}
	serve(t, a)
	if res := ctl.MustRun("ctrl-exec", "run", a.target(), "hello"); !strings.Contains(res.Stdout, "[OK  exit:0") {
		t.Errorf("run:\n%s", res.Stdout)
	}
	if res := ctl.Run("ctrl-exec", "setup-ca", "--key-type", "dsa"); res.Code != 255 || !strings.Contains(res.Stderr, "rsa-4096 or ecdsa-p256") {
		t.Errorf("setup-ca --key-type dsa: exit %d, stderr %q", res.Code, res.Stderr)
	}
}
