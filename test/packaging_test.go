package e2e

// Packaging: packaging/install.sh staged into a temp dir (no root needed), the
// example configs against the real loaders and §6, the service files against
// the upstream unit facts, and the manual pages against man(1) and --help.

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// repoDir is the source tree the tests run in (test/ is one level down).
func repoDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// installSh runs packaging/install.sh with the test binary and returns its
// combined output and exit code. env adds variables (e.g. DESTDIR=...).
func installSh(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	script := filepath.Join(repoDir(t), "packaging", "install.sh")
	bin := filepath.Join(binDir, "ctrl-exec-multicall")
	cmd := exec.Command("sh", append([]string{script, "--bin", bin}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + cmd.Dir, raceEnv}, env...)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("install.sh %q: %v", args, err)
	}
	return string(out), 0
}

// mustInstall stages an installation under stage and fails unless it exits 0.
func mustInstall(t *testing.T, stage string, args ...string) string {
	t.Helper()
	out, code := installSh(t, nil, append(args, "--prefix", stage)...)
	if code != 0 {
		t.Fatalf("install.sh %q: exit %d\n%s", args, code, out)
	}
	return out
}

var binNames = []string{"ctrl-exec-dispatcher", "ced", "ctrl-exec-agent", "cea", "ctrl-exec-api", "update-ctrl-exec-serial"}

var manPages = []string{
	"man1/ctrl-exec.1", "man5/ctrl-exec.conf.5", "man5/ctrl-exec-agent.conf.5",
	"man8/ctrl-exec-agent.8", "man8/ctrl-exec-api.8", "man8/update-ctrl-exec-serial.8",
}

// modeOf returns the permission bits of stage+path, or fails.
func modeOf(t *testing.T, stage, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(filepath.Join(stage, path))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return fi.Mode().Perm()
}

