// Package tlsx is ctrl-exec's one TLS policy (SPEC §8.6–§8.7): the configs of
// the agent port (7443) on both ends, the pairing port (7444) on both ends,
// the API port (7445), and the peer-serial helper.
//
// Chains are verified against the ctrl-exec CA without host names (agents are
// addressed by arbitrary names and IPs) and without extended key usage
// constraints: OpenSSL-issued ctrl-exec certificates carry no EKU and each
// serves as TLS client and server.
package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// TLS12CipherSuites are the only TLS 1.2 suites on port 7443, the same four
// the Perl agent configures. TLS 1.3 uses Go's fixed set, which equals the
// Perl list (AES-256-GCM, ChaCha20-Poly1305, AES-128-GCM).
func TLS12CipherSuites() []uint16 {
	return []uint16{
		tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	}
}

// AgentServerConfig is the agent's listener config on 7443: TLS 1.2+, the four
// TLS 1.2 suites, and a client certificate that is required and must chain to
// the agent's CA. Certificate and CA come from id at each handshake.
//
// Session tickets are off, so every connection is a full handshake whose
// client chain is verified against the CA loaded now; the caller's revocation
// and stored-serial checks then read ConnectionState.PeerCertificates.
// ResumingAgentServerConfig is the same policy with TLS 1.3 resumption.
func AgentServerConfig(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		CipherSuites:           TLS12CipherSuites(),
		ClientAuth:             tls.RequireAnyClientCert,
		SessionTicketsDisabled: true,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return id.cur.Load().agent, nil
		},
	}
}

// agentHandshakeConfig is the config one agent handshake runs with.
// RequireAnyClientCert plus our own verification rather than
// RequireAndVerifyClientCert, because Go's built-in check demands the
// clientAuth EKU; the effect is the same: no chain to the CA, no connection.
func agentHandshakeConfig(st *identityState) *tls.Config {
	return &tls.Config{
		MinVersion:             tls.VersionTLS12,
		CipherSuites:           TLS12CipherSuites(),
		Certificates:           []tls.Certificate{st.cert},
		ClientAuth:             tls.RequireAnyClientCert,
		ClientCAs:              st.roots, // advertised in the CertificateRequest
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := st.verified.verify(cs.PeerCertificates, time.Now()); err != nil {
				return fmt.Errorf("client certificate: %w", err)
			}
			return nil
		},
	}
}

// PairingServerConfig is the pairing listener's config on 7444: TLS 1.2+, Go's
// default suites, the ctrl-exec certificate from id, no client certificate.
func PairingServerConfig(id *Identity) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return id.cur.Load().plain, nil
		},
	}
}

// APIServerConfig is the HTTP API's config on 7445; the policy is the pairing
// server's (TLS 1.2+, no client certificate).
func APIServerConfig(id *Identity) *tls.Config { return PairingServerConfig(id) }

func plainHandshakeConfig(st *identityState) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{st.cert},
		// The Perl pairing client reads a response body with one SSL_read
		// (IO::Socket::SSL's tied read is sysread), so each response must
		// travel in a single TLS record: full-size records from the start.
		DynamicRecordSizingDisabled: true,
	}
}

// LoadClientConfig reads cert, key and CA files and returns ClientConfig. The
// control host calls it per outbound operation (run, ping, one fan-out), so a
// rotated ctrl-exec certificate is used without a restart; the agent's
// self-ping uses it with the agent's own files.
//
// The key is parsed (and checked against the certificate) only when a
// handshake first asks for the client certificate, or in the background
// once PrefetchClientKey is called: an RSA-4096 key costs about half a
// millisecond to load, and a resumed handshake never signs. A bad key then
// fails that handshake with an error naming both files. The returned
// config's Certificates holds the chain without its key, for
// ClientCertificateDER, and the key's loader for PrefetchClientKey.
func LoadClientConfig(certFile, keyFile, caFile string) (*tls.Config, error) {
	fail := func(err error) error {
		return fmt.Errorf("load TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fail(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fail(err)
	}
	var chain [][]byte
	for rest := certPEM; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			chain = append(chain, block.Bytes)
		}
	}
	if len(chain) == 0 {
		return nil, fail(errors.New("no CERTIFICATE PEM block found"))
	}
	if _, err := x509.ParseCertificate(chain[0]); err != nil {
		return nil, fail(err)
	}
	roots, err := LoadCAPool(caFile)
	if err != nil {
		return nil, err
	}
	key := &clientKey{pair: sync.OnceValues(func() (*tls.Certificate, error) {
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fail(err)
		}
		return &cert, nil
	})}
	cfg := clientConfig(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return key.pair() }, roots)
	// GetClientCertificate is what crypto/tls uses; this entry only carries
	// the chain and the loader (its PrivateKey is no key).
	cfg.Certificates = []tls.Certificate{{Certificate: chain, PrivateKey: key}}
	return cfg, nil
}

