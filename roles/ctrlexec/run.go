package ctrlexec

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real command.
func runCommand(e *env) *cli.Command { return &cli.Command{Name: "run"} }

// TODO(stub): replaced by the real command.
func pingCommand(e *env) *cli.Command { return &cli.Command{Name: "ping"} }

// TODO(stub): replaced by the real command.
func listLocksCommand(e *env) *cli.Command { return &cli.Command{Name: "list-locks"} }

