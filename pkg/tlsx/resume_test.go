package tlsx_test

import (
	"bytes"
	"crypto/tls"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

func TestResumingAgentServerConfig(t *testing.T) {
	home := newPKI(t, 0)
	rogue := newPKI(t, 1)
	wantSerial := serialOf(t, home.ctrlExec.Cert)

	tests := []struct {
		name string
		// change runs after the first connection; allow is what the policy answers then
		change     func(t *testing.T, id *tlsx.Identity)
		allow      bool
		wantResume bool
		wantErr    string // server-side error of the second handshake
	}{
		{"policy allows", nil, true, true, ""},
		{"policy declines: full handshake", nil, false, false, ""},
		// The session's client chain is checked against the CA loaded now:
		// after a switch to another CA the resumed handshake is refused.
		{"CA replaced after the ticket", func(t *testing.T, id *tlsx.Identity) {
			if err := id.Reload(home.agent.Cert, home.agent.Key, rogue.ca.Files.Cert); err != nil {
				t.Fatal(err)
			}
		}, true, true, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := mustIdentity(t, home.agent)
			var mu sync.Mutex
			var asked []string
			allow := true
			conf := tlsx.ResumingAgentServerConfig(id, func(serial string) bool {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, serial)
				return allow
			})
			addr, seen := serve(t, conf)
			client := mustClient(t, home.ctrlExec)
			client.ClientSessionCache = tls.NewLRUClientSessionCache(4)

			if _, err := talk(t, addr, client); err != nil {
				t.Fatal(err)
			}
			if hs := next(t, seen); hs.err != nil || hs.state.DidResume {
				t.Fatalf("first handshake: err %v, resumed %v", hs.err, hs.state.DidResume)
			}
			if tt.change != nil {
				tt.change(t, id)
			}
			mu.Lock()
			allow = tt.allow
			mu.Unlock()

			_, err := talk(t, addr, client)
			hs := next(t, seen)
			if tt.wantErr != "" {
				if hs.err == nil || !strings.Contains(hs.err.Error(), tt.wantErr) || err == nil {
					t.Fatalf("server err %v, client err %v; want %q", hs.err, err, tt.wantErr)
				}
			} else if err != nil || hs.err != nil {
				t.Fatalf("client err %v, server err %v", err, hs.err)
			} else if hs.state.DidResume != tt.wantResume || tlsx.PeerSerialHex(hs.state) != wantSerial {
				t.Errorf("resumed %v with peer serial %s, want %v with %s", hs.state.DidResume, tlsx.PeerSerialHex(hs.state), tt.wantResume, wantSerial)
			}
			mu.Lock()
			defer mu.Unlock()
			if diff := cmp.Diff([]string{wantSerial}, asked); diff != "" {
				t.Errorf("policy asked about (-want +got):\n%s", diff)
			}
		})
	}
}

// LoadClientConfig leaves the key for the first full handshake: a key that
// does not belong to the certificate fails that handshake, naming the file,
// and the certificate is known without it.
func TestLoadClientConfigParsesTheKeyOnFirstUse(t *testing.T) {
	home := newPKI(t, 0)
	client, err := tlsx.LoadClientConfig(home.ctrlExec.Cert, home.agent.Key, home.ctrlExec.CA) // wrong key
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	leaf, err := pki.LoadCert(home.ctrlExec.Cert)
	if err != nil {
		t.Fatal(err)
	}
	if got := tlsx.ClientCertificateDER(client); !bytes.Equal(got, leaf.Raw) {
		t.Error("ClientCertificateDER is not the certificate's leaf")
	}
	addr, seen := serve(t, tlsx.AgentServerConfig(mustIdentity(t, home.agent)))
	_, err = talk(t, addr, client)
	next(t, seen)
	if err == nil || !strings.Contains(err.Error(), home.agent.Key) {
		t.Errorf("handshake with a mismatched key: %v, want an error naming %s", err, home.agent.Key)
	}
}
