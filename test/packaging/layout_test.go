package packaging

// The layout an installation makes (SPEC §7, §19; packaging/README.md), in
// the form describe() gives, built per role so install.sh, the .deb and the
// .apk/.ipk are held to the one description.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type layout map[string]string

func (l layout) dir(p, mode, owner string) { l[p] = "dir " + mode + " " + owner }
func (l layout) link(p, target string)     { l[p] = "link " + target }

// file expects p to hold src's bytes (src relative to the source tree).
func (l layout) file(t *testing.T, p, mode, owner, src string) {
	t.Helper()
	if !filepath.IsAbs(src) {
		src = filepath.Join(top, src)
	}
	sum, err := fileSHA(src)
	if err != nil {
		t.Fatal(err)
	}
	l[p] = "file " + mode + " " + owner + " " + sum
}

// withParents adds the directories mkdir -p (or the package manager) makes
// for the expected paths: every ancestor that lower, the root installed
// into, lacks, as 0755 root:root.
func (l layout) withParents(lower string) layout {
	for p := range l {
		for d := filepath.Dir(p); d != "."; d = filepath.Dir(d) {
			if _, ok := l[d]; ok {
				continue
			}
			if _, err := os.Lstat(filepath.Join(lower, d)); os.IsNotExist(err) {
				l.dir(d, "0755", "root:root")
			}
		}
	}
	return l
}

// roles says what an installation holds; its zero value is the programs.
type roles struct {
	control, api, agent, renewal bool
	init                         string // systemd, openrc, procd, none
	unitDir                      string // where systemd units go
	helperTarget                 string // the update-ctrl-exec-serial link in the scripts dir
}

const (
	rootOwner  = "root:root"
	ctrlGroup  = "root:ctrl-exec"
	agentGroup = "root:ctrl-exec-agent"
)

var aliases = []string{"ctrl-exec-dispatcher", "ced", "ctrl-exec-agent", "cea", "ctrl-exec-api", "update-ctrl-exec-serial"}

var manPages = []string{"man1/ctrl-exec.1", "man5/ctrl-exec.conf.5", "man5/ctrl-exec-agent.conf.5",
	"man8/ctrl-exec-agent.8", "man8/ctrl-exec-api.8", "man8/update-ctrl-exec-serial.8"}

