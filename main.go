// Command ctrl-exec is one multicall binary: the role comes from the name it
// is run by (argv[0]), or from its first argument when that name is unknown.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/ctrl-exec-go/ctrl-exec/roles/agent"
	"github.com/ctrl-exec-go/ctrl-exec/roles/api"
	"github.com/ctrl-exec-go/ctrl-exec/roles/ctrlexec"
	"github.com/ctrl-exec-go/ctrl-exec/roles/serialhelper"
)

// roles maps every accepted program name (SPEC §1.1) and role word (D-1) to its entry point.
var roles = map[string]func(prog string, args []string) int{
	"ctrl-exec":               ctrlexec.Main,
	"ctrl-exec-dispatcher":    ctrlexec.Main,
	"ced":                     ctrlexec.Main,
	"dispatcher":              ctrlexec.Main,
	"ctrl-exec-agent":         agent.Main,
	"cea":                     agent.Main,
	"agent":                   agent.Main,
	"ctrl-exec-api":           api.Main,
	"api":                     api.Main,
	"update-ctrl-exec-serial": serialhelper.Main,
	"update-serial":           serialhelper.Main,
	// The names of the project before its rename to ctrl-exec ("dispatcher"
	// above is both a role word and the old control CLI's name).
	"dispatcher-agent":         agent.Main,
	"dispatcher-api":           api.Main,
	"update-dispatcher-serial": serialhelper.Main,
}

func main() {
	prog := filepath.Base(os.Args[0])
	if role, ok := roles[prog]; ok {
		os.Exit(role(prog, os.Args[1:]))
	}
	if len(os.Args) > 1 {
		if role, ok := roles[os.Args[1]]; ok {
			os.Exit(role(os.Args[1], os.Args[2:]))
		}
	}
	fmt.Fprintf(os.Stderr, "Usage: %s <role> [options...]\n"+
		"Roles: dispatcher (ctrl-exec), agent (ctrl-exec-agent), api (ctrl-exec-api), update-serial (update-ctrl-exec-serial).\n"+
		"Usually run through a symlink named after the role, e.g. ctrl-exec -> %s.\n", prog, prog)
	os.Exit(255)
}
