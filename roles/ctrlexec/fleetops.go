package ctrlexec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/renewal"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// fleetFlags are the fleet options of run, ping and rerun (none of them
// upstream's): targeting by tag, streaming, guardrails, dry run, saving.
type fleetFlags struct {
	tags      []fleet.TagSelector
	ndjson    bool
	opts      fleet.Options
	dryRun    bool
	save      bool
	only      []string
	anyOption bool // a fleet option was given: text headers then show the status
}

// fleetRunHelp and fleetPingHelp end run's and ping's --help.
const (
	fleetTagHelp = `

--tag KEY=GLOB (repeatable; all must match) targets the registered agents
whose stored tags match; hosts given as well are added, each once, and may be
omitted. Stored tags need no round trip and are as fresh as each agent's last
successful ping (CLI or API), 'ctrl-exec discover' (or API /discovery) or
pairing; an agent whose [tags] changed since is selected by its old tags until
one of these reaches it. Perl agents and Go agents with an auth_hook report
tags to discover only. No match: an error naming the tags that matched
nothing, exit 1, nothing run.

--ndjson prints one JSON object per host as it finishes (completion order),
then {"summary":{<count per status>,"total":N,"reqid":R}}.

--max-concurrency N|N% (SSM MaxConcurrency): at most N hosts in flight; a
percentage of the hosts is rounded up (at least 1). Hosts start in the order
given. Default 256.

--max-errors N|N% (SSM MaxErrors): once MORE THAN N hosts have finished with a
status other than ok, hosts not started yet are not contacted and get status
"skipped"; hosts already in flight finish. 0 stops after the first failure; a
percentage of the hosts is rounded down. Only hosts waiting for a
--max-concurrency slot can be skipped.`
	fleetRunHelp = fleetTagHelp + `

--dry-run resolves the targets, asks the auth hook, checks the locks and
prints what would run where (status ok, locked or denied per host); nothing
runs; exit 0 only if every host would run. --save keeps the run for
'ctrl-exec rerun <reqid>'.

Each result has "status": ok, failed, timeout, unreachable, refused, denied,
locked or skipped (see ctrl-exec(1), RESULT STATUS). Text headers end with
"  status:<status>]" when --tag, --max-concurrency, --max-errors or --save is
given; otherwise the text is the original ctrl-exec's, byte for byte.`
	fleetPingHelp = fleetTagHelp
)

// fleetFlagDefs are the global flags behind fleetFlags (see globalFlags).
func fleetFlagDefs() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "tag", Usage: "target the registered agents whose tags match `KEY=VALUE` (repeat: all must match; the value may be a glob such as 'db*'); run, ping, discover"},
		&cli.BoolFlag{Name: "ndjson", Usage: "stream one JSON object per host as it finishes, then a summary line (run, ping, rerun)"},
		&cli.StringFlag{Name: "max-concurrency", Usage: "at most `N` (or N% of the hosts) in flight at once (run, ping, rerun; default 256)"},
		&cli.StringFlag{Name: "max-errors", Usage: "after more than `N` (or N% of the hosts) failures, skip the hosts not started yet (run, ping, rerun)"},
		&cli.BoolFlag{Name: "dry-run", Usage: "resolve targets, ask the auth hook, check the locks, print what would run where; run nothing (run, rerun)"},
		&cli.BoolFlag{Name: "save", Usage: "keep the run's results in /var/lib/ctrl-exec/runs for 'ctrl-exec rerun' (run, rerun)"},
		&cli.StringFlag{Name: "only", Value: strings.Join(runstore.DefaultOnly, ","), Usage: "rerun the hosts with these `STATUSES` (comma-separated)"},
	}
}

func parseFleetFlags(c *cli.Context) (fleetFlags, error) {
	var f fleetFlags
	for _, t := range c.StringSlice("tag") {
		sel, err := fleet.ParseTagSelector(t)
		if err != nil {
			return f, err
		}
		f.tags = append(f.tags, sel)
	}
	f.ndjson = c.Bool("ndjson")
	f.dryRun = c.Bool("dry-run")
	f.save = c.Bool("save")
	var err error
	if v := c.String("max-concurrency"); c.IsSet("max-concurrency") {
		if f.opts.MaxConcurrency, err = fleet.ParseLimit("--max-concurrency", v); err != nil {
			return f, err
		}
		if f.opts.MaxConcurrency.N == 0 {
			return f, errors.New("--max-concurrency: must be at least 1")
		}
	}
	if v := c.String("max-errors"); c.IsSet("max-errors") {
		if f.opts.MaxErrors, err = fleet.ParseLimit("--max-errors", v); err != nil {
			return f, err
		}
	}
	if f.only, err = runstore.ParseOnly(strings.Split(c.String("only"), ",")); err != nil {
		return f, fmt.Errorf("--only: %w", err)
	}
	f.anyOption = len(f.tags) > 0 || f.opts.MaxConcurrency.Set || f.opts.MaxErrors.Set || f.save
	return f, nil
}

