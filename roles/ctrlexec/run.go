package ctrlexec

import (
	"context"
	"errors"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/renewal"
)

const (
	runUsage  = "Usage: ctrl-exec run <host>[:<port>] [<host>...] <script> [-- <arg>...]"
	pingUsage = "Usage: ctrl-exec ping <host>[:<port>] [<host>...]"

	lockConflictCode = 4 // the `code` of a lock conflict in --json output and the API
)

func runCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:            "run",
		HideHelpCommand: true, // else a host named "h" or "help" would show help
		Usage:           "run an allowlisted script on one or more agents at once",
		ArgsUsage:       "<host>[:<port>] [<host>...] <script> [-- <arg>...]",
		Description: `Sends the script name and arguments to every host at once over mTLS and prints
each host's result in the order the hosts were given. The last word before "--"
is the script; every word after the first "--" is passed to it as an argument.
Options may appear anywhere before "--". At most 500 hosts.

Before dispatching, the auth hook (auth_hook in ctrl-exec.conf) is asked, then
the host:script locks are taken and held until every host has answered, so the
same script cannot run twice at once on one host from this control host.

Exit status: 0 if every host ran the script and it exited 0; 1 if any host
failed or exited non-zero, or on an auth denial or lock conflict; 255 on a
usage or configuration error.`,
		Action: func(c *cli.Context) error { return runScript(e, c) },
	}
}

func pingCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:            "ping",
		HideHelpCommand: true, // else a host named "h" or "help" would show help
		Usage:           "check mTLS connectivity, version and certificate expiry of agents",
		ArgsUsage:       "<host>[:<port>] [<host>...]",
		Description: `Pings every host at once and prints a table (or --json results) in the order the
hosts were given. The auth hook is asked first (action "ping").

Exit status: 0 if every host answered "ok"; 1 if any did not, or on an auth
denial; 255 on a usage or configuration error.`,
		Action: func(c *cli.Context) error { return pingHosts(e, c) },
	}
}

func listLocksCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:            "list-locks",
		HideHelpCommand: true, // else a host named "h" or "help" would show help
		Usage:           "show the host:script locks held by runs in progress",
		Description: `Probes every lock file in /var/lib/ctrl-exec/locks and lists the ones a running
ctrl-exec (Go or Perl) or API request holds.

Exit status: 0; 255 if the lock directory cannot be read.`,
		Action: func(c *cli.Context) error { return listLocks(e, c) },
	}
}

// splitRunArgs splits run's words (§3.3): script arguments after the first
// "--", then of the words before it the last is the script and the rest are
// hosts.
func splitRunArgs(words []string) (hosts []string, script string, args []string, err error) {
	before := words
	args = []string{}
	for i, w := range words {
		if w == "--" {
			before, args = words[:i], append(args, words[i+1:]...)
			break
		}
	}
	if len(before) < 2 {
		return nil, "", nil, errors.New("Need at least one host and a script name")
	}
	return before[:len(before)-1], before[len(before)-1], args, nil
}

// fanoutSetup is what run and ping share before contacting agents.
type fanoutSetup struct {
	conf     *config.Control
	username string
	token    string
	json     bool
}

// loadFanoutSetup loads ctrl-exec.conf and the identity options.
func loadFanoutSetup(e *env, c *cli.Context) (*fanoutSetup, error) {
	conf, warns, err := config.LoadControl(c.String("config"), e.paths)
	if err != nil {
		return nil, cliapp.Fatalf("%v", err)
	}
	for _, w := range warns {
		ev := e.log.Warn()
		if w.Entry != "" {
			ev = ev.Str("ENTRY", w.Entry)
		} else {
			ev = ev.Str("KEY", w.Key)
		}
		ev.Str("MSG", w.Msg).Msg("config-warn")
	}
	return &fanoutSetup{conf: conf, username: c.String("username"), token: c.String("token"), json: c.Bool("json")}, nil
}

// authorise asks the CLI's auth hook (§13.3); no hook configured passes.
func (s *fanoutSetup) authorise(ctx context.Context, e *env, req authhook.Request) authhook.Decision {
	req.Username, req.Token, req.SourceIP = s.username, s.token, "127.0.0.1"
	if s.conf.AuthHook == "" {
		return authhook.NoHookCLI(e.log, req)
	}
	return authhook.Check(ctx, e.log, s.conf.AuthHook, req, e.now, 0)
}

