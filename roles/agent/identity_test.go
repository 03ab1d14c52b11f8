package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// fifo makes a named pipe: a read of it blocks until the test writes, so a
// reload can be held half-way through loading its files.
func fifo(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// flockWaiter reports whether some process waits for a flock on path
// (a "->" line in /proc/locks naming its inode).
func flockWaiter(t *testing.T, path string) bool {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	locks, err := os.ReadFile("/proc/locks")
	if err != nil {
		t.Skipf("no /proc/locks: %v", err)
	}
	for _, l := range strings.Split(string(locks), "\n") {
		if f := strings.Fields(l); len(f) > 6 && f[1] == "->" && strings.HasSuffix(f[6], fmt.Sprintf(":%d", st.Ino)) {
			return true
		}
	}
	return false
}

// Issue 9 item 9: a SIGHUP reload that read the old cert before a renewal
// stored the new one must not swap the old one back in after the renewal:
// the two are serialised, so the agent serves the newest certificate.
func TestReloadDuringRenewalServesTheNewestCert(t *testing.T) {
	a, certPath := startRenewableAgent(t, setup{})
	keyPath := filepath.Join(filepath.Dir(certPath), "agent.key")
	caFIFO := fifo(t)
	// The reload's CA is the pipe: it reads the (old) cert and key, then
	// waits for the CA.
	a.write("agent.conf", a.baseConf()+"cert = "+certPath+"\nkey = "+keyPath+"\nca = "+caFIFO+"\n", 0o640)
	reloaded := make(chan struct{})
	go func() { defer close(reloaded); a.srv.Reload() }()
	w, err := os.OpenFile(caFIFO, os.O_WRONLY, 0) // returns once the reload opened it
	if err != nil {
		t.Fatal(err)
	}

	newPEM := signFor(t, a.certs.authority, agentKey(t, keyPath), "agent-test", time.Now(), 365)
	type outcome struct {
		status string
		reply  map[string]any
	}
	renewed := make(chan outcome, 1)
	go func() {
		status, reply := deliver(t, a, a.certs.control, newPEM, a.certs.authority.CertPEM, "r-race")
		renewed <- outcome{status, reply}
	}()
	// Let the renewal go as far as it can while the reload is held: to the
	// end (unserialised) or to the cert directory's lock.
	var done *outcome
	deadline := time.Now().Add(20 * time.Second)
	for done == nil && !flockWaiter(t, filepath.Dir(certPath)) {
		select {
		case o := <-renewed:
			done = &o
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the renewal neither finished nor waited for the reload")
		}
	}

	if _, err := w.Write(a.certs.authority.CertPEM); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-reloaded
	if done == nil {
		o := <-renewed
		done = &o
	}
	if done.status != "200 OK" {
		t.Fatalf("renewal: %s %v", done.status, done.reply)
	}
	newCert, _ := pki.ParseCertPEM(newPEM)
	if got := servedSerial(t, a); got != pki.SerialHex(newCert) {
		t.Errorf("after reload and renewal the agent serves serial %s, want the renewed %s", got, pki.SerialHex(newCert))
	}
}

// Issue 9 item 9: when the renewed cert cannot be loaded and the previous
// one cannot be put back either, both failures are reported.
func TestStoreCertReportsAFailedRollback(t *testing.T) {
	c := testCerts(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	for from, to := range map[string]string{c.agentCert: certPath, c.agentKey: keyPath} {
		if err := os.WriteFile(to, []byte(readFile(t, from)), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	id, err := tlsx.LoadIdentity(certPath, keyPath, c.ca)
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	s := &Server{identity: id, stderr: &stderr}
	caFIFO := fifo(t)

	stored := make(chan error, 1)
	newPEM := signFor(t, c.authority, agentKey(t, keyPath), "agent-test", time.Now(), 365)
	go func() { stored <- s.storeCert(certPath, keyPath, caFIFO, newPEM) }()
	w, err := os.OpenFile(caFIFO, os.O_WRONLY, 0) // the new cert is written and being loaded
	if err != nil {
		t.Fatal(err)
	}
	// The directory goes away, so the previous cert cannot be put back; the
	// CA that arrives is not PEM, so the new cert cannot be loaded.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("not a certificate\n"))
	w.Close()
	err = <-stored
	if err == nil || !strings.Contains(err.Error(), "load the new cert") ||
		!strings.Contains(err.Error(), "putting the previous cert back also failed") {
		t.Errorf("storeCert = %v", err)
	}
}
