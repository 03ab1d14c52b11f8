package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
)

// PairingCode is the six-digit code the agent and the operator compare before
// approval: the first four bytes of SHA-256 over the exact CSR PEM (trailing
// newline included), big-endian, modulo one million, zero-padded.
func PairingCode(csrPEM []byte) string {
	sum := sha256.Sum256(csrPEM)
	return fmt.Sprintf("%06d", binary.BigEndian.Uint32(sum[:4])%1000000)
}

// NewReqID returns a request id: 16 lowercase hex digits from 8 random bytes.
func NewReqID() string { return randomHex(8) }

// NewNonce returns a pairing nonce: 32 lowercase hex digits from 16 random bytes.
func NewNonce() string { return randomHex(16) }

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails; the runtime aborts if the OS CSPRNG does
	return hex.EncodeToString(b)
}
