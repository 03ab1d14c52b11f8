// Package state is the seam between the roles and where the control host's
// shared state lives (issue 13): the files under /var/lib/ctrl-exec (the
// default, byte-compatible with Perl 0.8.4, through pkg/locks,
// pkg/runstore and pkg/registry unchanged) or etcd (pkg/etcdstate), chosen
// by ctrl-exec.conf's state_backend: locks, runs, the agent registry, the
// CA serial counter, the pairing queue, the rotation state and (etcd) the
// rotated ctrl-exec identity.
package state

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Held is a set of locks held for one dispatch.
type Held interface{ Release() }

// Locker is §16's host:script locks.
type Locker interface {
	// CheckAvailable returns the pairs held elsewhere as "host:script".
	CheckAvailable(hosts []string, script string) ([]string, error)
	// Acquire takes every pair, all or nothing; on conflict Held is nil.
	Acquire(hosts []string, script string, log zerolog.Logger) (Held, []string, error)
	// ListHeld is every lock held now.
	ListHeld() ([]locks.Lock, error)
}

// Runs is §7.8's stored runs.
type Runs interface {
	Save(rec runstore.Record) error
	Load(reqid string) (wire.Object, error)
	Purge()
}

// Registry is §7.5's agent registry as the callers use it. Both backends
// give a *registry.Registry (the directory, or etcd through a
// registry.Store), so the packages holding one (pairing, renewal,
// rotation, fleet) need no change.
type Registry interface {
	Get(hostname string) (registry.Record, error)
	Put(rec registry.Record) error
	Merge(hostname string, fields map[string]any) (registry.Record, error)
	Update(hostname string, fn func(registry.Record) error) (registry.Record, error)
	Delete(hostname string) (registry.Record, error)
	List() ([]registry.Record, []registry.Skipped, error)
}

var _ Registry = (*registry.Registry)(nil)

// Backend is one state backend.
type Backend struct {
	Name     string // "files" or "etcd"
	Locks    Locker
	Runs     Runs
	Registry *registry.Registry
	// Serials is the CA serial counter shared by the nodes; nil for files
	// (ca.serial under flock is the counter).
	Serials pki.SerialCounter
	// PairingQueue is the shared pairing queue; nil for files (the
	// directory /var/lib/ctrl-exec/pairing).
	PairingQueue pairing.QueueStore
	// shared is the cluster behind a shared backend (etcd); nil for files.
	shared cluster
	// rotation is the shared rotation state and ctrl-exec identity; nil
	// for files (rotation.json, and each host's own key files).
	rotation sharedRotation
	// noCAWarned: SyncIdentity has said once that this process cannot
	// read ca.key.
	noCAWarned atomic.Bool
}

// cluster is what only a shared backend has: elections among the nodes, a
// run's locks and record taken in one step, and a connection to close.
type cluster interface {
	Elect(name string) (leading func() bool)
	BeginRun(hosts []string, script string, rec runstore.Record, log zerolog.Logger) (Run, []string, error)
	Close() error
}

// RegistryIn is the registry for code that reads registry_dir: that
// directory with the files backend (as before), the shared one otherwise.
func (b *Backend) RegistryIn(dir string) *registry.Registry {
	if b == nil || b.Name == "files" {
		return registry.New(dir)
	}
	return b.Registry
}

// Queue is the pairing queue: dir (the files), or the shared one.
func (b *Backend) Queue(dir string, now func() time.Time) *pairing.Queue {
	if b == nil || b.PairingQueue == nil {
		return pairing.NewQueue(dir, now)
	}
	return pairing.NewQueueStore(b.PairingQueue, now)
}

// ShareIdentity points c's agent_identity checks (pkg/agentid) at the
// shared registry; with files c keeps reading registry_dir.
func (b *Backend) ShareIdentity(c *dispatch.Client) {
	if b != nil && b.Name != "files" && c.Identity != nil {
		c.Identity.Registry = b.Registry
	}
}

