package ctrlexec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

// stateBackend is where locks and saved runs live, from ctrl-exec.conf's
// state_backend (files when the file is absent or does not say), opened once
// per invocation. conf may be nil: then the file named by --config is read
// for that key alone.
func (e *env) stateBackend(configPath string, conf *config.Control) (*state.Backend, error) {
	if e.state != nil {
		return e.state, nil
	}
	if conf == nil {
		var err error
		if conf, _, err = config.ReadControlOptional(configPath, e.paths); err != nil {
			return nil, cliapp.Fatalf("%v", err)
		}
	}
	b, err := state.Open(conf, e.paths, e.now)
	if err != nil {
		return nil, cliapp.Fatalf("%s: %v", conf.Path, err)
	}
	e.state = b
	// etcd: another node may have rotated the ctrl-exec certificate; agents
	// told its serial refuse the old one, so take it before any dispatch.
	serial, err := b.SyncIdentity(conf.CADir)
	switch {
	case errors.Is(err, state.ErrUnavailable):
		return nil, cliapp.Fatalf("%v", err)
	case err != nil:
		fmt.Fprintf(e.stderr, "Warning: %v\n", err)
	case serial != "":
		e.log.Info().Str("SERIAL", serial).Msg("ctrl-exec-identity-sync")
		rotation.ForgetSessions(nil, e.paths.StateDir(), e.warnSessionCache)()
	}
	return b, nil
}

// closeState ends the backend's connection (etcd: frees any lock left).
func (e *env) closeState() {
	if e.state != nil {
		e.state.Close()
		e.state = nil
	}
}

// registry is the agent registry of the state backend. A ctrl-exec.conf
// this user may not read means the files, as before the backend existed,
// so an unprivileged list-agents still gets its "Try: sudo" hint.
func (e *env) registry(configPath string) (*registry.Registry, error) {
	b, err := e.stateBackend(configPath, nil)
	if err != nil {
		if isUnreadable(configPath) {
			return registry.New(e.paths.AgentsDir()), nil
		}
		return nil, err
	}
	return b.Registry, nil
}

func isUnreadable(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return errors.Is(err, fs.ErrPermission)
	}
	f.Close()
	return false
}
