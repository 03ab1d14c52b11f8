package api

import (
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
)

// The usage text names every option the command line accepts, and no other
// (the option table itself is derived from the flags by cliapp.Spec).
func TestUsageNamesEveryOption(t *testing.T) {
	for _, m := range cliapp.UsageMismatches(usage, newApp(&env{}).Flags) {
		t.Error(m)
	}
}
