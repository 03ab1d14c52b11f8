package testknobs_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// The same tests run in both builds: `go test` (a release build, which must
// ignore every knob) and `go test -tags ctrlexec_testknobs` (make test runs
// both).

func TestLookup(t *testing.T) {
	got := map[string]string{}
	want := map[string]string{}
	for _, knob := range testknobs.All {
		t.Setenv(knob, "set")
		got[knob] = testknobs.Lookup(knob)
		want[knob] = ""
		if testknobs.Enabled {
			want[knob] = "set"
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Lookup (-want +got), test build %v:\n%s", testknobs.Enabled, diff)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		value string
		want  time.Duration
	}{
		{"", time.Minute}, {"250ms", 250 * time.Millisecond}, {"3s", 3 * time.Second},
		{"0s", time.Minute}, {"-1s", time.Minute}, {"soon", time.Minute},
	}
	for _, tt := range tests {
		t.Setenv(testknobs.PairingPoll, tt.value)
		want := tt.want
		if !testknobs.Enabled {
			want = time.Minute
		}
		if got := testknobs.Duration(testknobs.PairingPoll, time.Minute); got != want {
			t.Errorf("Duration(%q) = %v, want %v", tt.value, got, want)
		}
	}
}

func TestClaimPooledKey(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"rsa2048-00.pem": "key 0", "rsa2048-01.pem": "key 1", "rsa4096-00.pem": "big key",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(testknobs.KeyPool, dir)
	var got []string
	for range 3 {
		got = append(got, string(testknobs.ClaimPooledKey(2048)))
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	for i := range left {
		left[i] = filepath.Base(left[i])
	}
	want := []string{"key 0", "key 1", ""} // each key once, then none
	wantLeft := []string{"rsa4096-00.pem"}
	if !testknobs.Enabled {
		want = []string{"", "", ""} // a release build never reads the pool
		wantLeft = []string{"rsa2048-00.pem", "rsa2048-01.pem", "rsa4096-00.pem"}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("claimed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantLeft, left); diff != "" {
		t.Errorf("left in the pool (-want +got):\n%s", diff)
	}
}
