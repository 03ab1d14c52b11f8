package packaging

// install.sh for real, as root in a fresh Debian root (accounts, owners),
// for every role combination; staged with --prefix for the same ones; and
// over an installation of the Perl original.

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// release unpacks the amd64 release tarball into the root and returns the
// in-root path of its install.sh.
func release(t *testing.T, r *rootfs) string {
	t.Helper()
	tarball := artefact(t, tarballPattern(standard, "amd64"))
	if err := os.MkdirAll(r.path("/root/release"), 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "", "tar", "-C", r.path("/root/release"), "-xzf", tarball)
	return "/root/release/" + strings.TrimSuffix(filepath.Base(tarball), ".tar.gz") + "/install.sh"
}

var roleCombinations = []struct {
	args  []string
	roles roles
}{
	{[]string{"--ctrl-exec"}, roles{control: true}},
	{[]string{"--dispatcher", "--api"}, roles{control: true, api: true}},
	{[]string{"--agent"}, roles{agent: true}},
	{[]string{"--agent", "--renewal"}, roles{agent: true, renewal: true}},
	{[]string{"--ctrl-exec", "--agent"}, roles{control: true, agent: true}},
	{[]string{"--dispatcher", "--api", "--agent"}, roles{control: true, api: true, agent: true}},
	{[]string{"--dispatcher", "--api", "--agent", "--renewal"}, roles{control: true, api: true, agent: true, renewal: true}},
}

// Each role combination installed as root into a fresh Debian root makes
// exactly the expected layout and accounts; a second run changes nothing;
// the same flags with --prefix stage the same paths and modes.
func TestInstallShRoles(t *testing.T) {
	need(t, "tar")
	bin := artefact(t, "ctrl-exec-linux-amd64")
	gen := filepath.Join(top, "dist/gen")
	for _, tc := range roleCombinations {
		t.Run(strings.Join(tc.args, ""), func(t *testing.T) {
			t.Parallel()
			r := freshRoot(t)
			script := release(t, r)
			args := append([]string{"sh", script, "--init", "systemd"}, tc.args...)
			out := r.mustChroot(args...)

			ro := tc.roles
			ro.init, ro.unitDir, ro.helperTarget = "systemd", "etc/systemd/system", "../../usr/local/bin/ctrl-exec"
			want := expected(t, ro, bin, gen).withParents(r.lower)
			got := r.changes()
			if diff := cmp.Diff(map[string]string(want), got); diff != "" {
				t.Errorf("install.sh %s: layout (-want +got):\n%s\noutput:\n%s", tc.args, diff, out)
			}
			checkAccounts(t, r, ro.control, ro.agent)

			out2 := r.mustChroot(args...)
			if diff := cmp.Diff(got, r.changes()); diff != "" {
				t.Errorf("a second install.sh %s changed the tree (-first +second):\n%s\noutput:\n%s", tc.args, diff, out2)
			}
			if ro.agent && !strings.Contains(out2, "user ctrl-exec-agent already exists") {
				t.Errorf("second run output does not say the account was kept:\n%s", out2)
			}

			// Staged: the same paths and modes under the prefix, no ownership.
			stage := t.TempDir()
			run(t, "", "sh", append([]string{r.path(script), "--prefix", stage, "--init", "systemd"}, tc.args...)...)
			staged := map[string]string{}
			err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				rel, _ := filepath.Rel(stage, p)
				if fi, err := os.Lstat(filepath.Join(r.lower, rel)); rel == "." || err == nil && fi.IsDir() && d.IsDir() {
					return nil // there before: not part of the installation
				}
				staged[rel], err = describe(p, nil, nil)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(withoutOwners(want), withoutOwners(staged)); diff != "" {
				t.Errorf("install.sh --prefix %s: layout (-want +got):\n%s", tc.args, diff)
			}
		})
	}
}

