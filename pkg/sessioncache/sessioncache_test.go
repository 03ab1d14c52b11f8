package sessioncache_test

import (
	"bufio"
	"crypto/tls"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
)

// tickets is a TLS 1.3 server on loopback issuing session tickets, and a
// client identity for it.
type tickets struct {
	addr   string
	client tls.Certificate
	mu     sync.Mutex
	resume []bool
}

var (
	fixOnce sync.Once
	fixCA   *pkitest.CA
	fixSrv  tls.Certificate
	fixCli  tls.Certificate
)

func startServer(t *testing.T) *tickets {
	t.Helper()
	fixOnce.Do(func() {
		fixCA = pkitest.NewCA(t, t.TempDir(), pkitest.Key(t, 2048, 0))
		fixSrv = fixCA.Pair(t, pkitest.Key(t, 2048, 1), "agent", 30)
		fixCli = fixCA.Pair(t, pkitest.Key(t, 2048, 2), "ctrl-exec", 30)
	})
	s := &tickets{client: fixCli}
	cfg := &tls.Config{Certificates: []tls.Certificate{fixSrv}, ClientAuth: tls.RequireAnyClientCert}
	s.addr = pkitest.Listen(t, cfg, func(c *tls.Conn) {
		if c.Handshake() != nil {
			return
		}
		s.mu.Lock()
		s.resume = append(s.resume, c.ConnectionState().DidResume)
		s.mu.Unlock()
		c.Write([]byte("ok\n"))
		bufio.NewReader(c).ReadString('\n')
	}).String()
	return s
}

// contact makes one connection through cache with owner "me".
func (s *tickets) contact(t *testing.T, cache *sessioncache.Cache) {
	t.Helper()
	slot := cache.For("me", s.addr)
	conn, err := tls.Dial("tcp", s.addr, &tls.Config{
		Certificates: []tls.Certificate{s.client}, InsecureSkipVerify: true, ClientSessionCache: slot,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().DidResume {
		slot.Resumed()
	}
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil { // the ticket arrives here
		t.Fatal(err)
	}
	conn.Write([]byte("bye\n"))
}

func (s *tickets) resumed() []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]bool(nil), s.resume...)
}

func TestSaveLoadResumesInTheNextProcess(t *testing.T) {
	srv := startServer(t)
	path := filepath.Join(t.TempDir(), "tls-sessions.0")

	first, warn := sessioncache.Load(path, nil)
	if warn != "" {
		t.Fatalf("missing file warned: %s", warn)
	}
	srv.contact(t, first)
	if err := first.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("cache file: %v, mode %v; want 0600", err, fi.Mode())
	}

	second, warn := sessioncache.Load(path, nil)
	if warn != "" || second.Len() != 1 {
		t.Fatalf("reload: warning %q, %d entries", warn, second.Len())
	}
	srv.contact(t, second)
	if diff := cmp.Diff([]bool{false, true}, srv.resumed()); diff != "" {
		t.Errorf("DidResume (-want +got):\n%s", diff)
	}

	// A session under another owner (a rotated certificate) is not offered.
	if _, ok := second.For("someone-else", srv.addr).Get(""); ok {
		t.Error("session offered for another client certificate")
	}
}

func TestUntrustworthyFilesAreIgnoredWithAWarning(t *testing.T) {
	srv := startServer(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	c, _ := sessioncache.Load(good, nil)
	srv.contact(t, c)
	if err := c.Save(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), data...)
	flipped[len(flipped)/2] ^= 1

	tests := []struct {
		name  string
		make  func(path string)
		warns string
	}{
		{"wrong mode", func(p string) { os.WriteFile(p, data, 0o644); os.Chmod(p, 0o644) }, "mode 0644, want 0600"},
		{"corrupt", func(p string) { os.WriteFile(p, flipped, 0o600) }, "corrupt"},
		{"truncated", func(p string) { os.WriteFile(p, data[:len(data)-40], 0o600) }, "corrupt"},
		{"not a cache", func(p string) { os.WriteFile(p, []byte("hello\n"), 0o600) }, "not a ctrl-exec TLS session cache"},
		{"symlink", func(p string) { os.Symlink(good, p) }, "symbolic link"},
		{"directory", func(p string) { os.Mkdir(p, 0o700) }, "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tls-sessions.0")
			tt.make(path)
			c, warn := sessioncache.Load(path, nil)
			if !strings.Contains(warn, tt.warns) || !strings.Contains(warn, path) {
				t.Errorf("warning %q, want it to name %s and say %q", warn, path, tt.warns)
			}
			if c.Len() != 0 {
				t.Errorf("%d entries loaded from an ignored file", c.Len())
			}
		})
	}
}

