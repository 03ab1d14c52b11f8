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
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
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
	return Etcd(c, now, conf.CADir, conf.RotationFile), nil
}

// EtcdConfig is the etcd part of conf.
func EtcdConfig(conf *config.Control) etcdstate.Config {
	return etcdstate.Config{Endpoints: conf.EtcdEndpoints, Prefix: conf.EtcdPrefix,
		Cert: conf.EtcdCert, Key: conf.EtcdKey, CA: conf.EtcdCA}
}

// Etcd is the backend on an open etcd client; Close closes the client.
// caDir holds ca.key (it seals the shared identity); rotation.lock beside
// rotationFile keeps this host's rotation steps apart.
func Etcd(c *etcdstate.Client, now func() time.Time, caDir, rotationFile string) *Backend {
	runs := &etcdstate.Runs{C: c, Now: now}
	return &Backend{
		Name:         "etcd",
		Locks:        etcdLocks{etcdstate.Locks{C: c}},
		Runs:         runs,
		Registry:     registry.NewStore(etcdstate.Registry{C: c}),
		Serials:      etcdstate.Serials{C: c},
		PairingQueue: etcdstate.Queue{C: c, Now: now},
		shared:       &etcdCluster{c: c, runs: runs},
		rotation:     &etcdRotation{r: etcdstate.Rotation{C: c}, caDir: caDir, file: rotationFile},
	}
}

// etcdRotation is the rotation state and ctrl-exec identity in etcd. The
// identity is sealed under a key derived from ca.key (rotation.Seal): etcd
// only ever holds ciphertext, and a value not sealed by this CA is refused.
type etcdRotation struct {
	r     etcdstate.Rotation
	caDir string // ca.key and ca.crt (sealing, validation)
	file  string // rotation.json: this host's rotation.lock is beside it
}

// local is this host's flock on rotation.lock.
func (e *etcdRotation) local() rotation.FileStore { return rotation.FileStore{Path: e.file} }

func (e *etcdRotation) at(file string) sharedRotation {
	c := *e
	c.file = file
	return &c
}

func (e *etcdRotation) Load(log zerolog.Logger) (*rotation.State, int64, error) {
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

func (e *etcdRotation) Replace(rev int64, s *rotation.State, id *rotation.Identity) error {
	var idData []byte
	if id != nil {
		ca, err := e.ca()
		if err != nil {
			return err
		}
		if idData, err = id.Seal(ca.Key, e.r.IdentityKey()); err != nil {
			return err
		}
	}
	ok, err := e.r.Replace(rev, s.Marshal(), idData)
	if err == nil && !ok {
		err = rotation.ErrChanged
	}
	return err
}

// Exclusive holds this host's flock on rotation.lock (other processes and
// goroutines here: they share one etcd lease) and then the cluster-wide
// mutex (other nodes) for the whole step.
func (e *etcdRotation) Exclusive(fn func() error) error {
	return e.local().Exclusive(func() error { return e.r.Exclusive(fn) })
}

// Shareable: the connection may carry the key and ca.key seals it.
func (e *etcdRotation) Shareable() error {
	if err := e.keysAllowed(); err != nil {
		return err
	}
	_, err := e.ca()
	return err
}

func (e *etcdRotation) Resync(caDir string) (bool, error) {
	held, _, err := e.syncLocked(caDir)
	return held && err == nil, err
}

func (e *etcdRotation) ca() (*pki.CA, error) {
	ca, err := pki.LoadCA(pki.CAFilesIn(e.caDir))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoCAKey, err)
	}
	return ca, nil
}

// loadIdentity is the shared identity unsealed (nil when absent).
func (e *etcdRotation) loadIdentity(ca *pki.CA) (*rotation.Identity, int64, error) {
	data, rev, err := e.r.Identity()
	if err != nil || data == nil {
		return nil, rev, err
	}
	id, err := rotation.OpenIdentity(data, ca.Key, e.r.IdentityKey())
	if err != nil {
		return nil, rev, fmt.Errorf("%s: %w", e.where(), err)
	}
	return id, rev, nil
}

// publish stores id, sealed, whatever the identity key held.
func (e *etcdRotation) publish(id *rotation.Identity) error {
	ca, err := e.ca()
	if err != nil {
		return err
	}
	data, err := id.Seal(ca.Key, e.r.IdentityKey())
	if err != nil {
		return err
	}
	for {
		_, rev, err := e.r.Identity()
		if err != nil {
			return err
		}
		if ok, err := e.r.SwapIdentity(rev, data); ok || err != nil {
			return err
		}
	}
}

// syncLocked writes the shared identity into caDir once it is validated.
// held: etcd holds one; serial: the certificate's when files changed.
func (e *etcdRotation) syncLocked(caDir string) (held bool, serial string, err error) {
	ca, err := e.ca()
	if err != nil {
		return false, "", err
	}
	id, _, err := e.loadIdentity(ca)
	if err != nil || id == nil {
		return false, "", err
	}
	min := ""
	if st, _, err := e.Load(zerolog.Nop()); err != nil {
		return true, "", err
	} else if st != nil {
		min = st.CurrentSerial
	}
	if err := id.Validate(ca.Cert, min); err != nil {
		return true, "", fmt.Errorf("%s: %w; not installed", e.where(), err)
	}
	changed, err := rotation.WriteIdentity(caDir, id)
	if err != nil {
		return true, "", fmt.Errorf("update the ctrl-exec certificate from %s: %w", e.where(), err)
	}
	if !changed {
		return true, "", nil
	}
	if serial = id.Serial(); serial == "" {
		serial = "?" // changed, whatever it holds
	}
	return true, serial, nil
}

// sync is syncLocked under this host's rotation lock, so it never lands
// between a rotation's key and certificate writes.
func (e *etcdRotation) sync(caDir string) (serial string, err error) {
	if _, err := e.ca(); err != nil {
		return "", err // before the lock: it may not be ours to take either
	}
	err = e.local().Exclusive(func() error {
		var err error
		_, serial, err = e.syncLocked(caDir)
		return err
	})
	return serial, err
}

// DropPrevious takes the previous pair out of the shared identity if it is
// still the one beside certPEM; every node's sync then removes its copy.
func (e *etcdRotation) DropPrevious(certPEM []byte) error {
	if e.keysAllowed() != nil {
		return nil // never published here
	}
	ca, err := e.ca()
	if err != nil {
		return err
	}
	for {
		id, rev, err := e.loadIdentity(ca)
		if err != nil || id == nil {
			return err
		}
		if id.PrevCert == nil || !bytes.Equal(id.Cert, certPEM) {
			return nil
		}
		id.PrevCert, id.PrevKey = nil, nil
		data, err := id.Seal(ca.Key, e.r.IdentityKey())
		if err != nil {
			return err
		}
		if ok, err := e.r.SwapIdentity(rev, data); ok || err != nil {
			return err
		}
	}
}

func (e *etcdRotation) where() string      { return "etcd key " + e.r.IdentityKey() }
func (e *etcdRotation) keysAllowed() error { return e.r.C.KeysAllowed() }

func (e *etcdRotation) watchIdentity(ctx context.Context, changed func()) {
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