// Elect campaigns for name among every node of the etcd backend and
// returns whether this process leads now; nil with files, where each
// process runs what it is configured to run, as before.
func (b *Backend) Elect(name string) (leading func() bool) {
	if b == nil || b.shared == nil {
		return nil
	}
	return b.shared.Elect(name)
}

// Close lets go of the backend's connection (etcd: its locks' lease).
func (b *Backend) Close() error {
	if b == nil || b.shared == nil {
		return nil
	}
	return b.shared.Close()
}

// Files is the default backend: the lock and runs directories of p.
func Files(p paths.Paths, now func() time.Time) *Backend {
	return &Backend{
		Name:     "files",
		Locks:    fileLocks{dir: p.LocksDir()},
		Runs:     fileRuns{runstore.Store{Dir: p.RunsDir(), Now: now}},
		Registry: registry.New(p.AgentsDir()),
	}
}

// Open is the backend conf names (conf nil: files).
func Open(conf *config.Control, p paths.Paths, now func() time.Time) (*Backend, error) {
	if conf == nil || conf.StateBackend == "" || conf.StateBackend == "files" {
		return Files(p, now), nil
	}
	if conf.StateBackend != "etcd" {
		return nil, errors.New("state_backend '" + conf.StateBackend + "' is neither files nor etcd")
	}
	return openEtcd(conf, now)
}

// CheckAndAcquire is D-27: check, then take every lock and hold it. On
// etcd the acquiring transaction is the check: one round trip.
func CheckAndAcquire(l Locker, hosts []string, script string, log zerolog.Logger) (Held, []string, error) {
	if _, checks := l.(acquireChecks); checks {
		return l.Acquire(hosts, script, log)
	}
	conflicts, err := l.CheckAvailable(hosts, script)
	if err != nil || len(conflicts) > 0 {
		return nil, conflicts, err
	}
	return l.Acquire(hosts, script, log)
}

// acquireChecks marks a Locker whose Acquire is its own check (one
// transaction), so CheckAndAcquire skips the separate check.
type acquireChecks interface{ acquireIsCheck() }

// Run is one dispatch's hold on the state (BeginRun): its locks, and its
// record once it is over.
type Run interface {
	// Finish stores the finished record and lets the locks go.
	Finish(rec runstore.Record) error
	// Release lets the locks go and stores nothing: the run never ran.
	Release()
}

// BeginRun is D-27 for a run recorded as rec: take every lock, all or
// nothing, and record the run as started where every node can read it.
// Files: check then acquire as before, nothing stored until Finish. etcd:
// one transaction is the check, the locks and the running record, and
// Finish is one more (the record and the release): two round trips a run.
func (b *Backend) BeginRun(hosts []string, script string, rec runstore.Record, log zerolog.Logger) (Run, []string, error) {
	if b.shared != nil {
		return b.shared.BeginRun(hosts, script, rec, log)
	}
	h, conflicts, err := CheckAndAcquire(b.Locks, hosts, script, log)
	if h == nil {
		return nil, conflicts, err
	}
	return heldRun{h, b.Runs}, nil, nil
}

// heldRun lets the locks go before it stores the record, as ever.
type heldRun struct {
	held Held
	runs Runs
}

func (r heldRun) Release() { r.held.Release() }

func (r heldRun) Finish(rec runstore.Record) error {
	r.held.Release()
	return r.runs.Save(rec)
}

type fileLocks struct{ dir string }

func (f fileLocks) CheckAvailable(hosts []string, script string) ([]string, error) {
	return locks.CheckAvailable(f.dir, hosts, script)
}

func (f fileLocks) Acquire(hosts []string, script string, log zerolog.Logger) (Held, []string, error) {
	h, conflicts, err := locks.Acquire(f.dir, hosts, script, log)
	if h == nil {
		return nil, conflicts, err
	}
	return h, conflicts, err
}

func (f fileLocks) ListHeld() ([]locks.Lock, error) { return locks.ListHeld(f.dir) }

type fileRuns struct{ runstore.Store }
