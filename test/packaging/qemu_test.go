package packaging

// The arm64 and mipsle release binaries under qemu-user: --version of both
// builds, and the noetcd build (what agents and appliances run) through
// self-check and a full pair, run and ping against the amd64 control host.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// host is one installation in a temp root, run through one binary (under
// qemu when emu is set).
type host struct {
	t    *testing.T
	root string
	bin  string // dir with the role symlinks
	emu  string
	name string
}

func newHost(t *testing.T, binary, emu, name string) *host {
	h := &host{t: t, root: t.TempDir(), bin: t.TempDir(), emu: emu, name: name}
	for _, d := range []string{"etc/ctrl-exec", "var/lib/ctrl-exec/pairing", "var/lib/ctrl-exec/agents", "etc/ctrl-exec-agent", "opt/ctrl-exec-scripts"} {
		os.MkdirAll(filepath.Join(h.root, d), 0o750)
	}
	for _, n := range []string{"ctrl-exec", "ctrl-exec-agent"} {
		if err := os.Symlink(binary, filepath.Join(h.bin, n)); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *host) cmd(ctx context.Context, role string, args ...string) *exec.Cmd {
	prog := filepath.Join(h.bin, role)
	var c *exec.Cmd
	if h.emu != "" {
		c = exec.CommandContext(ctx, h.emu, append([]string{prog}, args...)...)
	} else {
		c = exec.CommandContext(ctx, prog, args...)
	}
	c.Env = []string{"PATH=/usr/bin:/bin", "CTRL_EXEC_ROOT=" + h.root, "CTRL_EXEC_LOG=stderr", "CTRL_EXEC_HOSTNAME=" + h.name}
	return c
}

func (h *host) run(role string, args ...string) string {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := h.cmd(ctx, role, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		h.t.Fatalf("%s %q: %v\n%s%s", role, args, err, out.String(), errb.String())
	}
	return out.String()
}

func (h *host) write(path, content string) {
	if err := os.WriteFile(filepath.Join(h.root, path), []byte(content), 0o640); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) path(p string) string { return filepath.Join(h.root, p) }

func TestQemuCrossBuilds(t *testing.T) {
	need(t, "qemu-aarch64-static", "qemu-mipsel-static")
	for _, tc := range []struct{ arch, emu string }{{"arm64", "qemu-aarch64-static"}, {"mipsle", "qemu-mipsel-static"}} {
		t.Run(tc.arch, func(t *testing.T) {
			t.Parallel()
			emu, _ := exec.LookPath(tc.emu)
			ctl := newHost(t, artefact(t, standard+"amd64"), "", "")
			agent := newHost(t, artefact(t, noetcd+tc.arch), emu, "agent-"+tc.arch)

			if v := agent.run("ctrl-exec-agent", "--version"); !strings.HasSuffix(strings.TrimSpace(v), "linux/"+tc.arch+", noetcd)") {
				t.Errorf("--version of the noetcd build under qemu: %q", v)
			}
			full := newHost(t, artefact(t, standard+tc.arch), emu, "")
			if v := full.run("ctrl-exec", "--version"); !strings.HasSuffix(strings.TrimSpace(v), "linux/"+tc.arch+")") {
				t.Errorf("--version of the standard build under qemu: %q", v)
			}
			port := freePort(t)
			agent.write("etc/ctrl-exec-agent/agent.conf", fmt.Sprintf("port = %d\ncert = %s\nkey = %s\nca = %s\n", port,
				agent.path("etc/ctrl-exec-agent/agent.crt"), agent.path("etc/ctrl-exec-agent/agent.key"), agent.path("etc/ctrl-exec-agent/ca.crt")))
			agent.write("etc/ctrl-exec-agent/scripts.conf", "echo = /bin/echo\n")
			if out := agent.run("ctrl-exec-agent", "self-check"); !strings.Contains(out, "Config OK") {
				t.Errorf("self-check under qemu:\n%s", out)
			}

			ctl.run("ctrl-exec", "setup-ca")
			ctl.run("ctrl-exec", "setup-ctrl-exec")
			ctl.write("etc/ctrl-exec/ctrl-exec.conf", fmt.Sprintf("cert = %s\nkey = %s\nca = %s\n",
				ctl.path("etc/ctrl-exec/ctrl-exec.crt"), ctl.path("etc/ctrl-exec/ctrl-exec.key"), ctl.path("etc/ctrl-exec/ca.crt")))
			pairPort := freePort(t)
			pm := ctl.cmd(context.Background(), "ctrl-exec", "pairing-mode", "--port", strconv.Itoa(pairPort))
			if err := pm.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { pm.Process.Kill(); pm.Wait() }()
			eventually(t, 60*time.Second, "pairing-mode", func() bool { return listening(pairPort) })
			// In the foreground: --background re-executes the binary, which
			// needs binfmt_misc (not registered without systemd).
			var pairOut bytes.Buffer
			pair := agent.cmd(context.Background(), "ctrl-exec-agent", "request-pairing", "--dispatcher", "127.0.0.1",
				"--port", strconv.Itoa(pairPort))
			pair.Stdout, pair.Stderr = &pairOut, &pairOut
			if err := pair.Start(); err != nil {
				t.Fatal(err)
			}
			var reqid string
			eventually(t, 5*time.Minute, "the pairing request (key generation under qemu)", func() bool {
				var reqs []map[string]any
				out, _ := ctl.cmd(context.Background(), "ctrl-exec", "list-requests", "--json").Output()
				if json.Unmarshal(out, &reqs) == nil && len(reqs) == 1 {
					reqid, _ = reqs[0]["id"].(string)
				}
				return reqid != ""
			})
			ctl.run("ctrl-exec", "approve", reqid)
			if err := pair.Wait(); err != nil {
				t.Fatalf("request-pairing under qemu: %v\n%s", err, pairOut.String())
			}

			serve := agent.cmd(context.Background(), "ctrl-exec-agent", "serve")
			if err := serve.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { serve.Process.Kill(); serve.Wait() }()
			eventually(t, 2*time.Minute, "the agent under qemu", func() bool { return listening(port) })
			target := "127.0.0.1:" + strconv.Itoa(port)
			if out := ctl.run("ctrl-exec", "ping", target); !strings.Contains(out, agent.name) || !strings.Contains(out, " ok ") {
				t.Errorf("ping:\n%s", out)
			}
			if out := ctl.run("ctrl-exec", "run", target, "echo", "--", "from", tc.arch); !strings.Contains(out, "from "+tc.arch) {
				t.Errorf("run:\n%s", out)
			}
			// Idle resident memory of the noetcd agent (qemu's own included), after the traffic.
			status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", serve.Process.Pid))
			for _, l := range strings.Split(string(status), "\n") {
				if strings.HasPrefix(l, "VmRSS:") {
					t.Logf("%s agent idle under %s: %s", tc.arch, tc.emu, strings.Join(strings.Fields(l)[1:], " "))
				}
			}
		})
	}
}
