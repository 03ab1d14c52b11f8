package tlsx_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// The agent identity check runs on a resumed session too, where the peer
// presents no certificate and the one from the first handshake is checked.
func TestAddPeerCheckRunsOnResumedSessions(t *testing.T) {
	p := newPKI(t, 0)
	agent, err := tls.LoadX509KeyPair(p.agent.Cert, p.agent.Key)
	if err != nil {
		t.Fatal(err)
	}
	// A server that issues session tickets (ours do not; a resuming
	// client must still be safe against one that does).
	addr, _ := serve(t, &tls.Config{Certificates: []tls.Certificate{agent}})
	base := mustClient(t, p.ctrlExec)
	base.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	connect := func(want string) (resumed bool, err error) {
		cfg := base.Clone()
		tlsx.AddPeerCheck(cfg, func(leaf *x509.Certificate) error {
			if leaf.Subject.CommonName != want {
				return fmt.Errorf("want %s, got %s", want, leaf.Subject.CommonName)
			}
			return nil
		})
		check := cfg.VerifyConnection
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			resumed = cs.DidResume
			return check(cs)
		}
		_, err = talk(t, addr, cfg)
		return resumed, err
	}
	if _, err := connect("web-01"); err != nil {
		t.Fatal(err)
	}
	resumed, err := connect("web-02")
	if !resumed {
		t.Fatal("the second connection did not resume: the test proves nothing")
	}
	if err == nil || err.Error() != "want web-02, got web-01" {
		t.Fatalf("resumed handshake error %v", err)
	}
}

// The chain check of ClientConfig still comes first.
func TestAddPeerCheckAfterChainCheck(t *testing.T) {
	ours, stranger := newPKI(t, 0), newPKI(t, 1)
	addr, _ := serve(t, tlsx.AgentServerConfig(mustIdentity(t, files{stranger.agent.Cert, stranger.agent.Key, ours.ca.Files.Cert})))
	cfg := mustClient(t, ours.ctrlExec)
	called := false
	tlsx.AddPeerCheck(cfg, func(*x509.Certificate) error { called = true; return nil })
	if _, err := talk(t, addr, cfg); err == nil || called {
		t.Fatalf("stranger accepted (err %v, peer check called %v)", err, called)
	}
}

func TestCheckPinnedChain(t *testing.T) {
	ours, other := newPKI(t, 0), newPKI(t, 1)
	leaf, err := pki.LoadCert(ours.ctrlExec.Cert)
	if err != nil {
		t.Fatal(err)
	}
	otherLeaf, err := pki.LoadCert(other.ctrlExec.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pin, otherPin := pki.Fingerprint(ours.ca.Cert), pki.Fingerprint(other.ca.Cert)
	for _, tt := range []struct {
		name    string
		chain   []*x509.Certificate
		pin     string
		checked bool
		err     string // prefix of the error
	}{
		{"leaf and pinned CA", []*x509.Certificate{leaf, ours.ca.Cert}, pin, true, ""},
		{"leaf alone cannot be checked yet", []*x509.Certificate{leaf}, pin, false, ""},
		{"another CA", []*x509.Certificate{leaf, ours.ca.Cert}, otherPin, false,
			"the pairing server's CA is " + pin + ", not " + otherPin},
		{"pinned CA sent with a leaf it did not sign", []*x509.Certificate{otherLeaf, ours.ca.Cert}, pin, false,
			"the pairing server's certificate does not chain to the CA " + pin + ": x509: certificate signed by unknown authority"},
		{"nothing", nil, pin, false, "the pairing server's certificate does not chain to the CA " + pin + ": peer sent no certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			checked, err := tlsx.CheckPinnedChain(tt.chain, tt.pin)
			got := ""
			if err != nil {
				got = err.Error()
				var pe *tlsx.PinError
				if !errors.As(err, &pe) {
					t.Errorf("%T is not a *PinError", err)
				}
			}
			if checked != tt.checked || !strings.HasPrefix(got, tt.err) || (tt.err == "") != (got == "") {
				t.Errorf("got %v, %q; want %v, %q", checked, got, tt.checked, tt.err)
			}
		})
	}
}

// The pairing listener sends the CA after its certificate, so a pinned
// agent checks it in the handshake; a wrong pin fails there.
func TestPinnedPairingHandshake(t *testing.T) {
	p := newPKI(t, 0)
	other := newPKI(t, 1)
	chained, err := tlsx.LoadChainIdentity(p.ctrlExec.Cert, p.ctrlExec.Key, p.ca.Files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, tlsx.PairingServerConfig(chained))
	leafOnly, _ := serve(t, tlsx.PairingServerConfig(mustIdentity(t, files{p.ctrlExec.Cert, p.ctrlExec.Key, ""})))

	cs, err := talk(t, addr, tlsx.PinnedPairingClientConfig(pki.Fingerprint(p.ca.Cert)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs.PeerCertificates) != 2 || !cs.PeerCertificates[1].Equal(p.ca.Cert) {
		t.Fatalf("server sent %d certificates", len(cs.PeerCertificates))
	}
	_, err = talk(t, addr, tlsx.PinnedPairingClientConfig(pki.Fingerprint(other.ca.Cert)))
	var pe *tlsx.PinError
	if !errors.As(err, &pe) || pe.Got != pki.Fingerprint(p.ca.Cert) {
		t.Fatalf("wrong pin: %v", err)
	}
	// A server that sends its certificate alone (as Perl's does) passes
	// the handshake; the pin is checked against the delivered CA later.
	if _, err := talk(t, leafOnly, tlsx.PinnedPairingClientConfig(pki.Fingerprint(other.ca.Cert))); err != nil {
		t.Fatalf("leaf-only server: %v", err)
	}
}
