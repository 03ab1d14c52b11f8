package runstore

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

func TestSaveLoadPurge(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs")
	now := time.Now()
	clock := now
	s := Store{Dir: dir, Now: func() time.Time { return clock }}
	if err := s.Save(Record{ReqID: "abc123", Script: "true", Hosts: []string{"h"}}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "ABC.json"), nil, 0o644)

	rec, err := s.Load("abc123")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := rec.MarshalJSON()
	// §7.8's five fields first, in order; args (a Go addition) after them.
	want := `{"reqid":"abc123","script":"true","hosts":["h"],"results":null,"completed":` +
		strconv.FormatInt(now.Unix(), 10) + `,"args":[]}`
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("record (-want +got):\n%s", diff)
	}
	clock = now.Add(23 * time.Hour)
	s.Purge()
	if _, err := s.Load("abc123"); err != nil {
		t.Fatalf("purged after 23 h: %v", err)
	}
	clock = now.Add(25 * time.Hour)
	s.Purge()
	if _, err := s.Load("abc123"); !errors.Is(err, ErrNoResult) {
		t.Fatalf("after 25 h: %v, want ErrNoResult", err)
	}
	for _, keep := range []string{"notes.txt", "ABC.json"} {
		if _, err := os.Stat(filepath.Join(dir, keep)); err != nil {
			t.Errorf("purge removed %s", keep)
		}
	}
	if _, err := s.Load("../x"); !errors.Is(err, ErrNoResult) {
		t.Errorf("Load(../x) = %v, want ErrNoResult", err)
	}
}

func TestPlanRerun(t *testing.T) {
	rec := func(s string) wire.Object {
		o, err := wire.ParseObject([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	tests := []struct {
		name string
		rec  string
		only []string
		want Rerun
		err  error
	}{
		{
			name: "by status, hosts keep their port",
			rec: `{"reqid":"r","script":"s","args":["a"],"hosts":["h1:1","h2:2","h3:3"],"results":[` +
				`{"host":"h1","exit":0,"status":"ok"},{"host":"h2","exit":3,"status":"failed"},` +
				`{"host":"h3","exit":-1,"error":"read timeout after 60s","status":"timeout"}]}`,
			only: DefaultOnly,
			want: Rerun{Script: "s", Args: []string{"a"}, Hosts: []string{"h2:2", "h3:3"}},
		},
		{
			name: "no status stored (older run): classified from exit and error",
			rec: `{"reqid":"r","script":"s","hosts":["a","b"],"results":[` +
				`{"host":"a","exit":-1,"error":"500 Can't connect to a:7443 (Connection refused)"},{"host":"b","exit":0}]}`,
			only: []string{"unreachable"},
			want: Rerun{Script: "s", Args: []string{}, Hosts: []string{"a"}},
		},
		{
			name: "counts differ (completion order): the result's host",
			rec:  `{"reqid":"r","script":"s","hosts":["a:1"],"results":[{"host":"x","exit":1},{"host":"y","exit":0}]}`,
			only: []string{"failed"},
			want: Rerun{Script: "s", Args: []string{}, Hosts: []string{"x"}},
		},
		{
			name: "nothing to rerun",
			rec:  `{"reqid":"r","script":"s","hosts":["a"],"results":[{"host":"a","exit":0}]}`,
			only: DefaultOnly,
			err:  ErrNothingToRerun,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanRerun(rec(tt.rec), tt.only)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
