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
	k := s.key()
	for {
		ctx, cancel := s.C.opCtx()
		resp, err := s.C.cli.Get(ctx, k)
		cancel()
		if err != nil {
			return nil, s.C.unavailable("read CA serial counter", err)
		}
		n := new(big.Int).Set(min)
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			last, ok := new(big.Int).SetString(string(resp.Kvs[0].Value), 16)
			if !ok {
				return nil, fmt.Errorf("etcd key %s: %q is not a hex serial; put the last issued serial there", k, resp.Kvs[0].Value)
			}
			if last.Add(last, big.NewInt(1)); last.Cmp(n) > 0 {
				n = last
			}
		}
		ctx, cancel = s.C.opCtx()
		tr, err := s.C.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, fmt.Sprintf("%X", n))).Commit()
		cancel()
		if err != nil {
			// The answer may be lost after the put applied: that number is
			// then spent, never reused, as a failed signing spends one.
			return nil, s.C.unavailable("allocate CA serial", err)
		}
		if tr.Succeeded {
			return n, nil
		}
	}
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
	k := s.key()
	for {
		ctx, cancel := s.C.opCtx()
		resp, err := s.C.cli.Get(ctx, k)
		cancel()
		if err != nil {
			return false, s.C.unavailable("read CA serial counter", err)
		}
		var rev int64
		if len(resp.Kvs) > 0 {
			rev = resp.Kvs[0].ModRevision
			if last, ok := new(big.Int).SetString(string(resp.Kvs[0].Value), 16); ok && last.Cmp(n) >= 0 {
				return false, nil
			}
		}
		ctx, cancel = s.C.opCtx()
		tr, err := s.C.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", rev)).
			Then(clientv3.OpPut(k, fmt.Sprintf("%X", n))).Commit()
		cancel()
		if err != nil {
			return false, s.C.unavailable("raise CA serial counter", err)
		}
		if tr.Succeeded {
			return true, nil
		}
	}
}
