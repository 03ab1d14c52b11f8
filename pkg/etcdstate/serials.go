package etcdstate

import (
	"fmt"
	"math/big"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Serials is §7.3's CA serial counter shared by every node, the key
// <prefix>ca/serial holding the last serial issued in hex; it is a
// pki.SerialCounter. Each allocation is a compare-and-swap on the key's
// revision, so two nodes never get the same serial.
type Serials struct{ C *Client }

func (s Serials) key() string { return s.C.prefix + "ca/serial" }

// Next stores and returns max(counter+1, min). When the key is absent the
// counter starts at min, the next serial by this node's ca.serial.
func (s Serials) Next(min *big.Int) (*big.Int, error) {
	return s.swap("allocate CA serial", func(value []byte) (*big.Int, error) {
		n := new(big.Int).Set(min)
		if value == nil {
			return n, nil
		}
		last, ok := new(big.Int).SetString(string(value), 16)
		if !ok {
			return nil, fmt.Errorf("etcd key %s: %q is not a hex serial; put the last issued serial there", s.key(), value)
		}
		if last.Add(last, big.NewInt(1)); last.Cmp(n) > 0 {
			n = last
		}
		return n, nil
	})
}

// Last is the counter's value; ok false when the key is absent.
func (s Serials) Last() (*big.Int, bool, error) {
	ctx, cancel := s.C.opCtx()
	defer cancel()
	resp, err := s.C.cli.Get(ctx, s.key())
	if err != nil {
		return nil, false, s.C.unavailable("read CA serial counter", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, false, nil
	}
	n, ok := new(big.Int).SetString(string(resp.Kvs[0].Value), 16)
	if !ok {
		return nil, false, fmt.Errorf("etcd key %s: %q is not a hex serial", s.key(), resp.Kvs[0].Value)
	}
	return n, true, nil
}

// Raise sets the counter to n unless it already holds n or more.
func (s Serials) Raise(n *big.Int) (changed bool, err error) {
	stored, err := s.swap("raise CA serial counter", func(value []byte) (*big.Int, error) {
		if last, ok := new(big.Int).SetString(string(value), 16); value != nil && ok && last.Cmp(n) >= 0 {
			return nil, nil
		}
		return n, nil
	})
	return stored != nil, err
}

// swap is the counter's one compare-and-swap loop: next sees the stored
// value (nil when absent) and returns what to store, or nil to leave it.
// The swap retries when another node wrote in between.
func (s Serials) swap(what string, next func(value []byte) (*big.Int, error)) (*big.Int, error) {
	k := s.key()
	for {
		ctx, cancel := s.C.opCtx()
		resp, err := s.C.cli.Get(ctx, k)
		cancel()
		if err != nil {
			return nil, s.C.unavailable("read CA serial counter", err)
		}
		var rev int64
		var value []byte
		if len(resp.Kvs) > 0 {
			rev, value = resp.Kvs[0].ModRevision, resp.Kvs[0].Value
		}
		n, err := next(value)
		if n == nil || err != nil {
			return nil, err
		}
		ctx, cancel = s.C.opCtx()
		tr, err := s.C.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, fmt.Sprintf("%X", n))).Commit()
		cancel()
		if err != nil {
			// The answer may be lost after the put applied: that number is
			// then spent, never reused, as a failed signing spends one.
			return nil, s.C.unavailable(what, err)
		}
		if tr.Succeeded {
			return n, nil
		}
	}
}
