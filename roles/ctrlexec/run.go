package ctrlexec

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
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
is the script, or with --script NAME (-s NAME) every word before "--" is a
host; every word after the first "--" is passed to the script as an argument.
Options may appear anywhere before "--"; an unknown option is a usage error.
At most 500 hosts.

Before dispatching, the auth hook (auth_hook in ctrl-exec.conf) is asked, then
the host:script locks are taken and held until every host has answered, so the
same script cannot run twice at once on one host from this control host.
A host whose agent certificate names another agent than the registry holds for
it is refused before anything is sent (agent_identity in ctrl-exec.conf).

Exit status: 0 if every host ran the script and it exited 0; 1 if any host
failed or exited non-zero, or on an auth denial or lock conflict; 255 on a
usage or configuration error.` + fleetRunHelp,
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
denial; 255 on a usage or configuration error.` + fleetPingHelp,
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
// hosts. minWords is 2 (a host and the script), or 1 when --tag names the
// hosts. When the script came from --script (scriptOpt), every word before
// "--" is a host.
func splitRunArgs(words []string, minWords int, scriptOpt string) (hosts []string, script string, args []string, err error) {
	before := words
	args = []string{}
	for i, w := range words {
		if w == "--" {
			before, args = words[:i], append(args, words[i+1:]...)
			break
		}
	}
	if scriptOpt != "" {
		if len(before) < minWords-1 {
			return nil, "", nil, errors.New("Need at least one host")
		}
		return before, scriptOpt, args, nil
	}
	if len(before) < minWords || len(before) == 0 {
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
	if conf.LogFormat != "" {
		e.log = logx.NewFormat(logx.IdentDispatcher, false, conf.LogFormat)
	}
	config.LogWarnings(e.log, warns)
	// Opened now so that a broken etcd setting stops run, ping and
	// discover before any agent is contacted.
	if _, err := e.stateBackend(conf.Path, conf); err != nil {
		return nil, err
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
	e.state.ShareIdentity(client) // opened by loadFanoutSetup
	client.Port = c.Int("port")
	if s.conf.SessionCache {
		client.Sessions = loadSessions(e)
	}
	prog := newProgressLine(e.stderr, total)
	if prog != nil {
		client.Progress = prog.update
	}
	return client, prog
}

// sessionFile is this user's TLS session cache file (one per user: it is
// private to its owner).
func sessionFile(e *env) string {
	return sessioncache.FileName(e.paths.StateDir(), os.Geteuid())
}

// loadSessions reads the session cache; one that cannot be trusted is
// ignored with a warning and every agent gets a full handshake.
func loadSessions(e *env) *sessioncache.Cache {
	cache, warning := sessioncache.Load(sessionFile(e), e.now)
	if warning != "" {
		fmt.Fprintln(e.stderr, "Warning: "+warning)
		e.log.Warn().Str("MSG", warning).Msg("session-cache-warn")
	}
	return cache
}

// saveSessions writes back the sessions the run made or renewed. A cache
// that cannot be written costs the next run its resumptions, nothing more,
// so it is logged, not fatal.
func saveSessions(e *env, client *dispatch.Client) {
	if client.Sessions == nil {
		return
	}
	if err := client.Sessions.Save(sessionFile(e)); err != nil {
		e.log.Warn().Str("MSG", err.Error()).Msg("session-cache-warn")
	}
}

func runScript(e *env, c *cli.Context) error {
	f, err := parseFleetFlags(c)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	words, scriptOpt := c.Args().Slice(), c.String("script")
	minWords := 2
	if len(f.tags) > 0 {
		minWords = 1 // --tag names the hosts: the words may be just the script
	}
	need := minWords
	if scriptOpt != "" {
		need-- // --script names the script: every word is a host
	}
	if len(words) < need {
		return cliapp.Fatalf("%s", runUsage)
	}
	hosts, script, args, err := splitRunArgs(words, minWords, scriptOpt)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	if hosts, err = resolveTargets(e, s.conf, hosts, f.tags); err != nil {
		return cliapp.Exit(1, err.Error())
	}
	return runOn(e, c, s, f, runPlan{hosts: hosts, script: script, args: args})
}

func pingHosts(e *env, c *cli.Context) error {
	f, err := parseFleetFlags(c)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	hosts := c.Args().Slice()
	if len(hosts) == 0 && len(f.tags) == 0 {
		return cliapp.Fatalf("%s", pingUsage)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	if hosts, err = resolveTargets(e, s.conf, hosts, f.tags); err != nil {
		return cliapp.Exit(1, err.Error())
	}
	ctx := c.Context
	d := s.authorise(ctx, e, authhook.Request{Action: authhook.ActionPing, Hosts: hosts})
	if !d.OK {
		return denied(e, s.json || f.ndjson, d)
	}
	results, err := pingOn(ctx, e, c, s, f, hosts)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	switch {
	case f.ndjson:
	case s.json:
		err = writeResultsJSON(e.stdout, results)
	default:
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
	backend, err := e.stateBackend(c.String("config"), nil)
	if err != nil {
		return err
	}
	held, err := backend.Locks.ListHeld()
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
