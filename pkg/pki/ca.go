package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/atomicfile"
)

// CA names and lifetimes.
const (
	CACommonName       = "ctrl-exec CA"
	CtrlExecCommonName = "ctrl-exec"
	CADays             = 3650
)

// CAFiles are the three files of the certificate authority.
type CAFiles struct {
	Key    string // ca.key, 0600
	Cert   string // ca.crt, 0644
	Serial string // ca.serial, last serial issued
}

// CAFilesIn returns the standard file names inside dir (normally /etc/ctrl-exec).
func CAFilesIn(dir string) CAFiles {
	return CAFiles{
		Key:    filepath.Join(dir, "ca.key"),
		Cert:   filepath.Join(dir, "ca.crt"),
		Serial: filepath.Join(dir, "ca.serial"),
	}
}

// CA is a loaded certificate authority, ready to sign.
type CA struct {
	Key     crypto.Signer // RSA or ECDSA
	Cert    *x509.Certificate
	CertPEM []byte // ca.crt as on disk: what agents receive as "ca"
	Files   CAFiles
	// Serials, if set, allocates serials shared with other control hosts
	// (etcd, issue 13); ca.serial still records the last one issued here.
	Serials SerialCounter
}

// SerialCounter hands out serials unique across every node sharing it.
type SerialCounter interface {
	// Next records and returns a serial above every one it returned before
	// and at least min (the next serial by ca.serial).
	Next(min *big.Int) (*big.Int, error)
}

// CAFileMissingError reports an absent ca.key or ca.crt with the wording of the
// Perl CA. It matches fs.ErrNotExist under errors.Is.
type CAFileMissingError struct {
	What string // "key" or "cert"
	Path string
}

func (e *CAFileMissingError) Error() string {
	return fmt.Sprintf("CA %s not found at '%s'", e.What, e.Path)
}

func (e *CAFileMissingError) Unwrap() error { return fs.ErrNotExist }

// ErrCAExists is returned (wrapped, with the path) by CreateCA when ca.key is
// already present.
var ErrCAExists = errors.New("CA already exists")

// CreateCA generates a bits-sized RSA key and a self-signed CA certificate and
// writes ca.key (0600), ca.crt (0644) and ca.serial ("01", no newline, 0600).
// It refuses to touch an existing ca.key. The key's directory is created
// (0750) if missing.
func CreateCA(files CAFiles, bits int, now time.Time) (*CA, error) {
	return CreateCAOfType(files, KeyRSA4096, bits, now)
}

// CreateCAOfType is CreateCA with a key of type kt (bits is the RSA size).
func CreateCAOfType(files CAFiles, kt KeyType, bits int, now time.Time) (*CA, error) {
	if err := refuseExistingCA(files); err != nil {
		return nil, err
	}
	key, err := NewKey(kt, bits)
	if err != nil {
		return nil, err
	}
	return CreateCAWithKey(files, key, now)
}

