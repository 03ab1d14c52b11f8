// Package paths holds every built-in default path of ctrl-exec in one place.
//
// All defaults are absolute paths of a standard installation. When the
// environment variable CTRL_EXEC_ROOT is set, every default is prefixed with
// it, so tests, demos and containers run without root and without a real /etc.
// Paths an operator writes into a config file are used as written.
package paths

import (
	"os"
	"path/filepath"
)

// Paths resolves built-in default paths beneath Root ("" means the real /).
type Paths struct {
	Root string
}

// FromEnv returns the Paths for $CTRL_EXEC_ROOT.
func FromEnv() Paths {
	return Paths{Root: os.Getenv("CTRL_EXEC_ROOT")}
}

// Abs maps an absolute built-in path into Root.
func (p Paths) Abs(path string) string {
	if p.Root == "" {
		return path
	}
	return filepath.Join(p.Root, path)
}

// Control host, /etc/ctrl-exec.

func (p Paths) ConfDir() string      { return p.Abs("/etc/ctrl-exec") }
func (p Paths) ControlConf() string  { return p.Abs("/etc/ctrl-exec/ctrl-exec.conf") }
func (p Paths) CAKey() string        { return p.Abs("/etc/ctrl-exec/ca.key") }
func (p Paths) CACert() string       { return p.Abs("/etc/ctrl-exec/ca.crt") }
func (p Paths) CASerial() string     { return p.Abs("/etc/ctrl-exec/ca.serial") }
func (p Paths) CtrlExecKey() string  { return p.Abs("/etc/ctrl-exec/ctrl-exec.key") }
func (p Paths) CtrlExecCert() string { return p.Abs("/etc/ctrl-exec/ctrl-exec.crt") }
func (p Paths) AuthHook() string     { return p.Abs("/etc/ctrl-exec/auth-hook") }

// Control host, /var/lib/ctrl-exec.

func (p Paths) StateDir() string     { return p.Abs("/var/lib/ctrl-exec") }
func (p Paths) PairingDir() string   { return p.Abs("/var/lib/ctrl-exec/pairing") }
func (p Paths) AgentsDir() string    { return p.Abs("/var/lib/ctrl-exec/agents") }
func (p Paths) LocksDir() string     { return p.Abs("/var/lib/ctrl-exec/locks") }
func (p Paths) RunsDir() string      { return p.Abs("/var/lib/ctrl-exec/runs") }
func (p Paths) RotationFile() string { return p.Abs("/var/lib/ctrl-exec/rotation.json") }

// Installed library files (only the OpenAPI override is read).

func (p Paths) LibDir() string      { return p.Abs("/usr/local/lib/ctrl-exec") }
func (p Paths) OpenAPIFile() string { return p.Abs("/usr/local/lib/ctrl-exec/Exec/openapi.json") }

// Agent, /etc/ctrl-exec-agent.

func (p Paths) AgentDir() string       { return p.Abs("/etc/ctrl-exec-agent") }
func (p Paths) AgentConf() string      { return p.Abs("/etc/ctrl-exec-agent/agent.conf") }
func (p Paths) ScriptsConf() string    { return p.Abs("/etc/ctrl-exec-agent/scripts.conf") }
func (p Paths) AgentKey() string       { return p.Abs("/etc/ctrl-exec-agent/agent.key") }
func (p Paths) AgentCert() string      { return p.Abs("/etc/ctrl-exec-agent/agent.crt") }
func (p Paths) AgentCA() string        { return p.Abs("/etc/ctrl-exec-agent/ca.crt") }
func (p Paths) AgentSerial() string    { return p.Abs("/etc/ctrl-exec-agent/ctrl-exec-serial") }
func (p Paths) RevokedSerials() string { return p.Abs("/etc/ctrl-exec-agent/revoked-serials") }
func (p Paths) ScriptsDir() string     { return p.Abs("/opt/ctrl-exec-scripts") }
func (p Paths) AgentPIDFile() string   { return p.Abs("/run/ctrl-exec-agent.pid") }

// Hostname is the agent's identity: $CTRL_EXEC_HOSTNAME, else the OS hostname.
// It becomes the CSR CN, the pairing hostname and the host in /ping replies.
func Hostname() (string, error) {
	if h := os.Getenv("CTRL_EXEC_HOSTNAME"); h != "" {
		return h, nil
	}
	return os.Hostname()
}
