package agent

import "github.com/urfave/cli/v2"

// pairingChildFlag marks the re-executed background pairing helper (D-9).
const pairingChildFlag = "pairing-child"

// TODO(stub): replaced by the real commands.
func requestPairingCommand(e *env) *cli.Command { return &cli.Command{Name: "request-pairing"} }
func pairingStatusCommand(e *env) *cli.Command  { return &cli.Command{Name: "pairing-status"} }
