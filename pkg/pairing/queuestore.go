package pairing

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// QueueStore keeps the queue's entries somewhere all control hosts share
// (etcd, issue 13) instead of the directory. Entries are named as the
// files are: {id}.json, {id}.approved, {id}.denied.
type QueueStore interface {
	// Write stores an entry, stamped with the time of writing.
	Write(name string, data []byte) error
	// Read is an entry and when it was written; found false if absent.
	Read(name string) (data []byte, written time.Time, found bool, err error)
	// Remove deletes the named entries, absent ones included.
	Remove(names ...string)
	// List is every entry's name and time of writing.
	List() (map[string]time.Time, error)
	// Locked runs fn holding the queue's lock, shared by every node.
	Locked(fn func() error) error
	// Hold marks id as having a live server until release (or the
	// process's end); Held tells whether anyone holds it.
	Hold(id string) (release func(), err error)
	Held(id string) bool
	// Watch signals (never blocking) each time an entry of id changes,
	// until ctx ends.
	Watch(ctx context.Context, id string) <-chan struct{}
	// Where names the queue in messages.
	Where() string
}

// NewQueueStore is the queue kept in s.
func NewQueueStore(s QueueStore, now func() time.Time) *Queue {
	return &Queue{Now: now, store: s}
}

// watch is the store's change signal for id, nil for the directory
// (which the server polls).
func (q *Queue) watch(ctx context.Context, id string) <-chan struct{} {
	if q.store == nil {
		return nil
	}
	return q.store.Watch(ctx, id)
}

// lock serialises approvals and denials: flock on the directory, or the
// store's lock.
func (q *Queue) lock(fn func() error) error {
	if q.store != nil {
		return q.store.Locked(fn)
	}
	return lockDir(q.Dir, fn)
}

// writeAnswer stores {id}.approved or {id}.denied.
func (q *Queue) writeAnswer(id, ext string, body []byte) error {
	if q.store != nil {
		return q.store.Write(id+ext, body)
	}
	return writeFile(q.path(id, ext), body)
}

func (q *Queue) storeAdd(r Request) error {
	if err := q.store.Write(r.ID+extRequest, wire.JSON(r)); err != nil {
		return fmt.Errorf("queue pairing request: %w", err)
	}
	return nil
}

func (q *Queue) storeGet(id string) (Request, error) {
	data, _, found, err := q.store.Read(id + extRequest)
	if err != nil {
		return Request{}, err
	}
	if !found {
		return Request{}, errNoRequest
	}
	var r Request
	if err := json.Unmarshal(data, &r); err != nil {
		return Request{}, fmt.Errorf("%w %s %s: %v", errBadRequest, q.store.Where(), id+extRequest, err)
	}
	return r, nil
}

// storeIDs is the ids of the requests ({id}.json) in the store, sorted.
func (q *Queue) storeIDs() ([]string, error) {
	all, err := q.store.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for name := range all {
		if m := queueEntryRE().FindStringSubmatch(name); m != nil && m[2] == "json" {
			ids = append(ids, m[1])
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// storeExpire is ExpireStale's rule on the store's times of writing.
func (q *Queue) storeExpire() {
	all, err := q.store.List()
	if err != nil {
		return
	}
	now := q.now()
	for name, written := range all {
		m := queueEntryRE().FindStringSubmatch(name)
		if m == nil {
			continue
		}
		id, stale := m[1], now.Sub(written) > StaleAfter
		switch m[2] {
		case "json":
			_, a := all[id+extApproved]
			_, d := all[id+extDenied]
			if !a && !d && stale {
				q.store.Remove(name)
			}
		default:
			if stale {
				q.store.Remove(id+extRequest, name)
			}
		}
	}
}

func (q *Queue) storeAnswer(id string) (body []byte, approved, ok bool) {
	for _, ext := range []string{extApproved, extDenied} {
		data, _, found, err := q.store.Read(id + ext)
		if err != nil || !found {
			continue
		}
		return data, ext == extApproved, true
	}
	return nil, false, false
}

func (q *Queue) storeHas(name string) bool {
	_, _, found, err := q.store.Read(name)
	return err == nil && found
}

func lockDir(dir string, fn func() error) error { return atomicfile.WithLock(dir, fn) }

func writeFile(path string, data []byte) error { return atomicfile.Write(path, data, fileMode) }
