package ctrlexec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

func rotateCertCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "rotate-cert",
		Usage: "replace the ctrl-exec certificate now and send its serial to every agent",
		Description: `Issues a new ctrl-exec key and certificate (cert_days, default 825 days), keeps
the previous pair as ctrl-exec.key.prev / ctrl-exec.crt.prev, writes
/var/lib/ctrl-exec/rotation.json and marks every registered agent pending.
Then runs update-ctrl-exec-serial <new serial> on each pending agent, reaching
it with the previous certificate it still trusts; agents that confirm are
marked current.

Agents that could not be reached stay pending: the check loop (pairing-mode,
or ctrl-exec-api with api_rotation_loop) retries them until cert_overlap_days
(default 30) have passed, then marks them stale - those must be re-paired.
The previous pair is deleted once no agent is pending or the overlap is over.

Only one previous pair is kept, so a rotation while agents are still pending
from the last one would strand them (they trust only the pair it replaces):
rotate-cert refuses, naming them. Bring them up to date first (serial-status
shows them; the check loop retries them), or use --force to rotate anyway:
it names the stranded agents, which must then be re-paired.

With state_backend = etcd the rotation state and the new certificate and key
go to etcd in one transaction, and every node (its CLI, API and pairing-mode)
takes them from there. The key is only shared over a connection fit for it:
TLS with a client certificate (etcd_ca, etcd_cert, etcd_key; https://
endpoints) or loopback endpoints only. Otherwise rotate-cert refuses and
changes nothing.

Exit status: 0 when the certificate was rotated, even if some agents failed;
1 when refused because agents would be stranded; 255 if the configuration
cannot be loaded, the etcd connection may not carry the key, or the rotation
failed.`,
		Action: func(c *cli.Context) error { return rotateCert(e, c) },
	}
}

func serialStatusCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "serial-status",
		Usage: "show the ctrl-exec serial and which agents have confirmed it",
		Description: `Prints the last rotation (current and previous serial, when it happened and when
its overlap window ends) from /var/lib/ctrl-exec/rotation.json (with
state_backend = etcd, from etcd, the same on every node), then one line
per registered agent: its serial_status (current, pending, stale or unknown),
when it confirmed, and the serial it was last known to trust.

With --json prints only {"state":<rotation.json object or null>,"agents":[<registry
records>]}.

Exit status: 0; 255 if the registry cannot be read.`,
		Action: func(c *cli.Context) error { return serialStatus(e, c) },
	}
}

func rotateCert(e *env, c *cli.Context) error {
	conf, warns, err := config.LoadControl(c.String("config"), e.paths)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	config.LogWarnings(e.log, warns)
	b, err := e.stateBackend(conf.Path, conf)
	if err != nil {
		return err
	}
	// etcd: every node must get the new key, so it may only go over a
	// connection fit to carry it; refused before anything is written.
	if err := b.IdentityShareable(); err != nil {
		return cliapp.Fatalf("Refusing to rotate: %s: %v", conf.Path, err)
	}
	r := newRotator(e, conf)
	ctx := c.Context
	out := e.stdout

	fmt.Fprintln(out, "Rotating ctrl-exec certificate...")
	res, err := r.Rotate(ctx, c.Bool("force"))
	var strand *rotation.StrandError
	if errors.As(err, &strand) {
		return cliapp.Exit(1, fmt.Sprintf("Refusing to rotate: %d agent(s) still pending from the last rotation trust only the previous certificate, which this rotation would replace:\n"+
			"  %s\n"+
			"Bring them up to date first (see serial-status; the check loop retries them), or re-run with --force to rotate anyway and re-pair them.",
			len(strand.Hosts), strings.Join(strand.Hosts, "\n  ")))
	}
	if err != nil {
		return cliapp.Fatalf("Rotation failed: %v", err)
	}
	if len(res.Stranded) > 0 {
		fmt.Fprintf(e.stderr, "Warning: --force: %d agent(s) pending from the last rotation are stranded and must be re-paired:\n  %s\n",
			len(res.Stranded), strings.Join(res.Stranded, "\n  "))
	}
	fmt.Fprintf(out, "New serial:      %s\n", res.Serial)
	fmt.Fprintf(out, "Old serial:      %s\n", or(res.OldSerial, "(none)"))
	fmt.Fprintf(out, "Overlap expires: %s\n", res.OverlapExpires)
	fmt.Fprintf(out, "Agents pending:  %d\n", res.AgentsPending)

	if res.AgentsPending > 0 {
		fmt.Fprintln(out, "\nBroadcasting new serial to agents...")
		report, err := r.Broadcast(ctx)
		if err != nil {
			e.log.Error().Str("ERROR", err.Error()).Msg("serial-broadcast-error")
			fmt.Fprintf(e.stderr, "Broadcast failed: %v\n", err)
		}
		printBroadcastReport(out, report)
	}
	if _, err := r.CleanupPrev(ctx); err != nil {
		fmt.Fprintf(e.stderr, "Warning: %v\n", err)
	}
	return nil
}

