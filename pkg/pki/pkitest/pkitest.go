// Package pkitest provides test fixtures for code built on pkg/pki: a
// process-wide pool of RSA keys, a CA in a directory, leaf identities signed
// by it, and a loopback TLS listener. Like net/http/httptest it is imported
// only by tests; every helper fails the test through tb on error.
package pkitest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// keyID names one pooled key.
type keyID struct{ bits, i int }

// keys is the pool behind Key. It is the package's only state: generating
// RSA keys is the slow part of every PKI fixture, so each is made once per
// test binary.
var keys sync.Map // keyID → *pooledKey

type pooledKey struct {
	once sync.Once
	key  *rsa.PrivateKey
	err  error
}

// Key returns the i-th shared RSA key of the given size, generated on first
// use and the same for the rest of the process. Distinct (bits, i) give
// distinct keys.
func Key(tb testing.TB, bits, i int) *rsa.PrivateKey {
	tb.Helper()
	v, _ := keys.LoadOrStore(keyID{bits, i}, &pooledKey{})
	k := v.(*pooledKey)
	k.once.Do(func() { k.key, k.err = pki.GenerateKey(bits) })
	if k.err != nil {
		tb.Fatalf("pkitest: %d-bit key %d: %v", bits, i, k.err)
	}
	return k.key
}

// CSR returns a PEM CSR for key whose subject holds one CN attribute per
// name, in order: a normal request with one name, an ambiguous one (which
// every signing path must refuse) with more.
func CSR(tb testing.TB, key *rsa.PrivateKey, cns ...string) []byte {
	tb.Helper()
	var subject pkix.Name
	for _, cn := range cns {
		subject.ExtraNames = append(subject.ExtraNames, pkix.AttributeTypeAndValue{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: cn})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	if err != nil {
		tb.Fatalf("pkitest: CSR for %q: %v", cns, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// CA is a certificate authority whose files live in a test directory.
type CA struct{ *pki.CA }

// NewCA writes ca.key, ca.crt and ca.serial under dir with key (normally
// from Key), valid from an hour ago. CAs that must not trust each other
// need different keys: they share the subject name.
func NewCA(tb testing.TB, dir string, key *rsa.PrivateKey) *CA {
	tb.Helper()
	ca, err := pki.CreateCAWithKey(pki.CAFilesIn(dir), key, time.Now().Add(-time.Hour))
	if err != nil {
		tb.Fatalf("pkitest: CA in %s: %v", dir, err)
	}
	return &CA{ca}
}

// Pair signs a certificate for key with common name cn, valid from now for
// days days (serial from ca.serial), and returns it with its key.
func (ca *CA) Pair(tb testing.TB, key *rsa.PrivateKey, cn string, days int) tls.Certificate {
	tb.Helper()
	csr, err := pki.CreateCSR(key, cn)
	if err != nil {
		tb.Fatalf("pkitest: CSR for %s: %v", cn, err)
	}
	cert, err := ca.SignCSR(csr, days, time.Now(), pki.SignOptions{})
	if err != nil {
		tb.Fatalf("pkitest: signing %s: %v", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// Issue is Pair that also writes the certificate to certPath (0644) and the
// key to keyPath (0600, PKCS#8 PEM).
func (ca *CA) Issue(tb testing.TB, key *rsa.PrivateKey, cn, certPath, keyPath string, days int) tls.Certificate {
	tb.Helper()
	pair := ca.Pair(tb, key, cn, days)
	keyPEM, err := pki.EncodeKeyPEM(key)
	if err != nil {
		tb.Fatalf("pkitest: encoding key for %s: %v", cn, err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		tb.Fatalf("pkitest: %v", err)
	}
	if err := os.WriteFile(certPath, pki.CertPEM(pair.Leaf), 0o644); err != nil {
		tb.Fatalf("pkitest: %v", err)
	}
	return pair
}

// Roots is a pool holding only the CA certificate.
func (ca *CA) Roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// Listen serves TLS with cfg on 127.0.0.1:0, calling handle in its own
// goroutine for each connection (the handshake is left to handle or to the
// first read or write) and closing the connection when handle returns. At
// test cleanup it stops accepting, closes the connections still open and
// waits for every handle to return.
func Listen(tb testing.TB, cfg *tls.Config, handle func(*tls.Conn)) *net.TCPAddr {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("pkitest: listen: %v", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open = map[net.Conn]struct{}{}
	)
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		open = nil
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if open == nil { // cleanup has begun
				mu.Unlock()
				raw.Close()
				return
			}
			open[raw] = struct{}{}
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(open, raw)
					mu.Unlock()
					raw.Close()
				}()
				handle(tls.Server(raw, cfg))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr)
}

// ListenOneRecord is Listen with a server that reads each request with
// ReadOneRecord; a request not complete in one TLS record fails the test.
// Each complete request is passed to respond, whose answer is written back
// in one write (nil: close without answering).
func ListenOneRecord(tb testing.TB, cfg *tls.Config, respond func(req []byte) []byte) *net.TCPAddr {
	tb.Helper()
	return Listen(tb, cfg, func(c *tls.Conn) {
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := c.Handshake(); err != nil {
			return // the client's failure is the test's to report
		}
		req, err := ReadOneRecord(c)
		if errors.Is(err, ErrSplitRequest) {
			tb.Errorf("pkitest: one-record server: %v", err)
		}
		if err != nil {
			return
		}
		if out := respond(req); out != nil {
			c.Write(out)
		}
	})
}

// ErrSplitRequest is ReadOneRecord's error for a request that did not
// arrive in one TLS record.
var ErrSplitRequest = errors.New("request split over TLS records")

// ReadOneRecord reads a request the way the Perl agent and pairing server
// do: one read after the handshake, which returns at most one TLS record.
// When that record is not a whole request (an HTTP head and exactly the
// body its Content-Length announces) the error wraps ErrSplitRequest.
func ReadOneRecord(c *tls.Conn) ([]byte, error) {
	buf := make([]byte, 64<<10) // room for any record
	n, err := c.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if err := completeRequest(buf[:n]); err != nil {
		return nil, fmt.Errorf("%w: the first record (%d bytes) does not hold the whole request: %v", ErrSplitRequest, n, err)
	}
	return buf[:n], nil
}

// completeRequest checks that req is an HTTP head and exactly the body its
// Content-Length announces.
func completeRequest(req []byte) error {
	head, body, ok := bytes.Cut(req, []byte("\r\n\r\n"))
	if !ok {
		return errors.New("no end of headers")
	}
	length := 0
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(name), "Content-Length") {
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return fmt.Errorf("Content-Length %q", value)
			}
			length = n
		}
	}
	if len(body) != length {
		return fmt.Errorf("body has %d of the %d bytes announced", len(body), length)
	}
	return nil
}
