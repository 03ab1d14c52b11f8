package etcdstate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Rotation is §7.7's rotation state shared by every node: <prefix>rotation/state
// holds what rotation.json would, and <prefix>rotation/identity the ctrl-exec
// certificate and key that go with it (opaque bytes here: pkg/rotation
// encodes both). Both change together in one compare-and-swap transaction
// on the state key's revision, so two nodes never both rotate from one state.
type Rotation struct{ C *Client }

func (r Rotation) stateKey() string { return r.C.prefix + "rotation/state" }
func (r Rotation) lockKey() string  { return r.C.prefix + "rotation/lock" }

// IdentityKey is the key of the shared identity; its name is also the
// additional data its sealing authenticates (pkg/rotation).
func (r Rotation) IdentityKey() string { return r.C.prefix + "rotation/identity" }

// Where names the state key for messages.
func (r Rotation) Where() string { return "etcd key " + r.stateKey() }

// Load is the state (nil when absent) and its revision (0 when absent),
// the token Replace compares.
func (r Rotation) Load() ([]byte, int64, error) {
	return r.get(r.stateKey(), "read rotation state")
}

// Identity is the shared ctrl-exec identity (nil when absent) and its revision.
func (r Rotation) Identity() ([]byte, int64, error) {
	if err := r.C.KeysAllowed(); err != nil {
		return nil, 0, err
	}
	return r.get(r.IdentityKey(), "read ctrl-exec identity")
}

func (r Rotation) get(k, op string) ([]byte, int64, error) {
	ctx, cancel := r.C.opCtx()
	defer cancel()
	resp, err := r.C.cli.Get(ctx, k)
	if err != nil {
		return nil, 0, r.C.unavailable(op, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, 0, nil
	}
	return resp.Kvs[0].Value, resp.Kvs[0].ModRevision, nil
}

// Replace stores state, and identity unless it is nil, if the state key is
// still at rev (0: still absent). false: another node changed it first.
func (r Rotation) Replace(rev int64, state, identity []byte) (bool, error) {
	ops := []clientv3.Op{clientv3.OpPut(r.stateKey(), string(state))}
	if identity != nil {
		if err := r.C.KeysAllowed(); err != nil {
			return false, err
		}
		ops = append(ops, clientv3.OpPut(r.IdentityKey(), string(identity)))
	}
	return r.txn(r.stateKey(), rev, "write rotation state", ops...)
}

// SwapIdentity stores identity if the identity key is still at rev.
func (r Rotation) SwapIdentity(rev int64, identity []byte) (bool, error) {
	if err := r.C.KeysAllowed(); err != nil {
		return false, err
	}
	return r.txn(r.IdentityKey(), rev, "write ctrl-exec identity", clientv3.OpPut(r.IdentityKey(), string(identity)))
}

func (r Rotation) txn(k string, rev int64, op string, ops ...clientv3.Op) (bool, error) {
	ctx, cancel := r.C.opCtx()
	defer cancel()
	tr, err := r.C.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).Then(ops...).Commit()
	if err != nil {
		return false, r.C.unavailable(op, err)
	}
	return tr.Succeeded, nil
}

// WatchIdentity calls changed (on its own goroutine) once at the start and
// then after every change of the identity key, until ctx ends. Each call
// reads the key afresh, so a burst of changes or a watch re-established
// after an outage is never missed: the last value is what counts.
func (r Rotation) WatchIdentity(ctx context.Context, changed func()) {
	if r.C.KeysAllowed() != nil {
		return
	}
	for ctx.Err() == nil {
		// Read first, then watch from the revision after that read: a
		// watch registers asynchronously, so watching first could miss a
		// change made before it took hold.
		gctx, cancel := r.C.opCtx()
		resp, err := r.C.cli.Get(gctx, r.IdentityKey(), clientv3.WithKeysOnly())
		cancel()
		if err != nil {
			pause(ctx, time.Second) // etcd out of reach: try again
			continue
		}
		changed()
		// No WithRequireLeader: the client re-establishes the watch itself
		// across a member's failure.
		w := r.C.cli.Watch(ctx, r.IdentityKey(), clientv3.WithRev(resp.Header.Revision+1))
		for resp := range w {
			if resp.Canceled {
				break // compacted past our revision, say: read and watch afresh
			}
			changed()
		}
		pause(ctx, time.Second) // the client closed, say: not in a tight loop
	}
}

// Exclusive runs fn holding the cluster-wide rotation mutex (<prefix>rotation/lock,
// on this process's lease: a node that dies lets it go within LockTTL), so
// rotation steps on different nodes never interleave. Within one process
// the caller must also exclude (the flock on rotation.lock): every
// goroutine shares the lease, and a mutex on one lease is not exclusive.
func (r Rotation) Exclusive(fn func() error) error {
	s, err := r.C.lockSession()
	if err != nil {
		return err
	}
	// Wait as long as the holder needs (a broadcast may be long), but not
	// past the loss of our own lease.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	m := concurrency.NewMutex(s, r.lockKey())
	if err := m.Lock(ctx); err != nil {
		return r.C.unavailable("take the rotation lock "+r.lockKey(), err)
	}
	defer func() {
		uctx, ucancel := r.C.opCtx()
		defer ucancel()
		m.Unlock(uctx) // on failure the lease still frees it
	}()
	return fn()
}

// ErrKeysNotAllowed is KeysAllowed's refusal.
var ErrKeysNotAllowed = errors.New("the etcd connection may not carry the ctrl-exec private key")

// KeysAllowed says whether the connection may carry a private key: only
// over TLS with a client certificate (etcd_ca, etcd_cert and etcd_key set,
// no endpoint in plain http://), or when every endpoint is on this host
// (loopback). Otherwise the key would travel in clear, or to a peer that
// never proved who it is.
func (c *Client) KeysAllowed() error { return keysAllowed(c.endpoints, c.clientTLS) }

func keysAllowed(endpoints []string, clientTLS bool) error {
	if clientTLS && !anyPlain(endpoints) {
		return nil
	}
	if allLoopback(endpoints) {
		return nil
	}
	return fmt.Errorf("%w: etcd_endpoints %s are not all loopback and the connection is not TLS with a client certificate; set etcd_ca, etcd_cert and etcd_key (and https:// endpoints) so the rotated ctrl-exec certificate and key can be shared",
		ErrKeysNotAllowed, strings.Join(endpoints, ","))
}

// anyPlain: the etcd client drops TLS for an http:// endpoint even when
// it has a TLS configuration.
func anyPlain(endpoints []string) bool {
	for _, ep := range endpoints {
		if strings.HasPrefix(strings.ToLower(ep), "http://") || strings.HasPrefix(strings.ToLower(ep), "unix://") {
			return true
		}
	}
	return false
}

func allLoopback(endpoints []string) bool {
	for _, ep := range endpoints {
		host := ep
		if strings.Contains(ep, "://") {
			u, err := url.Parse(ep)
			if err != nil {
				return false
			}
			host = u.Host
		}
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if host == "localhost" {
			continue
		}
		if ip := net.ParseIP(strings.Trim(host, "[]")); ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return len(endpoints) > 0
}
