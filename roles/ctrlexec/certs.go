package ctrlexec

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real command.
func rotateCertCommand(e *env) *cli.Command { return &cli.Command{Name: "rotate-cert"} }

// TODO(stub): replaced by the real command.
func serialStatusCommand(e *env) *cli.Command { return &cli.Command{Name: "serial-status"} }

