package etcdstate

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/locks"
)

// Locks are §16's host:script locks as keys <prefix>locks/<file name>,
// attached to the process's lease (LockTTL). All of a dispatch's keys are
// created in one transaction, so two nodes racing for the same pair see
// exactly one winner.
type Locks struct{ C *Client }

type lockValue struct {
	Host   string `json:"host"`
	Script string `json:"script"`
	Node   string `json:"node,omitempty"`
	PID    int    `json:"pid,omitempty"`
	Token  string `json:"token"` // tells this acquisition's keys from any other
}

// key uses the file backend's name so the same pairs collide on both.
func (l Locks) key(host, script string) string {
	return l.C.prefix + "locks/" + locks.FileName(host, script)
}

// CheckAvailable returns the pairs held now as "host:script" (dry runs;
// Acquire needs no check before it).
func (l Locks) CheckAvailable(hosts []string, script string) ([]string, error) {
	if script == "" {
		return nil, errNoScript
	}
	ops := make([]clientv3.Op, len(hosts))
	for i, h := range hosts {
		ops[i] = clientv3.OpGet(l.key(h, script), clientv3.WithCountOnly())
	}
	ctx, cancel := l.C.opCtx()
	defer cancel()
	resp, err := l.C.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, l.C.unavailable("lock check", err)
	}
	var conflicts []string
	for i, r := range resp.Responses {
		if r.GetResponseRange().Count > 0 {
			conflicts = append(conflicts, hosts[i]+":"+script)
		}
	}
	return conflicts, nil
}

// Held is a set of lock keys; Release deletes them.
type Held struct {
	c      *Client
	keys   []string
	values []string // what each key holds: unique to this acquisition
	hosts  []string
	script string
	log    zerolog.Logger
	once   sync.Once
	runKey string // Runs.Begin: the run record taken with the locks
}

// attempts is how often a lock transaction whose answer was lost (a member
// died under it) is tried before etcd counts as unreachable.
const attempts = 3

// Acquire takes every host's pair, all or nothing, in one transaction that
// is also the availability check (D-27 needs no separate read here).
// On conflict it logs lock-conflict and returns the conflicts and a nil Held.
func (l Locks) Acquire(hosts []string, script string, log zerolog.Logger) (*Held, []string, error) {
	return l.acquire(hosts, script, log, "", nil)
}

// acquire is Acquire with extra puts (runKey's) made in the same
// transaction, only if every lock is taken.
func (l Locks) acquire(hosts []string, script string, log zerolog.Logger, runKey string, extra []clientv3.Op) (*Held, []string, error) {
	if script == "" {
		return nil, nil, errNoScript
	}
	s, err := l.C.lockSession()
	if err != nil {
		return nil, nil, err
	}
	node, _ := os.Hostname()
	token := make([]byte, 8)
	rand.Read(token)
	h := &Held{c: l.C, hosts: append([]string(nil), hosts...), script: script, log: log, runKey: runKey}
	var keyHosts []string
	seen := map[string]bool{}
	for _, host := range hosts {
		k := l.key(host, script)
		if seen[k] {
			continue
		}
		seen[k] = true
		v, _ := json.Marshal(lockValue{Host: host, Script: script, Node: node, PID: os.Getpid(), Token: hex.EncodeToString(token)})
		h.keys = append(h.keys, k)
		h.values = append(h.values, string(v))
		keyHosts = append(keyHosts, host)
	}
	free := make([]clientv3.Cmp, len(h.keys))
	puts := make([]clientv3.Op, len(h.keys), len(h.keys)+len(extra))
	gets := make([]clientv3.Op, len(h.keys))
	for i, k := range h.keys {
		free[i] = clientv3.Compare(clientv3.CreateRevision(k), "=", 0)
		puts[i] = clientv3.OpPut(k, h.values[i], clientv3.WithLease(s.Lease()))
		gets[i] = clientv3.OpGet(k, clientv3.WithCountOnly())
	}
	puts = append(puts, extra...)
	mine := h.mine()
	var resp *clientv3.TxnResponse
	for attempt := 0; attempt < attempts; attempt++ {
		if attempt > 0 {
			// The last answer was lost: did that transaction apply?
			ctx, cancel := l.C.opCtx()
			r, err2 := l.C.cli.Txn(ctx).If(mine...).Commit()
			cancel()
			if err2 == nil && r.Succeeded {
				resp, err = r, nil
				break
			}
		}
		ctx, cancel := l.C.opCtx()
		resp, err = l.C.cli.Txn(ctx).If(free...).Then(puts...).Else(gets...).Commit()
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		// Outcome unknown: delete what may be ours; the lease does it otherwise.
		h.commit(nil)
		return nil, nil, l.C.unavailable("lock acquire", err)
	}
	if !resp.Succeeded {
		var conflicts []string
		for i, r := range resp.Responses {
			if r.GetResponseRange().Count > 0 {
				conflicts = append(conflicts, keyHosts[i]+":"+script)
			}
		}
		log.Warn().Str("CONFLICTS", strings.Join(conflicts, ",")).Msg("lock-conflict")
		return nil, conflicts, nil
	}
	for _, host := range keyHosts {
		log.Info().Str("HOST", host).Str("SCRIPT", script).Msg("lock-acquire")
	}
	return h, nil, nil
}

