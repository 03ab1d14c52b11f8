package tlsx

import (
	"crypto/x509"
	"encoding/binary"
	"sync"
	"time"
)

// chainMemo remembers the peer chains that verified against one CA pool, so
// that an agent, which meets the same control-host certificate on every
// connection, does not check its RSA signature again each time (with
// RSA-4096 the chain check is the largest CPU cost of a resumed handshake,
// and on a full one it sits on the critical path after the client's
// signature).
//
// It changes no outcome: a chain's signatures and constraints depend only on
// its bytes and the pool, which never changes for one memo (Reload makes a
// new identity state and so a new memo); what does change, the time, is
// checked at every use against the validity window of the chain that
// verified, and outside it the chain is verified afresh. Only successes are
// kept, and at most memoEntries of them.
type chainMemo struct {
	roots *x509.CertPool // nil: no CA loaded, nothing verifies
	mu    sync.Mutex
	valid map[string]window // key: chainKey of the peer's certificates
}

// window is when every certificate of a verified chain is valid.
type window struct{ notBefore, notAfter time.Time }

// memoEntries bounds a memo: a control host has one certificate in use (two
// during a rotation), so a full memo is simply emptied.
const memoEntries = 64

// verify is VerifyPeerChain(certs, m.roots) at time now, answered from the
// memo when this exact chain verified before and now is inside its window.
func (m *chainMemo) verify(certs []*x509.Certificate, now time.Time) error {
	if len(certs) == 0 || m.roots == nil {
		_, err := verifyPeerChainAt(certs, m.roots, now)
		return err
	}
	key := chainKey(certs)
	m.mu.Lock()
	w, ok := m.valid[key]
	m.mu.Unlock()
	if ok && !now.Before(w.notBefore) && !now.After(w.notAfter) {
		return nil
	}
	chains, err := verifyPeerChainAt(certs, m.roots, now)
	if err != nil {
		return err
	}
	w = window{notBefore: chains[0][0].NotBefore, notAfter: chains[0][0].NotAfter}
	for _, c := range chains[0][1:] {
		if c.NotBefore.After(w.notBefore) {
			w.notBefore = c.NotBefore
		}
		if c.NotAfter.Before(w.notAfter) {
			w.notAfter = c.NotAfter
		}
	}
	m.mu.Lock()
	if m.valid == nil || len(m.valid) >= memoEntries {
		m.valid = make(map[string]window)
	}
	m.valid[key] = w
	m.mu.Unlock()
	return nil
}

// chainKey is the certificates' DER, each preceded by its length, so that
// no two different chains share a key.
func chainKey(certs []*x509.Certificate) string {
	n := 0
	for _, c := range certs {
		n += 4 + len(c.Raw)
	}
	b := make([]byte, 0, n)
	for _, c := range certs {
		b = binary.BigEndian.AppendUint32(b, uint32(len(c.Raw)))
		b = append(b, c.Raw...)
	}
	return string(b)
}
