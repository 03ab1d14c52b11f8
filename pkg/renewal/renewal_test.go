package renewal

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
)

func TestRenewalDue(t *testing.T) {
	now := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) string { return pki.FormatOpenSSLDate(now.Add(d)) }
	day := 24 * time.Hour
	tests := []struct {
		name     string
		expiry   string
		certDays int
		want     bool
	}{
		{"400 days left, cert_days 365", in(400 * day), 365, false},
		{"100 days left, cert_days 365", in(100 * day), 365, true},
		{"just over half-life", in(182*day + 13*time.Hour), 365, false},
		{"just under half-life", in(182*day + 11*time.Hour), 365, true},
		{"expired", in(-day), 365, true},
		{"200 days left, cert_days 365", in(200 * day), 365, false},
		{"200 days left, cert_days 730", in(200 * day), 730, true},
		{"unknown", "unknown", 365, false},
		{"empty", "", 365, false},
		{"one-digit day", "Jun 7 16:28:00 2026 GMT", 365, true},
		{"garbage", "2026-06-07", 365, false},
	}
	for _, tt := range tests {
		if got := Due(tt.expiry, tt.certDays, now); got != tt.want {
			t.Errorf("%s: Due(%q, %d) = %v, want %v", tt.name, tt.expiry, tt.certDays, got, tt.want)
		}
	}
}

// syncBuffer collects log lines from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines are the log lines without the "ident[pid]: " prefix.
func (s *syncBuffer) lines(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range strings.Split(s.b.String(), "\n") {
		if _, msg, ok := strings.Cut(l, "]: "); ok && strings.HasPrefix(msg, prefix) {
			out = append(out, msg)
		}
	}
	return out
}

type harness struct {
	p      *testPKI
	reg    *registry.Registry
	log    *syncBuffer
	client *dispatch.Client
	r      *Renewer
}

func newHarness(t *testing.T) *harness {
	p := getPKI(t)
	h := &harness{p: p, reg: registry.New(t.TempDir()), log: &syncBuffer{}}
	log := logx.NewWriter(logx.IdentDispatcher, h.log)
	h.client = &dispatch.Client{Cert: p.ctrlCert, Key: p.ctrlKey, CA: p.caFiles.Cert, Timeout: 10 * time.Second, Log: log}
	h.r = &Renewer{Client: h.client, CA: p.caFiles, Registry: h.reg, Log: log, Now: time.Now}
	h.client.AfterPing = h.r.AfterPing
	return h
}

