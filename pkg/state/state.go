// Package state is the seam between the roles and where the control host's
// shared state lives (issue 13): the files under /var/lib/ctrl-exec (the
// default, byte-compatible with Perl 0.8.4, through pkg/locks,
// pkg/runstore and pkg/registry unchanged) or etcd (pkg/etcdstate), chosen
// by ctrl-exec.conf's state_backend: locks, runs, the agent registry, the
// CA serial counter and the pairing queue.
package state

import (
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/etcdstate"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pairing"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// ErrUnavailable matches every failure to reach the state backend: the API
// answers 503, the CLI exits 255.
var ErrUnavailable = etcdstate.ErrUnavailable

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
	client       *etcdstate.Client
	elections    []*etcdstate.Election
	close        func() error
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
	if b == nil || b.client == nil {
		return nil
	}
	e := b.client.Elect(name)
	b.elections = append(b.elections, e)
	return e.Leading
}

// Close lets go of the backend's connection (etcd: its locks' lease).
func (b *Backend) Close() error {
	if b == nil || b.close == nil {
		return nil
	}
	for _, e := range b.elections {
		e.Stop()
	}
	return b.close()
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
	return &Backend{
		Name:         "etcd",
		Locks:        etcdLocks{etcdstate.Locks{C: c}},
		Runs:         &etcdstate.Runs{C: c, Now: now},
		Registry:     registry.NewStore(etcdstate.Registry{C: c}),
		Serials:      etcdstate.Serials{C: c},
		PairingQueue: etcdstate.Queue{C: c, Now: now},
		client:       c,
		close:        c.Close,
	}
}

// CheckAndAcquire is D-27: check, then take every lock and hold it. On
// etcd the acquiring transaction is the check: one round trip.
func CheckAndAcquire(l Locker, hosts []string, script string, log zerolog.Logger) (Held, []string, error) {
	if _, checks := l.(etcdLocks); checks {
		return l.Acquire(hosts, script, log)
	}
	conflicts, err := l.CheckAvailable(hosts, script)
	if err != nil || len(conflicts) > 0 {
		return nil, conflicts, err
	}
	return l.Acquire(hosts, script, log)
}

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
	if l, ok := b.Locks.(etcdLocks); ok {
		if runs, ok := b.Runs.(*etcdstate.Runs); ok {
			h, conflicts, err := runs.Begin(l.Locks, hosts, script, rec, log)
			if h == nil {
				return nil, conflicts, err
			}
			return etcdRun{h, runs}, nil, nil
		}
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

type etcdRun struct {
	held *etcdstate.Held
	runs *etcdstate.Runs
}

func (r etcdRun) Release() { r.held.Release() }

func (r etcdRun) Finish(rec runstore.Record) error { return r.runs.Finish(r.held, rec) }

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

type etcdLocks struct{ etcdstate.Locks }

func (e etcdLocks) Acquire(hosts []string, script string, log zerolog.Logger) (Held, []string, error) {
	h, conflicts, err := e.Locks.Acquire(hosts, script, log)
	if h == nil {
		return nil, conflicts, err
	}
	return h, conflicts, err
}
