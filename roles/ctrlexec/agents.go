package ctrlexec

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

func listAgentsCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "list-agents",
		Usage: "list paired agents from the registry",
		Description: `Reads /var/lib/ctrl-exec/agents and prints HOSTNAME, IP (the address the agent
paired from), PAIRED time and CERT EXPIRY, sorted by hostname. With --json
prints the raw registry records as a JSON array ([] when there are none).
A registry file that cannot be parsed is skipped with a warning on stderr.

Exit status: 0; 255 if the registry cannot be read (try sudo).`,
		Action: func(c *cli.Context) error { return listAgents(e, c) },
	}
}

func unpairCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "unpair",
		Usage:     "remove an agent from the registry",
		ArgsUsage: "<hostname>",
		Description: `Deletes the agent's registry record. Its certificate stays valid until it
expires: decommission the agent, or add the serial printed here to the
revoked-serials file of every agent.

Exit status: 0; 255 if the name is not a valid hostname or is not registered.`,
		Action: func(c *cli.Context) error { return unpair(e, c) },
	}
}

func listAgents(e *env, c *cli.Context) error {
	reg, err := e.registry(c.String("config"))
	if err != nil {
		return err
	}
	recs, skipped, err := reg.List()
	if errors.Is(err, fs.ErrPermission) {
		return cliapp.Fatalf("Cannot access agent registry: permission denied.\nTry: sudo ctrl-exec list-agents")
	}
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	for _, s := range skipped {
		fmt.Fprintf(e.stderr, "Warning: skipping registry file '%s': %v\n", s.Path, s.Err)
		e.log.Warn().Str("PATH", s.Path).Str("ERROR", s.Err.Error()).Msg("registry-corrupt")
	}
	if c.Bool("json") {
		if recs == nil {
			recs = []registry.Record{}
		}
		return writeJSONLine(e.stdout, recs)
	}
	if len(recs) == 0 {
		fmt.Fprintln(e.stdout, "No registered agents.")
		return nil
	}
	fmt.Fprintf(e.stdout, "%-30s  %-16s  %-22s  %s\n", "HOSTNAME", "IP", "PAIRED", "CERT EXPIRY")
	fmt.Fprintln(e.stdout, strings.Repeat("-", 85))
	for _, r := range recs {
		// An approval whose certificate no pairing-mode confirmed handing
		// over (it was stopped or killed first): the agent may not have it.
		note := ""
		if r.Get(registry.FieldCertDelivery) == registry.DeliveryPending {
			note = "  (certificate delivery unconfirmed)"
		}
		fmt.Fprintf(e.stdout, "%-30s  %-16s  %-22s  %s%s\n",
			field(r, registry.FieldHostname), field(r, registry.FieldIP),
			field(r, registry.FieldPaired), field(r, registry.FieldExpiry), note)
	}
	return nil
}

// field is a record value for a table: "?" when absent, as upstream.
func field(r registry.Record, key string) string {
	if s, ok := r.String(key); ok {
		return s
	}
	return "?"
}

func unpair(e *env, c *cli.Context) error {
	host := c.Args().First()
	if host == "" {
		return cliapp.Fatalf("Usage: ctrl-exec unpair <hostname>")
	}
	if err := registry.CheckHostname(host); err != nil {
		return cliapp.Fatalf("Unpair failed: %v", err)
	}
	reg, err := e.registry(c.String("config"))
	if err != nil {
		return err
	}
	rec, err := reg.Delete(host)
	if errors.Is(err, registry.ErrNotFound) {
		return cliapp.Fatalf("Unpair failed: No registry entry for '%s'", host)
	}
	if err != nil {
		return cliapp.Fatalf("Unpair failed: %v", err)
	}
	expiry := rec.Get(registry.FieldExpiry)
	if expiry == "" {
		expiry = "unknown"
	}
	e.log.Info().Str("AGENT", host).Str("EXPIRY", expiry).Msg("unpair")
	fmt.Fprintf(e.stdout, "Unregistered '%s'.\n", host)
	fmt.Fprintf(e.stdout, "WARNING: Agent certificate remains valid until: %s\n", expiry)
	fmt.Fprintln(e.stdout, "Decommission the agent promptly or add its serial to the revocation list.")
	if serial := rec.Get(registry.FieldAgentSerial); serial != "" {
		fmt.Fprintf(e.stdout, "Agent certificate serial: %s\n", serial)
	}
	return nil
}

// agentNames is the registry's hostnames, for shell completion of run,
// ping and unpair ("ctrl-exec completion agents").
func (e *env) agentNames() ([]string, error) {
	reg, err := e.registry(e.paths.ControlConf())
	if err != nil {
		return nil, err
	}
	recs, _, err := reg.List()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(recs))
	for _, r := range recs {
		names = append(names, r.Hostname())
	}
	return names, nil
}
