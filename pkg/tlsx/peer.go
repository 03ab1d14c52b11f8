package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// AddPeerCheck makes cfg's handshakes also call check with the peer's leaf
// certificate once the existing verification (the chain check of
// ClientConfig) has passed. It runs inside the handshake, on full and
// resumed sessions alike, so a peer that fails it never receives a byte of
// the request: the control host's agent identity check (D-31). cfg must be
// the caller's own copy (a Clone).
func AddPeerCheck(cfg *tls.Config, check func(leaf *x509.Certificate) error) {
	prev := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if prev != nil {
			if err := prev(cs); err != nil {
				return err
			}
		}
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("server certificate: peer sent no certificate")
		}
		return check(cs.PeerCertificates[0])
	}
}

// PinError is a pairing server whose certificate does not chain to the CA
// the agent was told to expect (request-pairing --ca-fingerprint).
type PinError struct {
	Want string // the pinned fingerprint
	Got  string // the fingerprint of the CA the server sent, "" if it sent none that matched
	Err  error  // why the chain failed, when the pinned CA was sent
}

func (e *PinError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("the pairing server's certificate does not chain to the CA %s: %v", e.Want, e.Err)
	case e.Got != "":
		return fmt.Sprintf("the pairing server's CA is %s, not %s", e.Got, e.Want)
	}
	return fmt.Sprintf("the pairing server's certificate does not chain to the CA %s", e.Want)
}

func (e *PinError) Unwrap() error { return e.Err }

// CheckPinnedChain checks that a pairing server's chain (leaf first) chains
// to the CA certificate whose fingerprint (pki.Fingerprint) is pin, which
// must be among the certificates the server sent. A server that sent its
// leaf alone, as a Perl pairing server does, cannot be checked yet: checked
// is false and err nil, and the caller checks the leaf against the CA the
// approval delivers instead. A failure is a *PinError.
func CheckPinnedChain(certs []*x509.Certificate, pin string) (checked bool, err error) {
	if len(certs) == 0 {
		return false, &PinError{Want: pin, Err: fmt.Errorf("peer sent no certificate")}
	}
	for _, c := range certs {
		if pki.Fingerprint(c) != pin {
			continue
		}
		pool := x509.NewCertPool()
		pool.AddCert(c)
		if err := VerifyPeerChain(certs, pool); err != nil {
			return false, &PinError{Want: pin, Err: err}
		}
		return true, nil
	}
	if len(certs) == 1 {
		return false, nil
	}
	return false, &PinError{Want: pin, Got: pki.Fingerprint(certs[len(certs)-1])}
}

// PinnedPairingClientConfig is PairingClientConfig for an agent given the
// control host's CA fingerprint: the handshake fails with a *PinError,
// before anything is sent, unless CheckPinnedChain passes or cannot tell
// yet.
func PinnedPairingClientConfig(pin string) *tls.Config {
	cfg := PairingClientConfig()
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := CheckPinnedChain(cs.PeerCertificates, pin)
		return err
	}
	return cfg
}
