//go:build noetcd

package state

import (
	"errors"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
)

// ErrUnavailable matches every failure to reach the state backend; a
// noetcd build has only the files, which are always there.
var ErrUnavailable = errors.New("state backend unavailable")

// openEtcd refuses: this build was made without the etcd client, to keep
// agents and appliances small.
func openEtcd(conf *config.Control, _ func() time.Time) (*Backend, error) {
	return nil, errors.New("state_backend = etcd, but this ctrl-exec was built without etcd support (the noetcd build, for agents and appliances); use the standard build on control hosts that share state")
}
