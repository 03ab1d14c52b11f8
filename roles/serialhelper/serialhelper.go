// Package serialhelper is update-ctrl-exec-serial: the allowlisted script a
// control host runs on each agent during certificate rotation. It stores the
// new ctrl-exec certificate serial and makes the agent reload it.
//
// Exit codes (upstream's): 0 success, 1 usage error, 2 write failed,
// 3 written but the agent could not be signalled.
package serialhelper

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/ctrlserial"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

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
			"agent daemon: the PID in $ENVEXEC_AGENT_PIDFILE or /run/ctrl-exec-agent.pid, else the\n" +
			"ctrl-exec-agent process listening on agent.conf's port (never merely the process that\n" +
			"runs this script: under a Perl agent that is a per-connection child).\n\n" +
			"Exit codes: 0 updated and reloaded, 1 usage, 2 write failed, 3 written but not reloaded\n" +
			"(the daemon could not be identified for sure, or not signalled).",
		Version:         buildinfo.Get().String(),
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
	switch err := ctrlserial.Check(serial); {
	case errors.Is(err, ctrlserial.ErrNotHex):
		return cliapp.Exit(1, "Invalid serial format: must be hex string")
	case err != nil:
		// Upstream demanded 8-40 digits, but CA serials are short (02, 0f, …):
		// 1-40 is a deliberate relaxation (D-26).
		return cliapp.Exit(1, fmt.Sprintf("Invalid serial length: expected 1–40 hex characters, got %d", len(serial)))
	}
	serial = perltext.Lower(serial)

	target := firstNonEmpty(os.Getenv("ENVEXEC_SERIAL_FILE"), os.Getenv("DISPATCHER_SERIAL_FILE"), p.AgentSerial())
	dir := filepath.Dir(target)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return cliapp.Exit(2, fmt.Sprintf("Serial directory '%s' does not exist", dir))
	}
	if err := ctrlserial.Write(target, serial); err != nil {
		return cliapp.Exit(2, fmt.Sprintf("Cannot write serial file '%s': %v", target, err))
	}

	pid, err := findAgent(firstNonEmpty(os.Getenv("ENVEXEC_AGENT_PIDFILE"), p.AgentPIDFile()), agentPort(p))
	if err != nil {
		return cliapp.Exit(3, "Serial written but agent process not found - reload manually.\n("+err.Error()+")")
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return cliapp.Exit(3, fmt.Sprintf("Serial written but SIGHUP to pid %d failed.\n"+
			"Reload manually: kill -HUP $(pidof ctrl-exec-agent)", pid))
	}
	fmt.Fprintf(stdout, "Serial updated to %s. Agent reloaded (pid %d).\n", serial, pid)
	return nil
}

// agentPort returns a reader of the port in agent.conf, whose listener is
// the daemon to signal.
func agentPort(p paths.Paths) func() (int, error) {
	return func() (int, error) {
		cfg, _, err := config.LoadAgent(p.AgentConf(), p)
		if err != nil {
			return 0, fmt.Errorf("cannot tell the agent's port: %w", err)
		}
		return cfg.Port, nil
	}
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
