package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ValidateRenewedCert checks a certificate delivered by /renew-complete before
// the agent stores it, and returns it parsed. It must:
//
//   - parse as a PEM certificate;
//   - carry the agent's own public key (pub), so the stored cert matches agent.key;
//   - chain to the CA the agent already trusts (currentCAPEM, its ca.crt);
//   - not be expired at now.
//
// A non-empty caPEM (the "ca" field) must hold exactly the certificates of
// currentCAPEM: renewal never changes the trusted CA. A notBefore slightly
// after now is accepted so that an agent clock running behind the control
// host does not reject a certificate issued a moment ago.
func ValidateRenewedCert(certPEM, caPEM, currentCAPEM []byte, pub crypto.PublicKey, now time.Time) (*x509.Certificate, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("cert: %w", err)
	}
	trusted, err := ParseCertsPEM(currentCAPEM)
	if err != nil {
		return nil, fmt.Errorf("trusted CA: %w", err)
	}
	if len(bytes.TrimSpace(caPEM)) > 0 {
		delivered, err := ParseCertsPEM(caPEM)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		if !sameCerts(delivered, trusted) {
			return nil, errors.New("ca differs from the CA this agent trusts; renewal cannot change the CA, re-pair instead")
		}
	}
	key, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !key.Equal(cert.PublicKey) {
		return nil, errors.New("cert public key does not match the agent key")
	}
	if now.After(cert.NotAfter) {
		return nil, fmt.Errorf("cert expired on %s", FormatOpenSSLDate(cert.NotAfter))
	}
	at := now
	if at.Before(cert.NotBefore) {
		at = cert.NotBefore
	}
	if err := VerifyChain(cert, nil, trusted, at); err != nil {
		return nil, fmt.Errorf("cert does not chain to the trusted CA: %w", err)
	}
	return cert, nil
}

// VerifyChain checks that leaf chains to one of roots at time at, without any
// host name and without extended key usage constraints (ctrl-exec certs have
// none, and each serves as TLS client and server).
func VerifyChain(leaf *x509.Certificate, intermediates, roots []*x509.Certificate, at time.Time) error {
	rootPool := x509.NewCertPool()
	for _, c := range roots {
		rootPool.AddCert(c)
	}
	interPool := x509.NewCertPool()
	for _, c := range intermediates {
		interPool.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         rootPool,
		Intermediates: interPool,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

func sameCerts(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}