// resolveTargets is the explicit hosts plus the registry agents matching
// every --tag (a union, explicit hosts first, each once).
func resolveTargets(e *env, conf *config.Control, hosts []string, sels []fleet.TagSelector) ([]string, error) {
	if len(sels) == 0 {
		return hosts, nil
	}
	reg, err := e.registry(conf.Path)
	if err != nil {
		return nil, err
	}
	recs, skipped, err := reg.List()
	if err != nil {
		return nil, err
	}
	for _, s := range skipped {
		e.log.Warn().Str("PATH", s.Path).Str("ERROR", s.Err.Error()).Msg("registry-corrupt")
	}
	matched, err := fleet.SelectRecords(recs, sels)
	if err != nil {
		return nil, err
	}
	return fleet.Union(hosts, registry.Addresses(context.Background(), matched, nil)), nil
}

// runPlan is one run as the CLI is about to make it.
type runPlan struct {
	hosts   []string
	script  string
	args    []string
	rerunOf string // the stored run this repeats ("" for a fresh run)
}

// runOn is run and rerun after their arguments are settled: auth hook,
// dry run, locks, dispatch with the fleet options, output, save, exit.
func runOn(e *env, c *cli.Context, s *fanoutSetup, f fleetFlags, p runPlan) error {
	ctx := c.Context
	d := s.authorise(ctx, e, authhook.Request{Action: authhook.ActionRun, Script: p.script, Hosts: p.hosts, Args: p.args})
	if !d.OK && !f.dryRun {
		return denied(e, s.json || f.ndjson, d)
	}
	if len(p.hosts) > dispatch.MaxHosts {
		return cliapp.Fatalf("%v", dispatch.ErrTooManyHosts)
	}
	backend, err := e.stateBackend(s.conf.Path, s.conf)
	if err != nil {
		return err
	}
	if f.dryRun {
		conflicts, err := backend.Locks.CheckAvailable(p.hosts, p.script)
		if err != nil {
			return cliapp.Fatalf("%v", err)
		}
		return dryRun(e, s.json || f.ndjson, p, d, conflicts)
	}

	// D-27: check, then take the locks and hold them for the whole dispatch.
	held, conflicts, err := state.CheckAndAcquire(backend.Locks, p.hosts, p.script, e.log)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	if len(conflicts) > 0 {
		return locked(e, s.json || f.ndjson, conflicts)
	}
	defer held.Release()

	client, prog := s.client(e, c, len(p.hosts))
	opts := f.opts
	var stream *fleet.Stream
	if f.ndjson {
		stream = fleet.NewStream(e.stdout)
		opts.OnResult = stream.Result
	}
	run, err := fleet.RunScript(ctx, client, dispatch.RunRequest{
		Hosts: p.hosts, Script: p.script, Args: p.args, Username: s.username, Token: s.token,
	}, opts)
	prog.clear()
	held.Release()
	saveSessions(e, client)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}

	switch {
	case f.ndjson:
		stream.Summary(run.Counts, fleet.Statuses, run.ReqID)
		err = stream.Err()
	case s.json:
		err = writeResultsJSON(e.stdout, run.Results)
	default:
		err = writeRunText(e.stdout, run.Results, f.anyOption || p.rerunOf != "")
	}
	if err != nil {
		return cliapp.Fatalf("write results: %v", err)
	}
	if f.save {
		saveRun(e, backend.Runs, s.json || f.ndjson, p, run)
	}
	for _, r := range run.Results {
		if r.Failed() {
			return cliapp.Exit(1, "")
		}
	}
	return nil
}

// saveRun stores the run for rerun; a failure is a warning, never a change
// to the outcome.
func saveRun(e *env, st state.Runs, quiet bool, p runPlan, run fleet.Run) {
	err := st.Save(runstore.Record{ReqID: run.ReqID, Script: p.script, Hosts: p.hosts,
		Results: run.Results, Args: p.args, RerunOf: p.rerunOf})
	if err != nil {
		e.log.Warn().Str("REQID", run.ReqID).Str("ERROR", err.Error()).Msg("run-store-fail")
		fmt.Fprintf(e.stderr, "Warning: run not saved: %v\n", err)
		return
	}
	if !quiet {
		fmt.Fprintf(e.stderr, "Saved run %s (ctrl-exec rerun %s)\n", run.ReqID, run.ReqID)
	}
}

// dryRun prints what would run where: one entry per host with the status
// it would get now (ok, locked, or denied for all when the hook says no).
// Exit 0 only if every host would run.
func dryRun(e *env, asJSON bool, p runPlan, d authhook.Decision, conflicts []string) error {
	held := map[string]bool{}
	for _, c := range conflicts {
		held[strings.TrimSuffix(c, ":"+p.script)] = true
	}
	entries := make([]wire.Object, len(p.hosts))
	allowed := d.OK && len(conflicts) == 0
	for i, h := range p.hosts {
		var o wire.Object
		o.Set("host", h)
		o.Set("script", p.script)
		switch {
		case !d.OK:
			o.Set("error", "denied: "+d.Reason)
		case held[h]:
			o.Set("error", "locked")
		}
		o.Set("status", fleet.Classify(withExit(o)))
		entries[i] = o
	}
	var err error
	if asJSON {
		var out wire.Object
		out.Set("ok", 1)
		out.Set("dry_run", 1)
		out.Set("script", p.script)
		out.Set("args", nonNil(p.args))
		out.Set("results", entries)
		err = writeJSONLine(e.stdout, out)
	} else {
		err = writeDryRunText(e.stdout, p, entries)
	}
	if err != nil {
		return cliapp.Fatalf("write dry run: %v", err)
	}
	if !allowed {
		return cliapp.Exit(1, "")
	}
	return nil
}