func TestCorruptFileMeansAFullHandshakeAndIsReplaced(t *testing.T) {
	srv := startServer(t)
	path := filepath.Join(t.TempDir(), "tls-sessions.0")
	c, _ := sessioncache.Load(path, nil)
	srv.contact(t, c)
	c.Save(path)
	data, _ := os.ReadFile(path)
	data[len(data)-1] ^= 1
	os.WriteFile(path, data, 0o600)

	c, warn := sessioncache.Load(path, nil)
	if warn == "" {
		t.Fatal("no warning for a corrupt file")
	}
	srv.contact(t, c)
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	c, warn = sessioncache.Load(path, nil)
	srv.contact(t, c)
	if warn != "" {
		t.Errorf("rewritten file warns: %s", warn)
	}
	if diff := cmp.Diff([]bool{false, false, true}, srv.resumed()); diff != "" {
		t.Errorf("DidResume (-want +got):\n%s", diff)
	}
}

func TestEntriesExpireAndAreBounded(t *testing.T) {
	srv := startServer(t)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	c := sessioncache.New(clock)
	if c.For("me", srv.addr).Holds() {
		t.Error("an empty cache holds a session")
	}
	srv.contact(t, c)
	if !c.For("me", srv.addr).Holds() || c.For("someone else", srv.addr).Holds() {
		t.Error("Holds does not say which slot has the session")
	}
	now = now.Add(sessioncache.MaxAge + time.Second)
	if c.For("me", srv.addr).Holds() {
		t.Error("Holds counts an entry older than MaxAge")
	}
	if _, ok := c.For("me", srv.addr).Get(""); ok {
		t.Error("an entry older than MaxAge was offered")
	}

	// MaxEntries: the oldest go first.
	path := filepath.Join(t.TempDir(), "cache")
	c = sessioncache.New(clock)
	srv.contact(t, c) // a real session to copy under many addresses
	cs, _ := c.For("me", srv.addr).Get("")
	for i := range sessioncache.MaxEntries + 5 {
		now = now.Add(time.Second)
		c.For("me", "host-"+strconv.Itoa(i)+":7443").Put("", cs)
	}
	if c.Len() != sessioncache.MaxEntries {
		t.Errorf("%d entries, want %d", c.Len(), sessioncache.MaxEntries)
	}
	if _, ok := c.For("me", "host-0:7443").Get(""); ok {
		t.Error("the oldest entry survived the bound")
	}
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(path); fi.Size() > sessioncache.MaxFileSize {
		t.Errorf("file of %d bytes exceeds MaxFileSize", fi.Size())
	}
}

func TestSaveMergesAndKeepsDrops(t *testing.T) {
	srv := startServer(t)
	path := filepath.Join(t.TempDir(), "cache")
	a, _ := sessioncache.Load(path, nil)
	b, _ := sessioncache.Load(path, nil)
	srv.contact(t, a)
	cs, _ := a.For("me", srv.addr).Get("")
	b.For("me", "other:7443").Put("", cs)
	if err := a.Save(path); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(path); err != nil {
		t.Fatal(err)
	}
	merged, _ := sessioncache.Load(path, nil)
	if merged.Len() != 2 {
		t.Fatalf("%d entries after two processes saved, want 2", merged.Len())
	}
	merged.Drop(srv.addr)
	if err := merged.Save(path); err != nil {
		t.Fatal(err)
	}
	after, _ := sessioncache.Load(path, nil)
	if _, ok := after.For("me", srv.addr).Get(""); ok || after.Len() != 1 {
		t.Errorf("dropped session came back (%d entries)", after.Len())
	}

	if err := sessioncache.Remove(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveDeletesEveryUsersFile(t *testing.T) {
	dir := t.TempDir()
	for _, uid := range []int{0, 1000} {
		os.WriteFile(sessioncache.FileName(dir, uid), []byte("x"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "rotation.json"), []byte("{}"), 0o600)
	if err := sessioncache.Remove(dir); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if diff := cmp.Diff([]string{filepath.Join(dir, "rotation.json")}, names); diff != "" {
		t.Errorf("left (-want +got):\n%s", diff)
	}
}
