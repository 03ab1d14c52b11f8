package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// fingerprintPrefix names the digest, as kubeadm's CA hashes do.
const fingerprintPrefix = "sha256:"

// Fingerprint is "sha256:<64 lowercase hex>" of cert's DER encoding: what
// setup-ca and pairing-mode print and what request-pairing --ca-fingerprint
// takes to pin the control host's CA.
func Fingerprint(cert *x509.Certificate) string { return FingerprintDER(cert.Raw) }

// FingerprintDER is Fingerprint of a DER-encoded certificate.
func FingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint reads a fingerprint as an operator may paste it and
// returns Fingerprint's spelling: "sha256:" (any case) then 64 hex digits in
// either case, optionally colon-separated as `openssl x509 -fingerprint
// -sha256` prints them.
func ParseFingerprint(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) < len(fingerprintPrefix) || !strings.EqualFold(t[:len(fingerprintPrefix)], fingerprintPrefix) {
		return "", fmt.Errorf("CA fingerprint %q must start with 'sha256:' followed by 64 hex digits", s)
	}
	digits := strings.ReplaceAll(t[len(fingerprintPrefix):], ":", "")
	raw, err := hex.DecodeString(digits)
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("CA fingerprint %q must be 'sha256:' followed by 64 hex digits (the SHA-256 of the CA certificate, as 'ctrl-exec setup-ca' and 'ctrl-exec pairing-mode' print it)", s)
	}
	return fingerprintPrefix + hex.EncodeToString(raw), nil
}
