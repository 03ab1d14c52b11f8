package rotation

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
)

func TestRotationParseState(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *State
		err  string
	}{
		{
			name: "go form",
			in:   `{"current_serial":"0f","previous_serial":"02","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-04-08T14:30:00Z","overlap_days":30}`,
			want: &State{CurrentSerial: "0f", PreviousSerial: "02", RotatedAt: "2026-03-09T14:30:00Z", OverlapExpires: "2026-04-08T14:30:00Z", OverlapDays: 30},
		},
		{
			name: "perl form with overlap_days from config",
			in:   `{"overlap_days":"14","current_serial":"01000003","previous_serial":"","rotated_at":"x","overlap_expires":"y"}`,
			want: &State{CurrentSerial: "01000003", RotatedAt: "x", OverlapExpires: "y", OverlapDays: 14},
		},
		{name: "numbers where strings belong", in: `{"current_serial":10,"overlap_days":7.5}`, want: &State{CurrentSerial: "10", OverlapDays: 7}},
		{name: "members missing", in: `{}`, want: &State{}},
		{name: "not JSON", in: `{"current_serial":`, err: "not a JSON object"},
		{name: "array", in: `[]`, err: "not a JSON object"},
		{name: "null", in: `null`, err: "not a JSON object: null"},
		{name: "trailing", in: `{} {}`, err: "trailing data"},
		{name: "overlap_days not a number", in: `{"overlap_days":"thirty"}`, err: `overlap_days "thirty" is not a number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseState([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(State{}, "Raw")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRotationWriteAndLoadState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new-dir", "rotation.json")
	s := &State{CurrentSerial: "01000002", PreviousSerial: "02", RotatedAt: "2026-03-09T14:30:00Z", OverlapExpires: "2026-04-08T14:30:00Z", OverlapDays: 30}
	if err := WriteState(path, s); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := `{"current_serial":"01000002","previous_serial":"02","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-04-08T14:30:00Z","overlap_days":30}`
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	var log syncBuffer
	got, err := LoadState(path, logx.NewWriter(logx.IdentDispatcher, &log))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got, cmpopts.IgnoreFields(State{}, "Raw")); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestRotationLoadStateAbsentAndCorrupt(t *testing.T) {
	dir := t.TempDir()
	var log syncBuffer
	l := logx.NewWriter(logx.IdentDispatcher, &log)
	if s, err := LoadState(filepath.Join(dir, "missing.json"), l); s != nil || err != nil {
		t.Errorf("absent: %v, %v", s, err)
	}
	path := filepath.Join(dir, "rotation.json")
	os.WriteFile(path, []byte("{not json"), 0o640)
	if s, err := LoadState(path, l); s != nil || err != nil {
		t.Errorf("corrupt: %v, %v", s, err)
	}
	lines := log.lines("ACTION=rotation-state-corrupt")
	if len(lines) != 1 || !strings.Contains(lines[0], "PATH="+path) ||
		!strings.Contains(lines[0], `REASON="JSON parse failed - rotation state unreadable"`) || !strings.Contains(lines[0], "ERROR=") {
		t.Errorf("log %q", lines)
	}
}

// A Perl-written state prints in serial-status --json as it was written.
func TestRotationStateJSONKeepsWhatWasRead(t *testing.T) {
	in := `{"current_serial":"0f","overlap_days":"30","extra":[1,2]}`
	s, err := ParseState([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(s.JSON())
	if diff := cmp.Diff(`{"current_serial":"0f","extra":[1,2],"overlap_days":"30"}`, string(out)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func FuzzParseState(f *testing.F) {
	f.Add([]byte(`{"current_serial":"0f","previous_serial":"02","rotated_at":"2026-03-09T14:30:00Z","overlap_expires":"2026-04-08T14:30:00Z","overlap_days":30}`))
	f.Add([]byte(`{"overlap_days":"30"}`))
	f.Add([]byte(`{"overlap_days":1e400}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseState(data)
		if err != nil {
			return
		}
		// Whatever was read writes back as a state that reads the same.
		again, err := ParseState(s.Marshal())
		if err != nil {
			t.Fatalf("written state does not parse: %v", err)
		}
		if diff := cmp.Diff(s, again, cmpopts.IgnoreFields(State{}, "Raw")); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
