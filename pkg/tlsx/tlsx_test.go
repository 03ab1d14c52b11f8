package tlsx_test

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

func TestAgentServerMutualTLS(t *testing.T) {
	home := newPKI(t, 0)
	rogue := newPKI(t, 1)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))

	noCert := mustClient(t, home.ctrlExec)
	noCert.GetClientCertificate = nil // present nothing, still verify the server

	tests := []struct {
		name       string
		client     *tls.Config
		wantOK     bool
		wantServer string // substring of the server-side handshake error
	}{
		{"ctrl-exec cert from the agent's CA", mustClient(t, home.ctrlExec), true, ""},
		{"agent's own cert (self-ping)", mustClient(t, home.agent), true, ""},
		{"no client cert", noCert, false, "client didn't provide a certificate"},
		{"client cert from another CA", rogueClientTrustingHome(t, rogue, home), false, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := talk(t, addr, tt.client)
			hs := next(t, seen)
			if !tt.wantOK {
				if err == nil {
					t.Fatal("client got through")
				}
				if hs.err == nil || !strings.Contains(hs.err.Error(), tt.wantServer) {
					t.Fatalf("server handshake err = %v, want %q", hs.err, tt.wantServer)
				}
				return
			}
			if err != nil || hs.err != nil {
				t.Fatalf("client err %v, server err %v", err, hs.err)
			}
			if got, want := tlsx.PeerSerialHex(cs), serialOf(t, home.agent.Cert); got != want {
				t.Errorf("client sees server serial %s, want %s", got, want)
			}
			if len(hs.state.PeerCertificates) == 0 {
				t.Fatal("server sees no client certificate")
			}
			if got := tlsx.PeerSerialHex(hs.state); got != pki.SerialHex(hs.state.PeerCertificates[0]) || got == "" {
				t.Errorf("PeerSerialHex = %q", got)
			}
		})
	}
}

// rogueClientTrustingHome presents rogue's ctrl-exec cert but verifies the
// server against home's CA, so only the server can refuse the handshake.
func rogueClientTrustingHome(t *testing.T, rogue, home *testPKI) *tls.Config {
	f := rogue.ctrlExec
	f.CA = home.ca.Files.Cert
	return mustClient(t, f)
}

func TestPeerSerialHexMatchesPresentedCert(t *testing.T) {
	home := newPKI(t, 0)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	if _, err := talk(t, addr, mustClient(t, home.ctrlExec)); err != nil {
		t.Fatal(err)
	}
	hs := next(t, seen)
	if got, want := tlsx.PeerSerialHex(hs.state), serialOf(t, home.ctrlExec.Cert); got != want {
		t.Errorf("server PeerSerialHex = %s, want the ctrl-exec serial %s", got, want)
	}
	if got := tlsx.PeerSerialHex(tls.ConnectionState{}); got != "" {
		t.Errorf("PeerSerialHex without a peer cert = %q", got)
	}
}

func TestClientRefusesAgentFromAnotherCA(t *testing.T) {
	home := newPKI(t, 0)
	rogue := newPKI(t, 1)
	// The rogue agent would even accept our client; our client must refuse it.
	rogueAgent := rogue.agent
	rogueAgent.CA = home.ca.Files.Cert
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, rogueAgent)))

	_, err := talk(t, addr, mustClient(t, home.ctrlExec))
	next(t, seen)
	if err == nil || !strings.Contains(err.Error(), "server certificate") {
		t.Fatalf("err = %v, want the server certificate refused", err)
	}
}

func TestIdentityReloadServesNewCertToNextConnection(t *testing.T) {
	home := newPKI(t, 0)
	id := mustIdentity(t, home.agent)
	addr, seen := serve(t, tlsx.AgentServerConfig(id))
	client := mustClient(t, home.ctrlExec)

	cs, err := talk(t, addr, client)
	next(t, seen)
	if err != nil {
		t.Fatal(err)
	}
	before := tlsx.PeerSerialHex(cs)

	renewed := home.issue(t, "agent-renewed", "web-01", key(t, 3))
	if err := id.Reload(renewed.Cert, renewed.Key, renewed.CA); err != nil {
		t.Fatal(err)
	}
	cs, err = talk(t, addr, client)
	next(t, seen)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{before, tlsx.PeerSerialHex(cs)}
	want := []string{serialOf(t, home.agent.Cert), serialOf(t, renewed.Cert)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("served serials before/after reload (-want +got):\n%s", diff)
	}

	// A failed reload keeps serving the last good identity.
	if err := id.Reload(renewed.Cert+".missing", renewed.Key, renewed.CA); err == nil {
		t.Fatal("reload of a missing file succeeded")
	}
	cs, err = talk(t, addr, client)
	next(t, seen)
	if err != nil || tlsx.PeerSerialHex(cs) != want[1] {
		t.Errorf("after a failed reload: serial %s, err %v; want %s", tlsx.PeerSerialHex(cs), err, want[1])
	}
}