// expected is the layout for ro, with bin the binary installed and gen the
// directory of the generated completion scripts (dist/gen).
func expected(t *testing.T, ro roles, bin, gen string) layout {
	t.Helper()
	l := layout{}
	l.file(t, "usr/local/bin/ctrl-exec", "0755", rootOwner, bin)
	for _, a := range aliases {
		l.link("usr/local/bin/"+a, "ctrl-exec")
	}
	for _, m := range manPages {
		l.file(t, "usr/local/share/man/"+m, "0644", rootOwner, "man/"+filepath.Base(m))
	}
	l.link("usr/local/share/man/man1/ctrl-exec-dispatcher.1", "ctrl-exec.1")
	l.link("usr/local/share/man/man1/ced.1", "ctrl-exec.1")
	l.link("usr/local/share/man/man8/cea.8", "ctrl-exec-agent.8")
	for role, more := range map[string][]string{"ctrl-exec": {"ctrl-exec-dispatcher", "ced"}, "ctrl-exec-agent": {"cea"}, "ctrl-exec-api": nil} {
		l.file(t, "usr/local/share/bash-completion/completions/"+role, "0644", rootOwner, filepath.Join(gen, role+".bash"))
		l.file(t, "usr/local/share/zsh/site-functions/_"+role, "0644", rootOwner, filepath.Join(gen, role+".zsh"))
		l.file(t, "usr/local/share/fish/vendor_completions.d/"+role+".fish", "0644", rootOwner, filepath.Join(gen, role+".fish"))
		for _, a := range more {
			l.link("usr/local/share/bash-completion/completions/"+a, role)
			l.link("usr/local/share/fish/vendor_completions.d/"+a+".fish", role+".fish")
		}
	}
	if ro.control {
		l.dir("etc/ctrl-exec", "0750", ctrlGroup)
		l.dir("var/lib/ctrl-exec", "0755", rootOwner)
		for _, d := range []string{"pairing", "agents", "locks", "runs"} {
			l.dir("var/lib/ctrl-exec/"+d, "0770", ctrlGroup)
		}
		l.file(t, "etc/ctrl-exec/ctrl-exec.conf", "0640", ctrlGroup, "packaging/examples/ctrl-exec.conf.example")
		l.file(t, "etc/ctrl-exec/auth-hook", "0755", rootOwner, "packaging/examples/auth-hook.example")
		l.file(t, "usr/local/lib/ctrl-exec/auth-hook.example", "0755", rootOwner, "packaging/examples/auth-hook.example")
	}
	if ro.agent {
		mode := "0750"
		if ro.renewal {
			mode = "0770"
		}
		l.dir("etc/ctrl-exec-agent", mode, agentGroup)
		l.file(t, "etc/ctrl-exec-agent/agent.conf", "0640", agentGroup, "packaging/examples/agent.conf.example")
		l.file(t, "etc/ctrl-exec-agent/scripts.conf", "0640", agentGroup, "packaging/examples/scripts.conf.example")
		l.dir("opt/ctrl-exec-scripts", "0750", agentGroup)
		l.link("opt/ctrl-exec-scripts/update-ctrl-exec-serial", ro.helperTarget)
	}
	services := []string{}
	if ro.agent {
		services = append(services, "agent")
	}
	if ro.api {
		services = append(services, "api")
	}
	for _, s := range services {
		svc := "ctrl-exec-" + s
		switch ro.init {
		case "systemd":
			l.file(t, ro.unitDir+"/"+svc+".service", "0644", rootOwner, "packaging/systemd/"+svc+".service")
			if ro.renewal {
				l.file(t, ro.unitDir+"/"+svc+".service.d/10-renewal.conf", "0644", rootOwner,
					"packaging/systemd/"+svc+".service.d/10-renewal.conf")
			}
		case "openrc":
			l.file(t, "etc/init.d/"+svc, "0755", rootOwner, "packaging/openrc/"+svc)
		case "procd":
			if s == "agent" {
				l.file(t, "etc/init.d/"+svc, "0755", rootOwner, "packaging/openwrt/"+svc+".init")
				l.file(t, "etc/uci-defaults/99-ctrl-exec-agent-firewall", "0755", rootOwner, "packaging/openwrt/99-ctrl-exec-agent-firewall")
			}
		}
	}
	return l
}

// withoutOwners drops the owner from each description (a staged install
// changes no ownership).
func withoutOwners(l map[string]string) map[string]string {
	out := map[string]string{}
	for p, d := range l {
		f := strings.Fields(d)
		if len(f) >= 3 && (f[0] == "dir" || f[0] == "file") {
			f[2] = "-"
		}
		out[p] = strings.Join(f, " ")
	}
	return out
}

// checkAccounts: the system group ctrl-exec (control host) and the system
// user and group ctrl-exec-agent, no login, no home (agent).
func checkAccounts(t *testing.T, r *rootfs, control, agent bool) {
	t.Helper()
	g := r.account("/etc/group", "ctrl-exec")
	if control != (g != nil) {
		t.Errorf("group ctrl-exec: %q, want present=%v", g, control)
	} else if g != nil && !systemID(g[2]) {
		t.Errorf("group ctrl-exec has id %s, want a system id", g[2])
	}
	ag := r.account("/etc/group", "ctrl-exec-agent")
	u := r.account("/etc/passwd", "ctrl-exec-agent")
	if agent != (ag != nil) || agent != (u != nil) {
		t.Fatalf("ctrl-exec-agent: group %q, user %q, want present=%v", ag, u, agent)
	}
	if u == nil {
		return
	}
	want := []string{"ctrl-exec-agent", "x", u[2], ag[2], "ctrl-exec agent", "/nonexistent", "/usr/sbin/nologin"}
	if !systemID(u[2]) || strings.Join(u, ":") != strings.Join(want, ":") {
		t.Errorf("passwd entry %q, want %q with a system uid", strings.Join(u, ":"), strings.Join(want, ":"))
	}
	if _, err := os.Stat(r.path("/nonexistent")); err == nil {
		t.Error("a home directory /nonexistent was made")
	}
}

func systemID(s string) bool {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return s != "" && n > 0 && n < 1000
}
