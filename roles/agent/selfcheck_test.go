package agent

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// checkRoot is an agent installation under a temp root for the self-checks.
type checkRoot struct {
	t      *testing.T
	e      *env
	out    *bytes.Buffer
	errOut *bytes.Buffer
}

func newCheckRoot(t *testing.T) *checkRoot {
	t.Helper()
	root := t.TempDir()
	r := &checkRoot{t: t, out: &bytes.Buffer{}, errOut: &bytes.Buffer{}}
	r.e = &env{paths: paths.Paths{Root: root}, log: zerolog.Nop(), now: time.Now, stdout: r.out, stderr: r.errOut}
	if err := os.MkdirAll(r.e.paths.AgentDir(), 0o750); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *checkRoot) write(path, content string, mode os.FileMode) string {
	r.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		r.t.Fatal(err)
	}
	return path
}

// pair copies the test agent identity to the fixed pairing paths.
func (r *checkRoot) pair(c *certs) {
	r.t.Helper()
	for src, dst := range map[string]string{c.agentCert: r.e.paths.AgentCert(), c.agentKey: r.e.paths.AgentKey(), c.ca: r.e.paths.AgentCA()} {
		r.write(dst, readFile(r.t, src), 0o640)
	}
}

func (r *checkRoot) conf(port int, extra string) string {
	p := r.e.paths
	return r.write(p.AgentConf(), fmt.Sprintf("port = %d\ncert = %s\nkey = %s\nca = %s\n%s", port, p.AgentCert(), p.AgentKey(), p.AgentCA(), extra), 0o640)
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *cliapp.ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return -1
}

