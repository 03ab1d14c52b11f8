package packaging

// The service files and scripts checked by the tools that will run them:
// systemd-analyze verify on the units as installed, each shell's -n on the
// init scripts, package scripts and completions.

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The units and drop-ins as install.sh --renewal lays them out, verified
// against that root (its binary, the systemd targets and /bin/kill of this
// machine): any message, even a warning about an unknown key, fails.
func TestSystemdVerify(t *testing.T) {
	need(t, "systemd-analyze")
	root := t.TempDir()
	run(t, "", "sh", filepath.Join(top, "packaging/install.sh"), "--dispatcher", "--api", "--agent", "--renewal",
		"--init", "systemd", "--prefix", root, "--bin", artefact(t, "ctrl-exec-linux-amd64"))
	for _, d := range []string{"usr/lib/systemd", "usr/bin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "", "cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/"))
	run(t, "", "cp", "/usr/bin/kill", filepath.Join(root, "usr/bin/kill"))
	if err := os.Symlink("usr/bin", filepath.Join(root, "bin")); err != nil {
		t.Fatal(err)
	}
	units := []string{"/etc/systemd/system/ctrl-exec-agent.service", "/etc/systemd/system/ctrl-exec-api.service"}
	for _, u := range units {
		if _, err := os.Stat(filepath.Join(root, u+".d/10-renewal.conf")); err != nil {
			t.Fatalf("no drop-in to verify with %s: %v", u, err)
		}
	}
	// man pages are installed under /usr/local/share/man, where man(1) on
	// this machine does not look inside the root.
	out, err := exec.Command("systemd-analyze", append([]string{"verify", "--man=no", "--root=" + root}, units...)...).CombinedOutput()
	if err != nil || len(out) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// Every shell script parses in the shells that run it: dash (Debian's sh)
// and busybox ash (Alpine, OpenWrt) for the installer, init, package and
// entrypoint scripts; bash, zsh and fish for their completions.
func TestShellSyntax(t *testing.T) {
	need(t, "dash", "busybox", "bash", "zsh", "fish")
	posix := []string{"packaging/install.sh", "packaging/dist.sh", "packaging/version.sh",
		"packaging/openrc/ctrl-exec-agent", "packaging/openrc/ctrl-exec-api",
		"packaging/openwrt/ctrl-exec-agent.init", "packaging/openwrt/99-ctrl-exec-agent-firewall",
		"packaging/docker/ctrl-exec-entrypoint.sh", "packaging/docker/agent-entrypoint.sh",
		"packaging/examples/auth-hook.example", "test/packaging/setup.sh"}
	nfpm, _ := filepath.Glob(filepath.Join(top, "packaging/nfpm/*.sh"))
	for _, f := range nfpm {
		rel, _ := filepath.Rel(top, f)
		posix = append(posix, rel)
	}
	check := func(file string, shell ...string) {
		t.Helper()
		args := append(shell[1:], file)
		if out, err := exec.Command(shell[0], args...).CombinedOutput(); err != nil || len(out) != 0 {
			t.Errorf("%s %s: %v\n%s", strings.Join(shell, " "), file, err, out)
		}
	}
	for _, f := range posix {
		check(filepath.Join(top, f), "dash", "-n")
		check(filepath.Join(top, f), "busybox", "ash", "-n")
	}
	gen := filepath.Join(top, "dist/gen")
	for _, role := range []string{"ctrl-exec", "ctrl-exec-agent", "ctrl-exec-api"} {
		check(filepath.Join(gen, role+".bash"), "bash", "-n")
		check(filepath.Join(gen, role+".zsh"), "zsh", "-n")
		check(filepath.Join(gen, role+".fish"), "fish", "--no-execute")
	}
}
