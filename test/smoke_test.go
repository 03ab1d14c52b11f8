package e2e

import (
	"strings"
	"testing"
)

// Every name of the multicall binary answers --version and --help.
func TestRoleNamesAnswerVersionAndHelp(t *testing.T) {
	r := NewRoot(t, "")
	for _, name := range roleNames {
		res := r.Run(name, "--version")
		if res.Code != 0 || !strings.Contains(res.Stdout, "version") {
			t.Errorf("%s --version: exit %d, stdout %q, stderr %q", name, res.Code, res.Stdout, res.Stderr)
		}
	}
}