// withExit gives a dry-run entry the exit its status reads from: 0 when it
// would run, -1 when it would not.
func withExit(o wire.Object) wire.Object {
	var c wire.Object
	c.Set("error", o.Str("error"))
	if o.Str("error") == "" {
		c.Set("exit", 0)
	} else {
		c.Set("exit", -1)
	}
	return c
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// writeDryRunText:
//
//	dry run: would run <script> with N args on M hosts; nothing was run
//	==> <host>  [ok]
//	==> <host>  [locked]
func writeDryRunText(w io.Writer, p runPlan, entries []wire.Object) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "dry run: would run %s with %d args on %d hosts; nothing was run\n", p.script, len(p.args), len(p.hosts))
	for _, o := range entries {
		fmt.Fprintf(&b, "==> %s  [%s]\n", o.Str("host"), o.Str("status"))
		if msg := o.Str("error"); msg != "" && msg != "locked" {
			fmt.Fprintf(&b, "    ERROR: %s\n", msg)
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// pingOn is ping after its hosts are settled.
func pingOn(ctx context.Context, e *env, c *cli.Context, s *fanoutSetup, f fleetFlags, hosts []string) ([]dispatch.PingResult, error) {
	client, prog := s.client(e, c, len(hosts))
	// Registered agents past half their certificate's life are renewed
	// before Ping returns (§15.1, D-23); the ping result is unaffected.
	reg := registry.New(e.paths.AgentsDir())
	var shared *renewal.Shared
	if b, err := e.stateBackend(s.conf.Path, s.conf); err == nil && b.Name != "files" {
		shared = &renewal.Shared{Registry: b.Registry, Serials: b.Serials}
		reg = b.Registry
	}
	renewal.Attach(client, s.conf, shared, e.log, e.now)
	// Each registered agent's reported [tags] are kept for --tag.
	fleet.AttachTagRefresh(client, reg, e.log, e.now)
	opts := f.opts
	var stream *fleet.Stream
	if f.ndjson {
		stream = fleet.NewStream(e.stdout)
		opts.OnResult = stream.Result
	}
	ping, err := fleet.PingHosts(ctx, client, hosts, opts)
	prog.clear()
	saveSessions(e, client)
	if err != nil {
		return nil, err
	}
	if f.ndjson {
		stream.Summary(ping.Counts, fleet.PingStatuses, ping.ReqID)
		if err := stream.Err(); err != nil {
			return nil, fmt.Errorf("write results: %w", err)
		}
	}
	return ping.Results, nil
}

func rerunCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "rerun",
		Usage:     "run a saved run's script again on the hosts that failed",
		ArgsUsage: "<reqid>",
		Description: `Loads the run saved under <reqid> in /var/lib/ctrl-exec/runs (by 'run --save'
or by the API, kept 24 hours) and runs the same script with the same arguments
on exactly the hosts whose status is one of --only (default
failed,unreachable,timeout; every status: ok, failed, timeout, unreachable,
refused, denied, locked, skipped). Hosts keep the port they were asked with.
Every run option applies (--json, --ndjson, --max-concurrency, --max-errors,
--dry-run, --save); text output shows each host's status in its header line.

Exit status: as run; 1 also when no host has one of the statuses; 255 when
no such run is stored.`,
		Action: func(c *cli.Context) error { return rerun(e, c) },
	}
}

func rerun(e *env, c *cli.Context) error {
	words := c.Args().Slice()
	if len(words) != 1 {
		return cliapp.Fatalf("Usage: ctrl-exec rerun <reqid> [--only failed,unreachable,timeout]")
	}
	f, err := parseFleetFlags(c)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	backend, err := e.stateBackend(c.String("config"), nil)
	if err != nil {
		return err
	}
	backend.Runs.Purge()
	rec, err := backend.Runs.Load(words[0])
	switch {
	case errors.Is(err, runstore.ErrNoResult):
		return cliapp.Fatalf("No saved run '%s' (saved by 'ctrl-exec run --save' or the API, kept 24 hours)", words[0])
	case err != nil:
		return cliapp.Fatalf("Cannot read saved run '%s': %v", words[0], err)
	}
	plan, err := runstore.PlanRerun(rec, f.only)
	if errors.Is(err, runstore.ErrNothingToRerun) {
		return cliapp.Exit(1, fmt.Sprintf("Nothing to rerun: no host of run %s has status %s", words[0], strings.Join(f.only, ", ")))
	}
	if err != nil {
		return cliapp.Fatalf("saved run '%s': %v", words[0], err)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	return runOn(e, c, s, f, runPlan{hosts: plan.Hosts, script: plan.Script, args: plan.Args, rerunOf: words[0]})
}
