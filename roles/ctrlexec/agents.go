package ctrlexec

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real command.
func listAgentsCommand(e *env) *cli.Command { return &cli.Command{Name: "list-agents"} }

// TODO(stub): replaced by the real command.
func unpairCommand(e *env) *cli.Command { return &cli.Command{Name: "unpair"} }

