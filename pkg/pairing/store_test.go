package pairing

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGiveToAgentGroupWarnsOnly(t *testing.T) {
	f := filepath.Join(t.TempDir(), "agent.crt")
	if err := os.WriteFile(f, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	got := GiveToAgentGroup(-1, f)
	if _, err := user.LookupGroup(AgentGroup); err != nil {
		want := []string{"group 'ctrl-exec-agent' not found - set ownership manually"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Error(diff)
		}
		return
	}
	for _, w := range got {
		if !strings.HasPrefix(w, "cannot give "+f+" to group ctrl-exec-agent: ") {
			t.Errorf("warning %q", w)
		}
	}
}
