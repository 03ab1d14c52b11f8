package pairing

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

func queueRequest(t *testing.T, c *control, id, host, csr string, port int) Request {
	t.Helper()
	r := Request{ID: id, Hostname: host, IP: "192.0.2.7", CSR: csr, Nonce: "feedface" + id, Received: "2026-03-09T14:30:00Z", Code: pki.PairingCode([]byte(csr)), Port: port}
	if err := c.queue.Add(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestPairingApprove(t *testing.T) {
	c := newControl(t)
	now := time.Date(2026, time.March, 9, 14, 30, 0, 0, time.UTC)
	c.approver.Now = func() time.Time { return now }
	req := queueRequest(t, c, "00000000000000a1", "web-01", testCSR(t, "web-01"), 7543)
	req.Tags = map[string]string{"role": "web", "env": "prod"} // as a Go agent reports them
	if err := c.queue.Add(req); err != nil {
		t.Fatal(err)
	}
	release, err := c.queue.hold(req.ID) // as the server waiting on the agent does
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	got, err := c.approver.Approve(req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "web-01" || got.ReqID != req.ID {
		t.Errorf("approval %+v", got)
	}
	// 825 days by default (D-18), from now.
	if want := now.Add(825 * 24 * time.Hour); !got.Cert.NotAfter.Equal(want) {
		t.Errorf("notAfter %v, want %v", got.Cert.NotAfter, want)
	}

	// .approved has exactly the five §7.4 keys.
	data, err := os.ReadFile(filepath.Join(c.queue.Dir, req.ID+".approved"))
	if err != nil {
		t.Fatal(err)
	}
	var approved map[string]string
	if err := json.Unmarshal(data, &approved); err != nil {
		t.Fatal(err)
	}
	ctrl, _ := pki.LoadCert(filepath.Join(c.dir, "ctrl-exec.crt"))
	caPEM, _ := os.ReadFile(filepath.Join(c.dir, "ca.crt"))
	want := map[string]string{
		"status": "approved", "cert": string(pki.CertPEM(got.Cert)), "ca": string(caPEM),
		"nonce": req.Nonce, "dispatcher_serial": pki.SerialHex(ctrl),
	}
	if diff := cmp.Diff(want, approved); diff != "" {
		t.Errorf(".approved (-want +got):\n%s", diff)
	}
	// The request stays until the server delivers.
	if !exists(filepath.Join(c.queue.Dir, req.ID+".json")) {
		t.Error("approve removed the request")
	}

	rec, err := c.registry.Get("web-01")
	if err != nil {
		t.Fatal(err)
	}
	wantRec := registry.Record{
		"hostname": "web-01", "ip": "192.0.2.7", "paired": "2026-03-09T14:30:00Z",
		"expiry": pki.FormatOpenSSLDate(got.Cert.NotAfter), "reqid": req.ID,
		"dispatcher_serial": pki.SerialHex(ctrl), "serial_status": "current",
		"serial_broadcast": "", "serial_confirmed": "2026-03-09T14:30:00Z",
		"port": "7543", "agent_serial": pki.SerialHex(got.Cert),
		"cert_delivery": "pending", // until the server hands it over
		// targetable by tag at once
		"tags": map[string]any{"role": "web", "env": "prod"}, "tags_updated": "2026-03-09T14:30:00Z",
	}
	if diff := cmp.Diff(wantRec, rec); diff != "" {
		t.Errorf("registry record (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"ACTION=pair-approve AGENT=web-01 REQID=00000000000000a1"}, c.log.Lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}

	// A second approval of the same request is refused: no second cert.
	if _, err := c.approver.Approve(req.ID); err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Errorf("second Approve = %v", err)
	}
	if _, err := c.approver.Deny(req.ID); err == nil || !strings.Contains(err.Error(), "already approved") {
		t.Errorf("Deny after Approve = %v", err)
	}
}

func TestPairingApproveCertDaysAndNoCtrlExecCert(t *testing.T) {
	c := newControl(t)
	os.Remove(c.approver.CtrlExecCert)
	c.approver.CertDays = 30
	req := queueRequest(t, c, "00000000000000b1", "db-01", testCSR(t, "db-01"), 0)
	got, err := c.approver.Approve(req.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := got.Cert.NotAfter.Sub(got.Cert.NotBefore); d != 30*24*time.Hour {
		t.Errorf("lifetime %v, want 30 days", d)
	}
	rec, _ := c.registry.Get("db-01")
	for k, want := range map[string]string{"dispatcher_serial": "", "serial_status": "unknown", "serial_confirmed": ""} {
		if rec.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, rec.Get(k), want)
		}
	}
	if _, ok := rec["port"]; ok {
		t.Error("port recorded although the agent reported none")
	}
}

func TestPairingApproveSerialsAreDistinct(t *testing.T) {
	c := newControl(t)
	seen := map[string]bool{}
	for i, host := range []string{"a-01", "a-02", "a-03"} {
		id := "00000000000000c" + string(rune('1'+i))
		queueRequest(t, c, id, host, testCSR(t, host), 0)
		got, err := c.approver.Approve(id)
		if err != nil {
			t.Fatal(err)
		}
		s := pki.SerialHex(got.Cert)
		if seen[s] {
			t.Errorf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

func TestPairingApproveRefusals(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, c *control) string
		wantErr string
	}{
		{"unknown id", func(*testing.T, *control) string { return "0123456789abcdef" }, "No pending request '0123456789abcdef'"},
		{"path in id", func(*testing.T, *control) string { return "../../etc/x" }, "No pending request '../../etc/x'"},
		{"hostname queued by a Perl server", func(t *testing.T, c *control) string {
			queueRequest(t, c, "00000000000000d1", "../x", testCSR(t, "../x"), 0)
			return "00000000000000d1"
		}, "not a valid agent hostname"},
		{"CN differs from hostname", func(t *testing.T, c *control) string {
			queueRequest(t, c, "00000000000000d2", "web-01", testCSR(t, "evil"), 0)
			return "00000000000000d2"
		}, "CSR is for 'evil' but the agent claims to be 'web-01'"},
		{"malformed CSR", func(t *testing.T, c *control) string {
			queueRequest(t, c, "00000000000000d3", "web-01", "not a csr", 0)
			return "00000000000000d3"
		}, "Invalid CSR format"},
		{"RSA 1024 queued by a Perl server (D-35)", func(t *testing.T, c *control) string {
			queueRequest(t, c, "00000000000000d6", "web-01", string(weakCSR(t, "web-01")), 0)
			return "00000000000000d6"
		}, "CSR key is too weak: RSA 1024 bits"},
		{"two CNs queued by a Perl server (D-35)", func(t *testing.T, c *control) string {
			queueRequest(t, c, "00000000000000d7", "web-01", string(pkitest.CSR(t, testKey(t, 1), "evil", "web-01")), 0)
			return "00000000000000d7"
		}, "CSR subject has more than one CN"},
		{"no ca.serial", func(t *testing.T, c *control) string {
			os.Remove(c.approver.CA.Serial)
			queueRequest(t, c, "00000000000000d4", "web-01", testCSR(t, "web-01"), 0)
			return "00000000000000d4"
		}, "Cannot open serial file for locking:"},
		{"no CA key", func(t *testing.T, c *control) string {
			os.Remove(c.approver.CA.Key)
			queueRequest(t, c, "00000000000000d5", "web-01", testCSR(t, "web-01"), 0)
			return "00000000000000d5"
		}, "CA key not found at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newControl(t)
			id := tt.setup(t, c)
			_, err := c.approver.Approve(id)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Approve = %v, want %q", err, tt.wantErr)
			}
			if recs, _, _ := c.registry.List(); len(recs) != 0 {
				t.Errorf("registry written: %v", recs)
			}
			if exists(filepath.Join(c.queue.Dir, id+".approved")) {
				t.Error(".approved written")
			}
		})
	}
}

func TestPairingNoRequestErrorType(t *testing.T) {
	c := newControl(t)
	_, err := c.approver.Approve("abc")
	var nr *NoRequestError
	if !errors.As(err, &nr) {
		t.Errorf("Approve = %T %v, want *NoRequestError", err, err)
	}
}

func TestPairingDeny(t *testing.T) {
	c := newControl(t)
	req := queueRequest(t, c, "00000000000000e1", "web-02", testCSR(t, "web-02"), 0)
	host, err := c.approver.Deny(req.ID)
	if err != nil || host != "web-02" {
		t.Fatalf("Deny = %q, %v", host, err)
	}
	data, _ := os.ReadFile(filepath.Join(c.queue.Dir, req.ID+".denied"))
	if want := `{"status":"denied","reason":"rejected by operator"}`; string(data) != want {
		t.Errorf(".denied = %s, want %s", data, want)
	}
	if exists(filepath.Join(c.queue.Dir, req.ID+".json")) {
		t.Error("deny left the request")
	}
	if diff := cmp.Diff([]string{"ACTION=pair-deny AGENT=web-02 REQID=00000000000000e1"}, c.log.Lines()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if _, err := c.approver.Deny(req.ID); err == nil || err.Error() != "No pending request '00000000000000e1'" {
		t.Errorf("second Deny = %v", err)
	}
	// An unreadable request is still deniable, logged with AGENT=?.
	os.WriteFile(filepath.Join(c.queue.Dir, "00000000000000e2.json"), []byte("{broken"), 0o644)
	if host, err := c.approver.Deny("00000000000000e2"); err != nil || host != "?" {
		t.Errorf("Deny(broken) = %q, %v", host, err)
	}
}

// A request whose server died before delivering its approval (nobody holds
// it): approve says so, deny clears it and the record of the undelivered
// certificate, and so does a pairing-mode start for the others. Unanswered
// requests and records of other pairings are never touched.
func TestPairingOrphanedApprovals(t *testing.T) {
	c := newControl(t)
	a := queueRequest(t, c, "00000000000000c1", "orphan-a", testCSR(t, "orphan-a"), 0)
	b := queueRequest(t, c, "00000000000000c2", "orphan-b", testCSR(t, "orphan-b"), 0)
	pending := queueRequest(t, c, "00000000000000c3", "orphan-c", testCSR(t, "orphan-c"), 0)
	live := queueRequest(t, c, "00000000000000c4", "live-d", testCSR(t, "live-d"), 0)
	release, err := c.queue.hold(live.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	for _, r := range []Request{a, b, live} {
		if _, err := c.approver.Approve(r.ID); err != nil {
			t.Fatal(err)
		}
	}
	// orphan-c was paired before; its old record must survive.
	old := registry.Record{"hostname": "orphan-c", "reqid": "0000000000000999", "ip": "192.0.2.1"}
	if err := c.registry.Put(old); err != nil {
		t.Fatal(err)
	}

	if _, err := c.approver.Approve(a.ID); err == nil || !strings.Contains(err.Error(), "stopped before delivering the answer: deny it to clear it") {
		t.Errorf("re-approve of an orphan = %v", err)
	}
	if host, err := c.approver.Deny(a.ID); err != nil || host != "orphan-a" {
		t.Fatalf("deny of an orphan = %q, %v", host, err)
	}
	if _, err := c.registry.Get("orphan-a"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("record of the undelivered certificate kept: %v", err)
	}

	if n := RecoverOrphans(c.queue, c.registry, c.log.logger()); n != 1 {
		t.Errorf("RecoverOrphans cleared %d, want 1 (orphan-b)", n)
	}
	if !exists(filepath.Join(c.queue.Dir, pending.ID+".json")) {
		t.Error("an unanswered request was cleared")
	}
	for _, id := range []string{a.ID, b.ID} {
		for _, ext := range []string{".json", ".approved", ".denied"} {
			if exists(filepath.Join(c.queue.Dir, id+ext)) {
				t.Errorf("%s%s left", id, ext)
			}
		}
	}
	if _, err := c.registry.Get("orphan-b"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("orphan-b record kept: %v", err)
	}
	if rec, err := c.registry.Get("orphan-c"); err != nil || rec.Get("reqid") != "0000000000000999" {
		t.Errorf("an older pairing's record was touched: %v %v", rec, err)
	}
	// The request a live server holds is untouched.
	if rec, err := c.registry.Get("live-d"); err != nil || rec.Get(registry.FieldCertDelivery) != registry.DeliveryPending {
		t.Errorf("live record: %v %v", rec, err)
	}
	if !exists(filepath.Join(c.queue.Dir, live.ID+".approved")) {
		t.Error("a held request was cleared")
	}
}
