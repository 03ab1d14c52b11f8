// Package e2e drives the real multicall binary, through its symlinked names,
// in throwaway roots (CTRL_EXEC_ROOT) over loopback: the way a user would.
package e2e

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// binDir holds the built binary and its role symlinks for the whole run.
var binDir string

// releaseTags are the build tags of make build.
const releaseTags = "urfave_cli_no_docs"

// Names the binary answers to (SPEC §1.1).
var roleNames = []string{
	"ctrl-exec", "ctrl-exec-dispatcher", "ced",
	"ctrl-exec-agent", "cea", "ctrl-exec-api", "update-ctrl-exec-serial",
}

// raceEnv is the race runtime's setting for every command the tests run:
// a race-built process otherwise sleeps 1 s at exit (atexit_sleep_ms) so
// other threads can finish a report, and the suite runs hundreds of them.
// A race is still reported, and fails the command with exit 66.
var raceEnv = "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")

// e2eParallel is how many tests of this package run at once unless
// -test.parallel is given: they wait on processes and sockets far more than
// they compute, so more of them than there are CPUs keeps the CPUs busy.
const e2eParallel = 8

func TestMain(m *testing.M) {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", strconv.Itoa(max(e2eParallel, runtime.GOMAXPROCS(0))))
	}
	dir, err := os.MkdirTemp("", "ctrl-exec-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		bin := filepath.Join(dir, "ctrl-exec-multicall")
		// As make build, plus the tag that lets the tests shorten key
		// generation and timeouts (pkg/testknobs).
		args := []string{"build", "-tags", releaseTags + ",ctrlexec_testknobs", "-o", bin}
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

// Every test here calls t.Parallel() first thing (after a skip): a serial
// test runs alone before all the others, and its whole duration is added
// to the suite's.
func TestEveryTestIsParallel(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" {
				continue
			}
			if !callsParallel(fn.Body.List) {
				t.Errorf("%s: %s does not call t.Parallel() before its work", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
}

// callsParallel reports whether t.Parallel() is among the first statements,
// after any if-blocks (skips).
func callsParallel(stmts []ast.Stmt) bool {
	for _, s := range stmts {
		if _, skip := s.(*ast.IfStmt); skip {
			continue
		}
		call, ok := s.(*ast.ExprStmt)
		if !ok {
			return false
		}
		sel, ok := call.X.(*ast.CallExpr)
		if !ok {
			return false
		}
		fn, ok := sel.Fun.(*ast.SelectorExpr)
		return ok && fn.Sel.Name == "Parallel"
	}
	return false
}
