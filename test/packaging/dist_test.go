package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// make dist: a tarball per arch whose sha256 checks, with install.sh at its
// top, so the quick start's "sudo ./install.sh --ctrl-exec" works as written.
func TestDistTarballs(t *testing.T) {
	need(t, "tar", "sha256sum")
	for _, arch := range []string{"amd64", "arm64", "armv7", "mipsle", "mips"} {
		tarball := artefact(t, "ctrl-exec-*-linux-"+arch+".tar.gz")
		cmd := "cd " + filepath.Dir(tarball) + " && sha256sum -c " + filepath.Base(tarball) + ".sha256"
		run(t, "", "sh", "-c", cmd)
		list := run(t, "", "tar", "-tzf", tarball)
		dir := strings.TrimSuffix(filepath.Base(tarball), ".tar.gz")
		for _, want := range []string{dir + "/install.sh", dir + "/bin/ctrl-exec", dir + "/bin/cea", dir + "/packaging/install.sh", dir + "/man/ctrl-exec.1"} {
			if !strings.Contains(list, want+"\n") {
				t.Errorf("%s lacks %s", filepath.Base(tarball), want)
			}
		}
		fi, _ := os.Stat(artefact(t, "ctrl-exec-linux-"+arch))
		t.Logf("%-7s binary %d bytes, tarball %d bytes", arch, fi.Size(), size(tarball))
	}

	// The quick start's first step, from the unpacked amd64 release.
	unpacked := t.TempDir()
	run(t, "", "tar", "-C", unpacked, "-xzf", artefact(t, "ctrl-exec-*-linux-amd64.tar.gz"))
	rel, _ := filepath.Glob(filepath.Join(unpacked, "ctrl-exec-*"))
	stage := t.TempDir()
	out := run(t, "", "sh", "-c", "cd "+rel[0]+" && ./install.sh --ctrl-exec --prefix "+stage)
	for _, f := range []string{"usr/local/bin/ctrl-exec", "etc/ctrl-exec/ctrl-exec.conf", "usr/local/lib/ctrl-exec/auth-hook.example",
		"usr/local/share/bash-completion/completions/ctrl-exec"} {
		if _, err := os.Stat(filepath.Join(stage, f)); err != nil {
			t.Errorf("./install.sh --ctrl-exec from the release top: %v\n%s", err, out)
		}
	}
}

func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}
