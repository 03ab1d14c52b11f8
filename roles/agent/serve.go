package agent

import "github.com/urfave/cli/v2"

// TODO(stub): replaced by the real commands.
func serveCommand(e *env) *cli.Command     { return &cli.Command{Name: "serve"} }
func selfCheckCommand(e *env) *cli.Command { return &cli.Command{Name: "self-check"} }
func selfPingCommand(e *env) *cli.Command  { return &cli.Command{Name: "self-ping"} }