// clientKey is the lazily parsed key pair of a LoadClientConfig config.
type clientKey struct {
	pair     func() (*tls.Certificate, error) // parses once; later calls wait for it
	prefetch sync.Once
}

// PrefetchClientKey starts parsing the key of a config from LoadClientConfig
// in the background, for a connection about to make a full handshake: the
// parse then overlaps the dial and the agent's signature instead of
// following them, on the critical path. The handshake that asks for the
// certificate waits for the same parse. Other configs are left alone.
func PrefetchClientKey(cfg *tls.Config) {
	if len(cfg.Certificates) == 0 {
		return
	}
	if k, ok := cfg.Certificates[0].PrivateKey.(*clientKey); ok {
		k.prefetch.Do(func() { go k.pair() })
	}
}

// ClientConfig is the client side of 7443: it presents cert whatever CA names
// the server advertises, and accepts a server whose chain reaches roots, with
// no host name check. Used directly with the previous ctrl-exec key pair for
// rotation broadcasts.
func ClientConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	cfg := clientConfig(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }, roots)
	cfg.Certificates = []tls.Certificate{{Certificate: cert.Certificate}}
	return cfg
}

func clientConfig(get func(*tls.CertificateRequestInfo) (*tls.Certificate, error), roots *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		CipherSuites:         TLS12CipherSuites(),
		GetClientCertificate: get, // whatever CA names the server advertises
		// The Perl agent reads a request with one SSL_read: each request
		// (one Write) must travel in a single TLS record, up to 16 KiB.
		DynamicRecordSizingDisabled: true,
		// Go's built-in check would insist on a host name; VerifyConnection
		// checks the chain instead, on full and resumed handshakes alike.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := VerifyPeerChain(cs.PeerCertificates, roots); err != nil {
				return fmt.Errorf("server certificate: %w", err)
			}
			return nil
		},
	}
}

// ClientCertificateDER is the leaf certificate a client config from
// LoadClientConfig or ClientConfig presents, without loading its key; nil
// for other configs.
func ClientCertificateDER(cfg *tls.Config) []byte {
	if len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return nil
	}
	return cfg.Certificates[0].Certificate[0]
}

// PairingClientConfig is the agent's config for request-pairing: TLS 1.2+ and
// no server verification, since the agent has no CA before pairing (§8.7).
// VerifyPeerChain can check afterwards that the server chains to the CA the
// approval delivered (D-14).
func PairingClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // bootstrap: nothing to verify against yet
		// The Perl pairing server reads the request with one SSL_read.
		DynamicRecordSizingDisabled: true,
	}
}

// VerifyPeerChain checks that certs (leaf first, then any intermediates the
// peer sent) chain to roots, with no host name and any key usage.
func VerifyPeerChain(certs []*x509.Certificate, roots *x509.CertPool) error {
	_, err := verifyPeerChainAt(certs, roots, time.Now())
	return err
}

// verifyPeerChainAt is VerifyPeerChain at time now, returning the chains.
func verifyPeerChainAt(certs []*x509.Certificate, roots *x509.CertPool, now time.Time) ([][]*x509.Certificate, error) {
	if len(certs) == 0 {
		return nil, errors.New("peer sent no certificate")
	}
	if roots == nil {
		return nil, errors.New("no CA loaded to verify the peer against")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	return certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		CurrentTime:   now,
	})
}

// PeerSerialHex is the canonical serial (pki.SerialHex) of the peer's leaf
// certificate, or "" when the peer presented none.
func PeerSerialHex(cs tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	return pki.SerialHex(cs.PeerCertificates[0])
}