// CreateCAWithKey is CreateCA with a key the caller already has.
func CreateCAWithKey(files CAFiles, key crypto.Signer, now time.Time) (*CA, error) {
	if err := refuseExistingCA(files); err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	// As `openssl req -x509` with the stock v3_ca section: critical
	// basicConstraints CA:TRUE, SKI, AKI = SKI, no key usage, random serial.
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.UTC(),
		NotAfter:              now.UTC().Add(CADays * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
		SignatureAlgorithm:    signatureAlgorithm(key),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	certPEM := CertPEM(cert)

	if err := os.MkdirAll(filepath.Dir(files.Key), 0o750); err != nil {
		return nil, fmt.Errorf("create CA directory: %w", err)
	}
	if err := atomicfile.Write(files.Key, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write CA key: %w", err)
	}
	if err := atomicfile.Write(files.Cert, certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA cert: %w", err)
	}
	if err := atomicfile.Write(files.Serial, []byte("01"), 0o600); err != nil {
		return nil, fmt.Errorf("write CA serial: %w", err)
	}
	return &CA{Key: key, Cert: cert, CertPEM: certPEM, Files: files}, nil
}

func refuseExistingCA(files CAFiles) error {
	if _, err := os.Lstat(files.Key); err == nil {
		return fmt.Errorf("%w at '%s'; remove it first only if you really mean to replace the CA (every agent must then re-pair)", ErrCAExists, files.Key)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("check for an existing CA key: %w", err)
	}
	return nil
}

// LoadCA reads ca.key and ca.crt and checks that they belong together.
// ca.serial is only touched when signing.
func LoadCA(files CAFiles) (*CA, error) {
	for _, f := range []struct{ what, path string }{{"key", files.Key}, {"cert", files.Cert}} {
		if _, err := os.Stat(f.path); errors.Is(err, fs.ErrNotExist) {
			return nil, &CAFileMissingError{What: f.what, Path: f.path}
		}
	}
	key, err := LoadKey(files.Key)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	certPEM, err := os.ReadFile(files.Cert)
	if err != nil {
		return nil, fmt.Errorf("CA cert: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA cert %s: %w", files.Cert, err)
	}
	if !KeyMatches(key, cert) {
		return nil, fmt.Errorf("CA key %s does not belong to CA cert %s", files.Key, files.Cert)
	}
	return &CA{Key: key, Cert: cert, CertPEM: certPEM, Files: files}, nil
}

// SignOptions adjust SignCSR.
type SignOptions struct {
	// MinSerial, if positive, is the lowest serial to issue: when the next
	// ca.serial value is below it, ca.serial jumps to it. ctrl-exec certs use
	// CtrlExecSerialFloor.
	MinSerial int64
	// Backdate moves notBefore this far before now to absorb clock skew
	// (D-13; zero, the default, is the upstream behaviour).
	Backdate time.Duration
}

// SignCSR issues a certificate for a CSR that passes ParseCSR: the CSR's
// subject copied verbatim, none of its extensions, SKI and AKI only (no key
// usage, no EKU, because the certs serve as TLS client and server), signed
// with SHA-256 and the CA's key (RSA or ECDSA; either kind of CSR), valid
// from now for days days.
//
// The serial is ca.serial plus one. Reading, incrementing and writing
// ca.serial and signing all happen under flock(LOCK_EX) on ca.serial, the
// lock Perl's approve path takes around openssl, so Go and Perl signers never
// hand out the same serial.
func (ca *CA) SignCSR(csrPEM []byte, days int, now time.Time, opts SignOptions) (*x509.Certificate, error) {
	if days <= 0 {
		return nil, errors.New("days must be a positive integer")
	}
	csr, err := ParseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(csr.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		RawSubject:         csr.RawSubject,
		NotBefore:          now.UTC().Add(-opts.Backdate),
		NotAfter:           now.UTC().Add(time.Duration(days) * 24 * time.Hour),
		SubjectKeyId:       ski,
		AuthorityKeyId:     ca.Cert.SubjectKeyId, // empty for an SKI-less (v1) CA: no AKI
		SignatureAlgorithm: signatureAlgorithm(ca.Key),
	}
	var der []byte
	err = withSerialLock(ca.Files.Serial, func(sf *serialFile) error {
		serial, err := sf.next(opts.MinSerial)
		if err != nil {
			return err
		}
		if ca.Serials != nil {
			if serial, err = ca.Serials.Next(serial); err != nil {
				return err
			}
			if !serialFitsRFC5280(serial) {
				return fmt.Errorf("shared CA serial counter: next serial %s is longer than 20 bytes", serialHex(serial))
			}
		}
		// Record the serial before signing: a failed signing then wastes a
		// number instead of risking its reuse.
		if err := sf.write(serial); err != nil {
			return err
		}
		tmpl.SerialNumber = serial
		der, err = x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
		if err != nil {
			return fmt.Errorf("sign certificate for %q: %w", csr.Subject.CommonName, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// IssueCtrlExecCert generates a new ctrl-exec key and a certificate CN=ctrl-exec
// valid for days days, with a serial of at least CtrlExecSerialFloor, and
// replaces keyPath (0640, the directory's group: WriteCtrlExecKey) and
// certPath (0644), each written whole. The key is of the CA's type
// (setup-ca --key-type chooses both); bits is the RSA size.
func (ca *CA) IssueCtrlExecCert(keyPath, certPath string, bits, days int, now time.Time) (*x509.Certificate, error) {
	if days <= 0 {
		return nil, errors.New("days must be a positive integer")
	}
	key, err := NewKey(KeyTypeOf(ca.Key), bits)
	if err != nil {
		return nil, err
	}
	csrPEM, err := CreateCSR(key, CtrlExecCommonName)
	if err != nil {
		return nil, err
	}
	cert, err := ca.SignCSR(csrPEM, days, now, SignOptions{MinSerial: CtrlExecSerialFloor})
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKeyPEM(key)
	if err != nil {
		return nil, err
	}
	if err := WriteCtrlExecKey(keyPath, keyPEM); err != nil {
		return nil, fmt.Errorf("write ctrl-exec key: %w", err)
	}
	if err := atomicfile.Write(certPath, CertPEM(cert), 0o644); err != nil {
		return nil, fmt.Errorf("write ctrl-exec cert (the key at %s is already replaced; run setup-ctrl-exec again): %w", keyPath, err)
	}
	return cert, nil
}

// subjectKeyID is the RFC 5280 method-1 key identifier (SHA-1 of the
// subjectPublicKey bits), the "hash" OpenSSL uses.
func subjectKeyID(pub any) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("decode public key: %w", err)
	}
	sum := sha1.Sum(spki.PublicKey.Bytes)
	return sum[:], nil
}
