package tlsx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// Identity is the certificate a long-running server presents and the CA pool
// it trusts, swapped atomically by Reload so that a renewed certificate or a
// SIGHUP takes effect on the next handshake while current connections carry
// on with the one they started with.
type Identity struct {
	cur atomic.Pointer[identityState]
}

type identityState struct {
	cert  tls.Certificate
	roots *x509.CertPool // nil without a CA file
	agent *tls.Config    // per-handshake config of AgentServerConfig
	plain *tls.Config    // per-handshake config of PairingServerConfig / APIServerConfig
	// verified remembers the client chains that verified against roots.
	verified *chainMemo
}

// LoadIdentity reads a certificate, its key (PKCS#1 or PKCS#8 PEM) and, when
// caFile is not "", the CA bundle peers must chain to.
func LoadIdentity(certFile, keyFile, caFile string) (*Identity, error) {
	id := new(Identity)
	if err := id.Reload(certFile, keyFile, caFile); err != nil {
		return nil, err
	}
	return id, nil
}

// Reload reads the files again and, only if all of them load, makes them the
// identity for new handshakes. On error the previous identity stays in use.
func (id *Identity) Reload(certFile, keyFile, caFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("load TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	var roots *x509.CertPool
	if caFile != "" {
		if roots, err = LoadCAPool(caFile); err != nil {
			return err
		}
	}
	id.set(cert, roots)
	return nil
}

func (id *Identity) set(cert tls.Certificate, roots *x509.CertPool) {
	st := &identityState{cert: cert, roots: roots, verified: &chainMemo{roots: roots}}
	st.agent = agentHandshakeConfig(st)
	st.plain = plainHandshakeConfig(st)
	id.cur.Store(st)
}

// LoadChainIdentity is the pairing listener's identity: the certificate and
// key, with the CA certificates of chainFile sent after the certificate, so
// an agent that pins the CA's fingerprint (request-pairing
// --ca-fingerprint) can check the chain before it sends its CSR. A Perl
// pairing server sends its certificate alone.
func LoadChainIdentity(certFile, keyFile, chainFile string) (*Identity, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	data, err := os.ReadFile(chainFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	cas, err := pki.ParseCertsPEM(data)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", chainFile, err)
	}
	for _, ca := range cas {
		if !bytes.Equal(ca.Raw, cert.Certificate[0]) {
			cert.Certificate = append(cert.Certificate, ca.Raw)
		}
	}
	id := new(Identity)
	id.set(cert, nil)
	return id, nil
}

// Certificate returns the certificate currently presented.
func (id *Identity) Certificate() *tls.Certificate {
	st := id.cur.Load()
	return &st.cert
}

// Roots returns the CA pool currently trusted (nil when loaded without a CA).
func (id *Identity) Roots() *x509.CertPool {
	return id.cur.Load().roots
}

// LoadCAPool reads a PEM bundle of CA certificates.
func LoadCAPool(caFile string) (*x509.CertPool, error) {
	data, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read CA bundle: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA bundle %s holds no PEM certificate", caFile)
	}
	return pool, nil
}
