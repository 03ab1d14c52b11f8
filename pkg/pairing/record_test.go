package pairing

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Issue 9 A: the Perl pairing server reads the request with one SSL_read,
// so the agent's pairing request must arrive in one TLS record.
func TestSubmitSendsTheRequestInOneRecord(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, testKey(t, 0))
	cert, key := filepath.Join(dir, "ctrl-exec.crt"), filepath.Join(dir, "ctrl-exec.key")
	ca.Issue(t, testKey(t, 2), "ctrl-exec", cert, key, 30)
	id, err := tlsx.LoadIdentity(cert, key, "")
	if err != nil {
		t.Fatal(err)
	}
	var ack bytes.Buffer
	wire.WritePairingFrame(&ack, []byte(`{"status":"pending","reqid":"r1"}`))
	addr := pkitest.ListenOneRecord(t, tlsx.PairingServerConfig(id), func([]byte) []byte { return ack.Bytes() })

	for _, size := range []int{1 << 10, 4 << 10, 12 << 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			sub := submission(t, "web-01")
			sub.CSR += strings.Repeat(" ", max(0, size-len(sub.Encode())))
			p, err := (&Client{}).Submit(context.Background(), "127.0.0.1", addr.Port, sub)
			if err != nil {
				t.Fatal(err)
			}
			p.Close()
			if p.ReqID != "r1" {
				t.Errorf("reqid %q", p.ReqID)
			}
		})
	}
}