func sameContent(t *testing.T, installed, source string) {
	t.Helper()
	a, err := os.ReadFile(installed)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(source)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("%s differs from %s", installed, source)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestPackagingStagedInstall(t *testing.T) {
	t.Parallel()
	stage := t.TempDir()
	src := repoDir(t)
	out := mustInstall(t, stage, "--dispatcher", "--api", "--agent")
	for _, want := range []string{"Staging into " + stage, "skipping account creation", "DENIES every run and ping"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// One binary, every other name a symlink to it.
	sameContent(t, filepath.Join(stage, "usr/local/bin/ctrl-exec"), filepath.Join(binDir, "ctrl-exec-multicall"))
	if m := modeOf(t, stage, "usr/local/bin/ctrl-exec"); m != 0o755 {
		t.Errorf("ctrl-exec mode %o, want 755", m)
	}
	for _, name := range binNames {
		target, err := os.Readlink(filepath.Join(stage, "usr/local/bin", name))
		if err != nil || target != "ctrl-exec" {
			t.Errorf("usr/local/bin/%s: link %q, %v; want a symlink to ctrl-exec", name, target, err)
		}
	}
	helper := filepath.Join(stage, "opt/ctrl-exec-scripts/update-ctrl-exec-serial")
	wantBin, _ := filepath.EvalSymlinks(filepath.Join(stage, "usr/local/bin/ctrl-exec"))
	if resolved, err := filepath.EvalSymlinks(helper); err != nil || resolved != wantBin {
		t.Errorf("update-ctrl-exec-serial resolves to %q, %v; want %q", resolved, err, wantBin)
	}

	// Directories and files with the modes of SPEC §7 and §19.1.
	modes := map[string]os.FileMode{
		"etc/ctrl-exec":                              0o750,
		"etc/ctrl-exec/ctrl-exec.conf":               0o640,
		"etc/ctrl-exec/auth-hook":                    0o755,
		"var/lib/ctrl-exec":                          0o755,
		"var/lib/ctrl-exec/pairing":                  0o770,
		"var/lib/ctrl-exec/agents":                   0o770,
		"var/lib/ctrl-exec/locks":                    0o770,
		"var/lib/ctrl-exec/runs":                     0o770,
		"etc/ctrl-exec-agent":                        0o750,
		"etc/ctrl-exec-agent/agent.conf":             0o640,
		"etc/ctrl-exec-agent/scripts.conf":           0o640,
		"opt/ctrl-exec-scripts":                      0o750,
		"etc/systemd/system/ctrl-exec-agent.service": 0o644,
		"etc/systemd/system/ctrl-exec-api.service":   0o644,
	}
	got := map[string]os.FileMode{}
	for path := range modes {
		got[path] = modeOf(t, stage, path)
	}
	if diff := cmp.Diff(modes, got); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}

	for installed, source := range map[string]string{
		"etc/ctrl-exec/ctrl-exec.conf":                    "packaging/examples/ctrl-exec.conf.example",
		"etc/ctrl-exec/auth-hook":                         "packaging/examples/auth-hook.example",
		"etc/ctrl-exec-agent/agent.conf":                  "packaging/examples/agent.conf.example",
		"etc/ctrl-exec-agent/scripts.conf":                "packaging/examples/scripts.conf.example",
		"etc/systemd/system/ctrl-exec-agent.service":      "packaging/systemd/ctrl-exec-agent.service",
		"etc/systemd/system/ctrl-exec-api.service":        "packaging/systemd/ctrl-exec-api.service",
		"usr/local/share/man/man1/ctrl-exec.1":            "man/ctrl-exec.1",
		"usr/local/share/man/man8/ctrl-exec-agent.8":      "man/ctrl-exec-agent.8",
		"usr/local/share/man/man5/ctrl-exec.conf.5":       "man/ctrl-exec.conf.5",
		"usr/local/share/man/man8/ctrl-exec-api.8":        "man/ctrl-exec-api.8",
		"usr/local/share/man/man5/ctrl-exec-agent.conf.5": "man/ctrl-exec-agent.conf.5",
	} {
		sameContent(t, filepath.Join(stage, installed), filepath.Join(src, source))
	}
	if exists(filepath.Join(stage, "etc/systemd/system/ctrl-exec-agent.service.d")) {
		t.Error("renewal drop-in installed without --renewal")
	}
	// Shell completion from the binary, one entry per name where the shell looks names up.
	r0 := NewRoot(t, "")
	for _, c := range []struct{ path, role, shell string }{
		{"usr/local/share/bash-completion/completions/ctrl-exec", "ctrl-exec", "bash"},
		{"usr/local/share/bash-completion/completions/cea", "ctrl-exec-agent", "bash"},
		{"usr/local/share/bash-completion/completions/ctrl-exec-api", "ctrl-exec-api", "bash"},
		{"usr/local/share/zsh/site-functions/_ctrl-exec", "ctrl-exec", "zsh"},
		{"usr/local/share/fish/vendor_completions.d/ced.fish", "ctrl-exec", "fish"},
	} {
		got, err := os.ReadFile(filepath.Join(stage, c.path))
		if want := r0.MustRun(c.role, "completion", c.shell).Stdout; err != nil || string(got) != want {
			t.Errorf("%s: %v; want the output of %s completion %s", c.path, err, c.role, c.shell)
		}
	}

	// The staged tree runs, and the shipped agent.conf and scripts.conf load.
	r := NewRoot(t, "")
	r.Dir = stage
	cmd := r.Command(t.Context(), filepath.Join(stage, "usr/local/bin/cea"),
		"--config", filepath.Join(stage, "etc/ctrl-exec-agent/agent.conf"),
		"--allowlist", filepath.Join(stage, "etc/ctrl-exec-agent/scripts.conf"), "self-check")
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("staged self-check: %v\n%s", err, res)
	}
	for _, want := range []string{"Config OK (port 7443)", "Allowlist OK (1 scripts)"} {
		if !strings.Contains(string(res), want) {
			t.Errorf("staged self-check lacks %q:\n%s", want, res)
		}
	}
}

