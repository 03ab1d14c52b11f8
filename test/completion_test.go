package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// complete runs the role's generated bash completion for a command line
// whose last word is being completed, and returns the candidates.
func complete(t *testing.T, r *Root, role, fn string, line ...string) []string {
	t.Helper()
	script := r.MustRun(role, "completion", "bash").Stdout
	quoted := make([]string, len(line))
	for i, w := range line {
		quoted[i] = "'" + w + "'"
	}
	prog := `source /dev/stdin; COMP_WORDS=(` + strings.Join(quoted, " ") + `); COMP_CWORD=` +
		itoa(len(line)-1) + `; ` + fn + `; printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", prog)
	cmd.Env, cmd.Dir = r.Env(), r.Dir
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion %q: %v\n%s", line, err, out)
	}
	return strings.Fields(string(out))
}

func TestCompletionBash(t *testing.T) {
	t.Parallel()
	ctl := NewRoot(t, "")
	ctl.WriteFile("/var/lib/ctrl-exec/agents/web-01.json", `{"hostname":"web-01"}`, 0o644)
	ctl.WriteFile("/var/lib/ctrl-exec/agents/db-02.json", `{"hostname":"db-02"}`, 0o644)

	tests := []struct {
		role, fn string
		line     []string
		want     []string
	}{
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "ping", ""}, []string{"db-02", "web-01"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ced", "--json", "run", "w"}, []string{"web-01"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "unpair", "d"}, []string{"db-02"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "ro"}, []string{"rotate-cert"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "--config", "/x", "se"}, []string{"setup-ca", "setup-ctrl-exec", "serial-status"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "--us"}, []string{"--username"}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "run", "web-01", "x", "--", ""}, []string{}},
		{"ctrl-exec", "_ctrl_exec", []string{"ctrl-exec", "completion", "z"}, []string{"zsh"}},
		{"ctrl-exec-agent", "_ctrl_exec_agent", []string{"cea", "self"}, []string{"self-check", "self-ping"}},
		{"ctrl-exec-agent", "_ctrl_exec_agent", []string{"ctrl-exec-agent", "--disp"}, []string{"--dispatcher"}},
		{"ctrl-exec-api", "_ctrl_exec_api", []string{"ctrl-exec-api", "--c"}, []string{"--config"}},
		{"ctrl-exec-api", "_ctrl_exec_api", []string{"ctrl-exec-api", ""}, []string{"completion"}},
	}
	for _, tt := range tests {
		got := complete(t, ctl, tt.role, tt.fn, tt.line...)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tt.line, diff)
		}
	}
}

// Every role writes all three scripts; bash's parse here, zsh's and fish's
// in the packaging suite where those shells are installed.
func TestCompletionScripts(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "")
	for _, role := range []string{"ctrl-exec", "ctrl-exec-agent", "ctrl-exec-api"} {
		for _, shell := range []string{"bash", "zsh", "fish"} {
			res := r.MustRun(role, "completion", shell)
			if !strings.Contains(res.Stdout, "complete") && !strings.Contains(res.Stdout, "compdef") {
				t.Errorf("%s completion %s: no completion in\n%s", role, shell, res.Stdout)
			}
		}
		cmd := exec.Command("bash", "-n")
		cmd.Stdin = strings.NewReader(r.MustRun(role, "completion", "bash").Stdout)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s completion bash does not parse: %v\n%s", role, err, out)
		}
		if res := r.Run(role, "completion", "tcsh"); res.Code != 255 || !strings.Contains(res.Stderr, "bash, zsh or fish") {
			t.Errorf("%s completion tcsh: %+v", role, res)
		}
	}
}