// Release deletes the keys this acquisition made (never someone else's
// after a lease loss) and logs lock-release; taken by Runs.Begin, the run
// record goes too (the run never ran). Again, or on nil, does nothing. A
// delete that cannot reach etcd is retried; failing that the keys go with
// this process's lease (its exit plus LockTTL at most).
func (h *Held) Release() {
	if h == nil {
		return
	}
	h.end(nil)
}

// end lets the locks go once, with put (the finished record) or, nil,
// deleting the run record if there is one.
func (h *Held) end(put *clientv3.Op) (err error) {
	done := false
	h.once.Do(func() {
		done = true
		if err = h.commit(put); err != nil {
			h.log.Warn().Str("SCRIPT", h.script).Str("ERROR", err.Error()).Msg("lock-release-fail")
		}
		if len(h.hosts) > 0 {
			h.log.Info().Str("HOSTS", strings.Join(h.hosts, ",")).Str("SCRIPT", h.script).Msg("lock-release")
		}
	})
	if !done {
		return errReleased
	}
	return err
}

var errReleased = errors.New("locks already released")

func (h *Held) mine() []clientv3.Cmp {
	mine := make([]clientv3.Cmp, len(h.keys))
	for i, k := range h.keys {
		mine[i] = clientv3.Compare(clientv3.Value(k), "=", h.values[i])
	}
	return mine
}

// commit deletes each key that still holds this acquisition's value, and
// puts the run record (put) or deletes it (nil, after Runs.Begin), in one
// transaction: a key that is no longer ours (lease lost, taken since) is
// left alone by a nested transaction of its own. Repeating it is harmless,
// so an answer lost to a member's failure is simply tried again.
func (h *Held) commit(put *clientv3.Op) error {
	var extra []clientv3.Op
	switch {
	case put != nil:
		extra = []clientv3.Op{*put}
	case h.runKey != "":
		extra = []clientv3.Op{clientv3.OpDelete(h.runKey)}
	}
	mine := h.mine()
	all := append([]clientv3.Op(nil), extra...)
	each := append([]clientv3.Op(nil), extra...)
	for i, k := range h.keys {
		all = append(all, clientv3.OpDelete(k))
		each = append(each, clientv3.OpTxn([]clientv3.Cmp{mine[i]}, []clientv3.Op{clientv3.OpDelete(k)}, nil))
	}
	var err error
	for attempt := 0; attempt < attempts; attempt++ {
		ctx, cancel := h.c.opCtx()
		_, err = h.c.cli.Txn(ctx).If(mine...).Then(all...).Else(each...).Commit()
		cancel()
		if err == nil {
			return nil
		}
	}
	return h.c.unavailable("lock release", err)
}

// ListHeld returns every lock held on any node, sorted by "host:script".
func (l Locks) ListHeld() ([]locks.Lock, error) {
	ctx, cancel := l.C.opCtx()
	defer cancel()
	resp, err := l.C.cli.Get(ctx, l.C.prefix+"locks/", clientv3.WithPrefix())
	if err != nil {
		return nil, l.C.unavailable("lock list", err)
	}
	var held []locks.Lock
	for _, kv := range resp.Kvs {
		var v lockValue
		if json.Unmarshal(kv.Value, &v) != nil || v.Host == "" {
			continue
		}
		held = append(held, locks.Lock{Host: v.Host, Script: v.Script})
	}
	sort.Slice(held, func(i, j int) bool {
		return held[i].Host+":"+held[i].Script < held[j].Host+":"+held[j].Script
	})
	return held, nil
}
