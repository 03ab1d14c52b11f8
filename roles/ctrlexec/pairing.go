package ctrlexec

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real command.
func pairingModeCommand(e *env) *cli.Command { return &cli.Command{Name: "pairing-mode"} }

// TODO(stub): replaced by the real command.
func listRequestsCommand(e *env) *cli.Command { return &cli.Command{Name: "list-requests"} }

// TODO(stub): replaced by the real command.
func approveCommand(e *env) *cli.Command { return &cli.Command{Name: "approve"} }

// TODO(stub): replaced by the real command.
func denyCommand(e *env) *cli.Command { return &cli.Command{Name: "deny"} }

