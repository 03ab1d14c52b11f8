package packaging

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var distArches = []string{"amd64", "arm64", "armv7", "mipsle", "mips"}

// tarballPattern matches the release tarball of one arch and build: the
// standard ctrl-exec-<ver>-linux-<arch>.tar.gz (versions start with a digit)
// or ctrl-exec-noetcd-<ver>-linux-<arch>.tar.gz.
func tarballPattern(build, arch string) string {
	if build == noetcd {
		return "ctrl-exec-noetcd-*-linux-" + arch + ".tar.gz"
	}
	return "ctrl-exec-[0-9]*-linux-" + arch + ".tar.gz"
}

// make dist: two tarballs per arch, the standard build and the noetcd build,
// each whose sha256 checks, with install.sh at its top, so the quick start's
// "sudo ./install.sh --ctrl-exec" works as written, and bin/ctrl-exec the
// build its name says; SHA256SUMS and SIZES cover them all.
func TestDistTarballs(t *testing.T) {
	need(t, "tar", "sha256sum")
	var wantSums, wantSizes []string
	for _, arch := range distArches {
		for _, build := range []string{standard, noetcd} {
			tarball := artefact(t, tarballPattern(build, arch))
			cmd := "cd " + filepath.Dir(tarball) + " && sha256sum -c " + filepath.Base(tarball) + ".sha256"
			run(t, "", "sh", "-c", cmd)
			files := map[string]member{}
			zr, err := gzip.NewReader(bytes.NewReader(readArtefact(t, filepath.Base(tarball))))
			if err != nil {
				t.Fatal(err)
			}
			if err := readTar(zr, files); err != nil {
				t.Fatalf("%s: %v", filepath.Base(tarball), err)
			}
			dir := strings.TrimSuffix(filepath.Base(tarball), ".tar.gz")
			for _, want := range []string{"install.sh", "bin/ctrl-exec", "bin/cea", "packaging/install.sh", "man/ctrl-exec.1"} {
				if _, ok := files[dir+"/"+want]; !ok {
					t.Errorf("%s lacks %s/%s", filepath.Base(tarball), dir, want)
				}
			}
			// The tarball holds the bare binary of its build, and that is the build named.
			bare := readArtefact(t, build+arch)
			checkBuild(t, "dist/"+build+arch, bare, build)
			if !bytes.Equal(files[dir+"/bin/ctrl-exec"].body, bare) {
				t.Errorf("%s: bin/ctrl-exec is not dist/%s%s", filepath.Base(tarball), build, arch)
			}

			name := "standard"
			if build == noetcd {
				name = "noetcd"
			}
			wantSums = append(wantSums, filepath.Base(tarball))
			wantSizes = append(wantSizes, fmt.Sprintf("%-8s %-8s binary %9d bytes  tarball %9d bytes", arch, name, len(bare), size(tarball)))
			t.Logf("%-7s %-8s binary %d bytes, tarball %d bytes", arch, name, len(bare), size(tarball))
		}
	}

	// SHA256SUMS checks and names every tarball; SIZES has a line per arch and build.
	distDir := filepath.Join(top, "dist")
	run(t, "", "sh", "-c", "cd "+distDir+" && sha256sum --quiet -c SHA256SUMS")
	var gotSums []string
	for _, l := range strings.Split(strings.TrimSpace(string(readArtefact(t, "SHA256SUMS"))), "\n") {
		if f := strings.Fields(l); len(f) == 2 {
			gotSums = append(gotSums, f[1])
		}
	}
	sort.Strings(wantSums)
	sort.Strings(gotSums)
	if diff := cmp.Diff(wantSums, gotSums); diff != "" {
		t.Errorf("SHA256SUMS names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantSizes, strings.Split(strings.TrimSpace(string(readArtefact(t, "SIZES"))), "\n")); diff != "" {
		t.Errorf("SIZES (-want +got):\n%s", diff)
	}

	// The quick start's first step, from the unpacked amd64 release.
	unpacked := t.TempDir()
	run(t, "", "tar", "-C", unpacked, "-xzf", artefact(t, tarballPattern(standard, "amd64")))
	rel, _ := filepath.Glob(filepath.Join(unpacked, "ctrl-exec-*"))
	stage := t.TempDir()
	out := run(t, "", "sh", "-c", "cd "+rel[0]+" && ./install.sh --ctrl-exec --prefix "+stage)
	for _, f := range []string{"usr/local/bin/ctrl-exec", "etc/ctrl-exec/ctrl-exec.conf", "usr/local/lib/ctrl-exec/auth-hook.example",
		"usr/local/share/bash-completion/completions/ctrl-exec"} {
		if _, err := os.Stat(filepath.Join(stage, f)); err != nil {
			t.Errorf("./install.sh --ctrl-exec from the release top: %v\n%s", err, out)
		}
	}

	// An agent from the unpacked noetcd release: the installed binary says
	// which build it is.
	unpacked = t.TempDir()
	run(t, "", "tar", "-C", unpacked, "-xzf", artefact(t, tarballPattern(noetcd, "amd64")))
	rel, _ = filepath.Glob(filepath.Join(unpacked, "ctrl-exec-noetcd-*"))
	stage = t.TempDir()
	out = run(t, "", "sh", "-c", "cd "+rel[0]+" && ./install.sh --agent --prefix "+stage)
	if v := run(t, "", filepath.Join(stage, "usr/local/bin/ctrl-exec"), "--version"); !strings.Contains(v, ", noetcd)") {
		t.Errorf("./install.sh --agent from the noetcd release installed %q; want the noetcd build\n%s", v, out)
	}
}

func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}