// The control host loads its client config per operation, so a rotated
// ctrl-exec cert is presented by the next operation.
func TestLoadClientConfigPicksUpRotatedCert(t *testing.T) {
	home := newPKI(t, 0)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	operation := func() string {
		t.Helper()
		if _, err := talk(t, addr, mustClient(t, home.ctrlExec)); err != nil {
			t.Fatal(err)
		}
		return tlsx.PeerSerialHex((next(t, seen)).state)
	}

	orig := serialOf(t, home.ctrlExec.Cert)
	first := operation()
	rotated := home.issue(t, "rotated", "ctrl-exec", key(t, 2))
	copyFile(t, rotated.Cert, home.ctrlExec.Cert)
	copyFile(t, rotated.Key, home.ctrlExec.Key)
	second := operation()

	want := []string{orig, serialOf(t, rotated.Cert)}
	if diff := cmp.Diff(want, []string{first, second}); diff != "" {
		t.Errorf("presented serials before/after rotation (-want +got):\n%s", diff)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	write(t, to, data)
}

// A previously loaded key pair (the .prev files kept for rotation
// broadcasts) works through ClientConfig.
func TestClientConfigFromKeyPair(t *testing.T) {
	home := newPKI(t, 0)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	pair, err := tls.LoadX509KeyPair(home.ctrlExec.Cert, home.ctrlExec.Key)
	if err != nil {
		t.Fatal(err)
	}
	roots, err := tlsx.LoadCAPool(home.ca.Files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := talk(t, addr, tlsx.ClientConfig(pair, roots)); err != nil {
		t.Fatal(err)
	}
	if got, want := tlsx.PeerSerialHex((next(t, seen)).state), serialOf(t, home.ctrlExec.Cert); got != want {
		t.Errorf("presented %s, want %s", got, want)
	}
}

func TestAgentServerTLS12Suites(t *testing.T) {
	home := newPKI(t, 0)
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))

	tests := []struct {
		name   string
		suites []uint16
		wantOK bool
	}{
		{"listed AES-256-GCM", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}, true},
		{"listed AES-128-GCM", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, true},
		{"ChaCha20 is not listed for 1.2", []uint16{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}, false},
		{"CBC is not listed", []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := mustClient(t, home.ctrlExec)
			client.MaxVersion = tls.VersionTLS12
			client.CipherSuites = tt.suites
			cs, err := talk(t, addr, client)
			hs := next(t, seen)
			if !tt.wantOK {
				if err == nil || hs.err == nil {
					t.Fatalf("handshake with %s succeeded", tls.CipherSuiteName(tt.suites[0]))
				}
				return
			}
			if err != nil {
				t.Fatalf("client err %v, server err %v", err, hs.err)
			}
			if cs.Version != tls.VersionTLS12 || cs.CipherSuite != tt.suites[0] {
				t.Errorf("negotiated %s %s", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite))
			}
		})
	}

	client := mustClient(t, home.ctrlExec)
	client.MinVersion, client.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if _, err := talk(t, addr, client); err == nil {
		t.Error("TLS 1.1 handshake succeeded")
	}
	next(t, seen)
}

func TestTLS12CipherSuitesAreTheFourECDHEGCM(t *testing.T) {
	var names []string
	for _, id := range tlsx.TLS12CipherSuites() {
		names = append(names, tls.CipherSuiteName(id))
	}
	want := []string{
		"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("suites (-want +got):\n%s", diff)
	}
}

