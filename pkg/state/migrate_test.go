package state

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// An import never rolls the destination's rotation state back: an older
// source is reported as kept (dry run too) and changes nothing; a newer
// one replaces it.
func TestCopyRotationKeepsNewerDestination(t *testing.T) {
	dir := t.TempDir()
	side := func(name, state string) (Side, string) {
		d := filepath.Join(dir, name)
		os.MkdirAll(filepath.Join(d, "agents"), 0o750)
		file := filepath.Join(d, "rotation.json")
		if err := os.WriteFile(file, []byte(state), 0o640); err != nil {
			t.Fatal(err)
		}
		return FileSide(filepath.Join(d, "agents"), filepath.Join(d, "ca.serial"), file), file
	}
	older := `{"current_serial":"01000003","previous_serial":"01000001","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-03-23T14:30:00Z","overlap_days":14}`
	newerState := `{"current_serial":"01000007","previous_serial":"01000003","rotated_at":"2026-05-01T10:00:00Z","overlap_expires":"2026-05-15T10:00:00Z","overlap_days":14}`
	from, _ := side("from", older)
	to, toFile := side("to", newerState)
	kept := []Change{{Key: "rotation", Kept: true, Action: `kept (destination rotated_at "2026-05-01T10:00:00Z" is not older than the source's "2026-03-09T14:30:00Z")`}}
	for _, dry := range []bool{true, false} {
		got, err := Copy(from, to, dry)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(kept, got); diff != "" {
			t.Errorf("dry run %v (-want +got):\n%s", dry, diff)
		}
		if data, _ := os.ReadFile(toFile); string(data) != newerState {
			t.Fatalf("dry run %v: destination rolled back to %s", dry, data)
		}
	}
	got, err := Copy(to, from, false)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Change{{Key: "rotation", Action: "update"}}, got); diff != "" {
		t.Errorf("newer source (-want +got):\n%s", diff)
	}
}
