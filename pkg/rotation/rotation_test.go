package rotation

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/agentid"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// testGroup gives dir a group other than the process's own when running as
// root (so a file that merely inherits the creator's group is caught), and
// returns the group files written there should carry.
func testGroup(t *testing.T, dir string) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Getegid()
	}
	const gid = 4242
	if err := os.Chown(dir, -1, gid); err != nil {
		t.Fatal(err)
	}
	return gid
}

func fileGroup(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Sys().(*syscall.Stat_t).Gid)
}

func TestRotateKeepsPreviousPairAndMarksAgentsPending(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)
	oldKey, oldCert := readFile(t, c.r.KeyPath()), readFile(t, c.r.CertPath())
	c.addAgent(t, "web-01", registry.StatusCurrent, old, old, true)
	c.addAgent(t, "web-02", "", "", "", true)
	now := time.Date(2026, 3, 9, 14, 30, 0, 0, time.UTC)
	c.r.Now = func() time.Time { return now }
	gid := testGroup(t, c.dir)

	res, err := c.r.Rotate(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	newSerial := c.serial(t)
	want := Result{Rotated: true, Serial: newSerial, OldSerial: old, OverlapExpires: "2026-04-08T14:30:00Z", AgentsPending: 2}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("result (-want +got):\n%s", diff)
	}
	n, _ := new(big.Int).SetString(newSerial, 16)
	if n.Cmp(big.NewInt(pki.CtrlExecSerialFloor)) < 0 || len(newSerial) < 8 {
		t.Errorf("new serial %s below 0x01000000: Perl agents' helper would refuse it", newSerial)
	}
	if readFile(t, c.r.PrevKeyPath()) != oldKey || readFile(t, c.r.PrevCertPath()) != oldCert {
		t.Error(".prev pair is not the previous key and cert")
	}
	for path, mode := range map[string]os.FileMode{c.r.PrevKeyPath(): 0o640, c.r.PrevCertPath(): 0o644, c.r.KeyPath(): 0o640, c.r.CertPath(): 0o644, c.r.StateFile: 0o640} {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != mode {
			t.Errorf("%s mode %v, want %v", filepath.Base(path), fi.Mode().Perm(), mode)
		}
	}
	// D-30: both keys readable by the ca_dir's group (ctrl-exec as installed).
	for _, path := range []string{c.r.KeyPath(), c.r.PrevKeyPath()} {
		if got := fileGroup(t, path); got != gid {
			t.Errorf("%s group %d, want the directory's %d", filepath.Base(path), got, gid)
		}
	}

	state, err := LoadState(c.r.StateFile, c.r.Log)
	if err != nil || state == nil {
		t.Fatalf("state %v, %v", state, err)
	}
	wantState := State{CurrentSerial: newSerial, PreviousSerial: old, RotatedAt: "2026-03-09T14:30:00Z", OverlapExpires: "2026-04-08T14:30:00Z", OverlapDays: 30}
	state.Raw = nil
	if diff := cmp.Diff(wantState, *state); diff != "" {
		t.Errorf("rotation.json (-want +got):\n%s", diff)
	}
	for _, host := range []string{"web-01", "web-02"} {
		rec, _ := c.reg.Get(host)
		if rec.Get(registry.FieldSerialStatus) != "pending" || rec.Get(registry.FieldSerialBroadcast) != "2026-03-09T14:30:00Z" || rec.Get("custom") != "kept" {
			t.Errorf("%s after rotation: %v", host, rec)
		}
	}
	lines := c.log.lines("ACTION=cert-rotated")
	wantLine := fmt.Sprintf("ACTION=cert-rotated AGENTS=2 NEW_SERIAL=%s OLD_SERIAL=%s OVERLAP_EXPIRES=2026-04-08T14:30:00Z", newSerial, old)
	if len(lines) != 1 || lines[0] != wantLine {
		t.Errorf("log %q, want %q", lines, wantLine)
	}
}

