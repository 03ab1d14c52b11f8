package e2e

import (
	"bytes"
	"crypto/rsa"
	"os"
	"os/exec"
	"path/filepath"
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
	dir := t.TempDir()
	bin := filepath.Join(dir, "ctrl-exec")
	args := []string{"build", "-tags", releaseTags, "-o", bin}
	if raceEnabled {
		args = append(args, "-race") // reuse the build cache of TestMain's build
	}
	build := exec.Command("go", append(args, "..")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

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
