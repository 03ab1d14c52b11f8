// Package packaging proves the release artefacts for real: the container
// images built and run under Docker, the .deb installed with dpkg into a
// debootstrap root, the .apk/.ipk contents, install.sh into fresh roots and
// over a Perl installation, and the cross-built binaries under qemu-user.
//
// It runs under "make test-packaging" (root; test/packaging/setup.sh
// installs the tools and starts dockerd; make dist and make packages build
// what is tested). Under a plain "go test ./..." every test skips; with
// CTRL_EXEC_PACKAGING=1, as the make target sets, a missing tool or
// artefact is a failure, never a skip.
package packaging

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var enabled = os.Getenv("CTRL_EXEC_PACKAGING") == "1"

// top is the source tree (test/packaging is two levels down).
var top, _ = filepath.Abs("../..")

// need skips the test under a plain go test, and fails it when a tool it
// needs is missing while the packaging target runs it.
func need(t *testing.T, tools ...string) {
	t.Helper()
	if !enabled {
		t.Skip("packaging suite: run make test-packaging (sets CTRL_EXEC_PACKAGING=1)")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the packaging suite runs as root (chroot, dpkg, docker)")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: test/packaging/setup.sh installs it", tool)
		}
	}
}

// artefact is a file make dist / make packages left in dist/.
func artefact(t *testing.T, pattern string) string {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(top, "dist", pattern))
	if len(matches) != 1 {
		t.Fatalf("dist/%s: %d matches %q; run make dist packages", pattern, len(matches), matches)
	}
	return matches[0]
}

// The two builds make dist makes of each arch, by their bare binary in dist/.
const (
	standard = "ctrl-exec-linux-"        // every role, etcd state backend linked in
	noetcd   = "ctrl-exec-noetcd-linux-" // built with -tags noetcd: agents, appliances
)

// linksEtcd reads, without running it (any arch), what the Go toolchain
// recorded in a binary: whether it was built with the noetcd tag, and
// whether any etcd module is linked in. what names the binary in failures.
func linksEtcd(t *testing.T, what string, binary []byte) (taggedNoetcd, etcd bool) {
	t.Helper()
	bi, err := buildinfo.Read(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("%s: no Go build information: %v", what, err)
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			for _, tag := range strings.Split(s.Value, ",") {
				taggedNoetcd = taggedNoetcd || tag == "noetcd"
			}
		}
	}
	for _, d := range bi.Deps {
		etcd = etcd || strings.HasPrefix(d.Path, "go.etcd.io/")
	}
	return taggedNoetcd, etcd
}

// checkBuild fails the test unless binary is the build wanted (standard or
// noetcd): tagged so and, for noetcd, with no etcd module linked in.
func checkBuild(t *testing.T, what string, binary []byte, want string) {
	t.Helper()
	tagged, etcd := linksEtcd(t, what, binary)
	switch {
	case want == noetcd && (!tagged || etcd):
		t.Errorf("%s: the standard build (noetcd tag %v, etcd linked %v); want the noetcd build", what, tagged, etcd)
	case want == standard && (tagged || !etcd):
		t.Errorf("%s: the noetcd build (noetcd tag %v, etcd linked %v); want the standard build", what, tagged, etcd)
	}
}

// readArtefact is the content of a file make dist / make packages left.
func readArtefact(t *testing.T, pattern string) []byte {
	t.Helper()
	b, err := os.ReadFile(artefact(t, pattern))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs a command (5 minute limit) and returns stdout; it fails the test
// on a non-zero exit, showing stderr.
func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	out, err := tryRun(stdin, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

func tryRun(stdin string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%v\nstdout: %s\nstderr: %s", err, out.String(), errb.String())
	}
	return out.String(), nil
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cacheDir is where slow-to-make inputs (the debootstrap root) are kept
// between runs.
func cacheDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CTRL_EXEC_PKG_CACHE")
	if dir == "" {
		dir = "/var/cache/ctrl-exec-test"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMain(m *testing.M) {
	if !enabled {
		fmt.Println("packaging suite skipped: run make test-packaging")
	}
	// Installers create files with the umask: the layouts compared assume 022.
	syscall.Umask(0o022)
	os.Exit(m.Run())
}
