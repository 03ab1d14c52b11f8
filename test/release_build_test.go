package e2e

import (
	"bytes"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// TestReleaseBuildIgnoresTestKnobs builds the binary as make build does,
// without the ctrlexec_testknobs tag, and checks that no environment can
// shrink its keys or bend its timing: setup-ca makes a 4096-bit CA key
// despite CTRL_EXEC_TEST_KEY_BITS and leaves the key pool alone, and no
// knob's name is even in the binary, so no code in it can read one.
func TestReleaseBuildIgnoresTestKnobs(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t, releaseTags)

	for _, b := range []struct {
		path    string
		release bool
	}{{bin, true}, {filepath.Join(binDir, "ctrl-exec"), false}} {
		image, err := os.ReadFile(b.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, knob := range testknobs.All {
			if bytes.Contains(image, []byte(knob)) == b.release {
				t.Errorf("%s (release build %v) contains %s: %v", b.path, b.release, knob, !b.release)
			}
		}
	}

	ctl := NewRoot(t, "")
	pool := giveKeys(t, ctl, 1)
	cmd := exec.Command(bin, "setup-ca")
	cmd.Env = append(ctl.Env(), testknobs.KeyBits+"=2048")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("setup-ca: %v\n%s", err, out)
	}
	key, err := pki.LoadKey(ctl.Path("/etc/ctrl-exec/ca.key"))
	if err != nil {
		t.Fatal(err)
	}
	if rsaKey, ok := key.(*rsa.PrivateKey); !ok || rsaKey.N.BitLen() != pki.DefaultKeyBits {
		t.Errorf("CA key %T (RSA %v), want RSA-%d", key, ok, pki.DefaultKeyBits)
	}
	if left, _ := filepath.Glob(filepath.Join(pool, "*.pem")); len(left) != 1 {
		t.Errorf("key pool after setup-ca: %q, want its one key untouched", left)
	}
}

// TestNoetcdBuild builds the binary as `make build-noetcd` does, for agents
// and appliances: no etcd package is linked in, --version says which build
// it is, and a ctrl-exec.conf asking for the etcd backend is refused with
// a message that says why, exit 255, rather than half-working.
func TestNoetcdBuild(t *testing.T) {
	t.Parallel()
	tags := releaseTags + ",noetcd"
	deps, err := exec.Command("go", "list", "-deps", "-tags", tags, "..").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if strings.Contains(string(deps), "go.etcd.io/") {
		t.Errorf("the noetcd build still links etcd:\n%s", grepLines(string(deps), "go.etcd.io/"))
	}
	bin := buildBinary(t, tags)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.Contains(string(out), ", noetcd)") {
		t.Errorf("--version: %q, %v; want the noetcd flavour named", out, err)
	}

	ctl := NewRoot(t, "")
	writeFile(t, ctl.Dir, "/etc/ctrl-exec/ctrl-exec.conf", "state_backend = etcd\netcd_endpoints = 127.0.0.1:2379\n", 0o640)
	cmd := exec.Command(bin, "list-agents")
	cmd.Env = ctl.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 255 {
		t.Fatalf("list-agents with state_backend = etcd: %v, want exit 255\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "ctrl-exec.conf: state_backend = etcd, but this ctrl-exec was built without etcd support") {
		t.Errorf("stderr %q does not name the file and the reason", stderr.String())
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// buildBinary builds the multicall binary with tags into a temp dir, under
// the race detector when the suite runs under it (so TestMain's build
// cache serves it), and returns its path.
func buildBinary(tb testing.TB, tags string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "ctrl-exec")
	args := []string{"build", "-tags", tags, "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	if out, err := exec.Command("go", append(args, "..")...).CombinedOutput(); err != nil {
		tb.Fatalf("go build -tags %s: %v\n%s", tags, err, out)
	}
	return bin
}