func TestPackagingReinstallKeepsConfig(t *testing.T) {
	t.Parallel()
	stage := t.TempDir()
	mustInstall(t, stage, "--dispatcher", "--agent")

	edited := map[string]string{
		"etc/ctrl-exec/ctrl-exec.conf":     "cert = /x.crt\nkey = /x.key\nca = /ca.crt\n",
		"etc/ctrl-exec/auth-hook":          "#!/bin/sh\nexit 0\n",
		"etc/ctrl-exec-agent/agent.conf":   "port = 7450\ncert = /a\nkey = /b\nca = /c\n",
		"etc/ctrl-exec-agent/scripts.conf": "hello = /opt/ctrl-exec-scripts/hello.sh\n",
	}
	for path, content := range edited {
		if err := os.WriteFile(filepath.Join(stage, path), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// An older binary, and the Perl helper as a regular file in the scripts dir.
	bin := filepath.Join(stage, "usr/local/bin/ctrl-exec")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho old\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(stage, "opt/ctrl-exec-scripts/update-ctrl-exec-serial")
	if err := os.Remove(helper); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(helper, []byte("#!/bin/bash\n"), 0o750); err != nil {
		t.Fatal(err)
	}

	out := mustInstall(t, stage, "--dispatcher", "--agent")
	for path, content := range edited {
		if got, _ := os.ReadFile(filepath.Join(stage, path)); string(got) != content {
			t.Errorf("%s was rewritten: %q", path, got)
		}
		if !strings.Contains(out, "kept existing /"+path) {
			t.Errorf("output does not say /%s was kept:\n%s", path, out)
		}
	}
	sameContent(t, bin, filepath.Join(binDir, "ctrl-exec-multicall"))
	if target, err := os.Readlink(helper); err != nil || target != "../../usr/local/bin/ctrl-exec" {
		t.Errorf("helper not relinked: %q, %v", target, err)
	}
	if got, _ := os.ReadFile(helper + ".orig"); string(got) != "#!/bin/bash\n" {
		t.Errorf("old helper not kept as .orig: %q", got)
	}
}

func TestPackagingUninstallKeepsConfigAndState(t *testing.T) {
	t.Parallel()
	stage := t.TempDir()
	mustInstall(t, stage, "--dispatcher", "--api", "--agent", "--renewal")
	state := []string{
		"etc/ctrl-exec/ca.key", "etc/ctrl-exec/ctrl-exec.crt", "var/lib/ctrl-exec/agents/web-01.json",
		"var/lib/ctrl-exec/pairing/0123456789abcdef.json", "var/lib/ctrl-exec/locks/web-01--x.lock",
		"var/lib/ctrl-exec/runs/0123456789abcdef.json", "etc/ctrl-exec-agent/agent.crt",
		"etc/ctrl-exec-agent/ctrl-exec-serial", "opt/ctrl-exec-scripts/check-disk.sh",
		"usr/local/lib/ctrl-exec/Exec/openapi.json",
	}
	for _, path := range state {
		full := filepath.Join(stage, path)
		if err := os.MkdirAll(filepath.Dir(full), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte("keep\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// DESTDIR is the other way to name the staging root.
	out, code := installSh(t, []string{"DESTDIR=" + stage}, "--uninstall")
	if code != 0 {
		t.Fatalf("uninstall: exit %d\n%s", code, out)
	}
	gone := []string{"usr/local/bin/ctrl-exec", "opt/ctrl-exec-scripts/update-ctrl-exec-serial",
		"etc/systemd/system/ctrl-exec-agent.service", "etc/systemd/system/ctrl-exec-api.service",
		"etc/systemd/system/ctrl-exec-agent.service.d", "etc/systemd/system/ctrl-exec-api.service.d",
		"usr/local/share/man/man1/ced.1", "usr/local/share/bash-completion/completions/ced",
		"usr/local/share/zsh/site-functions/_ctrl-exec-agent", "usr/local/share/fish/vendor_completions.d/ctrl-exec-api.fish"}
	for _, name := range binNames {
		gone = append(gone, "usr/local/bin/"+name)
	}
	for _, page := range manPages {
		gone = append(gone, "usr/local/share/man/"+page)
	}
	for _, path := range gone {
		if exists(filepath.Join(stage, path)) {
			t.Errorf("%s survived --uninstall", path)
		}
	}
	kept := append([]string{"etc/ctrl-exec/ctrl-exec.conf", "etc/ctrl-exec/auth-hook",
		"etc/ctrl-exec-agent/agent.conf", "etc/ctrl-exec-agent/scripts.conf"}, state...)
	for _, path := range kept {
		if !exists(filepath.Join(stage, path)) {
			t.Errorf("--uninstall removed %s", path)
		}
	}
	for _, want := range []string{"/etc/ctrl-exec", "/var/lib/ctrl-exec", "/usr/local/lib/ctrl-exec"} {
		if !strings.Contains(out, "  "+want+"\n") {
			t.Errorf("uninstall output does not list kept %s:\n%s", want, out)
		}
	}
}

func TestPackagingRenewal(t *testing.T) {
	t.Parallel()
	stage := t.TempDir()
	mustInstall(t, stage, "--agent")
	if m := modeOf(t, stage, "etc/ctrl-exec-agent"); m != 0o750 {
		t.Fatalf("agent dir %o before --renewal", m)
	}
	mustInstall(t, stage, "--dispatcher", "--api", "--agent", "--renewal")
	if m := modeOf(t, stage, "etc/ctrl-exec-agent"); m != 0o770 {
		t.Errorf("agent dir %o with --renewal, want 770", m)
	}
	src := repoDir(t)
	for _, svc := range []string{"ctrl-exec-agent", "ctrl-exec-api"} {
		dropIn := "etc/systemd/system/" + svc + ".service.d/10-renewal.conf"
		sameContent(t, filepath.Join(stage, dropIn), filepath.Join(src, "packaging/systemd", svc+".service.d/10-renewal.conf"))
	}
	agentDropIn, _ := os.ReadFile(filepath.Join(src, "packaging/systemd/ctrl-exec-agent.service.d/10-renewal.conf"))
	// A path listed read-only and read-write stays read-only: the list must be reset first.
	if !regexp.MustCompile(`(?m)^ReadOnlyPaths=\n(?:.*\n)*ReadWritePaths=/etc/ctrl-exec-agent$`).Match(agentDropIn) {
		t.Errorf("agent drop-in does not reset ReadOnlyPaths before ReadWritePaths:\n%s", agentDropIn)
	}
}

func TestPackagingInitSystems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		init    string
		present []string
		absent  []string
	}{
		{"openrc", []string{"etc/init.d/ctrl-exec-agent", "etc/init.d/ctrl-exec-api"},
			[]string{"etc/systemd/system/ctrl-exec-agent.service", "etc/uci-defaults/99-ctrl-exec-agent-firewall"}},
		{"procd", []string{"etc/init.d/ctrl-exec-agent", "etc/uci-defaults/99-ctrl-exec-agent-firewall"},
			[]string{"etc/init.d/ctrl-exec-api", "etc/systemd/system/ctrl-exec-agent.service"}},
		{"none", nil,
			[]string{"etc/init.d/ctrl-exec-agent", "etc/init.d/ctrl-exec-api", "etc/systemd/system/ctrl-exec-agent.service"}},
	}
	for _, tt := range tests {
		t.Run(tt.init, func(t *testing.T) {
			t.Parallel()
			stage := t.TempDir()
			mustInstall(t, stage, "--dispatcher", "--api", "--agent", "--init", tt.init)
			for _, path := range tt.present {
				if m := modeOf(t, stage, path); m != 0o755 {
					t.Errorf("%s mode %o, want 755", path, m)
				}
			}
			for _, path := range tt.absent {
				if exists(filepath.Join(stage, path)) {
					t.Errorf("%s installed for --init %s", path, tt.init)
				}
			}
			out, code := installSh(t, nil, "--uninstall", "--prefix", stage)
			if code != 0 {
				t.Fatalf("uninstall: exit %d\n%s", code, out)
			}
			for _, path := range tt.present {
				if exists(filepath.Join(stage, path)) {
					t.Errorf("%s survived --uninstall", path)
				}
			}
		})
	}
}

func TestPackagingInstallRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no role", []string{}, "name a role"},
		{"unknown argument", []string{"--agent", "--frobnicate"}, "unknown argument '--frobnicate'"},
		{"uninstall with a role", []string{"--uninstall", "--agent"}, "without role flags"},
		{"api without control host", []string{"--api"}, "needs the control host role"},
		{"bad init", []string{"--agent", "--init", "upstart"}, "--init must be"},
		{"missing binary", []string{"--agent", "--bin", "/nonexistent/ctrl-exec"}, "run 'make build' first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stage := t.TempDir()
			out, code := installSh(t, nil, append(tt.args, "--prefix", stage)...)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, output lacks %q:\n%s", code, tt.want, out)
			}
			if entries, _ := os.ReadDir(stage); len(entries) != 0 {
				t.Errorf("a refused install left files behind: %v", entries)
			}
		})
	}

	// Without --prefix or DESTDIR only root may install (as root, try as nobody).
	cmd := exec.Command("sh", filepath.Join(repoDir(t), "packaging", "install.sh"), "--agent")
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "Permission denied") {
		t.Logf("skipping the unprivileged check: nobody cannot read install.sh here: %s", out)
	} else if err == nil || !strings.Contains(string(out), "run as root") {
		t.Errorf("unprivileged install without --prefix: %v:\n%s", err, out)
	}
	if out, code := installSh(t, nil, "--help"); code != 0 || !strings.Contains(out, "--prefix DIR") {
		t.Errorf("--help: exit %d:\n%s", code, out)
	}
}

