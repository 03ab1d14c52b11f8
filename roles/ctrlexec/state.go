package ctrlexec

import (
	"github.com/ctrl-exec-go/ctrl-exec/pkg/cliapp"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
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
	return b, nil
}

// closeState ends the backend's connection (etcd: frees any lock left).
func (e *env) closeState() {
	if e.state != nil {
		e.state.Close()
		e.state = nil
	}
}