func TestSelfCheck(t *testing.T) {
	c := testCerts(t)
	r := newCheckRoot(t)
	p := r.e.paths
	r.pair(c)
	runnable := r.write(filepath.Join(p.ScriptsDir(), "runnable"), "#!/bin/sh\n", 0o755)
	stuck := r.write(filepath.Join(p.ScriptsDir(), "stuck"), "#!/bin/sh\n", 0o644)
	r.conf(7443, "script_dirs = "+p.ScriptsDir()+"\n")
	r.write(p.ScriptsConf(), "stuck = "+stuck+"\nrunnable = "+runnable+"\nstray = /usr/bin/true\n", 0o640)
	r.write(p.RevokedSerials(), "ab\n# c\nac\n", 0o644)
	r.write(p.AgentSerial(), "01000005\n", 0o644)

	err := selfCheck(r.e, p.AgentConf(), p.ScriptsConf())
	expiry := pki.FormatOpenSSLDate(c.agentNotAfter)
	want := strings.Join([]string{
		"Checking config...",
		"  Config OK (port 7443)",
		"  Allowlist OK (2 scripts)",
		"  WARNING: Allowlist: skipping 'stray' - path not in approved script_dirs: /usr/bin/true",
		"  Certs OK (expires " + expiry + ")",
		"  Script 'runnable': " + runnable + " [ok]",
		"  Script 'stuck': " + stuck + " [NOT EXECUTABLE]",
		fmt.Sprintf("  Serving cert: %s (expires %s, %d days left)", p.AgentCert(), expiry, int(time.Until(c.agentNotAfter).Hours()/24)),
		"  script_dirs: " + p.ScriptsDir(),
		"  Revoked serials: 2 in " + p.RevokedSerials(),
		"  Stored ctrl-exec serial: 01000005",
		"Self-check complete.",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, r.out.String()); diff != "" {
		t.Errorf("stdout (-want +got):\n%s", diff)
	}
	if exitCode(err) != 0 {
		t.Errorf("exit %d", exitCode(err))
	}
	if got := r.errOut.String(); got != "Allowlist: skipping 'stray' - path not in approved script_dirs: /usr/bin/true\n" {
		t.Errorf("stderr %q", got)
	}
}

func TestSelfCheckFailures(t *testing.T) {
	r := newCheckRoot(t)
	p := r.e.paths

	err := selfCheck(r.e, p.AgentConf(), p.ScriptsConf())
	want := "Checking config...\nConfig error: Cannot open config '" + p.AgentConf() + "': No such file or directory\n"
	if diff := cmp.Diff(want, r.out.String()); diff != "" || exitCode(err) != 1 {
		t.Errorf("no config: exit %d (-want +got):\n%s", exitCode(err), diff)
	}

	r.out.Reset()
	r.conf(7443, "")
	err = selfCheck(r.e, p.AgentConf(), p.ScriptsConf())
	want = "Checking config...\n  Config OK (port 7443)\nAllowlist error: Cannot open allowlist '" + p.ScriptsConf() + "': No such file or directory\n"
	if diff := cmp.Diff(want, r.out.String()); diff != "" || exitCode(err) != 1 {
		t.Errorf("no allowlist: exit %d (-want +got):\n%s", exitCode(err), diff)
	}

	// Not paired is reported, not fatal.
	r.out.Reset()
	r.write(p.ScriptsConf(), "", 0o640)
	err = selfCheck(r.e, p.AgentConf(), p.ScriptsConf())
	for _, line := range []string{
		"  Allowlist OK (0 scripts)\n",
		"  Certs: NOT paired - missing file: " + p.AgentCert() + "\n",
		"  script_dirs: not set (any absolute path may be allowlisted)\n",
		"  Revoked serials: none (" + p.RevokedSerials() + " absent)\n",
		"  Stored ctrl-exec serial: none in " + p.AgentSerial(),
		"Self-check complete.\n",
	} {
		if !strings.Contains(r.out.String(), line) {
			t.Errorf("missing %q in:\n%s", line, r.out.String())
		}
	}
	if exitCode(err) != 0 {
		t.Errorf("not paired: exit %d", exitCode(err))
	}
}

func TestSelfPing(t *testing.T) {
	c := testCerts(t)
	a := startAgent(t, setup{})
	_, portText, _ := net.SplitHostPort(a.addr)
	var port int
	fmt.Sscan(portText, &port)

	r := newCheckRoot(t)
	p := r.e.paths
	r.pair(c)
	r.conf(port, "")
	expiry := pki.FormatOpenSSLDate(c.agentNotAfter)
	head := "Checking config...\n" +
		fmt.Sprintf("  Config OK (port %d)\n", port) +
		"  Paired: yes (cert expires " + expiry + ")\n" +
		fmt.Sprintf("Connecting to 127.0.0.1:%d...\n", port)

	err := selfPing(r.e, p.AgentConf())
	want := head + fmt.Sprintf("  Port %d: listening\n", port) + "  mTLS handshake: OK\n" +
		"  Ping response: 403 serial mismatch (expected - agent is running and enforcing policy)\n" +
		"Self-ping complete.\n"
	if diff := cmp.Diff(want, r.out.String()); diff != "" || exitCode(err) != 0 {
		t.Errorf("serial mismatch: exit %d (-want +got):\n%s", exitCode(err), diff)
	}

	// If the agent trusted its own serial, the ping would succeed.
	a.write("ctrl-exec-serial", pki.SerialHex(c.agent.Leaf)+"\n", 0o644)
	r.out.Reset()
	err = selfPing(r.e, p.AgentConf())
	if !strings.Contains(r.out.String(), "  Ping response: OK\nSelf-ping complete.\n") || exitCode(err) != 0 {
		t.Errorf("ok: exit %d\n%s", exitCode(err), r.out.String())
	}
	a.waitLog("ACTION=ping PEER=127.0.0.1 REQID=")

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	r.conf(closed, "")
	r.out.Reset()
	err = selfPing(r.e, p.AgentConf())
	if !strings.HasSuffix(r.out.String(), fmt.Sprintf("Connecting to 127.0.0.1:%d...\n  Port %d: not listening - is the agent running?\n", closed, closed)) || exitCode(err) != 1 {
		t.Errorf("not listening: exit %d\n%s", exitCode(err), r.out.String())
	}

	// Not paired.
	if err := os.Remove(p.AgentKey()); err != nil {
		t.Fatal(err)
	}
	r.out.Reset()
	err = selfPing(r.e, p.AgentConf())
	want = "Checking config...\n" + fmt.Sprintf("  Config OK (port %d)\n", closed) +
		"  Paired: no - missing file: " + p.AgentKey() + "\n  Cannot self-ping: agent not paired.\n"
	if diff := cmp.Diff(want, r.out.String()); diff != "" || exitCode(err) != 1 {
		t.Errorf("not paired: exit %d (-want +got):\n%s", exitCode(err), diff)
	}
}

func TestSelfPingHandshakeFailure(t *testing.T) {
	a := startAgent(t, setup{})
	_, portText, _ := net.SplitHostPort(a.addr)
	var port int
	fmt.Sscan(portText, &port)

	// An agent whose CA file names another CA cannot verify the server.
	r := newCheckRoot(t)
	r.pair(a.certs)
	r.write(r.e.paths.AgentCA(), readFile(t, filepath.Join(a.certs.dir, "other", "ca.crt")), 0o644)
	r.conf(port, "")
	err := selfPing(r.e, r.e.paths.AgentConf())
	if !strings.Contains(r.out.String(), "  mTLS handshake failed: ") || exitCode(err) != 1 {
		t.Errorf("exit %d\n%s", exitCode(err), r.out.String())
	}
}