// printBroadcastReport prints the counts and, when some agents failed, who
// and why (§3.11).
func printBroadcastReport(w io.Writer, report []rotation.Report) {
	var failed []rotation.Report
	for _, r := range report {
		if !r.OK {
			failed = append(failed, r)
		}
	}
	fmt.Fprintf(w, "  Updated: %d\n", len(report)-len(failed))
	fmt.Fprintf(w, "  Failed:  %d\n", len(failed))
	if len(failed) == 0 {
		return
	}
	fmt.Fprintln(w, "\nAgents requiring attention:")
	for _, r := range failed {
		fmt.Fprintf(w, "  %-30s  %s\n", r.Hostname, or(r.Error, "failed"))
	}
	fmt.Fprintln(w, "\nFailed agents will be retried automatically by the check loop.")
	fmt.Fprintln(w, "Agents offline longer than the overlap window will require re-pairing.")
}

// serialStatusJSON is serial-status --json (D-5: nothing else on stdout).
type serialStatusJSON struct {
	State  any               `json:"state"`
	Agents []registry.Record `json:"agents"`
}

func serialStatus(e *env, c *cli.Context) error {
	reg, err := e.registry(c.String("config"))
	if err != nil {
		return err
	}
	// Upstream reads the default paths here, whatever ctrl-exec.conf says;
	// with etcd, the state every node shares.
	state, _, err := e.state.RotationStore(e.paths.RotationFile()).Load(e.log)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	recs, skipped, err := reg.List()
	if errors.Is(err, fs.ErrPermission) {
		return cliapp.Fatalf("Cannot access agent registry: permission denied.\nTry: sudo ctrl-exec serial-status")
	}
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	for _, s := range skipped {
		fmt.Fprintf(e.stderr, "Warning: skipping registry file '%s': %v\n", s.Path, s.Err)
	}

	if c.Bool("json") {
		doc := serialStatusJSON{Agents: recs}
		if state != nil {
			doc.State = state.JSON()
		}
		if doc.Agents == nil {
			doc.Agents = []registry.Record{}
		}
		if err := writeJSONLine(e.stdout, doc); err != nil {
			return cliapp.Fatalf("write: %v", err)
		}
		return nil
	}

	out := e.stdout
	if state != nil {
		fmt.Fprintf(out, "Current serial:  %s\n", stateField(state, "current_serial", "?"))
		fmt.Fprintf(out, "Previous serial: %s\n", stateField(state, "previous_serial", "(none)"))
		fmt.Fprintf(out, "Rotated at:      %s\n", stateField(state, "rotated_at", "?"))
		fmt.Fprintf(out, "Overlap expires: %s\n", stateField(state, "overlap_expires", "?"))
		fmt.Fprintln(out)
	} else {
		fmt.Fprint(out, "No rotation has been performed.\n\n")
	}
	if len(recs) == 0 {
		fmt.Fprintln(out, "No registered agents.")
		return nil
	}
	fmt.Fprintf(out, "%-30s  %-10s  %-24s  %s\n", "HOSTNAME", "STATUS", "CONFIRMED", "SERIAL")
	fmt.Fprintln(out, strings.Repeat("-", 85))
	for _, r := range recs {
		shown := present(r, registry.FieldDispatcherSerial, "-")
		if len(shown) > 16 {
			shown = shown[:16] + "..."
		}
		fmt.Fprintf(out, "%-30s  %-10s  %-24s  %s\n",
			present(r, registry.FieldHostname, "?"),
			present(r, registry.FieldSerialStatus, registry.StatusUnknown),
			present(r, registry.FieldSerialConfirmed, "-"),
			shown)
	}
	return nil
}

// present is a record field, or def when it is absent (Perl's //: an empty
// string is printed as it is).
func present(r registry.Record, key, def string) string {
	if s, ok := r.String(key); ok {
		return s
	}
	return def
}

// stateField is a rotation.json member as serial-status prints it, or def
// when it is absent or null.
func stateField(s *rotation.State, key, def string) string {
	if s.Raw == nil {
		return def
	}
	switch v := s.Raw[key].(type) {
	case nil:
		return def
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}
