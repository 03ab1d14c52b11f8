package buildinfo

import (
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestResolve(t *testing.T) {
	goV := runtime.Version()
	next0 := strings.TrimSpace(next)
	tests := []struct {
		name, version, commit, vcs string
		want                       Info
	}{
		{"release build", "0.9.0", "0123456789ab", "", Info{"0.9.0", "0123456789ab", goV, flavour}},
		{"between tags, stamped", "0.9.0-dev+0123456789ab", "0123456789ab", "", Info{"0.9.0-dev+0123456789ab", "0123456789ab", goV, flavour}},
		{"go build in a git tree", "", "", "0123456789abcdef0123", Info{next0 + "-dev+0123456789ab", "0123456789ab", goV, flavour}},
		{"go build, no VCS", "", "", "", Info{next0 + "-dev", "unknown", goV, flavour}},
		{"stamped commit wins", "", "fedcba987654", "0123456789ab", Info{next0 + "-dev+fedcba987654", "fedcba987654", goV, flavour}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, resolve(tt.version, tt.commit, tt.vcs)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// The VERSION file is a bare semantic version, as packaging/version.sh expects.
func TestNextIsAVersion(t *testing.T) {
	got := resolve("", "", "").Version
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+-dev$`).MatchString(got) {
		t.Errorf("unstamped version %q; VERSION must hold the next release, e.g. 0.9.0", got)
	}
}