func TestRotateWithoutPreviousCert(t *testing.T) {
	c := newControl(t)
	os.Remove(c.r.CertPath())
	os.Remove(c.r.KeyPath())
	res, err := c.r.Rotate(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	if res.OldSerial != "" || res.AgentsPending != 0 {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(c.r.PrevCertPath()); err == nil {
		t.Error(".prev written without a previous cert")
	}
}

func TestRotateFailureChangesNothing(t *testing.T) {
	c := newControl(t)
	oldKey, oldCert := readFile(t, c.r.KeyPath()), readFile(t, c.r.CertPath())
	os.Rename(filepath.Join(c.dir, "ca.key"), filepath.Join(c.dir, "ca.key.away"))
	_, err := c.r.Rotate(context.Background(), false)
	var w *Warning
	if !errors.As(err, &w) || !strings.HasPrefix(err.Error(), "cert generation failed: CA key not found at '") {
		t.Fatalf("error %v", err)
	}
	if readFile(t, c.r.KeyPath()) != oldKey || readFile(t, c.r.CertPath()) != oldCert {
		t.Error("ctrl-exec key or cert changed by a failed rotation")
	}
	if _, err := os.Stat(c.r.StateFile); err == nil {
		t.Error("rotation.json written by a failed rotation")
	}
	if len(c.log.lines("ACTION=cert-rotation-fail")) != 1 {
		t.Errorf("log %q", c.log.lines("ACTION="))
	}
}

func TestCheckAndRotate(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)

	res, err := c.r.CheckAndRotate(context.Background())
	if err != nil || res.Rotated || res.DaysLeft < 823 {
		t.Fatalf("fresh cert: %+v, %v", res, err)
	}
	// The clock is injected: 740 days on, 85 days remain, under the 90-day threshold.
	c.r.Now = func() time.Time { return time.Now().Add(740 * 24 * time.Hour) }
	res, err = c.r.CheckAndRotate(context.Background())
	if err != nil || !res.Rotated || res.OldSerial != old || res.DaysLeft != 84 {
		t.Fatalf("due cert: %+v, %v", res, err)
	}
	want := []string{"ACTION=cert-check DAYS_LEFT=824 THRESHOLD=90", "ACTION=cert-check DAYS_LEFT=84 THRESHOLD=90"}
	if diff := cmp.Diff(want, c.log.lines("ACTION=cert-check")); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if got := c.log.lines("ACTION=cert-renewal-start"); len(got) != 1 || got[0] != "ACTION=cert-renewal-start DAYS_LEFT=84" {
		t.Errorf("log %q", got)
	}

	os.Remove(c.r.CertPath())
	_, err = c.r.CheckAndRotate(context.Background())
	if err == nil || err.Error() != "ctrl-exec cert not found at "+c.r.CertPath() {
		t.Errorf("missing cert: %v", err)
	}
	os.WriteFile(c.r.CertPath(), []byte("junk"), 0o644)
	_, err = c.r.CheckAndRotate(context.Background())
	if err == nil || err.Error() != "cannot read cert expiry from "+c.r.CertPath() {
		t.Errorf("unreadable cert: %v", err)
	}
}

func TestRotationBroadcastReachesEveryKindOfAgent(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)
	pending := c.addAgent(t, "a-pending", registry.StatusCurrent, old, old, false)
	repaired := c.addAgent(t, "b-repaired", registry.StatusCurrent, old, "", false)
	down := c.addAgent(t, "c-down", registry.StatusCurrent, old, old, true)
	c.addAgent(t, "d-stale", registry.StatusStale, "", "", true)

	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	newSerial := c.serial(t)
	// b-repaired was paired again after the rotation: it stores the new
	// serial although its record (rewritten to pending here) says otherwise.
	repaired.mu.Lock()
	repaired.stored = newSerial
	repaired.mu.Unlock()
	// Rotation marks every agent pending; one gone stale since is left alone.
	if _, err := c.reg.Merge("d-stale", map[string]any{registry.FieldSerialStatus: registry.StatusStale}); err != nil {
		t.Fatal(err)
	}

	report, err := c.r.Broadcast(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(report) != 3 {
		t.Fatalf("report %+v: want the three pending agents", report)
	}
	if !report[0].OK || !report[1].OK || report[2].OK || !strings.HasPrefix(report[2].Error, "500 Can't connect to 127.0.0.1:") {
		t.Errorf("report %+v", report)
	}
	for _, a := range []*fakeAgent{pending, repaired} {
		if a.storedSerial() != newSerial {
			t.Errorf("%s stores %s, want %s", a.name, a.storedSerial(), newSerial)
		}
		st, serial := c.status(t, a.name)
		if st != "current" || serial != newSerial {
			t.Errorf("%s: %s %s", a.name, st, serial)
		}
	}
	if st, _ := c.status(t, down.name); st != "pending" {
		t.Errorf("down agent is %s", st)
	}
	if st, _ := c.status(t, "d-stale"); st != "stale" {
		t.Errorf("stale agent is %s", st)
	}
	if got := c.log.lines("ACTION=serial-broadcast "); len(got) != 1 || got[0] != "ACTION=serial-broadcast HOSTS=a-pending,b-repaired,c-down SERIAL="+newSerial {
		t.Errorf("log %q", got)
	}
	if got := c.log.lines("ACTION=serial-confirmed"); len(got) != 2 {
		t.Errorf("confirmed %q", got)
	}
	if got := c.log.lines("ACTION=serial-broadcast-fail"); len(got) != 1 || !strings.Contains(got[0], "AGENT=c-down") {
		t.Errorf("fail %q", got)
	}
	// One reqid for the whole broadcast, first and second attempts alike.
	reqids := map[string]bool{}
	for _, l := range c.log.lines("ACTION=dispatch") {
		for _, f := range strings.Fields(l) {
			if strings.HasPrefix(f, "REQID=") {
				reqids[f] = true
			}
		}
	}
	if len(reqids) != 1 {
		t.Errorf("dispatch reqids %v", reqids)
	}

	// .prev stays while c-down is pending.
	if removed, err := c.r.CleanupPrev(context.Background()); err != nil || removed {
		t.Errorf("cleanup with an agent pending: %v %v", removed, err)
	}

	// The agent comes back; the next broadcast reaches it with the old pair.
	down.start(t, c.agentTLS(t))
	report, err = c.r.Broadcast(context.Background())
	if err != nil || len(report) != 1 || !report[0].OK {
		t.Fatalf("retry: %+v %v", report, err)
	}
	if down.storedSerial() != newSerial {
		t.Errorf("c-down stores %s", down.storedSerial())
	}
	if removed, err := c.r.CleanupPrev(context.Background()); err != nil || !removed {
		t.Errorf("cleanup with nothing pending: %v %v", removed, err)
	}
	for _, p := range []string{c.r.PrevKeyPath(), c.r.PrevCertPath()} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s still there", p)
		}
	}
	// Nothing left to do.
	if report, err := c.r.Broadcast(context.Background()); err != nil || report != nil {
		t.Errorf("idle broadcast: %+v %v", report, err)
	}
}

