package pairing

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

// Issue 9 item 9: a failed approval's registry rollback says what it could
// not undo instead of failing silently.
func TestApproveRollbackReportsItsErrors(t *testing.T) {
	previous := registry.Record{registry.FieldHostname: "web-01", registry.FieldIP: "10.0.0.1"}
	tests := []struct {
		name     string
		prevErr  error
		broken   bool // the registry directory is a file: every write fails
		wantErr  string
		wantKept bool // web-01's record exists afterwards
	}{
		{"previous record put back", nil, false, "", true},
		{"new record removed", registry.ErrNotFound, false, "", false},
		{"previous record cannot be put back", nil, true, "restoring the previous registry record for 'web-01' also failed", false},
		{"new record cannot be removed", registry.ErrNotFound, true, "removing the registry record for 'web-01' also failed", false},
		{"previous record was unreadable", errors.New("bad JSON"), false, "the previous registry record for 'web-01' was unreadable (bad JSON)", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newControl(t)
			if err := c.registry.Put(registry.Record{registry.FieldHostname: "web-01", registry.FieldIP: "10.9.9.9"}); err != nil {
				t.Fatal(err)
			}
			if tt.broken {
				if err := os.RemoveAll(c.registry.Dir); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(c.registry.Dir, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := c.approver.restoreRegistry("web-01", previous, tt.prevErr)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("restoreRegistry = %v, want %q", err, tt.wantErr)
			}
			_, getErr := c.registry.Get("web-01")
			if kept := getErr == nil; kept != tt.wantKept {
				t.Errorf("record kept %v (%v), want %v", kept, getErr, tt.wantKept)
			}
		})
	}
}