// An installation of the Perl ctrl-exec 0.8.4 (its install.sh's layout:
// Perl scripts in /usr/local/bin, the library in /usr/local/lib/ctrl-exec,
// its units, keys, certificates, registry and scripts in the §7 state
// directories) upgraded by install.sh with every role: nothing of the
// user's changes, the Go binary and its symlinks replace the scripts, the
// units are the Go ones, and a second run changes nothing.
func TestInstallShOverPerl(t *testing.T) {
	need(t, "tar")
	r := freshRoot(t)
	r.mustChroot("groupadd", "--system", "ctrl-exec")
	r.mustChroot("groupadd", "--system", "ctrl-exec-agent")
	// As the Perl installer made the account.
	r.mustChroot("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
		"--gid", "ctrl-exec-agent", "--comment", "ctrl-exec agent", "ctrl-exec-agent")
	accounts := func() string {
		return strings.Join(r.account("/etc/passwd", "ctrl-exec-agent"), ":") + " " +
			strings.Join(r.account("/etc/group", "ctrl-exec-agent"), ":") + " " +
			strings.Join(r.account("/etc/group", "ctrl-exec"), ":")
	}
	accountsBefore := accounts()

	type file struct{ mode, owner, body string }
	perlScript := "#!/usr/bin/perl\nuse strict;\n"
	perl := map[string]file{
		// Programs and library: the installer's to replace.
		"usr/local/bin/ctrl-exec-dispatcher":         {"0755", rootOwner, perlScript},
		"usr/local/bin/ctrl-exec-agent":              {"0755", rootOwner, perlScript},
		"usr/local/bin/ctrl-exec-api":                {"0755", rootOwner, perlScript},
		"etc/systemd/system/ctrl-exec-agent.service": {"0644", rootOwner, "[Service]\nExecStart=/usr/local/bin/ctrl-exec-agent serve\n"},
		"etc/systemd/system/ctrl-exec-api.service":   {"0644", rootOwner, "[Service]\nExecStart=/usr/local/bin/ctrl-exec-api\n"},
	}
	user := map[string]file{
		"usr/local/lib/ctrl-exec/Exec/openapi.json":       {"0644", rootOwner, "{\"openapi\":\"3.0.3\"}\n"},
		"usr/local/lib/ctrl-exec/Exec/Engine.pm":          {"0644", rootOwner, "package Exec::Engine;\n1;\n"},
		"usr/local/lib/ctrl-exec/VERSION":                 {"0644", rootOwner, "0.8.4\n"},
		"etc/ctrl-exec/ctrl-exec.conf":                    {"0640", ctrlGroup, "cert = /etc/ctrl-exec/ctrl-exec.crt\nkey = /etc/ctrl-exec/ctrl-exec.key\nca = /etc/ctrl-exec/ca.crt\napi_port = 7445\nauth_hook = /etc/ctrl-exec/auth-hook\n"},
		"etc/ctrl-exec/auth-hook":                         {"0755", rootOwner, "#!/bin/sh\n# site policy\nexit 0\n"},
		"etc/ctrl-exec/ca.key":                            {"0600", rootOwner, "-----BEGIN PRIVATE KEY-----\nca\n-----END PRIVATE KEY-----\n"},
		"etc/ctrl-exec/ca.crt":                            {"0644", rootOwner, "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"},
		"etc/ctrl-exec/ca.serial":                         {"0600", rootOwner, "0A\n"},
		"etc/ctrl-exec/ctrl-exec.key":                     {"0640", ctrlGroup, "-----BEGIN PRIVATE KEY-----\nce\n-----END PRIVATE KEY-----\n"},
		"etc/ctrl-exec/ctrl-exec.crt":                     {"0644", rootOwner, "-----BEGIN CERTIFICATE-----\nce\n-----END CERTIFICATE-----\n"},
		"var/lib/ctrl-exec/agents/web-01.json":            {"0644", rootOwner, `{"hostname":"web-01","ip":"10.0.0.5","serial_status":"current"}` + "\n"},
		"var/lib/ctrl-exec/pairing/0123456789abcdef.json": {"0644", rootOwner, `{"id":"0123456789abcdef"}` + "\n"},
		"var/lib/ctrl-exec/runs/fedcba9876543210.json":    {"0640", rootOwner, `{"reqid":"fedcba9876543210"}` + "\n"},
		"var/lib/ctrl-exec/rotation.json":                 {"0640", rootOwner, `{"current_serial":"0a"}` + "\n"},
		"etc/ctrl-exec-agent/agent.conf":                  {"0640", agentGroup, "port = 7443\ncert = /etc/ctrl-exec-agent/agent.crt\nkey = /etc/ctrl-exec-agent/agent.key\nca = /etc/ctrl-exec-agent/ca.crt\n"},
		"etc/ctrl-exec-agent/scripts.conf":                {"0640", agentGroup, "check-disk = /opt/ctrl-exec-scripts/check-disk.sh\n"},
		"etc/ctrl-exec-agent/agent.key":                   {"0640", agentGroup, "-----BEGIN PRIVATE KEY-----\nag\n-----END PRIVATE KEY-----\n"},
		"etc/ctrl-exec-agent/agent.crt":                   {"0640", agentGroup, "-----BEGIN CERTIFICATE-----\nag\n-----END CERTIFICATE-----\n"},
		"etc/ctrl-exec-agent/ca.crt":                      {"0644", agentGroup, "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n"},
		"etc/ctrl-exec-agent/ctrl-exec-serial":            {"0644", rootOwner, "0a\n"},
		"opt/ctrl-exec-scripts/check-disk.sh":             {"0750", agentGroup, "#!/bin/sh\ndf -h\n"},
		"opt/ctrl-exec-scripts/ctrl-exec-demonstrator.sh": {"0750", agentGroup, "#!/bin/bash\necho demo\n"},
	}
	dirs := map[string]string{
		"etc/ctrl-exec": "0750 " + ctrlGroup, "var/lib/ctrl-exec": "0755 " + rootOwner,
		"var/lib/ctrl-exec/pairing": "0770 " + ctrlGroup, "var/lib/ctrl-exec/agents": "0770 " + ctrlGroup,
		"var/lib/ctrl-exec/locks": "0770 " + ctrlGroup, "var/lib/ctrl-exec/runs": "0770 " + ctrlGroup,
		"etc/ctrl-exec-agent": "0750 " + agentGroup, "opt/ctrl-exec-scripts": "0750 " + agentGroup,
	}
	for d, modeOwner := range dirs {
		mode, owner, _ := strings.Cut(modeOwner, " ")
		r.mustChroot("install", "-d", "-m", mode, "-o", strings.Split(owner, ":")[0], "-g", strings.Split(owner, ":")[1], "/"+d)
	}
	for _, set := range []map[string]file{perl, user} {
		for p, f := range set {
			if err := os.MkdirAll(filepath.Dir(r.path(p)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(r.path(p), []byte(f.body), 0o600); err != nil {
				t.Fatal(err)
			}
			r.mustChroot("chown", f.owner, "/"+p)
			r.mustChroot("chmod", f.mode, "/"+p)
		}
	}
	// The Perl installer's absolute short-name links.
	for link, target := range map[string]string{"usr/local/bin/ced": "/usr/local/bin/ctrl-exec-dispatcher", "usr/local/bin/cea": "/usr/local/bin/ctrl-exec-agent"} {
		if err := os.Symlink(target, r.path(link)); err != nil {
			t.Fatal(err)
		}
	}
	before := r.changes()

	script := release(t, r)
	args := []string{"sh", script, "--dispatcher", "--api", "--agent", "--init", "systemd"}
	out := r.mustChroot(args...)
	after := r.changes()

	// Everything of the user's is as it was, bytes, modes and owners.
	for p := range user {
		if after[p] != before[p] {
			t.Errorf("%s: %s before the upgrade, %s after", p, before[p], after[p])
		}
	}
	for d := range dirs {
		if after[d] != before[d] {
			t.Errorf("%s: %s before the upgrade, %s after", d, before[d], after[d])
		}
	}
	for _, p := range []string{"etc/ctrl-exec/ctrl-exec.conf", "etc/ctrl-exec/auth-hook", "etc/ctrl-exec-agent/agent.conf", "etc/ctrl-exec-agent/scripts.conf"} {
		if !strings.Contains(out, "kept existing /"+p) {
			t.Errorf("output does not say /%s was kept:\n%s", p, out)
		}
	}
	if !strings.Contains(out, "left from the Perl release") {
		t.Errorf("output does not mention the Perl library dir:\n%s", out)
	}

	// The programs, links and units are the Go ones.
	ro := roles{control: true, api: true, agent: true, init: "systemd", unitDir: "etc/systemd/system", helperTarget: "../../usr/local/bin/ctrl-exec"}
	want := expected(t, ro, artefact(t, "ctrl-exec-linux-amd64"), filepath.Join(top, "dist/gen")).withParents(r.lower)
	for p, w := range want {
		if _, mine := user[p]; mine {
			continue
		}
		if _, isDir := dirs[p]; isDir {
			continue
		}
		if after[p] != w {
			t.Errorf("%s: %s after the upgrade, want %s", p, after[p], w)
		}
	}
	for p := range after {
		if _, ok := want[p]; !ok && before[p] != after[p] {
			if _, ok := user[p]; !ok {
				t.Errorf("%s changed by the upgrade but not part of the installation: %s", p, after[p])
			}
		}
	}
	version := r.mustChroot("ced", "--version")
	if !strings.HasPrefix(version, "ctrl-exec ") {
		t.Errorf("ced --version after the upgrade: %q", version)
	}
	if got := accounts(); got != accountsBefore {
		t.Errorf("accounts changed by the upgrade: %q, were %q", got, accountsBefore)
	}

	out2 := r.mustChroot(args...)
	if diff := cmp.Diff(after, r.changes()); diff != "" {
		t.Errorf("a second install.sh changed the tree (-first +second):\n%s\noutput:\n%s", diff, out2)
	}
}
