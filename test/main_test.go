// Package e2e drives the real multicall binary, through its symlinked names,
// in throwaway roots (CTRL_EXEC_ROOT) over loopback: the way a user would.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds the built binary and its role symlinks for the whole run.
var binDir string

// Names the binary answers to (SPEC §1.1).
var roleNames = []string{
	"ctrl-exec", "ctrl-exec-dispatcher", "ced",
	"ctrl-exec-agent", "cea", "ctrl-exec-api", "update-ctrl-exec-serial",
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ctrl-exec-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "ctrl-exec-multicall")
		args := []string{"build", "-tags", "urfave_cli_no_docs", "-o", bin} // as make build
		if raceEnabled {
			args = append(args, "-race") // the real binary runs under the race detector too
		}
		build := exec.Command("go", append(args, "..")...)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building the binary:", err)
			return 1
		}
		for _, name := range roleNames {
			if err := os.Symlink(bin, filepath.Join(dir, name)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}
