package ctrlexec

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real command.
func setupCACommand(e *env) *cli.Command { return &cli.Command{Name: "setup-ca"} }

// TODO(stub): replaced by the real command.
func setupCtrlExecCommand(e *env) *cli.Command { return &cli.Command{Name: "setup-ctrl-exec"} }

