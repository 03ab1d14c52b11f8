package e2e

import (
	"strings"
	"testing"
)

// Every name of the multicall binary answers --version and --help.
func TestRoleNamesAnswerVersionAndHelp(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "")
	for _, name := range roleNames {
		res := r.Run(name, "--version")
		if res.Code != 0 || !strings.Contains(res.Stdout, "version") {
			t.Errorf("%s --version: exit %d, stdout %q, stderr %q", name, res.Code, res.Stdout, res.Stderr)
		}
	}
}

// Usage errors exit 255 with the upstream message on stderr (§2.2, §3.1, §4.1).
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	r := NewRoot(t, "")
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"ctrl-exec", []string{"bogus"}, "Unknown mode 'bogus'\n"},
		{"ctrl-exec", nil, "Usage: ctrl-exec [options] <mode>"},
		{"ctrl-exec", []string{"run", "h", "--port", "x7", "s"}, "invalid value"},
		{"ctrl-exec-agent", []string{"bogus"}, "Unknown mode 'bogus'\n"},
		{"ctrl-exec-agent", []string{"--nope"}, "Unknown option: nope\n"},
	}
	for _, tt := range tests {
		res := r.Run(tt.name, tt.args...)
		if res.Code != 255 || !strings.Contains(res.Stderr, tt.stderr) || res.Stdout != "" {
			t.Errorf("%s %q: exit %d, stdout %q, stderr %q; want 255 and %q on stderr",
				tt.name, tt.args, res.Code, res.Stdout, res.Stderr, tt.stderr)
		}
	}
}
