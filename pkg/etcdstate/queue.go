package etcdstate

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Queue keeps §7.4's pairing queue as keys <prefix>pairing/<entry name>
// ({id}.json, {id}.approved, {id}.denied), each value the time of writing
// (Unix nanoseconds) and a newline before the entry's JSON; it is a
// pairing.QueueStore. A server waiting on a request holds
// <prefix>pairing-held/<id> on its process's lease, so a request whose
// server died is told apart within LockTTL. Answers reach the waiting
// server through a watch.
type Queue struct {
	C   *Client
	Now func() time.Time // nil: time.Now
}

func (q Queue) key(name string) string { return q.C.prefix + "pairing/" + name }
func (q Queue) heldKey(id string) string {
	return q.C.prefix + "pairing-held/" + id
}

func (q Queue) now() time.Time {
	if q.Now == nil {
		return time.Now()
	}
	return q.Now()
}

// Where names the queue for messages.
func (q Queue) Where() string { return "etcd prefix " + q.C.prefix + "pairing/" }

// Write stores an entry stamped with now.
func (q Queue) Write(name string, data []byte) error {
	v := strconv.FormatInt(q.now().UnixNano(), 10) + "\n" + string(data)
	ctx, cancel := q.C.opCtx()
	defer cancel()
	if _, err := q.C.cli.Put(ctx, q.key(name), v); err != nil {
		return q.C.unavailable("write pairing "+name, err)
	}
	return nil
}

func split(v []byte) ([]byte, time.Time) {
	stamp, data, ok := bytes.Cut(v, []byte("\n"))
	if !ok {
		return v, time.Time{}
	}
	n, err := strconv.ParseInt(string(stamp), 10, 64)
	if err != nil {
		return v, time.Time{}
	}
	return data, time.Unix(0, n)
}

// Read is an entry and when it was written.
func (q Queue) Read(name string) ([]byte, time.Time, bool, error) {
	ctx, cancel := q.C.opCtx()
	defer cancel()
	resp, err := q.C.cli.Get(ctx, q.key(name))
	if err != nil {
		return nil, time.Time{}, false, q.C.unavailable("read pairing "+name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, time.Time{}, false, nil
	}
	data, at := split(resp.Kvs[0].Value)
	return data, at, true, nil
}

// Remove deletes the named entries in one transaction; failures are left
// to stale expiry, as a failed file removal is.
func (q Queue) Remove(names ...string) {
	ops := make([]clientv3.Op, len(names))
	for i, n := range names {
		ops[i] = clientv3.OpDelete(q.key(n))
	}
	ctx, cancel := q.C.opCtx()
	defer cancel()
	q.C.cli.Txn(ctx).Then(ops...).Commit()
}

// List is every entry's name and time of writing.
func (q Queue) List() (map[string]time.Time, error) {
	ctx, cancel := q.C.opCtx()
	defer cancel()
	p := q.key("")
	resp, err := q.C.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, q.C.unavailable("list pairing queue", err)
	}
	out := make(map[string]time.Time, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		_, at := split(kv.Value)
		out[strings.TrimPrefix(string(kv.Key), p)] = at
	}
	return out, nil
}

// Locked runs fn holding the queue's mutex (on this process's lease, so a
// node that dies holding it frees it within LockTTL).
func (q Queue) Locked(fn func() error) error {
	s, err := q.C.lockSession()
	if err != nil {
		return err
	}
	m := concurrency.NewMutex(s, q.C.prefix+"pairing-lock")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Lock(ctx); err != nil {
		return q.C.unavailable("pairing queue lock", err)
	}
	defer func() {
		ctx, cancel := q.C.opCtx()
		defer cancel()
		m.Unlock(ctx)
	}()
	return fn()
}

// Hold puts id's held key on this process's lease until release.
func (q Queue) Hold(id string) (func(), error) {
	s, err := q.C.lockSession()
	if err != nil {
		return func() {}, err
	}
	ctx, cancel := q.C.opCtx()
	defer cancel()
	if _, err := q.C.cli.Put(ctx, q.heldKey(id), "", clientv3.WithLease(s.Lease())); err != nil {
		return func() {}, q.C.unavailable("hold pairing "+id, err)
	}
	return func() {
		ctx, cancel := q.C.opCtx()
		defer cancel()
		q.C.cli.Delete(ctx, q.heldKey(id))
	}, nil
}

// Held reports whether a live server holds id (false when etcd cannot
// say: then approve refuses and deny clears, as for a dead server).
func (q Queue) Held(id string) bool {
	ctx, cancel := q.C.opCtx()
	defer cancel()
	resp, err := q.C.cli.Get(ctx, q.heldKey(id), clientv3.WithCountOnly())
	return err == nil && resp.Count > 0
}

// Watch signals each change of id's entries until ctx ends.
func (q Queue) Watch(ctx context.Context, id string) <-chan struct{} {
	out := make(chan struct{}, 1)
	// No WithRequireLeader: the client re-establishes the watch itself
	// across a member's failure.
	w := q.C.cli.Watch(ctx, q.key(id+"."), clientv3.WithPrefix())
	go func() {
		for range w {
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}
