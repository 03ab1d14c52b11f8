package pki

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// DefaultKeyBits is the RSA key size of every key ctrl-exec generates.
const DefaultKeyBits = 4096

// KeyBitsEnv names the test knob read by KeyBitsFromEnv.
const KeyBitsEnv = "CTRL_EXEC_TEST_KEY_BITS"

// KeyBitsFromEnv returns the RSA key size to generate: DefaultKeyBits unless
// $CTRL_EXEC_TEST_KEY_BITS holds a size from 1024 to 4096.
//
// This is a test knob, not an operator setting: end-to-end tests set it so that
// setup-ca, setup-ctrl-exec and pairing do not spend seconds on 4096-bit keys.
func KeyBitsFromEnv() int {
	n, err := strconv.Atoi(os.Getenv(KeyBitsEnv))
	if err != nil || n < 1024 || n > 4096 {
		return DefaultKeyBits
	}
	return n
}

// GenerateKey returns a new RSA key of the given size.
func GenerateKey(bits int) (*rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, fmt.Errorf("generate %d-bit RSA key: %w", bits, err)
	}
	return key, nil
}

// EncodeKeyPEM returns key as a PKCS#8 "PRIVATE KEY" PEM block.
func EncodeKeyPEM(key *rsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM reads the first private key in data: PKCS#1 ("RSA PRIVATE KEY",
// what `openssl genrsa` wrote before OpenSSL 3) or PKCS#8 ("PRIVATE KEY").
// Other PEM blocks before it are skipped. Only RSA keys are accepted.
func ParseKeyPEM(data []byte) (*rsa.PrivateKey, error) {
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no RSA PRIVATE KEY or PRIVATE KEY PEM block found")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			key, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#1 key: %w", err)
			}
			return key, nil
		case "PRIVATE KEY":
			parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
			}
			key, ok := parsed.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("private key is %T, ctrl-exec needs RSA", parsed)
			}
			return key, nil
		}
	}
}

// LoadKey reads an RSA private key PEM file.
func LoadKey(path string) (*rsa.PrivateKey, error) {
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
