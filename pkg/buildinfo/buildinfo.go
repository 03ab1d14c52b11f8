// Package buildinfo carries what a build says about itself: the release
// version, the commit and the Go version.
//
// make stamps Version and Commit with -ldflags "-X …/pkg/buildinfo.Version=…"
// from packaging/version.sh: "0.9.0" on a commit tagged v0.9.0, else
// "0.9.0-dev+<commit>" (the next release, from the VERSION file beside this
// one). A plain "go build" gets the same shape from the VCS information the
// Go toolchain records.
package buildinfo

import (
	_ "embed"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Version and Commit are stamped at build time ("" = not stamped).
var (
	Version = ""
	Commit  = ""
)

// next is the release this source tree is heading for (VERSION).
//
//go:embed VERSION
var next string

// Info is what --version and /health report.
type Info struct {
	Version string // release version: 0.9.0 or 0.9.0-dev+<commit>
	Commit  string // short commit hash, "unknown" when neither stamped nor recorded
	Go      string // Go toolchain version, e.g. go1.26.8
	Flavour string // "" for the standard build, "noetcd" for the build without etcd
}

// Get returns this binary's build information.
func Get() Info {
	return resolve(Version, Commit, vcsRevision())
}

// resolve fills in what was not stamped from the toolchain's VCS record.
func resolve(version, commit, vcs string) Info {
	if commit == "" {
		commit = vcs
	}
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if version == "" {
		version = strings.TrimSpace(next) + "-dev"
		if commit != "" {
			version += "+" + commit
		}
	}
	if commit == "" {
		commit = "unknown"
	}
	return Info{Version: version, Commit: commit, Go: runtime.Version(), Flavour: flavour}
}

// String is the --version line after the program name.
func (i Info) String() string {
	s := fmt.Sprintf("%s (commit %s, %s, %s/%s", i.Version, i.Commit, i.Go, runtime.GOOS, runtime.GOARCH)
	if i.Flavour != "" {
		s += ", " + i.Flavour
	}
	return s + ")"
}

// vcsRevision is the commit the Go toolchain recorded (go build in a git tree).
func vcsRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" && dirty {
		rev += ".dirty"
	}
	return rev
}