// client is the dispatch engine for this invocation, with live progress on a
// terminal's stderr for more than a handful of hosts.
func (s *fanoutSetup) client(e *env, c *cli.Context, total int) (*dispatch.Client, *progressLine) {
	client := dispatch.NewClient(s.conf, e.log)
	client.Port = c.Int("port")
	prog := newProgressLine(e.stderr, total)
	if prog != nil {
		client.Progress = prog.update
	}
	return client, prog
}

func runScript(e *env, c *cli.Context) error {
	words := c.Args().Slice()
	if len(words) < 2 {
		return cliapp.Fatalf("%s", runUsage)
	}
	hosts, script, args, err := splitRunArgs(words)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	ctx := c.Context
	d := s.authorise(ctx, e, authhook.Request{Action: authhook.ActionRun, Script: script, Hosts: hosts, Args: args})
	if !d.OK {
		return denied(e, s.json, d)
	}
	if len(hosts) > dispatch.MaxHosts {
		return cliapp.Fatalf("%v", dispatch.ErrTooManyHosts)
	}

	// D-27: check, then take the locks and hold them for the whole dispatch.
	lockDir := e.paths.LocksDir()
	conflicts, err := locks.CheckAvailable(lockDir, hosts, script)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	var held *locks.Held
	if len(conflicts) == 0 {
		if held, conflicts, err = locks.Acquire(lockDir, hosts, script, e.log); err != nil {
			return cliapp.Fatalf("%v", err)
		}
	}
	if len(conflicts) > 0 {
		return locked(e, s.json, conflicts)
	}
	defer held.Release()

	client, prog := s.client(e, c, len(hosts))
	results, err := client.Run(ctx, dispatch.RunRequest{
		Hosts: hosts, Script: script, Args: args, Username: s.username, Token: s.token,
	})
	prog.clear()
	held.Release()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	if s.json {
		err = writeResultsJSON(e.stdout, results)
	} else {
		err = writeRunText(e.stdout, results)
	}
	if err != nil {
		return cliapp.Fatalf("write results: %v", err)
	}
	for _, r := range results {
		if r.Failed() {
			return cliapp.Exit(1, "")
		}
	}
	return nil
}

func pingHosts(e *env, c *cli.Context) error {
	hosts := c.Args().Slice()
	if len(hosts) == 0 {
		return cliapp.Fatalf("%s", pingUsage)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	ctx := c.Context
	d := s.authorise(ctx, e, authhook.Request{Action: authhook.ActionPing, Hosts: hosts})
	if !d.OK {
		return denied(e, s.json, d)
	}
	client, prog := s.client(e, c, len(hosts))
	// Registered agents past half their certificate's life are renewed
	// before Ping returns (§15.1, D-23); the ping result is unaffected.
	renewal.Attach(client, s.conf, e.log, e.now)
	results, err := client.Ping(ctx, hosts)
	prog.clear()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	if s.json {
		err = writeResultsJSON(e.stdout, results)
	} else {
		err = writePingTable(e.stdout, results)
	}
	if err != nil {
		return cliapp.Fatalf("write results: %v", err)
	}
	for _, r := range results {
		if !r.OK() {
			return cliapp.Exit(1, "") // D-4: upstream exits 0 here
		}
	}
	return nil
}

func listLocks(e *env, c *cli.Context) error {
	held, err := locks.ListHeld(e.paths.LocksDir())
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if c.Bool("json") {
		err = writeLocksJSON(e.stdout, held)
	} else {
		err = writeLocksText(e.stdout, held)
	}
	if err != nil {
		return cliapp.Fatalf("write locks: %v", err)
	}
	return nil
}

// denied reports an auth hook denial: stderr in text mode, stdout in JSON.
func denied(e *env, asJSON bool, d authhook.Decision) error {
	if asJSON {
		if err := writeDeniedJSON(e.stdout, d); err != nil {
			return cliapp.Fatalf("write denial: %v", err)
		}
		return cliapp.Exit(1, "")
	}
	return cliapp.Exit(1, "Denied: "+d.Reason)
}

// locked reports a lock conflict: stderr in text mode, stdout in JSON.
func locked(e *env, asJSON bool, conflicts []string) error {
	if asJSON {
		if err := writeLockedJSON(e.stdout, conflicts); err != nil {
			return cliapp.Fatalf("write lock conflict: %v", err)
		}
		return cliapp.Exit(1, "")
	}
	return cliapp.Exit(1, "Locked: already running: "+strings.Join(conflicts, ", "))
}
