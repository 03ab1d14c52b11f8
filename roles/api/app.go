// Package api is the ctrl-exec-api role: an HTTP server (port 7445 by
// default) that puts the control host's run, ping and discovery operations
// behind a small JSON API (SPEC §5, §14). Its OpenAPI 3.1 description is
// openapi.json in this directory, built into the binary and served at
// GET /openapi.json unless /usr/local/lib/ctrl-exec/Exec/openapi.json is
// installed (D-22).
//
// Every request passes the `api` authorisation step before routing (the
// auth hook, or api_auth_default without one); POST /run, POST /ping and
// /discovery with hosts then authorise the operation itself (§13.3). The
// caller's token comes from the JSON body's "token" or, failing that, from
// an "Authorization: Bearer <token>" header, which is how a GET can carry
// one; the body wins when both are present. Tokens reach the hook and the
// agents, never a log line.
//
// Go additions to the upstream server, each documented in openapi.json:
// 32-header and 1 MiB limits (D-20), 400 for more than 500 hosts (D-21),
// non-string hosts and args refused, run locks really held (D-27), a bound
// on concurrent agent-contacting operations (api_max_inflight, answered 503
// "busy" when full), read and write deadlines on every connection, a
// graceful stop, and a refusal to start when api_cert/api_key name files
// that are missing (upstream silently fell back to plain HTTP).
//
// Two more bounds keep a flood of clients, authenticated or not, from
// exhausting the host; neither changes an answer, so openapi.json is silent
// on them. At most 4 × api_max_inflight connections are served at once:
// while all are taken the server accepts nothing and new clients wait in
// the kernel's listen queue until one ends (each is bounded by a 30 s read
// deadline). A 503 instead would cost a TLS handshake and reading the
// request, the very work the bound is there to save, and closing unread
// would reset the connection. And at most api_max_inflight auth hooks run
// at once; a request beyond that waits for a running hook to end.
// A failed TLS handshake is logged as tls-failure, as on the agent.
package api

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/buildinfo"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliargs"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/completion"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
)

// env is what the role needs, built once per invocation.
type env struct {
	paths  paths.Paths
	log    zerolog.Logger
	now    func() time.Time
	stdout io.Writer
	stderr io.Writer
}

// Main runs ctrl-exec-api and returns the exit status: 0 after a signal
// stopped it, 255 when it cannot start.
func Main(prog string, args []string) int {
	e := &env{paths: paths.FromEnv(), now: time.Now, stdout: os.Stdout, stderr: os.Stderr}
	parsed, err := cliargs.Parse(cliapp.Spec(newApp(e).Flags, ""), args)
	if err != nil {
		io.WriteString(e.stderr, err.Error()+"\n"+usage)
		return 255
	}
	if parsed.Mode == "completion" && !parsed.Help {
		// The API's only mode-like word: "ctrl-exec-api completion bash".
		spec := completion.FromApp(newApp(e), []string{"ctrl-exec-api"}, nil)
		spec.Modes = []string{"completion"}
		if err := completion.Write(e.stdout, firstOf(parsed.Rest), spec); err != nil {
			fmt.Fprintln(e.stderr, err)
			return 255
		}
		return 0
	}
	if parsed.Mode != "" && !parsed.Help && !parsed.Version {
		fmt.Fprintf(e.stderr, "Unexpected argument '%s'\n%s", parsed.Mode, usage)
		return 255
	}
	e.log = logx.New(logx.IdentAPI, true)
	return cliapp.Run(newApp(e), parsed.Argv(prog), e.stderr)
}

func newApp(e *env) *cli.App {
	return &cli.App{
		Name:    "ctrl-exec-api",
		Usage:   "serve the ctrl-exec HTTP API (run, ping, discovery) on api_bind:api_port",
		Version: buildinfo.Get().String(),
		Description: "Reads ctrl-exec.conf once (cert, key and ca are required; api_port, api_bind, " +
			"api_cert, api_key, auth_hook, api_auth_default, read_timeout, api_max_inflight and " +
			"api_rotation_loop are used), listens, and answers requests until SIGINT or SIGTERM, " +
			"then lets running requests finish and exits 0. It exits 255 when the configuration " +
			"cannot be read, the address cannot be bound, or api_cert/api_key are set but unusable.",
		Writer:          e.stdout,
		ErrWriter:       e.stderr,
		HideHelpCommand: true,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Value: e.paths.ControlConf(), Usage: "control-host config `FILE`"},
		},
		Action: func(c *cli.Context) error { return serve(c.Context, e, c.String("config")) },
	}
}

const usage = `Usage: ctrl-exec-api [--config <path>]

Options:
  --config <path>   ctrl-exec.conf to read (default /etc/ctrl-exec/ctrl-exec.conf)
  --help            show help
  --version         show the version

ctrl-exec-api completion bash|zsh|fish prints a shell completion script.

Keys read from ctrl-exec.conf besides cert, key and ca: api_port (7445),
api_bind (127.0.0.1), api_cert and api_key (TLS when both are set),
auth_hook, api_auth_default (deny), read_timeout, api_max_inflight (64),
api_rotation_loop (off).
`

// firstOf is the first positional word, skipping the "--" cliargs puts first.
func firstOf(rest []string) string {
	for _, w := range rest {
		if w != "--" {
			return w
		}
	}
	return ""
}
