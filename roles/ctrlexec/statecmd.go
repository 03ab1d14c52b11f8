package ctrlexec

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

func stateCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "state",
		Usage:     "move the shared state between the files and etcd",
		ArgsUsage: "import|export",
		Description: `With state_backend = etcd: import copies this host's files (the agent
registry in /var/lib/ctrl-exec/agents, a Perl installation's included, and
the last serial in /etc/ctrl-exec/ca.serial, and the rotation state in
/var/lib/ctrl-exec/rotation.json) into etcd; export copies etcd's registry,
serial counter and rotation state back into the files. Records that differ or are
missing are written whole; records only at the destination are kept; the
serial only ever goes up; the rotation state is replaced only when the source's rotated_at is more
recent, otherwise the line "rotation: kept (...)" says why it was not
(the ctrl-exec key files are not moved: rotate-cert shares them). Running it twice changes nothing the second time.
--dry-run prints what would change and changes nothing.

Exit status: 0; 255 on a usage error or when a side cannot be read or written.`,
		Action: func(c *cli.Context) error { return stateMigrate(e, c) },
	}
}

func stateMigrate(e *env, c *cli.Context) error {
	dir := c.Args().First()
	if (dir != "import" && dir != "export") || c.NArg() != 1 {
		return cliapp.Fatalf("Usage: ctrl-exec state import|export [--dry-run]")
	}
	conf, _, err := config.ReadControlOptional(c.String("config"), e.paths)
	if err != nil {
		return cliapp.Fatalf("%v", err)
	}
	b, err := e.stateBackend(conf.Path, conf)
	if err != nil {
		return err
	}
	shared, err := b.Side()
	if err != nil {
		return cliapp.Fatalf("%s: %v", conf.Path, err)
	}
	files := state.FileSide(e.paths.AgentsDir(), pki.CAFilesIn(e.paths.ConfDir()).Serial, conf.RotationFile)
	from, to := files, shared
	if dir == "export" {
		from, to = shared, files
	}
	dry := c.Bool("dry-run")
	changes, err := state.Copy(from, to, dry)
	verb := ""
	if dry {
		verb = "would "
	}
	for _, ch := range changes {
		if ch.Kept {
			fmt.Fprintf(e.stdout, "%s\n", ch) // the same in a dry run
			continue
		}
		fmt.Fprintf(e.stdout, "%s%s\n", verb, ch)
	}
	if err != nil {
		return cliapp.Fatalf("state %s: %v", dir, err)
	}
	if len(changes) == 0 {
		fmt.Fprintln(e.stdout, "nothing to change")
	}
	return nil
}
