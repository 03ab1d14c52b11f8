package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// DefaultKeyBits is the RSA key size of every key ctrl-exec generates.
const DefaultKeyBits = 4096

// MinKeyBits is the smallest RSA key any signing path accepts (D-35).
const MinKeyBits = 2048

// KeyBitsFromEnv returns the RSA key size to generate: DefaultKeyBits, or in
// a test build (pkg/testknobs) $CTRL_EXEC_TEST_KEY_BITS when it holds a size
// from MinKeyBits to 4096, so that the end-to-end tests do not spend seconds
// on 4096-bit keys. The released binary ignores the variable.
func KeyBitsFromEnv() int {
	n, err := strconv.Atoi(testknobs.Lookup(testknobs.KeyBits))
	if err != nil || n < MinKeyBits || n > 4096 {
		return DefaultKeyBits
	}
	return n
}

// GenerateKey returns a new RSA key of the given size. A test build may take
// it from the test suite's pool of pre-generated keys instead.
func GenerateKey(bits int) (*rsa.PrivateKey, error) {
	if testknobs.Enabled {
		if pooled, err := ParseKeyPEM(testknobs.ClaimPooledKey(bits)); err == nil {
			if key, ok := pooled.(*rsa.PrivateKey); ok && key.N.BitLen() == bits {
				return key, nil
			}
		}
	}
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate %d-bit RSA key: %w", bits, err)
	}
	return key, nil
}

// KeyType is a kind of key ctrl-exec generates: RSA-4096 (the default, what
// upstream makes) or ECDSA P-256 (cheaper handshakes, for new fleets).
type KeyType string

const (
	KeyRSA4096   KeyType = "rsa-4096"
	KeyECDSAP256 KeyType = "ecdsa-p256"
)

// ParseKeyType reads a --key-type value; "" is the default, rsa-4096.
func ParseKeyType(s string) (KeyType, error) {
	switch t := KeyType(s); t {
	case "":
		return KeyRSA4096, nil
	case KeyRSA4096, KeyECDSAP256:
		return t, nil
	}
	return "", fmt.Errorf("unknown key type %q: use %s or %s", s, KeyRSA4096, KeyECDSAP256)
}

// KeyTypeOf is the type of key a signer holds; any ECDSA key counts as
// ecdsa-p256 and any RSA key as rsa-4096 (so a CA made with a smaller test
// key still issues RSA keys).
func KeyTypeOf(key crypto.Signer) KeyType {
	if _, ok := key.Public().(*ecdsa.PublicKey); ok {
		return KeyECDSAP256
	}
	return KeyRSA4096
}

// NewKey generates a key of type t; rsaBits is the RSA size (DefaultKeyBits
// outside tests) and is ignored for ECDSA.
func NewKey(t KeyType, rsaBits int) (crypto.Signer, error) {
	if t == KeyECDSAP256 {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
		}
		return key, nil
	}
	return GenerateKey(rsaBits)
}

// KeyMatches reports whether cert is for key's public key.
func KeyMatches(key crypto.Signer, cert *x509.Certificate) bool {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(cert.PublicKey)
}

// signatureAlgorithm is what a key signs certificates and CSRs with:
// SHA-256 with RSA or with ECDSA.
func signatureAlgorithm(key crypto.Signer) x509.SignatureAlgorithm {
	if KeyTypeOf(key) == KeyECDSAP256 {
		return x509.ECDSAWithSHA256
	}
	return x509.SHA256WithRSA
}

// EncodeKeyPEM returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM reads the first private key in data: PKCS#1 ("RSA PRIVATE KEY",
// what `openssl genrsa` wrote before OpenSSL 3), SEC 1 ("EC PRIVATE KEY",
// what `openssl ecparam -genkey` writes) or PKCS#8 ("PRIVATE KEY"). Other
// PEM blocks before it are skipped. RSA and ECDSA keys are accepted.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY PEM block found")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 key: %w", err)
			}
			return key, nil
		case "EC PRIVATE KEY":
			key, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse EC key: %w", err)
			}
			return key, nil
		case "PRIVATE KEY":
			parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
			}
			switch key := parsed.(type) {
			case *rsa.PrivateKey:
				return key, nil
			case *ecdsa.PrivateKey:
				return key, nil
			}
			return nil, fmt.Errorf("private key is %T, ctrl-exec needs RSA or ECDSA", parsed)
		}
	}
}

// LoadKey reads an RSA or ECDSA private key PEM file.
func LoadKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := ParseKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return key, nil
}
