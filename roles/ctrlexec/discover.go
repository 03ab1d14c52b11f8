package ctrlexec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/authhook"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/fleet"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

func discoverCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "discover",
		Usage:     "ask registered agents for their scripts and tags, and keep the tags for --tag",
		ArgsUsage: "[<hostname>...]",
		Description: `Asks every registered agent (or the named registered hostnames) for its
capabilities (GET /capabilities: allowlisted scripts and [tags] of agent.conf),
stores each answering agent's tags in its registry record (fields "tags" and
"tags_updated"), and lists the agents with --tag filters applied.

Targeting by --tag (run, ping) reads those stored tags with no round trip, so
they are as fresh as the last successful ping, discover (or API /discovery) or
pairing that reached the agent (a Go agent reports its tags at each; a Perl
agent, or a Go agent with an auth_hook, to discover only); an agent whose
[tags] changed since is selected by its old tags until then. The auth hook is
asked first (action "ping").

Exit status: 0 if every agent asked answered; 1 if any did not, or on an auth
denial or when --tag matches nothing; 255 on a usage or configuration error.`,
		Action: func(c *cli.Context) error { return discover(e, c) },
	}
}

func discover(e *env, c *cli.Context) error {
	f, err := parseFleetFlags(c)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	s, err := loadFanoutSetup(e, c)
	if err != nil {
		return err
	}
	reg, err := e.registry(s.conf.Path)
	if err != nil {
		return err
	}
	recs, skipped, err := reg.List()
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	for _, sk := range skipped {
		e.log.Warn().Str("PATH", sk.Path).Str("ERROR", sk.Err.Error()).Msg("registry-corrupt")
	}
	if names := c.Args().Slice(); len(names) > 0 {
		byName := map[string]registry.Record{}
		for _, r := range recs {
			byName[r.Hostname()] = r
		}
		recs = recs[:0:0]
		for _, n := range names {
			r, ok := byName[n]
			if !ok {
				return cliapp.Fatalf("'%s' is not a registered agent (see ctrl-exec list-agents)", n)
			}
			recs = append(recs, r)
		}
	}
	names := make([]string, len(recs))
	for i, r := range recs {
		names[i] = r.Hostname()
	}
	ctx := c.Context
	if d := s.authorise(ctx, e, authhook.Request{Action: authhook.ActionPing, Hosts: names}); !d.OK {
		return denied(e, s.json, d)
	}
	addrs := registry.Addresses(ctx, recs, nil)
	client, prog := s.client(e, c, len(addrs))
	var results []dispatch.CapResult
	for len(addrs) > len(results) { // the engine takes at most MaxHosts per call
		batch := addrs[len(results):min(len(addrs), len(results)+dispatch.MaxHosts)]
		got, err := client.Capabilities(ctx, batch)
		if err != nil {
			prog.clear()
			return cliapp.Fatalf("%v", err)
		}
		results = append(results, got...)
	}
	prog.clear()
	saveSessions(e, client)

	type row struct {
		rec registry.Record
		res dispatch.CapResult
	}
	var rows []row
	failed := false
	for i, res := range results {
		if err := fleet.StoreTags(reg, names[i], res, e.now()); err != nil {
			fmt.Fprintf(e.stderr, "Warning: tags of '%s' not stored: %v\n", names[i], err)
		}
		if !res.OK() {
			failed = true
		}
		rec, err := reg.Get(names[i])
		if err != nil {
			rec = recs[i]
		}
		rows = append(rows, row{rec, res})
	}
	if len(f.tags) > 0 {
		var kept []row
		for _, r := range rows {
			if m, _ := fleet.SelectRecords([]registry.Record{r.rec}, f.tags); len(m) == 1 {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 && len(rows) > 0 {
			all := make([]registry.Record, len(rows))
			for i, r := range rows {
				all[i] = r.rec
			}
			_, err := fleet.SelectRecords(all, f.tags)
			return cliapp.Exit(1, err.Error())
		}
		rows = kept
	}

	entries := make([]wire.Object, len(rows))
	for i, r := range rows {
		var o wire.Object
		o.Set("hostname", r.rec.Hostname())
		o.Set("address", r.res.Target.Arg)
		o.Set("status", orDefault(r.res.Object, "status", "error"))
		tags := fleet.RecordTags(r.rec)
		if tags == nil {
			tags = map[string]string{}
		}
		o.Set("tags", tags)
		o.Set("tags_updated", r.rec.Get(fleet.FieldTagsUpdated))
		o.Set("scripts", len(r.res.Scripts()))
		if msg := r.res.Str("error"); msg != "" {
			o.Set("error", msg)
		}
		entries[i] = o
	}
	if s.json {
		err = writeJSONLine(e.stdout, struct {
			OK     int           `json:"ok"`
			Agents []wire.Object `json:"agents"`
		}{1, entries})
	} else {
		err = writeDiscoverTable(e.stdout, entries)
	}
	if err != nil {
		return cliapp.Fatalf("write results: %v", err)
	}
	if failed {
		return cliapp.Exit(1, "")
	}
	return nil
}

const discoverRow = "%-30s  %-8s  %-7s  %s\n"

// writeDiscoverTable: HOSTNAME STATUS SCRIPTS TAGS (k=v, sorted by key).
func writeDiscoverTable(w io.Writer, entries []wire.Object) error {
	var b bytes.Buffer
	if len(entries) == 0 {
		b.WriteString("No registered agents.\n")
	} else {
		fmt.Fprintf(&b, discoverRow, "HOSTNAME", "STATUS", "SCRIPTS", "TAGS")
		b.WriteString(strings.Repeat("-", 85) + "\n")
	}
	for _, o := range entries {
		var tags map[string]string
		raw, _ := o.Raw("tags")
		_ = json.Unmarshal(raw, &tags)
		var kv []string
		for _, k := range fleet.SortedKeys(tags) {
			kv = append(kv, k+"="+tags[k])
		}
		fmt.Fprintf(&b, discoverRow, o.Str("hostname"), o.Str("status"), o.Str("scripts"), strings.Join(kv, " "))
	}
	_, err := w.Write(b.Bytes())
	return err
}
