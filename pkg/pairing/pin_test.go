package pairing

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// chain makes c's pairing listener send its CA after its certificate, as
// pairing-mode does.
func (c *control) chain(t *testing.T) {
	t.Helper()
	id, err := tlsx.LoadChainIdentity(filepath.Join(c.dir, "ctrl-exec.crt"), filepath.Join(c.dir, "ctrl-exec.key"), c.approver.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	c.identity = id
}

func (c *control) fingerprint(t *testing.T) string {
	t.Helper()
	ca, err := pki.LoadCert(c.approver.CA.Cert)
	if err != nil {
		t.Fatal(err)
	}
	return pki.Fingerprint(ca)
}

// otherFingerprint is the fingerprint of a CA that is not c's.
func otherFingerprint(t *testing.T) string {
	t.Helper()
	return pki.Fingerprint(pkitest.NewCA(t, t.TempDir(), testKey(t, 2)).Cert)
}

// approveAndAwait submits, approves and returns Await's outcome.
func approveAndAwait(t *testing.T, c *control, client *Client) (*Pending, *Result, error) {
	t.Helper()
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	p, err := client.Submit(context.Background(), "127.0.0.1", port, submission(t, "web-01"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.approver.Approve(p.ReqID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := p.Await(ctx)
	return p, res, err
}

func TestPinnedPairingChainedServer(t *testing.T) {
	c := newControl(t)
	c.chain(t)
	p, res, err := approveAndAwait(t, c, &Client{CAFingerprint: c.fingerprint(t)})
	if err != nil {
		t.Fatal(err)
	}
	if !p.PinChecked || res.CertPEM == "" {
		t.Errorf("PinChecked %v, cert %q", p.PinChecked, res.CertPEM)
	}
}

// A wrong pin is refused in the handshake: no request reaches the queue.
func TestPinnedPairingWrongFingerprintSendsNothing(t *testing.T) {
	c := newControl(t)
	c.chain(t)
	srv, _ := newServer(c)
	port, _ := c.listen(t, srv)
	want := otherFingerprint(t)
	_, err := (&Client{CAFingerprint: want}).Submit(context.Background(), "127.0.0.1", port, submission(t, "web-01"))
	var pe *tlsx.PinError
	if !errors.As(err, &pe) || pe.Want != want || pe.Got != c.fingerprint(t) {
		t.Fatalf("Submit error %v", err)
	}
	if reqs, _ := c.queue.List(); len(reqs) != 0 {
		t.Errorf("queue holds %d requests", len(reqs))
	}
}

// A server that sends its certificate alone (Perl) is checked when the
// approval delivers the CA.
func TestPinnedPairingLeafOnlyServer(t *testing.T) {
	c := newControl(t)
	p, res, err := approveAndAwait(t, c, &Client{CAFingerprint: c.fingerprint(t)})
	if err != nil || p.PinChecked || res == nil {
		t.Fatalf("right pin: PinChecked %v, err %v", p.PinChecked, err)
	}

	c = newControl(t)
	want := otherFingerprint(t)
	_, res, err = approveAndAwait(t, c, &Client{CAFingerprint: want})
	wantErr := "the CA delivered with the approval is " + c.fingerprint(t) + ", not the pinned " + want + " - nothing was stored"
	if err == nil || err.Error() != wantErr || res != nil {
		t.Fatalf("wrong pin: %v, want %q", err, wantErr)
	}
}

// Without a pin, an approval from a server whose certificate does not chain
// to the CA it delivers is refused (D-14).
func TestPairingServerFromAnotherCARefused(t *testing.T) {
	c := newControl(t)
	other := pkitest.NewCA(t, t.TempDir(), testKey(t, 2))
	crt, key := filepath.Join(t.TempDir(), "ctrl-exec.crt"), filepath.Join(t.TempDir(), "ctrl-exec.key")
	if _, err := other.IssueCtrlExecCert(key, crt, testBits, 30, time.Now()); err != nil {
		t.Fatal(err)
	}
	id, err := tlsx.LoadIdentity(crt, key, "")
	if err != nil {
		t.Fatal(err)
	}
	c.identity = id
	_, res, err := approveAndAwait(t, c, &Client{})
	if err == nil || res != nil || !strings.HasPrefix(err.Error(), "the pairing server's certificate does not chain to the CA it delivered (x509: certificate signed by unknown authority") {
		t.Fatalf("got %v", err)
	}
}