func TestRotationBroadcastFailureTexts(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)
	// Stores a serial nobody has: every identity is refused.
	c.addAgent(t, "lost-01", registry.StatusCurrent, old, "ffffffff", false)
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	report, err := c.r.Broadcast(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Report{{Hostname: "lost-01", Error: "forbidden: serial mismatch"}}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// A broadcast reaches only the agent the registry names at each address
// (D-31): the fake agents' certificates say "fake-agent", so a record of
// another name is refused before the serial is sent, and one of that name
// is updated.
func TestRotationBroadcastChecksAgentIdentity(t *testing.T) {
	c := newControl(t)
	c.r.Client.Identity = &agentid.Policy{Mode: config.IdentityRegistry, Registry: c.reg}
	old := c.serial(t)
	other := c.addAgent(t, "web-01", registry.StatusCurrent, old, old, false)
	named := c.addAgent(t, "fake-agent", registry.StatusCurrent, old, old, false)
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	report, err := c.r.Broadcast(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Report{
		{Hostname: "fake-agent", OK: true},
		{Hostname: "web-01", Error: "agent identity mismatch: expected web-01, got fake-agent"},
	}
	if diff := cmp.Diff(want, report); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if other.storedSerial() != old || named.storedSerial() != c.serial(t) {
		t.Errorf("stored serials: web-01 %s, fake-agent %s", other.storedSerial(), named.storedSerial())
	}
}

func TestRotationBroadcastWithoutStateIsNoop(t *testing.T) {
	c := newControl(t)
	c.addAgent(t, "x-01", "", "", "", true)
	report, err := c.r.Broadcast(context.Background())
	if err != nil || report != nil {
		t.Errorf("%+v %v", report, err)
	}
	if len(c.log.lines("ACTION=")) != 0 {
		t.Errorf("logged %q", c.log.lines("ACTION="))
	}
}

// More pending agents than one dispatch call may carry are sent in batches
// (B-22).
func TestRotationBroadcastBatchesOver500(t *testing.T) {
	if testing.Short() {
		t.Skip("501 handshakes")
	}
	c := newControl(t)
	c.r.Client.Timeout = 60 * time.Second // 500 handshakes at once with one agent, under -race on a busy machine
	old := c.serial(t)
	a := c.addAgent(t, "host-000", registry.StatusCurrent, old, old, false)
	for i := 1; i <= 500; i++ {
		// Every record points at the one fake agent.
		rec := registry.Record{registry.FieldHostname: fmt.Sprintf("host-%03d", i), registry.FieldIP: "127.0.0.1",
			registry.FieldPort: fmt.Sprint(a.port), registry.FieldSerialStatus: registry.StatusCurrent}
		if err := c.reg.Put(rec); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	newSerial := c.serial(t)
	// The first run stores the new serial, so the rest are refused with the
	// previous pair and succeed on the second attempt with the current one.
	report, err := c.r.Broadcast(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	errs := map[string]int{}
	for _, r := range report {
		if r.OK {
			ok++
		} else {
			errs[r.Error]++
		}
	}
	if len(report) != 501 || ok != 501 {
		t.Fatalf("%d reports, %d ok; errors: %v", len(report), ok, errs)
	}
	if a.storedSerial() != newSerial {
		t.Errorf("stored %s", a.storedSerial())
	}
	for _, l := range c.log.lines("ACTION=dispatch") {
		if n := strings.Count(l, ","); n+1 > 500 {
			t.Errorf("a dispatch call with %d hosts", n+1)
		}
	}
}

func TestRotationExpireStaleAfterOverlap(t *testing.T) {
	c := newControl(t)
	c.addAgent(t, "p-01", registry.StatusCurrent, "", "", true)
	c.addAgent(t, "q-01", registry.StatusCurrent, "", "", true)
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := c.reg.Merge("q-01", map[string]any{registry.FieldSerialStatus: "current"}); err != nil {
		t.Fatal(err)
	}
	if err := c.r.ExpireStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.status(t, "p-01"); st != "pending" {
		t.Errorf("within the overlap p-01 is %s", st)
	}

	c.r.Now = func() time.Time { return time.Now().Add(31 * 24 * time.Hour) }
	if err := c.r.ExpireStale(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.status(t, "p-01"); st != "stale" {
		t.Errorf("after the overlap p-01 is %s", st)
	}
	if st, _ := c.status(t, "q-01"); st != "current" {
		t.Errorf("q-01 is %s", st)
	}
	want := []string{`ACTION=serial-stale AGENT=p-01 REASON="overlap window expired without confirmation"`}
	if diff := cmp.Diff(want, c.log.lines("ACTION=serial-stale")); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// With the window over the previous pair goes, pending or not.
	if removed, err := c.r.CleanupPrev(context.Background()); err != nil || !removed {
		t.Errorf("cleanup: %v %v", removed, err)
	}
}

func TestRotationLoopRetriesUntilAgentReturns(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)
	a := c.addAgent(t, "late-01", registry.StatusCurrent, old, old, true)
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	stop := Start(context.Background(), Loop{Rotator: c.r, FirstPass: 10 * time.Millisecond, Interval: 50 * time.Millisecond})
	defer stop()

	deadline := time.Now().Add(20 * time.Second)
	for len(c.log.lines("ACTION=serial-broadcast-fail")) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("loop never retried: %q", c.log.lines("ACTION="))
		}
		time.Sleep(10 * time.Millisecond)
	}
	a.start(t, c.agentTLS(t))
	for {
		if st, _ := c.status(t, "late-01"); st == "current" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent never confirmed: %q", c.log.lines("ACTION="))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The pass that confirmed it also deletes the .prev pair.
	for {
		if _, err := os.Stat(c.r.PrevCertPath()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(".prev never deleted")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	stop()
	stop() // twice is fine
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stop took %v", d)
	}
	if got := c.log.lines("ACTION=cert-check "); len(got) == 0 {
		t.Error("loop never checked the cert")
	}
}

func TestRotationLoopStopsBeforeFirstPass(t *testing.T) {
	c := newControl(t)
	stop := Start(context.Background(), Loop{Rotator: c.r, FirstPass: time.Hour})
	stop()
	if got := c.log.lines("ACTION="); len(got) != 0 {
		t.Errorf("logged %q", got)
	}
}

func TestRotationClockFromEnv(t *testing.T) {
	real := func() time.Time { return time.Now() }
	t.Setenv(testknobs.Now, "")
	if got := ClockFromEnv(real)(); time.Since(got) > time.Minute {
		t.Errorf("unset: %v", got)
	}
	t.Setenv(testknobs.Now, "2031-01-02T03:04:05Z")
	got := ClockFromEnv(real)()
	want := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	if !testknobs.Enabled {
		want = time.Now() // a release build ignores the knob
	}
	if got.Before(want.Add(-time.Minute)) || got.Sub(want) > time.Minute {
		t.Errorf("set: %v, want about %v", got, want)
	}
	t.Setenv(testknobs.CheckDelay, "250ms")
	wantDelay := 250 * time.Millisecond
	if !testknobs.Enabled {
		wantDelay = DefaultFirstPass
	}
	if d := FirstPassFromEnv(); d != wantDelay {
		t.Errorf("delay %v, want %v", d, wantDelay)
	}
	t.Setenv(testknobs.CheckDelay, "soon")
	if d := FirstPassFromEnv(); d != DefaultFirstPass {
		t.Errorf("delay %v", d)
	}
}

// Issue 9 C: only one .prev pair is kept, so a second rotation while agents
// are pending from the first would strand them. It is refused, naming them;
// force rotates and says who is stranded.
func TestRotateRefusesToStrandPendingAgents(t *testing.T) {
	c := newControl(t)
	old := c.serial(t)
	up := c.addAgent(t, "a-up", registry.StatusCurrent, old, old, false)
	c.addAgent(t, "b-down", registry.StatusCurrent, old, old, true)
	c.addAgent(t, "c-down", registry.StatusCurrent, old, old, true)
	if _, err := c.r.Rotate(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	first := c.serial(t)
	if _, err := c.r.Broadcast(context.Background()); err != nil {
		t.Fatal(err)
	}
	if up.storedSerial() != first {
		t.Fatalf("a-up stores %s", up.storedSerial())
	}
	prevCert, err := os.ReadFile(c.r.PrevCertPath())
	if err != nil {
		t.Fatal(err)
	}

	_, err = c.r.Rotate(context.Background(), false)
	var strand *StrandError
	if !errors.As(err, &strand) {
		t.Fatalf("second Rotate = %v, want a StrandError", err)
	}
	if diff := cmp.Diff([]string{"b-down", "c-down"}, strand.Hosts); diff != "" {
		t.Errorf("stranded (-want +got):\n%s", diff)
	}
	if !strings.Contains(err.Error(), "b-down, c-down") {
		t.Errorf("error %q does not name them", err)
	}
	if c.serial(t) != first {
		t.Error("the refused rotation replaced the cert")
	}
	if got, _ := os.ReadFile(c.r.PrevCertPath()); string(got) != string(prevCert) {
		t.Error("the refused rotation replaced the previous cert")
	}

	res, err := c.r.Rotate(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b-down", "c-down"}, res.Stranded); diff != "" || c.serial(t) == first {
		t.Errorf("forced: serial %s, stranded (-want +got):\n%s", c.serial(t), diff)
	}
	if got := c.log.lines("ACTION=cert-rotation-strand"); len(got) != 1 || !strings.Contains(got[0], "AGENTS=b-down,c-down") {
		t.Errorf("log %q", got)
	}
}

// SavePair and Restore put a ctrl-exec pair back exactly: content and
// modes when it was there, absent when it was not, and a half pair as the
// half it was (setup-ctrl-exec's undo when the new pair cannot be shared).
func TestSavePairRestore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "ctrl-exec.key"), filepath.Join(dir, "ctrl-exec.crt")
	for _, tt := range []struct {
		name            string
		oldKey, oldCert string // "" = absent
	}{{"whole pair", "old key", "old cert"}, {"no pair", "", ""}, {"cert alone", "", "old cert"}} {
		for p, content := range map[string]string{key: tt.oldKey, cert: tt.oldCert} {
			os.Remove(p)
			if content != "" {
				if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
		if tt.oldCert != "" {
			os.Chmod(cert, 0o644)
		}
		saved, err := SavePair(key, cert)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		os.WriteFile(key, []byte("new key"), 0o600)
		os.WriteFile(cert, []byte("new cert"), 0o600)
		if err := saved.Restore(); err != nil {
			t.Fatalf("%s: Restore: %v", tt.name, err)
		}
		for p, want := range map[string]string{key: tt.oldKey, cert: tt.oldCert} {
			got, err := os.ReadFile(p)
			if want == "" {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: %s is %q, %v; want it absent", tt.name, filepath.Base(p), got, err)
				}
				continue
			}
			if string(got) != want {
				t.Errorf("%s: %s is %q, want %q", tt.name, filepath.Base(p), got, want)
			}
		}
		if tt.oldCert != "" {
			if fi, err := os.Stat(cert); err != nil || fi.Mode().Perm() != 0o644 {
				t.Errorf("%s: cert mode %v, %v; want 0644", tt.name, fi.Mode().Perm(), err)
			}
		}
		if tt.oldKey != "" {
			if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o640 {
				t.Errorf("%s: key mode %v, %v; want 0640 (D-30)", tt.name, fi.Mode().Perm(), err)
			}
		}
	}
}
