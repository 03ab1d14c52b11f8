// Package ctrlexec is the control-host CLI (ctrl-exec, ctrl-exec-dispatcher,
// ced): a thin layer of commands over pkg/.
package ctrlexec

import (
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/completion"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

// env is what every command needs, built once per invocation and passed in.
type env struct {
	paths  paths.Paths
	log    zerolog.Logger
	now    func() time.Time
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	state  *state.Backend // opened on first use by stateBackend
}

// Main runs the control-host CLI and returns the exit status.
func Main(prog string, args []string) int {
	e := &env{
		paths:  paths.FromEnv(),
		now:    time.Now,
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
	}
	defer e.closeState()
	return cliapp.Launch(prog, args, "", usage, true, newApp(e), e.stderr, func(mode string) {
		// pairing-mode is a daemon for logging purposes (D-28).
		e.log = logx.New(logx.IdentDispatcher, mode == "pairing-mode")
	})
}

func newApp(e *env) *cli.App {
	app := &cli.App{
		Name:            "ctrl-exec",
		Usage:           "run allowlisted scripts on a fleet of ctrl-exec agents over mTLS",
		Version:         buildinfo.Get().String(),
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		HideHelpCommand: true,
		// --tag values are whole key=value globs: never split at commas.
		DisableSliceFlagSeparator: true,
		Flags:                     append(globalFlags(e), fleetFlagDefs()...),
		Commands: []*cli.Command{
			runCommand(e),
			pingCommand(e),
			listLocksCommand(e),
			pairingModeCommand(e),
			listRequestsCommand(e),
			approveCommand(e),
			denyCommand(e),
			setupCACommand(e),
			setupCtrlExecCommand(e),
			listAgentsCommand(e),
			unpairCommand(e),
			rotateCertCommand(e),
			serialStatusCommand(e),
			discoverCommand(e),
			rerunCommand(e),
			stateCommand(e),
		},
	}
	app.Commands = append(app.Commands, completion.Command(app,
		[]string{"ctrl-exec", "ctrl-exec-dispatcher", "ced"}, []string{"run", "ping", "unpair"}, e.agentNames))
	// urfave/cli would otherwise give every command an "h"/"help"
	// subcommand, so `ctrl-exec approve h` would show help instead.
	for _, c := range app.Commands {
		c.HideHelpCommand = true
	}
	return app
}

// globalFlags with fleetFlagDefs are the Getopt table of SPEC §3.1
// (cliapp.Spec derives cliargs' table from them): valid anywhere before
// "--", any other option a usage error. --script/-s is the seed README's
// spelling; the fleet options are not upstream's (see fleetops.go).
func globalFlags(e *env) []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: e.paths.ControlConf(), Usage: "control-host config `FILE`"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON on stdout (run, ping, list-agents, list-requests, list-locks, serial-status)"},
		&cli.IntFlag{Name: "port", Usage: "default agent `PORT` for run/ping (7443), or the pairing listener port (7444)"},
		&cli.StringFlag{Name: "username", Value: os.Getenv("USER"), Usage: "advisory identity forwarded to auth hooks and agents"},
		&cli.StringFlag{Name: "token", Value: os.Getenv("ENVEXEC_TOKEN"), Usage: "opaque token forwarded to auth hooks and agents; never logged (default $ENVEXEC_TOKEN)"},
		&cli.BoolFlag{Name: "force", Usage: "rotate-cert: rotate even though agents still pending from the last rotation will be stranded"},
		&cli.StringFlag{Name: "key-type", Value: string(pki.KeyRSA4096), Usage: "`TYPE` of the CA and ctrl-exec keys setup-ca makes: rsa-4096 or ecdsa-p256"},
		&cli.StringFlag{Name: "script", Aliases: []string{"s"}, Usage: "the script `NAME` for run; every word before \"--\" is then a host"},
	}
}

const usage = `Usage: ctrl-exec [options] <mode> [args...]

Modes:
  run <host>[:<port>] [<host>...] <script> [-- <arg>...]
  run <host>[:<port>] [<host>...] --script <script> [-- <arg>...]
  ping <host>[:<port>] [<host>...]
  pairing-mode              list-requests            approve <reqid>
  deny <reqid>              setup-ca                 setup-ctrl-exec
  list-agents               list-locks               unpair <hostname>
  rotate-cert               serial-status            completion bash|zsh|fish
  discover [<host>...]      rerun <reqid>            state import|export

Options: --config <path> --json --port <n> --username <name> --token <token> --force
         --script|-s <script> (run)
Fleet:   --tag <key=glob> --ndjson --max-concurrency <n|n%> --max-errors <n|n%>
         --dry-run --save --only <status,...>
         --key-type rsa-4096|ecdsa-p256 (setup-ca)
Run 'ctrl-exec <mode> --help' for details.
`
