package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

// A remembered chain is answered only inside its validity window: outside
// it the chain is verified again and refused as expired (or not yet valid),
// exactly as without the memo. Failures are never remembered.
func TestChainMemoRechecksTime(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, t.TempDir(), pkitest.Key(t, 2048, 0))
	other := pkitest.NewCA(t, t.TempDir(), pkitest.Key(t, 2048, 1))
	leaf := ca.Pair(t, pkitest.Key(t, 2048, 4), "ctrl-exec", 30).Leaf
	stranger := other.Pair(t, pkitest.Key(t, 2048, 4), "ctrl-exec", 30).Leaf
	m := &chainMemo{roots: ca.Roots()}
	now := time.Now()

	for i := range 2 { // the second answer comes from the memo
		if err := m.verify([]*x509.Certificate{leaf}, now); err != nil {
			t.Fatalf("verify #%d: %v", i+1, err)
		}
	}
	if _, ok := m.valid[chainKey([]*x509.Certificate{leaf})]; !ok || len(m.valid) != 1 {
		t.Fatalf("memo holds %d chains, want the leaf's alone", len(m.valid))
	}
	// The answer really comes from the memo: with the pool emptied a fresh
	// verification would fail, yet the remembered chain still passes.
	roots := m.roots
	m.roots = x509.NewCertPool()
	if err := m.verify([]*x509.Certificate{leaf}, now); err != nil {
		t.Errorf("a remembered chain was verified again: %v", err)
	}
	m.roots = roots
	for _, at := range []time.Time{leaf.NotAfter.Add(time.Second), leaf.NotBefore.Add(-time.Second)} {
		var invalid x509.CertificateInvalidError
		if err := m.verify([]*x509.Certificate{leaf}, at); !errors.As(err, &invalid) || invalid.Reason != x509.Expired {
			t.Errorf("verify at %v, outside %v..%v: %v, want the expiry error", at, leaf.NotBefore, leaf.NotAfter, err)
		}
	}
	for i := range 2 {
		var unknown x509.UnknownAuthorityError
		if err := m.verify([]*x509.Certificate{stranger}, now); !errors.As(err, &unknown) {
			t.Errorf("verify #%d of another CA's certificate: %v, want unknown authority", i+1, err)
		}
	}
	if err := (&chainMemo{}).verify([]*x509.Certificate{leaf}, now); err == nil {
		t.Error("a memo without a CA verified a chain")
	}
	if err := m.verify(nil, now); err == nil {
		t.Error("no certificate verified")
	}
	if len(m.valid) != 1 {
		t.Errorf("memo holds %d chains after the failures, want 1", len(m.valid))
	}
}

// The memo stays bounded: once full it starts again.
func TestChainMemoBounded(t *testing.T) {
	t.Parallel()
	ca := pkitest.NewCA(t, t.TempDir(), pkitest.Key(t, 2048, 0))
	leaf := ca.Pair(t, pkitest.Key(t, 2048, 4), "ctrl-exec", 30).Leaf
	m := &chainMemo{roots: ca.Roots(), valid: map[string]window{}}
	for i := range memoEntries {
		m.valid[fmt.Sprint(i)] = window{}
	}
	if err := m.verify([]*x509.Certificate{leaf}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(m.valid) != 1 {
		t.Errorf("memo holds %d chains, want 1 after reaching %d", len(m.valid), memoEntries)
	}
}

// PrefetchClientKey starts the config's one key parse in the background,
// once however often it is called; a config without a lazy key is left
// alone.
func TestPrefetchClientKey(t *testing.T) {
	t.Parallel()
	parsed := make(chan struct{})
	var calls atomic.Int32
	k := &clientKey{pair: func() (*tls.Certificate, error) {
		if calls.Add(1) == 1 {
			close(parsed)
		}
		return &tls.Certificate{}, nil
	}}
	cfg := &tls.Config{Certificates: []tls.Certificate{{PrivateKey: k}}}
	PrefetchClientKey(cfg)
	PrefetchClientKey(cfg.Clone()) // a connection's copy shares the loader
	select {
	case <-parsed:
	case <-time.After(10 * time.Second):
		t.Fatal("PrefetchClientKey did not start the parse")
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("key parsed %d times, want once", n)
	}
	PrefetchClientKey(&tls.Config{})                                    // no certificate
	PrefetchClientKey(&tls.Config{Certificates: []tls.Certificate{{}}}) // no loader
}