// Every shipped shell script parses.
func TestPackagingShellSyntax(t *testing.T) {
	t.Parallel()
	src := repoDir(t)
	for _, script := range []string{
		"packaging/install.sh", "packaging/examples/auth-hook.example",
		"packaging/docker/ctrl-exec-entrypoint.sh", "packaging/docker/agent-entrypoint.sh",
		"packaging/openrc/ctrl-exec-agent", "packaging/openrc/ctrl-exec-api",
		"packaging/openwrt/ctrl-exec-agent.init", "packaging/openwrt/99-ctrl-exec-agent-firewall",
	} {
		if out, err := exec.Command("sh", "-n", filepath.Join(src, script)).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", script, err, out)
		}
		if fi, err := os.Stat(filepath.Join(src, script)); err != nil || fi.Mode().Perm()&0o111 == 0 {
			t.Errorf("%s is not executable", script)
		}
	}
}

// The units keep the names, users, commands and sandbox of the Perl units (SPEC §19.1).
func TestPackagingSystemdUnits(t *testing.T) {
	t.Parallel()
	want := map[string][]string{
		"ctrl-exec-agent.service": {
			"Type=simple", "User=ctrl-exec-agent", "Group=ctrl-exec-agent",
			"ExecStart=/usr/local/bin/ctrl-exec-agent serve", "ExecReload=/bin/kill -HUP $MAINPID",
			"Restart=on-failure", "RestartSec=5", "TimeoutStopSec=10", "NoNewPrivileges=yes",
			"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
			"SystemCallFilter=@system-service", "SystemCallFilter=~@privileged @resources",
			"CapabilityBoundingSet=", "AmbientCapabilities=",
			"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "RestrictNamespaces=yes",
			"LockPersonality=yes", "MemoryDenyWriteExecute=yes",
			"ReadOnlyPaths=/etc/ctrl-exec-agent", "ReadOnlyPaths=/opt/ctrl-exec-scripts",
			"WantedBy=multi-user.target",
		},
		"ctrl-exec-api.service": {
			"Type=simple", "User=root", "Group=ctrl-exec", "ExecStart=/usr/local/bin/ctrl-exec-api",
			"Restart=on-failure", "RestartSec=5", "NoNewPrivileges=yes", "ProtectSystem=strict",
			"ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
			"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6", "ReadWritePaths=/var/lib/ctrl-exec",
			"WantedBy=multi-user.target",
		},
	}
	for unit, directives := range want {
		data, err := os.ReadFile(filepath.Join(repoDir(t), "packaging/systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(string(data), "\n") {
			lines[strings.TrimSpace(l)] = true
		}
		for _, d := range directives {
			if !lines[d] {
				t.Errorf("%s lacks %q", unit, d)
			}
		}
	}
}

// Every key of SPEC §6.1 and §6.2 is explained in the example and in the
// manual page, and the examples load without warnings.
func TestPackagingExamplesDocumentEveryKey(t *testing.T) {
	t.Parallel()
	src := repoDir(t)
	read := func(path string) string {
		data, err := os.ReadFile(filepath.Join(src, path))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	docs := []struct {
		example, page string
		keys          []string
	}{
		{"packaging/examples/ctrl-exec.conf.example", "man/ctrl-exec.conf.5", []string{
			"cert", "key", "ca", "auth_hook", "api_auth_default", "read_timeout", "timeout",
			"api_port", "api_bind", "api_cert", "api_key", "cert_days", "cert_renewal_days",
			"cert_overlap_days", "cert_check_interval", "pairing_max_queue", "ca_dir",
			"rotation_file", "registry_dir", "port", "api_max_inflight", "api_rotation_loop", "session_cache",
			"agent_identity", "log_format", "state_backend", "etcd_endpoints", "etcd_prefix", "etcd_cert", "etcd_key", "etcd_ca"}},
		{"packaging/examples/agent.conf.example", "man/ctrl-exec-agent.conf.5", []string{
			"port", "cert", "key", "ca", "script_dirs", "allowed_ips", "rate_limit_disable",
			"rate_limit_volume", "rate_limit_probe", "auth_hook", "revoked_serials",
			"dispatcher_serial_path", "stdin_timeout", "max_output", "pairing_port", "dispatcher_cn", "log_format", "[timeouts]", "[tags]"}},
	}
	for _, d := range docs {
		example, page := read(d.example), read(d.page)
		for _, key := range d.keys {
			k := regexp.QuoteMeta(key)
			if !regexp.MustCompile(`(?m)^(# )?` + k + `([\s:=]|$)`).MatchString(example) {
				t.Errorf("%s does not explain %s", d.example, key)
			}
			if !regexp.MustCompile(`(?m)^\.(B|BI|BR) ` + k + `(\s|$)`).MatchString(page) {
				t.Errorf("%s has no entry for %s", d.page, key)
			}
		}
	}

	ctl, warns, err := config.LoadControl(filepath.Join(src, "packaging/examples/ctrl-exec.conf.example"), paths.Paths{})
	if err != nil || len(warns) != 0 {
		t.Fatalf("ctrl-exec.conf.example: %v, warnings %v", err, warns)
	}
	gotCtl := []string{ctl.Cert, ctl.Key, ctl.CA, ctl.AuthHook, ctl.APIAuthDefault, ctl.APIBind}
	wantCtl := []string{"/etc/ctrl-exec/ctrl-exec.crt", "/etc/ctrl-exec/ctrl-exec.key", "/etc/ctrl-exec/ca.crt",
		"/etc/ctrl-exec/auth-hook", "deny", "127.0.0.1"}
	if diff := cmp.Diff(wantCtl, gotCtl); diff != "" {
		t.Errorf("ctrl-exec.conf.example values (-want +got):\n%s", diff)
	}
	// Every setting but the identity and the hook is left at its default.
	var set []string
	for k := range ctl.Raw {
		set = append(set, k)
	}
	sort.Strings(set)
	if diff := cmp.Diff([]string{"api_auth_default", "auth_hook", "ca", "cert", "key"}, set); diff != "" {
		t.Errorf("ctrl-exec.conf.example sets (-want +got):\n%s", diff)
	}

	agent, warns, err := config.LoadAgent(filepath.Join(src, "packaging/examples/agent.conf.example"), paths.Paths{})
	if err != nil || len(warns) != 0 {
		t.Fatalf("agent.conf.example: %v, warnings %v", err, warns)
	}
	// script_dirs ships commented out, as upstream's example has it.
	if agent.Port != 7443 || agent.Cert != "/etc/ctrl-exec-agent/agent.crt" || agent.ScriptDirs != nil {
		t.Errorf("agent.conf.example: port %d, cert %q, script_dirs %q", agent.Port, agent.Cert, agent.ScriptDirs)
	}
	list, lines, err := config.LoadAllowlist(filepath.Join(src, "packaging/examples/scripts.conf.example"), agent.ScriptDirs)
	if err != nil || len(lines) != 0 {
		t.Fatalf("scripts.conf.example: %v, warnings %q", err, lines)
	}
	if diff := cmp.Diff(config.Allowlist{"update-ctrl-exec-serial": "/opt/ctrl-exec-scripts/update-ctrl-exec-serial"}, list); diff != "" {
		t.Errorf("scripts.conf.example (-want +got):\n%s", diff)
	}
	// The seed README's quick-start entry loads under the example agent.conf.
	quick := filepath.Join(t.TempDir(), "scripts.conf")
	if err := os.WriteFile(quick, []byte("logger = /usr/bin/logger\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	list, lines, err = config.LoadAllowlist(quick, agent.ScriptDirs)
	if diff := cmp.Diff(config.Allowlist{"logger": "/usr/bin/logger"}, list); err != nil || len(lines) != 0 || diff != "" {
		t.Errorf("quick-start allowlist: %v, warnings %q, (-want +got):\n%s", err, lines, diff)
	}
}

// manSection returns the lines of one .SH section of a roff page.
func manSection(page, name string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, ".SH ") {
			in = strings.Trim(strings.TrimPrefix(l, ".SH "), `"`) == name
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out
}

var roffFont = regexp.MustCompile(`\\f[BIRP]`)

// manModes lists the modes a page documents: the first word of each .SS in MODES.
func manModes(page string) []string {
	var modes []string
	for _, l := range manSection(page, "MODES") {
		if rest, ok := strings.CutPrefix(l, ".SS "); ok {
			rest = roffFont.ReplaceAllString(strings.Trim(rest, `"`), "")
			modes = append(modes, strings.Fields(rest)[0])
		}
	}
	return modes
}

var longOption = regexp.MustCompile(`--[a-z][a-z0-9-]*`)

// manOptions lists the long options a page documents: those on .TP tag lines in OPTIONS.
func manOptions(page string) []string {
	var opts []string
	lines := manSection(page, "OPTIONS")
	for i := 0; i+1 < len(lines); i++ {
		if lines[i] == ".TP" {
			opts = append(opts, longOption.FindAllString(strings.ReplaceAll(lines[i+1], `\-`, "-"), -1)...)
		}
	}
	return opts
}

// Each role's --help names every mode and option its manual page documents.
func TestPackagingHelpListsManModes(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "")
	pages := map[string]string{
		"ctrl-exec":               "man/ctrl-exec.1",
		"ctrl-exec-agent":         "man/ctrl-exec-agent.8",
		"ctrl-exec-api":           "man/ctrl-exec-api.8",
		"update-ctrl-exec-serial": "man/update-ctrl-exec-serial.8",
	}
	for role, file := range pages {
		data, err := os.ReadFile(filepath.Join(repoDir(t), file))
		if err != nil {
			t.Fatal(err)
		}
		page := string(data)
		modes, opts := manModes(page), manOptions(page)
		if len(opts) == 0 || (role == "ctrl-exec" && len(modes) != 17) || (role == "ctrl-exec-agent" && len(modes) != 6) {
			t.Fatalf("%s: parsed modes %q, options %q", file, modes, opts)
		}
		res := r.Run(role, "--help")
		help := res.Stdout + res.Stderr
		if res.Code != 0 {
			t.Errorf("%s --help: exit %d\n%s", role, res.Code, help)
		}
		for _, mode := range modes {
			if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(mode) + `(\s|,|$)`).MatchString(help) {
				t.Errorf("%s --help does not list mode %q (documented in %s):\n%s", role, mode, file, help)
			}
		}
		for _, opt := range opts {
			if !regexp.MustCompile(regexp.QuoteMeta(opt) + `\b`).MatchString(help) {
				t.Errorf("%s --help does not list option %s (documented in %s):\n%s", role, opt, file, help)
			}
		}
	}
}

// Every manual page renders with man(1) without a single warning.
func TestPackagingManPagesRender(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed (apt-get install man-db groff-base)")
	}
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff is not installed (apt-get install groff-base)")
	}
	files, err := filepath.Glob(filepath.Join(repoDir(t), "man", "*.[158]"))
	if err != nil || len(files) != len(manPages) {
		t.Fatalf("man pages %q, %v; want %d", files, err, len(manPages))
	}
	for _, file := range files {
		cmd := exec.Command("man", "--warnings", "-l", file)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() != 0 {
			t.Errorf("man --warnings -l %s: %v\n%s", filepath.Base(file), err, stderr.String())
		}
		if !strings.Contains(stdout.String(), "NAME") || !strings.Contains(stdout.String(), "SEE ALSO") {
			t.Errorf("%s rendered without NAME or SEE ALSO:\n%s", filepath.Base(file), stdout.String())
		}
	}
}
