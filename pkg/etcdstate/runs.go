package etcdstate

import (
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

var errNoScript = errors.New("lock: no script name given")

// leaseReuse is how long one 24 h lease is shared by the records written
// meanwhile: a record lives between runstore.TTL and TTL+leaseReuse.
const leaseReuse = time.Minute

// Runs keeps §7.8's records as <prefix>runs/<reqid>, the same JSON as the
// files, expiring with a lease of runstore.TTL (no purge needed). A run in
// progress is stored too (Started), so every node can report it.
type Runs struct {
	C   *Client
	Now func() time.Time

	mu      sync.Mutex
	lease   clientv3.LeaseID
	granted time.Time
}

func (r *Runs) key(reqid string) string { return r.C.prefix + "runs/" + reqid }

// recordLease returns a lease of about runstore.TTL, shared for leaseReuse.
func (r *Runs) recordLease() (clientv3.LeaseID, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.lease != 0 && now.Sub(r.granted) < leaseReuse {
		return r.lease, nil
	}
	ctx, cancel := r.C.opCtx()
	defer cancel()
	resp, err := r.C.cli.Grant(ctx, int64((runstore.TTL+leaseReuse)/time.Second))
	if err != nil {
		return 0, r.C.unavailable("lease grant", err)
	}
	r.lease, r.granted = resp.ID, now
	return r.lease, nil
}

// Started stores a record of a run in progress: no results yet and
// "completed": 0 and "running": true. Save replaces it.
func (r *Runs) Started(rec runstore.Record) error {
	return r.put(rec.ReqID, runningJSON(rec))
}

func runningJSON(rec runstore.Record) []byte {
	if rec.Args == nil {
		rec.Args = []string{}
	}
	if rec.Results == nil {
		rec.Results = []dispatch.RunResult{}
	}
	var o wire.Object
	o.Set("reqid", rec.ReqID)
	o.Set("script", rec.Script)
	o.Set("hosts", rec.Hosts)
	o.Set("results", rec.Results)
	o.Set("completed", 0)
	o.Set("args", rec.Args)
	if rec.RerunOf != "" {
		o.Set("rerun_of", rec.RerunOf)
	}
	o.Set("running", true)
	return wire.JSON(o)
}

// Save stores the finished record whole, as runstore.Store.Save does.
func (r *Runs) Save(rec runstore.Record) error {
	return r.put(rec.ReqID, r.finishedJSON(rec))
}

func (r *Runs) finishedJSON(rec runstore.Record) []byte {
	if rec.Args == nil {
		rec.Args = []string{}
	}
	rec.Completed = r.Now().Unix()
	return wire.JSON(rec)
}

// Begin takes the run's locks (Locks.Acquire) and stores its running
// record (Started) in one transaction: one round trip, and no record of a
// run that lost the race. Finish ends it.
func (r *Runs) Begin(l Locks, hosts []string, script string, rec runstore.Record, log zerolog.Logger) (*Held, []string, error) {
	lease, err := r.recordLease()
	if err != nil {
		return nil, nil, err
	}
	key := r.key(rec.ReqID)
	h, conflicts, err := l.acquire(hosts, script, log, key,
		[]clientv3.Op{clientv3.OpPut(key, string(runningJSON(rec)), clientv3.WithLease(lease))})
	if err != nil {
		r.dropLease() // it may be what failed
	}
	return h, conflicts, err
}

// Finish stores the finished record and lets h's locks go in one
// transaction. Should that fail, the record is stored alone (Save) and
// the locks go with the lease.
func (r *Runs) Finish(h *Held, rec runstore.Record) error {
	data := r.finishedJSON(rec)
	if lease, err := r.recordLease(); err == nil && h != nil {
		put := clientv3.OpPut(r.key(rec.ReqID), string(data), clientv3.WithLease(lease))
		if h.end(&put) == nil {
			return nil
		}
		r.dropLease()
	}
	return r.put(rec.ReqID, data)
}

func (r *Runs) dropLease() {
	r.mu.Lock()
	r.lease = 0
	r.mu.Unlock()
}

// put writes one record; a put whose answer was lost is simply repeated
// (the same value twice is the same state), so a member's failure costs
// no record.
func (r *Runs) put(reqid string, data []byte) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var lease clientv3.LeaseID
		if lease, err = r.recordLease(); err != nil {
			continue
		}
		ctx, cancel := r.C.opCtx()
		_, err = r.C.cli.Put(ctx, r.key(reqid), string(data), clientv3.WithLease(lease))
		cancel()
		if err == nil {
			return nil
		}
		r.dropLease() // the lease may be what failed
	}
	return r.C.unavailable("store run "+reqid, err)
}

// Load reads a record: runstore.ErrNoResult when there is none,
// runstore.ErrCorrupt when it is not one JSON object.
func (r *Runs) Load(reqid string) (wire.Object, error) {
	if !runstore.ValidReqID(reqid) {
		return wire.Object{}, runstore.ErrNoResult
	}
	ctx, cancel := r.C.opCtx()
	defer cancel()
	resp, err := r.C.cli.Get(ctx, r.key(reqid))
	if err != nil {
		return wire.Object{}, r.C.unavailable("read run "+reqid, err)
	}
	if len(resp.Kvs) == 0 {
		return wire.Object{}, runstore.ErrNoResult
	}
	rec, err := wire.ParseObject(resp.Kvs[0].Value)
	if err != nil {
		return wire.Object{}, runstore.ErrCorrupt
	}
	return rec, nil
}

// Purge does nothing: records expire with their lease.
func (r *Runs) Purge() {}
