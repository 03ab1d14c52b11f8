package etcdstate

import (
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Registry keeps §7.5's agent records as <prefix>agents/<hostname>, each
// the JSON its registry file would hold; it is a registry.Store. Updates
// are compare-and-swap transactions on the key's revision, so two nodes
// changing one record never lose each other's fields.
type Registry struct{ C *Client }

func (r Registry) key(hostname string) string { return r.C.prefix + "agents/" + hostname }

// Where names hostname's key for messages.
func (r Registry) Where(hostname string) string { return "etcd key " + r.key(hostname) }

// Get is hostname's record.
func (r Registry) Get(hostname string) ([]byte, bool, error) {
	ctx, cancel := r.C.opCtx()
	defer cancel()
	resp, err := r.C.cli.Get(ctx, r.key(hostname))
	if err != nil {
		return nil, false, r.C.unavailable("read registry "+hostname, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	return resp.Kvs[0].Value, true, nil
}

// Update writes fn(old) if the key has not changed since it was read, and
// otherwise reads it again and retries.
func (r Registry) Update(hostname string, fn func(old []byte) ([]byte, error)) error {
	k := r.key(hostname)
	for {
		ctx, cancel := r.C.opCtx()
		resp, err := r.C.cli.Get(ctx, k)
		cancel()
		if err != nil {
			return r.C.unavailable("read registry "+hostname, err)
		}
		var old []byte
		var rev int64 // 0: absent, and the compare demands it stays so
		if len(resp.Kvs) > 0 {
			old, rev = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
		}
		data, err := fn(old)
		if err != nil {
			return err
		}
		ctx, cancel = r.C.opCtx()
		tr, err := r.C.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, string(data))).Commit()
		cancel()
		if err != nil {
			return r.C.unavailable("write registry "+hostname, err)
		}
		if tr.Succeeded {
			return nil
		}
	}
}

// Delete removes hostname's record.
func (r Registry) Delete(hostname string) ([]byte, bool, error) {
	ctx, cancel := r.C.opCtx()
	defer cancel()
	resp, err := r.C.cli.Delete(ctx, r.key(hostname), clientv3.WithPrevKV())
	if err != nil {
		return nil, false, r.C.unavailable("delete registry "+hostname, err)
	}
	if len(resp.PrevKvs) == 0 {
		return nil, false, nil
	}
	return resp.PrevKvs[0].Value, true, nil
}

// List is every record by hostname.
func (r Registry) List() (map[string][]byte, error) {
	ctx, cancel := r.C.opCtx()
	defer cancel()
	p := r.C.prefix + "agents/"
	resp, err := r.C.cli.Get(ctx, p, clientv3.WithPrefix())
	if err != nil {
		return nil, r.C.unavailable("list registry", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), p)] = kv.Value
	}
	return out, nil
}
