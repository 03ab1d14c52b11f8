package e2e

// The seed's quick start (issue 9-E), step by step, on a staged install:
//
//	sudo ./install.sh --ctrl-exec          (from the top of the unpacked release)
//	sudo ctrl-exec setup-ca && sudo ctrl-exec setup-ctrl-exec
//	sudo usermod -aG ctrl-exec $USER       (then ctrl-exec without sudo)
//	sudo cp /usr/local/lib/ctrl-exec/auth-hook.example /etc/ctrl-exec/auth-hook
//	edit it: uncomment "exit 0" (the "Allow everything" example)
//	ctrl-exec ping <agent>; ctrl-exec run <agent> ...
//
// The tarball's own layout (install.sh at its top) is checked by the
// packaging suite, which builds it with make dist (test/packaging/).

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// release lays out what make dist's tarball holds: install.sh at the top,
// beside bin/ctrl-exec, man/ and packaging/.
func release(t *testing.T) string {
	t.Helper()
	top := t.TempDir()
	src := repoDir(t)
	for _, d := range []string{"man", "packaging"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(src, d), top).CombinedOutput(); err != nil {
			t.Fatalf("cp %s: %v\n%s", d, err, out)
		}
	}
	if out, err := exec.Command("cp", "-p", filepath.Join(src, "packaging/install.sh"), filepath.Join(top, "install.sh")).CombinedOutput(); err != nil {
		t.Fatalf("cp install.sh: %v\n%s", err, out)
	}
	if err := os.Mkdir(filepath.Join(top, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", filepath.Join(binDir, "ctrl-exec-multicall"), filepath.Join(top, "bin/ctrl-exec")).CombinedOutput(); err != nil {
		t.Fatalf("cp binary: %v\n%s", err, out)
	}
	return top
}

// runInstall runs ./install.sh from dir, as the quick start says.
func runInstall(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("./install.sh", args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir, raceEnv}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("./install.sh %q: %v\n%s", args, err, out)
	}
	return string(out)
}

