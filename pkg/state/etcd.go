//go:build !noetcd

package state

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
)

// ErrUnavailable matches every failure to reach the state backend: the API
// answers 503, the CLI exits 255.
var ErrUnavailable = etcdstate.ErrUnavailable

func openEtcd(conf *config.Control, now func() time.Time) (*Backend, error) {
	c, err := etcdstate.Open(EtcdConfig(conf))
	if err != nil {
		return nil, err
	}
	return Etcd(c, now), nil
}

// EtcdConfig is the etcd part of conf.
func EtcdConfig(conf *config.Control) etcdstate.Config {
	return etcdstate.Config{Endpoints: conf.EtcdEndpoints, Prefix: conf.EtcdPrefix,
		Cert: conf.EtcdCert, Key: conf.EtcdKey, CA: conf.EtcdCA}
}

// Etcd is the backend on an open etcd client; Close closes the client.
func Etcd(c *etcdstate.Client, now func() time.Time) *Backend {
	runs := &etcdstate.Runs{C: c, Now: now}
	return &Backend{
		Name:         "etcd",
		Locks:        etcdLocks{etcdstate.Locks{C: c}},
		Runs:         runs,
		Registry:     registry.NewStore(etcdstate.Registry{C: c}),
		Serials:      etcdstate.Serials{C: c},
		PairingQueue: etcdstate.Queue{C: c, Now: now},
		shared:       &etcdCluster{c: c, runs: runs},
		rotation:     etcdRotation{etcdstate.Rotation{C: c}},
	}
}

// etcdRotation is the rotation state and ctrl-exec identity in etcd.
type etcdRotation struct{ r etcdstate.Rotation }

func (e etcdRotation) Load(log zerolog.Logger) (*rotation.State, int64, error) {
	data, rev, err := e.r.Load()
	if err != nil || data == nil {
		return nil, rev, err
	}
	s, err := rotation.ParseState(data)
	if err != nil {
		// As a corrupt rotation.json: logged, and no rotation as far as
		// the loop and serial-status can tell.
		log.Error().Str("PATH", e.r.Where()).Str("ERROR", err.Error()).
			Str("REASON", "JSON parse failed - rotation state unreadable").Msg("rotation-state-corrupt")
		return nil, rev, nil
	}
	return s, rev, nil
}

func (e etcdRotation) Replace(rev int64, s *rotation.State, id *rotation.Identity) error {
	var idData []byte
	if id != nil {
		idData = id.Marshal()
	}
	ok, err := e.r.Replace(rev, s.Marshal(), idData)
	if err == nil && !ok {
		err = rotation.ErrChanged
	}
	return err
}

func (etcdRotation) Exclusive(fn func() error) error { return fn() }

// DropPrevious takes the previous pair out of the shared identity if it is
// still the one beside certPEM; every node's sync then removes its copy.
func (e etcdRotation) DropPrevious(certPEM []byte) error {
	if e.keysAllowed() != nil {
		return nil // never published here
	}
	for {
		data, rev, err := e.r.Identity()
		if err != nil || data == nil {
			return err
		}
		id, err := rotation.ParseIdentity(data)
		if err != nil {
			return fmt.Errorf("%s: %w", e.where(), err)
		}
		if id.PrevCert == nil || !bytes.Equal(id.Cert, certPEM) {
			return nil
		}
		id.PrevCert, id.PrevKey = nil, nil
		if ok, err := e.r.SwapIdentity(rev, id.Marshal()); ok || err != nil {
			return err
		}
	}
}

func (e etcdRotation) where() string      { return "etcd key " + e.r.C.Prefix() + "rotation/identity" }
func (e etcdRotation) keysAllowed() error { return e.r.C.KeysAllowed() }

func (e etcdRotation) identity() ([]byte, int64, error) { return e.r.Identity() }

func (e etcdRotation) swapIdentity(rev int64, data []byte) (bool, error) {
	return e.r.SwapIdentity(rev, data)
}

func (e etcdRotation) watchIdentity(ctx context.Context, changed func()) {
	e.r.WatchIdentity(ctx, changed)
}

// etcdCluster is the etcd client's elections and one-transaction runs.
type etcdCluster struct {
	c         *etcdstate.Client
	runs      *etcdstate.Runs
	elections []*etcdstate.Election
}

func (e *etcdCluster) Elect(name string) func() bool {
	el := e.c.Elect(name)
	e.elections = append(e.elections, el)
	return el.Leading
}

// BeginRun is one transaction: the check, the locks and the running record.
func (e *etcdCluster) BeginRun(hosts []string, script string, rec runstore.Record, log zerolog.Logger) (Run, []string, error) {
	h, conflicts, err := e.runs.Begin(etcdstate.Locks{C: e.c}, hosts, script, rec, log)
	if h == nil {
		return nil, conflicts, err
	}
	return etcdRun{h, e.runs}, nil, nil
}

func (e *etcdCluster) Close() error {
	for _, el := range e.elections {
		el.Stop()
	}
	return e.c.Close()
}

type etcdRun struct {
	held *etcdstate.Held
	runs *etcdstate.Runs
}

func (r etcdRun) Release() { r.held.Release() }

func (r etcdRun) Finish(rec runstore.Record) error { return r.runs.Finish(r.held, rec) }

type etcdLocks struct{ etcdstate.Locks }

func (etcdLocks) acquireIsCheck() {}

func (e etcdLocks) Acquire(hosts []string, script string, log zerolog.Logger) (Held, []string, error) {
	h, conflicts, err := e.Locks.Acquire(hosts, script, log)
	if h == nil {
		return nil, conflicts, err
	}
	return h, conflicts, err
}
