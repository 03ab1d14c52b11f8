package spawn

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// children is the set of PIDs Run is waiting for. It is package state on
// purpose: the children of a process are process-wide, and the reaper must
// know every one of them whichever caller started it.
var children = struct {
	// starting is held shared while a child is started and registered, and
	// exclusively while the reaper reaps, so the reaper never sees a child
	// of Run that is not yet in pids.
	starting sync.RWMutex
	mu       sync.Mutex
	pids     map[int]struct{}
}{pids: map[int]struct{}{}}

func startTracked(path string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	children.starting.RLock()
	defer children.starting.RUnlock()
	proc, err := os.StartProcess(path, argv, attr)
	if err != nil {
		return nil, err
	}
	children.mu.Lock()
	children.pids[proc.Pid] = struct{}{}
	children.mu.Unlock()
	return proc, nil
}

func untrack(pid int) {
	children.mu.Lock()
	delete(children.pids, pid)
	children.mu.Unlock()
}

func tracked(pid int) bool {
	children.mu.Lock()
	defer children.mu.Unlock()
	_, ok := children.pids[pid]
	return ok
}

// SetSubreaper makes this process a child subreaper (PR_SET_CHILD_SUBREAPER):
// orphaned descendants are re-parented to it instead of to PID 1. PID 1 is
// one already.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

// ReapOrphans reaps zombie children that Run did not start — orphaned
// grandchildren re-parented to this process as PID 1 or as a subreaper
// (SPEC §19.2) — until ctx ends. It never calls wait(-1): on each SIGCHLD it
// scans /proc for zombies whose parent is this process and waits for exactly
// those PIDs that Run is not tracking. A child started with os/exec or
// os.StartProcess outside this package would be reaped too; start children
// only through Run while this runs. onReap, if not nil, is called for each
// reaped PID.
func ReapOrphans(ctx context.Context, onReap func(pid int, status syscall.WaitStatus)) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	for {
		reapUntracked(onReap)
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		}
	}
}

func reapUntracked(onReap func(pid int, status syscall.WaitStatus)) {
	candidates := zombieChildren(os.Getpid())
	if len(candidates) == 0 {
		return
	}
	// No Run is between fork and registration while this is held, so an
	// untracked zombie child here is an orphan.
	children.starting.Lock()
	defer children.starting.Unlock()
	for _, pid := range candidates {
		if tracked(pid) {
			continue
		}
		var ws unix.WaitStatus
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err == nil && got == pid && onReap != nil {
			onReap(pid, syscall.WaitStatus(ws))
		}
	}
}

// zombieChildren lists the zombie processes whose parent is ppid.
func zombieChildren(ppid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		state, parent, ok := procStat(pid)
		if ok && state == 'Z' && parent == ppid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStat reads the state and parent PID from /proc/<pid>/stat.
func procStat(pid int) (state byte, ppid int, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) S ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 2 || len(fields[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(fields[1]))
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ppid, true
}
