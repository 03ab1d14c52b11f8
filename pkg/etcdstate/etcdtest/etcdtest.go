// Package etcdtest starts real etcd members (Debian's etcd-server) on
// loopback ports in a test's temporary directory. Without an etcd binary on
// PATH the test is skipped, unless CTRL_EXEC_REQUIRE_ETCD=1 (set by
// `make test-etcd`) makes that a failure.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Cluster is n members started together.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one etcd process.
type Member struct {
	t         testing.TB
	Name      string
	ClientURL string
	peerURL   string
	dir       string
	args      []string
	cmd       *exec.Cmd
	exited    chan struct{}
	logPath   string
}

// Binary returns the etcd executable or skips (fails under CTRL_EXEC_REQUIRE_ETCD=1).
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("etcd")
	if err != nil {
		if os.Getenv("CTRL_EXEC_REQUIRE_ETCD") == "1" {
			t.Fatalf("etcd not on PATH (apt-get install -y etcd-server): %v", err)
		}
		t.Skip("etcd not on PATH: apt-get install -y etcd-server, or run make test-etcd")
	}
	return p
}

// Start runs an n-member cluster and waits until every member is healthy.
// The members are killed at the end of the test.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	bin := Binary(t)
	root := t.TempDir()
	c := &Cluster{t: t}
	var initial []string
	for i := 0; i < n; i++ {
		m := &Member{t: t, Name: fmt.Sprintf("m%d", i), ClientURL: "http://" + freeAddr(t), peerURL: "http://" + freeAddr(t),
			dir: filepath.Join(root, fmt.Sprintf("m%d", i))}
		initial = append(initial, m.Name+"="+m.peerURL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.logPath = m.dir + ".log"
		m.args = []string{bin,
			"--name", m.Name, "--data-dir", m.dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "ctrl-exec-test",
			// Quick elections so a killed member costs little time.
			"--heartbeat-interval", "50", "--election-timeout", "500",
		}
		m.start()
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			m.Kill()
		}
	})
	for _, m := range c.Members {
		m.WaitHealthy()
	}
	return c
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, m.ClientURL)
	}
	return out
}

func (m *Member) start() {
	m.t.Helper()
	log, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), "ETCD_UNSUPPORTED_ARCH=")
	if err := cmd.Start(); err != nil {
		log.Close()
		m.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	log.Close()
	m.cmd = cmd
	m.exited = make(chan struct{})
	go func() { cmd.Wait(); close(m.exited) }()
}

// Kill ends the member with SIGKILL and waits for it.
func (m *Member) Kill() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.exited
	m.cmd = nil
}

// Running reports whether the member has been started and not killed.
func (m *Member) Running() bool { return m.cmd != nil }

// Restart starts a killed member again on the same ports and data.
func (m *Member) Restart() {
	m.t.Helper()
	m.start()
}

// WaitHealthy polls the member's /health until it says true (30 s at most).
func (m *Member) WaitHealthy() {
	m.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			data, _ := os.ReadFile(m.logPath)
			m.t.Fatalf("etcd %s exited:\n%s", m.Name, tail(data))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", m.ClientURL+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var b [64]byte
			n, _ := resp.Body.Read(b[:])
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b[:n]), `"true"`) {
				cancel()
				return
			}
		}
		cancel()
		time.Sleep(20 * time.Millisecond)
	}
	data, _ := os.ReadFile(m.logPath)
	m.t.Fatalf("etcd %s not healthy within 30s:\n%s", m.Name, tail(data))
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// freeAddr is a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Heavy skips a test that waits on etcd's clocks (lease expiry, member
// failure, reconnection) unless CTRL_EXEC_REQUIRE_ETCD=1 (make test-etcd),
// so the default suite stays quick.
func Heavy(t testing.TB) {
	t.Helper()
	if os.Getenv("CTRL_EXEC_REQUIRE_ETCD") != "1" {
		t.Skip("heavy etcd test: run make test-etcd")
	}
}