func TestQuickStartInstallFromReleaseTop(t *testing.T) {
	t.Parallel()
	top := release(t)
	stage := t.TempDir()
	out := runInstall(t, top, "--ctrl-exec", "--prefix", stage)
	sameContent(t, filepath.Join(stage, "usr/local/bin/ctrl-exec"), filepath.Join(top, "bin/ctrl-exec"))
	sameContent(t, filepath.Join(stage, "etc/ctrl-exec/ctrl-exec.conf"), filepath.Join(top, "packaging/examples/ctrl-exec.conf.example"))
	for _, want := range []string{"installed /usr/local/lib/ctrl-exec/auth-hook.example"} {
		if !strings.Contains(out, want) {
			t.Errorf("install.sh output lacks %q:\n%s", want, out)
		}
	}

	// The quick start's hook steps: copy the example, uncomment "exit 0".
	example := filepath.Join(stage, "usr/local/lib/ctrl-exec/auth-hook.example")
	sameContent(t, example, filepath.Join(top, "packaging/examples/auth-hook.example"))
	if m := modeOf(t, stage, "usr/local/lib/ctrl-exec/auth-hook.example"); m != 0o755 {
		t.Errorf("auth-hook.example mode %o, want 755 (a plain cp makes a runnable hook)", m)
	}
	hook := filepath.Join(stage, "etc/ctrl-exec/auth-hook")
	if out, err := exec.Command("cp", example, hook).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if err := exec.Command(hook).Run(); err == nil {
		t.Fatal("the example hook allowed a request before it was edited")
	}
	data, _ := os.ReadFile(hook)
	edited := strings.Replace(string(data), "\n# exit 0\n", "\nexit 0\n", 1)
	if edited == string(data) {
		t.Fatal(`auth-hook.example has no "# exit 0" line to uncomment`)
	}
	if err := os.WriteFile(hook, []byte(edited), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(hook).CombinedOutput(); err != nil {
		t.Errorf("the hook with 'exit 0' uncommented denies: %v\n%s", err, out)
	}

	// Uninstall takes the example away and the then-empty directory with it.
	runInstall(t, top, "--uninstall", "--prefix", stage)
	if exists(filepath.Join(stage, "usr/local/lib/ctrl-exec")) {
		t.Error("--uninstall left /usr/local/lib/ctrl-exec behind")
	}
}

// makeTraversable opens dir and its parents up to (not including) stop to
// other users, as real /etc and /var/lib are (t.TempDir makes them 0700).
func makeTraversable(t *testing.T, dir, stop string) {
	t.Helper()
	for d := dir; d != stop && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// An operator in group ctrl-exec runs ping and run without sudo (D-30): the
// control key is 0640 root:ctrl-exec; ca.key stays 0600 root.
func TestQuickStartGroupMemberRunsWithoutSudo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test drops to another user in the ctrl-exec group")
	}
	t.Parallel()
	const gid = 4243 // the ctrl-exec group of this staged host
	stage := t.TempDir()
	mustInstall(t, stage, "--ctrl-exec")
	// What install.sh does as root and skips when staging: root:ctrl-exec.
	for _, d := range []string{"etc/ctrl-exec", "var/lib/ctrl-exec/pairing", "var/lib/ctrl-exec/agents",
		"var/lib/ctrl-exec/locks", "var/lib/ctrl-exec/runs", "etc/ctrl-exec/ctrl-exec.conf"} {
		if err := os.Chown(filepath.Join(stage, d), 0, gid); err != nil {
			t.Fatal(err)
		}
	}
	makeTraversable(t, stage, os.TempDir())
	makeTraversable(t, binDir, os.TempDir())

	ctl := NewRoot(t, "")
	ctl.Dir = stage
	ctl.MustRun("ctrl-exec", "setup-ca")
	ctl.MustRun("ctrl-exec", "setup-ctrl-exec")
	conf := "cert = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.crt") + "\nkey = " + ctl.Path("/etc/ctrl-exec/ctrl-exec.key") +
		"\nca = " + ctl.Path("/etc/ctrl-exec/ca.crt") + "\n"
	if err := os.WriteFile(ctl.Path("/etc/ctrl-exec/ctrl-exec.conf"), []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]struct {
		mode os.FileMode
		gid  uint32
	}{
		"/etc/ctrl-exec/ctrl-exec.key": {0o640, gid},
		"/etc/ctrl-exec/ca.key":        {0o600, 0},
	} {
		fi, err := os.Stat(ctl.Path(path))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want.mode || fi.Sys().(*syscall.Stat_t).Gid != want.gid {
			t.Errorf("%s: mode %o gid %d, want %o gid %d", path, fi.Mode().Perm(), fi.Sys().(*syscall.Stat_t).Gid, want.mode, want.gid)
		}
	}

	web := NewAgent(t, "web-01")
	web.WriteFile("/etc/ctrl-exec-agent/scripts.conf", "echo = /bin/echo\n", 0o640)
	PairAgent(t, ctl, web.Root)
	web.Start("ctrl-exec-agent", "serve")
	WaitListening(t, web.Port, 10*time.Second)

	operator := withEnv(ctl, "CTRL_EXEC_LOG=stderr", "USER=operator")
	asOperator := func(args ...string) Result {
		t.Helper()
		cmd := operator.Command(t.Context(), "ctrl-exec", args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{gid}}}
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		res := Result{Stdout: out.String(), Stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			res.Code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return res
	}
	target := "127.0.0.1:" + itoa(web.Port)
	if res := asOperator("ping", target); res.Code != 0 || !strings.Contains(res.Stdout, "web-01") {
		t.Errorf("ping as a ctrl-exec group member: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if res := asOperator("run", target, "echo", "--", "hello"); res.Code != 0 || !strings.Contains(res.Stdout, "hello") {
		t.Errorf("run as a ctrl-exec group member: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
}
