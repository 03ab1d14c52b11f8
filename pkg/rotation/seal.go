package rotation

import (
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// sealInfo is HKDF's context: this key seals the ctrl-exec identity, in
// this format, and nothing else.
const sealInfo = "ctrl-exec identity sealing v1"

// sealedJSON is a sealed identity as a shared store keeps it: only
// ciphertext, so a reader of the store without ca.key learns nothing.
type sealedJSON struct {
	Sealed string `json:"sealed"` // "aes-256-gcm/hkdf-sha256/v1"
	Nonce  []byte `json:"nonce"`
	Data   []byte `json:"data"`
}

const sealedFormat = "aes-256-gcm/hkdf-sha256/v1"

// ErrUnsealed is OpenIdentity's refusal of a value that is not sealed or
// was not sealed with this CA key for this place (tampered, or another CA).
var ErrUnsealed = errors.New("ctrl-exec identity is not sealed with this node's CA key (tampered with, or from another CA); not installed")

// sealAEAD is AES-256-GCM under a key derived from the CA private key:
// every node has ca.key, and whoever can read it could sign a ctrl-exec
// certificate of their own anyway.
func sealAEAD(caKey crypto.Signer) (cipher.AEAD, error) {
	der, err := x509.MarshalPKCS8PrivateKey(caKey)
	if err != nil {
		return nil, fmt.Errorf("derive the identity sealing key: %w", err)
	}
	key, err := hkdf.Key(sha256.New, der, nil, sealInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive the identity sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal is the identity encrypted and authenticated under caKey, bound to
// place (the store's key name) so it cannot be moved elsewhere.
func (id *Identity) Seal(caKey crypto.Signer, place string) ([]byte, error) {
	aead, err := sealAEAD(caKey)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	data, _ := json.Marshal(sealedJSON{Sealed: sealedFormat, Nonce: nonce, Data: aead.Seal(nil, nonce, id.Marshal(), []byte(place))})
	return data, nil
}

// OpenIdentity is Seal undone: ErrUnsealed unless data was sealed with
// caKey for place and not changed since.
func OpenIdentity(data []byte, caKey crypto.Signer, place string) (*Identity, error) {
	var s sealedJSON
	if err := json.Unmarshal(data, &s); err != nil || s.Sealed != sealedFormat {
		return nil, ErrUnsealed
	}
	aead, err := sealAEAD(caKey)
	if err != nil {
		return nil, err
	}
	if len(s.Nonce) != aead.NonceSize() {
		return nil, ErrUnsealed
	}
	plain, err := aead.Open(nil, s.Nonce, s.Data, []byte(place))
	if err != nil {
		return nil, ErrUnsealed
	}
	return ParseIdentity(plain)
}

// Validate refuses an identity this node must not install: a key that is
// not its certificate's, a certificate the CA did not sign, or (minSerial
// set) a certificate older than the rotation state's current serial.
func (id *Identity) Validate(ca *x509.Certificate, minSerial string) error {
	check := func(what string, certPEM, keyPEM []byte) (*x509.Certificate, error) {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			return nil, fmt.Errorf("%s ctrl-exec key and certificate do not match: %w", what, err)
		}
		c, err := pki.ParseCertPEM(certPEM)
		if err != nil {
			return nil, fmt.Errorf("%s ctrl-exec certificate: %w", what, err)
		}
		if err := c.CheckSignatureFrom(ca); err != nil {
			return nil, fmt.Errorf("%s ctrl-exec certificate is not signed by this node's CA: %w", what, err)
		}
		return c, nil
	}
	c, err := check("shared", id.Cert, id.Key)
	if err != nil {
		return err
	}
	if id.PrevCert != nil {
		if _, err := check("shared previous", id.PrevCert, id.PrevKey); err != nil {
			return err
		}
	}
	if minSerial != "" {
		want, ok := new(big.Int).SetString(minSerial, 16)
		if ok && c.SerialNumber.Cmp(want) < 0 {
			return fmt.Errorf("shared ctrl-exec certificate serial %s is older than the rotation state's current_serial %s", pki.SerialHex(c), minSerial)
		}
	}
	return nil
}
