// Package serialhelper is update-ctrl-exec-serial: the allowlisted script a
// control host runs on each agent during certificate rotation. It stores the
// new ctrl-exec certificate serial and makes the agent reload it.
//
// Exit codes (upstream's): 0 success, 1 usage error, 2 write failed,
// 3 written but the agent could not be signalled.
package serialhelper

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

var hexSerial = regexp.MustCompile(`^[0-9a-fA-F]+$`)

// Main runs update-ctrl-exec-serial and returns its exit status.
func Main(prog string, args []string) int {
	p := paths.FromEnv()
	app := &cli.App{
		Name:      "update-ctrl-exec-serial",
		Usage:     "store a new ctrl-exec certificate serial on this agent and reload the agent",
		UsageText: "update-ctrl-exec-serial <hex-serial>",
		Description: "Run by the control host as an allowlisted agent script during certificate rotation.\n" +
			"Writes the serial (1-40 hex digits, stored lowercase) to $ENVEXEC_SERIAL_FILE,\n" +
			"$DISPATCHER_SERIAL_FILE or /etc/ctrl-exec-agent/ctrl-exec-serial, then sends SIGHUP to the\n" +
			"agent: the PID in $ENVEXEC_AGENT_PIDFILE or /run/ctrl-exec-agent.pid, else the agent that\n" +
			"runs this script, else the one ctrl-exec-agent process.\n\n" +
			"Exit codes: 0 updated and reloaded, 1 usage, 2 write failed, 3 written but not reloaded.",
		Version:         buildinfo.Version,
		HideHelpCommand: true,
		Action: func(c *cli.Context) error {
			return update(p, c.Args().Slice(), os.Stdout)
		},
	}
	return cliapp.Run(app, append([]string{prog}, args...), os.Stderr)
}

func update(p paths.Paths, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return cliapp.Exit(1, "Usage: update-ctrl-exec-serial <hex-serial>")
	}
	serial := args[0]
	if !hexSerial.MatchString(serial) {
		return cliapp.Exit(1, "Invalid serial format: must be hex string")
	}
	// Upstream demanded 8-40 digits, but CA serials are short (02, 0f, …):
	// 1-40 is a deliberate relaxation (D-26).
	if len(serial) > 40 {
		return cliapp.Exit(1, fmt.Sprintf("Invalid serial length: expected 1–40 hex characters, got %d", len(serial)))
	}
	serial = strings.ToLower(serial)

	target := firstNonEmpty(os.Getenv("ENVEXEC_SERIAL_FILE"), os.Getenv("DISPATCHER_SERIAL_FILE"), p.AgentSerial())
	dir := filepath.Dir(target)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return cliapp.Exit(2, fmt.Sprintf("Serial directory '%s' does not exist", dir))
	}
	if err := atomicfile.Write(target, []byte(serial+"\n"), 0644); err != nil {
		return cliapp.Exit(2, fmt.Sprintf("Cannot write serial file '%s': %v", target, err))
	}

	pid := findAgent(firstNonEmpty(os.Getenv("ENVEXEC_AGENT_PIDFILE"), p.AgentPIDFile()))
	if pid == 0 {
		return cliapp.Exit(3, "Serial written but agent process not found - reload manually.")
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return cliapp.Exit(3, fmt.Sprintf("Serial written but SIGHUP to pid %d failed.\n"+
			"Reload manually: kill -HUP $(pidof ctrl-exec-agent)", pid))
	}
	fmt.Fprintf(stdout, "Serial updated to %s. Agent reloaded (pid %d).\n", serial, pid)
	return nil
}

// findAgent returns the agent's PID: from the PID file, else our parent when
// it is an agent (the agent runs this helper as a script), else the single
// agent process that is not the child of another agent. 0 = not found.
func findAgent(pidFile string) int {
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			return pid
		}
	}
	if ppid := os.Getppid(); isAgent(ppid) {
		return ppid
	}
	var found []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !isAgent(pid) || isAgent(parentOf(pid)) {
			continue
		}
		found = append(found, pid)
	}
	if len(found) == 1 {
		return found[0]
	}
	return 0
}

// isAgent reports whether pid runs ctrl-exec-agent: Go (argv[0] is the
// symlink name) or Perl (the script path is argv[1]).
func isAgent(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range argv {
		if i > 1 {
			break
		}
		switch filepath.Base(a) {
		case "ctrl-exec-agent", "cea":
			return i == 0 || strings.HasPrefix(filepath.Base(argv[0]), "perl")
		}
	}
	// "<multicall binary> agent …" (D-1).
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

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