func (h *harness) register(t *testing.T, a *fakeAgent) {
	t.Helper()
	err := h.reg.Put(registry.Record{
		registry.FieldHostname: a.name, registry.FieldIP: "127.0.0.1",
		registry.FieldExpiry: pki.FormatOpenSSLDate(a.notAfter()), registry.FieldPort: a.target()[len("127.0.0.1:"):],
		registry.FieldSerialStatus: registry.StatusCurrent, "custom": "kept",
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRenewalPingRenewsDueRegisteredAgentsOnly(t *testing.T) {
	h := newHarness(t)
	due := startFakeAgent(t, h.p, "due-01", 100, "")
	fresh := startFakeAgent(t, h.p, "fresh-01", 365, "")
	stranger := startFakeAgent(t, h.p, "stranger-01", 100, "") // not in the registry (D-23)
	perl := startFakeAgent(t, h.p, "perl-01", 100, "perl")
	for _, a := range []*fakeAgent{due, fresh, perl} {
		h.register(t, a)
	}
	dueSerial := due.leafSerial()

	hosts := []string{due.target(), fresh.target(), stranger.target(), perl.target()}
	results, err := h.client.Ping(context.Background(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range results {
		if !res.OK() {
			t.Errorf("%s: ping result %s not ok", hosts[i], res.Str("error"))
		}
	}
	// The ping result reports the expiry the agent had when pinged.
	if results[0].Str("expiry") == pki.FormatOpenSSLDate(due.notAfter()) {
		t.Error("ping result was changed by the renewal")
	}

	if due.renewCount() != 1 || due.leafSerial() == dueSerial {
		t.Errorf("due agent renewed %d times (serial %s → %s)", due.renewCount(), dueSerial, due.leafSerial())
	}
	if got := time.Until(due.notAfter()); got < 364*24*time.Hour {
		t.Errorf("renewed cert lasts %v, want 365 days", got)
	}
	if fresh.renewCount() != 0 || stranger.renewCount() != 0 {
		t.Errorf("renewed fresh %d, stranger %d times", fresh.renewCount(), stranger.renewCount())
	}

	rec, err := h.reg.Get("due-01")
	if err != nil {
		t.Fatal(err)
	}
	want := pki.FormatOpenSSLDate(due.notAfter())
	if rec.Get(registry.FieldExpiry) != want || rec.Get(registry.FieldAgentSerial) != due.leafSerial() || rec.Get("custom") != "kept" {
		t.Errorf("registry after renewal: %v (want expiry %q)", rec, want)
	}

	got := h.log.lines("ACTION=renew")
	mask := func(l string) string {
		f := strings.Fields(l)
		for i, w := range f {
			if strings.HasPrefix(w, "REQID=") {
				f[i] = "REQID=R"
			}
		}
		return strings.Join(f, " ")
	}
	for i := range got {
		got[i] = mask(got[i])
	}
	wantLines := []string{
		"ACTION=renew REQID=R STATUS=starting TARGET=" + due.target(),
		"ACTION=renew-complete EXPIRY=\"" + want + "\" REQID=R TARGET=" + due.target(), // EXPIRY holds spaces
		"ACTION=renew REQID=R STATUS=starting TARGET=" + perl.target(),
		"ACTION=renew ERROR=\"renew request failed: 404 Not Found\" TARGET=" + perl.target(),
	}
	if diff := cmp.Diff(wantLines, got); diff != "" {
		t.Errorf("renew log lines (-want +got):\n%s", diff)
	}

	// Pinging again finds nothing due.
	if _, err := h.client.Ping(context.Background(), []string{due.target()}); err != nil {
		t.Fatal(err)
	}
	if due.renewCount() != 1 {
		t.Errorf("renewed again: %d", due.renewCount())
	}
}

// An agent that reports another agent's name is not renewed in that name:
// with agent_identity on, renewal talks only to the agent whose certificate
// carries the name being renewed (D-31). Upstream (off) signs it.
func TestRenewalOnlyForTheNamedAgent(t *testing.T) {
	for _, tt := range []struct {
		mode     string
		renewals int
	}{
		{config.IdentityRegistry, 0},
		{config.IdentityOff, 1},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			h := newHarness(t)
			h.client.Identity = &agentid.Policy{Mode: tt.mode, Registry: h.reg}
			h.register(t, startFakeAgent(t, h.p, "victim-01", 365, ""))
			impostor := startFakeAgent(t, h.p, "impostor-01", 100, "claims-victim")
			results, err := h.client.Ping(context.Background(), []string{impostor.target()})
			if err != nil || !results[0].OK() {
				t.Fatalf("ping %v %v", results, err)
			}
			if got := impostor.renewCount(); got != tt.renewals {
				t.Errorf("impostor renewed %d times, want %d", got, tt.renewals)
			}
			if tt.renewals == 0 {
				want := `ACTION=renew ERROR="renew request failed: agent identity mismatch: expected victim-01, got impostor-01"`
				if lines := h.log.lines("ACTION=renew ERROR"); len(lines) != 1 || !strings.HasPrefix(lines[0], want) {
					t.Errorf("renew lines %q, want prefix %q", lines, want)
				}
			}
		})
	}
}

func TestRenewalFailures(t *testing.T) {
	tests := []struct {
		mode string
		want string
	}{
		{"perl", "renew request failed: 404 Not Found"},
		{"badjson", "invalid JSON in renew response"},
		{"nocsr", "no CSR in renew response"},
		{"othercn", "CSR in renew response is for 'someone-else', not 'agent-x'"},
		{"weakkey", "CSR in renew response: CSR key is too weak: RSA 1024 bits"},
		{"twocn", "CSR in renew response: CSR subject has more than one CN"},
		{"refuse", "renew-complete failed: 400 Bad Request (cert public key does not match the agent key)"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			h := newHarness(t)
			a := startFakeAgent(t, h.p, "agent-x", 100, tt.mode)
			h.register(t, a)
			before, _ := h.reg.Get("agent-x")
			_, err := h.r.Renew(context.Background(), dispatch.ParseTarget(a.target(), 0), "agent-x")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			after, _ := h.reg.Get("agent-x")
			if diff := cmp.Diff(before, after); diff != "" {
				t.Errorf("registry changed by a failed renewal:\n%s", diff)
			}
			if lines := h.log.lines("ACTION=renew ERROR="); len(lines) != 1 {
				t.Errorf("error log lines %q", lines)
			}
		})
	}
}

func TestRenewalUnreachableAgent(t *testing.T) {
	h := newHarness(t)
	target := dispatch.ParseTarget("127.0.0.1:1", 0)
	_, err := h.r.Renew(context.Background(), target, "gone-01")
	if err == nil || !strings.HasPrefix(err.Error(), "renew request failed: 500 Can't connect to 127.0.0.1:1") {
		t.Errorf("error %v", err)
	}
}

// An injected clock decides what is due: a fresh certificate is due once the
// clock reads past its half-life.
func TestRenewalUsesInjectedClock(t *testing.T) {
	h := newHarness(t)
	a := startFakeAgent(t, h.p, "clock-01", 365, "")
	h.register(t, a)
	h.r.Now = func() time.Time { return time.Now().Add(200 * 24 * time.Hour) }
	h.r.CertDays = 365
	if _, err := h.client.Ping(context.Background(), []string{a.target()}); err != nil {
		t.Fatal(err)
	}
	if a.renewCount() != 1 {
		t.Errorf("renewals %d, want 1 at a clock 200 days ahead", a.renewCount())
	}
}

// Renewals and other signings share ca.serial under its lock: no serial is
// ever issued twice.
func TestRenewalConcurrentGetDistinctSerials(t *testing.T) {
	h := newHarness(t)
	const n = 6
	agents := make([]*fakeAgent, n)
	for i := range agents {
		agents[i] = startFakeAgent(t, h.p, "conc-"+string(rune('a'+i)), 100, "")
		h.register(t, agents[i])
	}
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := h.r.Renew(context.Background(), dispatch.ParseTarget(a.target(), 0), a.name); err != nil {
				t.Error(err)
			}
		}()
		go func() { // a pairing-like signing at the same time
			defer wg.Done()
			csr, _ := pki.CreateCSR(h.p.otherKey, "pairing")
			if _, err := h.p.ca(t).SignCSR(csr, 10, time.Now(), pki.SignOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, a := range agents {
		s := a.leafSerial()
		if seen[s] {
			t.Errorf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

func FuzzCSRFrom(f *testing.F) {
	f.Add([]byte(`{"status":"ok","csr":"-----BEGIN CERTIFICATE REQUEST-----\n","reqid":"r"}`))
	f.Add([]byte(`{"csr":1}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{} {}`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, body []byte) {
		csr, err := csrFrom(body)
		if err == nil && csr == "" {
			t.Fatal("empty CSR accepted")
		}
	})
}

// Issue 9 A: /renew-complete carries two certificates (over 2 KB); a Perl
// agent's one-read server must get each renewal request in one TLS record.
func TestRenewalRequestsTravelInOneRecord(t *testing.T) {
	h := newHarness(t)
	a := startFakeAgent(t, h.p, "record-01", 100, "onerecord")
	h.register(t, a)
	if _, err := h.r.Renew(context.Background(), dispatch.ParseTarget(a.target(), 0), "record-01"); err != nil {
		t.Fatal(err)
	}
	if a.renewCount() != 1 {
		t.Errorf("renewals %d, want 1", a.renewCount())
	}
}
