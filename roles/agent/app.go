// Package agent is the agent role (ctrl-exec-agent, cea): the mTLS server
// that runs allowlisted scripts, plus pairing and self-checks.
package agent

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
)

// env is what every agent command needs, built once per invocation.
type env struct {
	paths  paths.Paths
	log    zerolog.Logger
	now    func() time.Time
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// Main runs the agent CLI and returns the exit status.
func Main(prog string, args []string) int {
	e := &env{
		paths:  paths.FromEnv(),
		now:    time.Now,
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: os.Stderr,
	}
	return cliapp.Launch(prog, args, "serve", usage, false, newApp(e), e.stderr, func(mode string) {
		e.log = logx.New(logx.IdentAgent, mode == "serve" || mode == "request-pairing")
	})
}

func newApp(e *env) *cli.App {
	app := &cli.App{
		Name:            "ctrl-exec-agent",
		Usage:           "serve allowlisted scripts to the ctrl-exec control host over mTLS",
		Version:         buildinfo.Get().String(),
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		HideHelpCommand: true,
		// The option table (SPEC §4.1; cliapp.Spec derives cliargs' from it):
		// any other option is a usage error; --ctrl-exec is accepted for
		// --dispatcher (D-7); the hidden flag is the background-pairing
		// helper's (D-9).
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: e.paths.AgentConf(), Usage: "agent config `FILE` (serve, self-check, self-ping)"},
			&cli.StringFlag{Name: "allowlist", Value: e.paths.ScriptsConf(), Usage: "script allowlist `FILE` (serve, self-check)"},
			&cli.StringFlag{Name: "dispatcher", Aliases: []string{"ctrl-exec"}, Usage: "control `HOST` to pair with (request-pairing)"},
			&cli.IntFlag{Name: "port", Value: 7444, Usage: "control host pairing `PORT` (request-pairing)"},
			&cli.BoolFlag{Name: "background", Usage: "print the request ID and wait for approval in a detached helper (request-pairing)"},
			&cli.IntFlag{Name: "timeout", Value: 30, Usage: "`SECONDS` the background helper waits for approval, at most 600; 0 = no limit"},
			&cli.StringFlag{Name: "key-type", Value: string(pki.KeyRSA4096), Usage: "`TYPE` of the key request-pairing generates: rsa-4096 or ecdsa-p256"},
			&cli.StringFlag{Name: caFingerprintFlag, Usage: "pin the control host's CA: `sha256:HEX` as setup-ca and pairing-mode print it (request-pairing)"},
			&cli.StringFlag{Name: pairingChildFlag, Hidden: true},
		},
		Commands: []*cli.Command{
			serveCommand(e),
			requestPairingCommand(e),
			pairingStatusCommand(e),
			selfCheckCommand(e),
			selfPingCommand(e),
		},
	}
	app.Commands = append(app.Commands, completion.Command(app, []string{"ctrl-exec-agent", "cea"}, nil, nil))
	for _, c := range app.Commands {
		c.HideHelpCommand = true // no implicit "h"/"help" subcommands
	}
	return app
}

const usage = `Usage: ctrl-exec-agent [options] [mode]

Modes:
  serve              run the mTLS agent server (default)
  request-pairing    --dispatcher <host> [--port 7444] [--ca-fingerprint sha256:<hex>]
                     [--background [--timeout 30]]
  pairing-status     report whether this agent holds certificates
  self-check         validate config, allowlist and certificates (also: ping-self)
  self-ping          connect to the local agent over mTLS and ping it
  completion         bash|zsh|fish: print a shell completion script

Options: --config <path> --allowlist <path> --dispatcher <host> --port <n> --background --timeout <n>
         --ca-fingerprint sha256:<hex> --key-type rsa-4096|ecdsa-p256 (request-pairing)
Run 'ctrl-exec-agent <mode> --help' for details.
`
