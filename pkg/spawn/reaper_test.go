package spawn

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startReaper makes the test process a subreaper (for the rest of the test
// binary's life; orphans of later tests then linger as zombies, which
// waitGone accepts) and runs ReapOrphans until the test ends.
func startReaper(t *testing.T, onReap func(int, syscall.WaitStatus)) {
	t.Helper()
	if err := SetSubreaper(); err != nil {
		t.Skipf("cannot become a subreaper: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ReapOrphans(ctx, onReap); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestReapOrphansReapsOrphanedGrandchild(t *testing.T) {
	reaped := make(chan int, 16)
	startReaper(t, func(pid int, _ syscall.WaitStatus) { reaped <- pid })

	s := script(t, t.TempDir(), "daemonise", `sleep 0.3 </dev/null >/dev/null 2>&1 & echo $!`)
	res := Run(context.Background(), Cmd{Path: s})
	if res.Exit != 0 {
		t.Fatalf("exit %d: %v", res.Exit, res.Err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(res.Stdout)))
	if err != nil {
		t.Fatalf("orphan pid %q: %v", res.Stdout, err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case pid := <-reaped:
			if pid != orphan {
				continue
			}
			if _, _, ok := procStat(orphan); ok {
				t.Errorf("orphan %d reported reaped but still in /proc", orphan)
			}
			return
		case <-timeout:
			t.Fatalf("orphan %d not reaped within 10 s", orphan)
		}
	}
}

func TestReapOrphansLeavesRunChildrenAlone(t *testing.T) {
	var mu sync.Mutex
	var stolen []int
	startReaper(t, func(pid int, _ syscall.WaitStatus) {
		mu.Lock()
		stolen = append(stolen, pid)
		mu.Unlock()
	})

	s := script(t, t.TempDir(), "exit7", "exit 7")
	const n = 40
	exits := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exits[i] = Run(context.Background(), Cmd{Path: s}).Exit
		}()
	}
	wg.Wait()
	for i, e := range exits {
		if e != 7 {
			t.Errorf("run %d: exit %d, want 7", i, e)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stolen) != 0 {
		t.Errorf("reaper took Run's children %v", stolen)
	}
}

func TestProcStatOfSelf(t *testing.T) {
	state, ppid, ok := procStat(os.Getpid())
	if !ok || ppid != os.Getppid() || state == 'Z' {
		t.Errorf("procStat(self) = %q, %d, %v; want running, %d, true", state, ppid, ok, os.Getppid())
	}
	// A comm with spaces and parentheses must not shift the fields.
	dir := t.TempDir()
	odd := filepath.Join(dir, "a) b (c")
	if err := os.Symlink("/bin/sleep", odd); err != nil {
		t.Fatal(err)
	}
	p, err := os.StartProcess(odd, []string{odd, "5"}, &os.ProcAttr{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Kill(); _, _ = p.Wait() }()
	if _, ppid, ok := procStat(p.Pid); !ok || ppid != os.Getpid() {
		t.Errorf("procStat(%q) ppid %d ok %v; want %d", odd, ppid, ok, os.Getpid())
	}
}