// Go does resume TLS 1.3 sessions when tickets are on, and then hands the
// server the client's certificates from the ticket without running
// VerifyPeerCertificate again. The agent config turns tickets off, so every
// connection is a full handshake checked against the CA loaded now.
func TestResumption(t *testing.T) {
	home := newPKI(t, 0)
	roots, err := tlsx.LoadCAPool(home.ca.Files.Cert)
	if err != nil {
		t.Fatal(err)
	}
	agentPair, err := tls.LoadX509KeyPair(home.agent.Cert, home.agent.Key)
	if err != nil {
		t.Fatal(err)
	}
	verifyPeerCalls := 0
	withTickets := &tls.Config{
		Certificates: []tls.Certificate{agentPair},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    roots,
		VerifyPeerCertificate: func([][]byte, [][]*x509.Certificate) error {
			verifyPeerCalls++
			return nil
		},
	}

	for _, tt := range []struct {
		name       string
		server     *tls.Config
		wantResume bool
	}{
		{"plain Go config with tickets", withTickets, true},
		{"AgentServerConfig", tlsx.AgentServerConfig(mustIdentity(t, home.agent)), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, seen := serve(t, tt.server)
			client := mustClient(t, home.ctrlExec)
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			var resumed []bool
			for range 2 {
				cs, err := talk(t, addr, client)
				hs := next(t, seen)
				if err != nil || hs.err != nil {
					t.Fatalf("client err %v, server err %v", err, hs.err)
				}
				if len(hs.state.PeerCertificates) == 0 {
					t.Fatal("server sees no client certificate")
				}
				resumed = append(resumed, cs.DidResume)
			}
			if diff := cmp.Diff([]bool{false, tt.wantResume}, resumed); diff != "" {
				t.Errorf("DidResume per connection (-want +got):\n%s", diff)
			}
		})
	}
	if verifyPeerCalls != 1 {
		t.Errorf("VerifyPeerCertificate ran %d times for two connections, want 1 (skipped on resumption)", verifyPeerCalls)
	}
}

func TestPairingServerAndClient(t *testing.T) {
	home := newPKI(t, 0)
	rogue := newPKI(t, 1)
	pairingID, err := tlsx.LoadIdentity(home.ctrlExec.Cert, home.ctrlExec.Key, "")
	if err != nil {
		t.Fatal(err)
	}
	addr, seen := serve(t, tlsx.PairingServerConfig(pairingID))

	cs, err := talk(t, addr, tlsx.PairingClientConfig())
	hs := next(t, seen)
	if err != nil || hs.err != nil {
		t.Fatalf("client err %v, server err %v", err, hs.err)
	}
	if len(hs.state.PeerCertificates) != 0 {
		t.Error("pairing server received a client certificate")
	}
	if got, want := tlsx.PeerSerialHex(cs), serialOf(t, home.ctrlExec.Cert); got != want {
		t.Errorf("pairing server presented %s, want the ctrl-exec cert %s", got, want)
	}

	// D-14: after approval the agent can check the server against the delivered CA.
	homeRoots, _ := tlsx.LoadCAPool(home.ca.Files.Cert)
	rogueRoots, _ := tlsx.LoadCAPool(rogue.ca.Files.Cert)
	if err := tlsx.VerifyPeerChain(cs.PeerCertificates, homeRoots); err != nil {
		t.Errorf("against the delivered CA: %v", err)
	}
	if err := tlsx.VerifyPeerChain(cs.PeerCertificates, rogueRoots); err == nil {
		t.Error("chain verified against an unrelated CA")
	}

	client := tlsx.PairingClientConfig()
	client.MaxVersion = tls.VersionTLS11
	client.MinVersion = tls.VersionTLS10
	if _, err := talk(t, addr, client); err == nil {
		t.Error("pairing server accepted TLS 1.1")
	}
	next(t, seen)
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	home := newPKI(t, 0)
	missing := home.dir + "/nope.crt"
	tests := []struct {
		name string
		load func() error
	}{
		{"identity cert", func() error { _, err := tlsx.LoadIdentity(missing, home.agent.Key, home.agent.CA); return err }},
		{"identity CA", func() error { _, err := tlsx.LoadIdentity(home.agent.Cert, home.agent.Key, missing); return err }},
		{"client cert", func() error { _, err := tlsx.LoadClientConfig(missing, home.agent.Key, home.agent.CA); return err }},
		{"client CA", func() error { _, err := tlsx.LoadClientConfig(home.agent.Cert, home.agent.Key, missing); return err }},
		{"CA not PEM", func() error { _, err := tlsx.LoadCAPool(home.agent.Key); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.load()
			if err == nil {
				t.Fatal("want an error")
			}
			if !strings.Contains(err.Error(), home.dir) {
				t.Errorf("error %q does not name the file", err)
			}
		})
	}
}

// Agent keys written by older OpenSSL are PKCS#1; the TLS loaders take them.
func TestLoadIdentityReadsPKCS1Key(t *testing.T) {
	home := newPKI(t, 0)
	k, err := pki.LoadKey(home.agent.Key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, home.agent.Key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k.(*rsa.PrivateKey))}))
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	if _, err := talk(t, addr, mustClient(t, home.ctrlExec)); err != nil {
		t.Fatal(err)
	}
	next(t, seen)
}
