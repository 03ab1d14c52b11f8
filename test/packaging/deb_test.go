package packaging

// The .deb installed with dpkg into a fresh Debian root: the layout and
// accounts of install.sh, conffiles that survive an edit and a reinstall,
// removal that keeps configuration, and purge that takes what the package
// added and leaves what the user made.

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDebInstallPurge(t *testing.T) {
	need(t, "dpkg-deb")
	deb := artefact(t, "packages/ctrl-exec_*_amd64.deb")
	r := freshRoot(t)
	r.copyIn(deb, "/tmp/ctrl-exec.deb")
	out := r.mustChroot("dpkg", "-i", "/tmp/ctrl-exec.deb")

	// Everything install.sh makes with every role; units where Debian keeps
	// a package's (/lib/systemd/system, which is /usr/lib on merged /usr).
	unitDir := "lib/systemd/system"
	if target, err := os.Readlink(r.path("/lib")); err == nil && strings.TrimPrefix(target, "/") == "usr/lib" {
		unitDir = "usr/lib/systemd/system"
	}
	ro := roles{control: true, api: true, agent: true, init: "systemd", unitDir: unitDir, helperTarget: "/usr/local/bin/ctrl-exec"}
	want := expected(t, ro, artefact(t, standard+"amd64"), filepath.Join(top, "dist/gen")).withParents(r.lower)
	installed := r.changes()
	if diff := cmp.Diff(map[string]string(want), installed); diff != "" {
		t.Errorf("dpkg -i: layout (-want +got):\n%s\n%s", diff, out)
	}
	checkAccounts(t, r, true, true)

	conffiles, err := os.ReadFile(r.path("/var/lib/dpkg/info/ctrl-exec.conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	wantConf := []string{"/etc/ctrl-exec-agent/agent.conf", "/etc/ctrl-exec-agent/scripts.conf", "/etc/ctrl-exec/auth-hook", "/etc/ctrl-exec/ctrl-exec.conf"}
	gotConf := strings.Fields(string(conffiles))
	sort.Strings(gotConf)
	if diff := cmp.Diff(wantConf, gotConf); diff != "" {
		t.Errorf("conffiles (-want +got):\n%s", diff)
	}

	// The installed programs run, and the shipped agent configuration loads.
	if v := r.mustChroot("ced", "--version"); !strings.HasPrefix(v, "ctrl-exec version ") || strings.Contains(v, "noetcd") {
		t.Errorf("ced --version: %q", v)
	}
	if sc := r.mustChroot("cea", "self-check"); !strings.Contains(sc, "Config OK") {
		t.Errorf("cea self-check:\n%s", sc)
	}

	// What the user makes: keys, registry, scripts, and an edited conffile.
	mine := map[string]string{
		"etc/ctrl-exec/ca.key":                 "key\n",
		"var/lib/ctrl-exec/agents/web-01.json": "{\"hostname\":\"web-01\"}\n",
		"opt/ctrl-exec-scripts/check-disk.sh":  "#!/bin/sh\ndf -h\n",
	}
	for p, body := range mine {
		if err := os.WriteFile(r.path(p), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	agentConf := r.path("/etc/ctrl-exec-agent/agent.conf")
	edited := "port = 7450\n"
	if err := os.WriteFile(agentConf, []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}

	// Reinstalling (an upgrade to the same version) keeps the edit.
	r.mustChroot("dpkg", "-i", "/tmp/ctrl-exec.deb")
	if got, _ := os.ReadFile(agentConf); string(got) != edited {
		t.Errorf("reinstall rewrote the edited agent.conf: %q", got)
	}

	// Remove: programs go, configuration and the user's files stay.
	r.mustChroot("dpkg", "--remove", "ctrl-exec")
	for _, p := range []string{"usr/local/bin/ctrl-exec", "usr/local/bin/cea", unitDir + "/ctrl-exec-agent.service", "usr/local/share/man/man1/ctrl-exec.1"} {
		if _, err := os.Lstat(r.path(p)); err == nil {
			t.Errorf("%s survived dpkg --remove", p)
		}
	}
	for _, p := range append(wantConf, "/etc/ctrl-exec/ca.key") {
		if _, err := os.Lstat(r.path(p)); err != nil {
			t.Errorf("dpkg --remove took %s: %v", p, err)
		}
	}

	// Purge: what is left is what the user made, in the directories that
	// hold it, and the accounts (files may still belong to them).
	r.mustChroot("dpkg", "--purge", "ctrl-exec")
	left := r.changes()
	wantLeft := map[string]string{"var/lib/ctrl-exec": installed["var/lib/ctrl-exec"]}
	for p, body := range mine {
		sum := sha256.Sum256([]byte(body))
		wantLeft[p] = "file 0600 root:root " + hex.EncodeToString(sum[:])[:16]
		wantLeft[filepath.Dir(p)] = installed[filepath.Dir(p)]
	}
	if diff := cmp.Diff(wantLeft, left); diff != "" {
		t.Errorf("after dpkg --purge (-want +got):\n%s", diff)
	}
	checkAccounts(t, r, true, true)
	if st, _ := r.chroot("dpkg-query", "-W", "-f", "${db:Status-Status}", "ctrl-exec"); strings.TrimSpace(st) == "installed" {
		t.Errorf("dpkg still lists ctrl-exec as installed")
	}
}
