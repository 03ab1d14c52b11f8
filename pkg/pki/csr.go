package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
)

// MaxCSRSize is the largest CSR PEM any signing path accepts, in bytes.
const MaxCSRSize = 10240

const csrHeader = "-----BEGIN CERTIFICATE REQUEST-----"

// Errors of the §8.1 CSR checks, worded as the Perl CA words them.
var (
	ErrCSRTooLarge = errors.New("CSR exceeds maximum size")
	ErrCSRFormat   = errors.New("Invalid CSR format")
)

// Refusals Go adds to every signing path (D-35): a key too small to trust, and
// a subject whose CN is ambiguous (a second CN would otherwise pass the
// hostname check, which reads only one of them).
var (
	ErrWeakKey    = errors.New("CSR key is too weak")
	ErrMultipleCN = errors.New("CSR subject has more than one CN")
)

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// CreateCSR returns a PEM CSR for key whose subject is exactly CN=cn, with no
// attributes, signed with SHA-256 — what `openssl req -new -subj /CN=<cn>`
// produces. key is RSA or ECDSA.
func CreateCSR(key crypto.Signer, cn string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:            pkix.Name{CommonName: cn},
		SignatureAlgorithm: signatureAlgorithm(key),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %q: %w", cn, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR applies the checks every signing path makes before signing: at most
// MaxCSRSize bytes, starting with the CERTIFICATE REQUEST PEM header, a valid
// self-signature (which the Perl CA leaves to openssl), an RSA key of at least
// MinKeyBits (ErrWeakKey) or an ECDSA (P-256 or P-384) key, and at most one CN
// (ErrMultipleCN). The requested name is csr.Subject.CommonName; callers
// compare it with the hostname the agent claimed.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	if len(csrPEM) > MaxCSRSize {
		return nil, ErrCSRTooLarge
	}
	if !bytes.HasPrefix(csrPEM, []byte(csrHeader)) {
		return nil, ErrCSRFormat
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block does not decode", ErrCSRFormat)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCSRFormat, err)
	}
	if err := checkCSRKey(csr); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR self-signature does not verify (corrupted or tampered request): %w", err)
	}
	cns := 0
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidCommonName) {
			cns++
		}
	}
	if cns > 1 {
		return nil, fmt.Errorf("%w (%d CNs)", ErrMultipleCN, cns)
	}
	return csr, nil
}

// CSRCommonName returns the CN a CSR asks for, after the ParseCSR checks.
func CSRCommonName(csrPEM []byte) (string, error) {
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return "", err
	}
	return csr.Subject.CommonName, nil
}

// checkCSRKey accepts RSA keys and ECDSA keys on P-256 or P-384, the curves
// OpenSSL peers and Go's TLS both handle.
func checkCSRKey(csr *x509.CertificateRequest) error {
	switch pub := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() && pub.Curve != elliptic.P384() {
			return fmt.Errorf("CSR key is ECDSA on %s, ctrl-exec needs P-256 or P-384", pub.Curve.Params().Name)
		}
		return nil
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinKeyBits {
			return fmt.Errorf("%w: RSA %d bits, at least %d required", ErrWeakKey, pub.N.BitLen(), MinKeyBits)
		}
		return nil
	}
	if csr.PublicKeyAlgorithm != x509.RSA {
		return fmt.Errorf("CSR key is %v, ctrl-exec needs RSA or ECDSA", csr.PublicKeyAlgorithm)
	}
	return nil
}
