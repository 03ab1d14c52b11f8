package serialhelper

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// findAgent returns the PID of the serving agent daemon: the one in the PID
// file if there is one (upstream), else the process that owns the agent's
// listening socket on the port agent.conf names. Its parent is never assumed: under a Perl agent
// that is a per-connection child, and signalling it leaves the daemon on the
// old serial (issue 9 B). An error says why it cannot be sure.
func findAgent(pidFile string, agentPort func() (int, error)) (int, error) {
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid, nil
		}
	}
	port, err := agentPort()
	if err != nil {
		return 0, err
	}
	return listenerOwner(port)
}

// listenerOwner finds the agent daemon listening on TCP port: the sockets
// in LISTEN state on that port (/proc/net/tcp, tcp6), the processes holding
// them (/proc/*/fd), and of those the one whose parent is not one of them (a
// child that inherited the socket is not the daemon). It must run
// ctrl-exec-agent.
func listenerOwner(port int) (int, error) {
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("agent port %d cannot be looked up", port)
	}
	inodes := map[string]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(table, port, inodes); err != nil && !os.IsNotExist(err) {
			return 0, err
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	holders := socketHolders(inodes)
	if len(holders) == 0 {
		return 0, fmt.Errorf("the process listening on port %d cannot be identified (its /proc/PID/fd is not readable by this user)", port)
	}
	var roots []int
	for pid := range holders {
		if !holders[parentOf(pid)] {
			roots = append(roots, pid)
		}
	}
	sort.Ints(roots)
	if len(roots) != 1 {
		return 0, fmt.Errorf("%d unrelated processes listen on port %d (pids %v)", len(roots), port, roots)
	}
	if !isAgent(roots[0]) {
		return 0, fmt.Errorf("pid %d listens on port %d but is not ctrl-exec-agent", roots[0], port)
	}
	return roots[0], nil
}

// listeningInodes adds the inodes of sockets listening on port in table.
func listeningInodes(table string, port int, inodes map[string]bool) error {
	f, err := os.Open(table)
	if err != nil {
		return err
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], want) || f[9] == "0" {
			continue
		}
		inodes[f[9]] = true
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", table, err)
	}
	return nil
}

// socketHolders are the processes (other than this one) with an open file
// descriptor on one of the socket inodes.
func socketHolders(inodes map[string]bool) map[int]bool {
	holders := map[int]bool{}
	self := os.Getpid()
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		dir := filepath.Join("/proc", p.Name(), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:[") {
				continue
			}
			if inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
				holders[pid] = true
				break
			}
		}
	}
	return holders
}

// isAgent reports whether pid runs ctrl-exec-agent: Go (argv[0] is the
// symlink name, or "<multicall binary> agent", D-1) or Perl (the script is
// the interpreter's first argument that is not an option).
func isAgent(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	agentName := func(a string) bool {
		n := filepath.Base(a)
		return n == "ctrl-exec-agent" || n == "cea" || n == "dispatcher-agent"
	}
	if agentName(argv[0]) {
		return true
	}
	if strings.HasPrefix(filepath.Base(argv[0]), "perl") {
		for _, a := range argv[1:] {
			if !strings.HasPrefix(a, "-") {
				return agentName(a)
			}
		}
		return false
	}
	return len(argv) > 1 && argv[1] == "agent" && strings.HasPrefix(filepath.Base(argv[0]), "ctrl-exec")
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the ")" that closes the command name: state ppid …
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}
