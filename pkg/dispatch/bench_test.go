package dispatch

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

var (
	bigPKIOnce sync.Once
	bigPKI     *testPKI
	bigPKIErr  error
)

// rsa4096PKI is a CA, a ctrl-exec identity and one agent identity with
// production-size keys, made once per benchmark run.
func rsa4096PKI(b *testing.B) *testPKI {
	b.Helper()
	bigPKIOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dispatch-pki-4096")
		if err != nil {
			bigPKIErr = err
			return
		}
		ca := pkitest.NewCA(b, filepath.Join(dir, "ca"), pkitest.Key(b, 4096, 0))
		p := &testPKI{Dir: dir, CAFile: ca.Files.Cert, Cert: filepath.Join(dir, "ctrl-exec.crt"), KeyFile: filepath.Join(dir, "ctrl-exec.key")}
		if _, err := ca.IssueCtrlExecCert(p.KeyFile, p.Cert, 4096, 30, time.Now()); err != nil {
			bigPKIErr = err
			return
		}
		p.Agent = issueAgent(b, ca, pkitest.Key(b, 4096, 1), filepath.Join(dir, "agent"))
		bigPKI = p
	})
	if bigPKIErr != nil {
		b.Fatal(bigPKIErr)
	}
	if bigPKI == nil {
		b.Fatal("the 4096-bit test PKI could not be built (see the first failure)")
	}
	return bigPKI
}

// BenchmarkHandshakeRSA4096 is one full mTLS handshake over loopback with
// RSA-4096 keys on both ends and the production configs (tlsx), client and
// server in this process one at a time: the CPU a fan-out pays per host.
func BenchmarkHandshakeRSA4096(b *testing.B) {
	p := rsa4096PKI(b)
	id, err := tlsx.LoadIdentity(p.Agent.Cert, p.Agent.Key, p.Agent.CA)
	if err != nil {
		b.Fatal(err)
	}
	client, err := tlsx.LoadClientConfig(p.Cert, p.KeyFile, p.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error)
	go func() {
		server := tlsx.AgentServerConfig(id)
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			conn := tls.Server(raw, server)
			served <- conn.Handshake()
			conn.Close()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conn := tls.Client(raw, client)
		if err := conn.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-served; err != nil { // the server checks our certificate last
			b.Fatal(err)
		}
		conn.Close()
	}
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N), "ms/handshake")
}

// BenchmarkPingFanOutRSA4096 pings 100 targets (one in-process agent) with
// RSA-4096 keys through the engine: per-host cost including the exchange.
func BenchmarkPingFanOutRSA4096(b *testing.B) {
	p := rsa4096PKI(b)
	a := startAgent(b, p.Agent, reply(200, `{"status":"ok","host":"a","version":"v","expiry":"unknown"}`))
	c := &Client{Cert: p.Cert, Key: p.KeyFile, CA: p.CAFile}
	hosts := make([]string, 100)
	for i := range hosts {
		hosts[i] = a.Host
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := c.Ping(context.Background(), hosts)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if !r.OK() {
				b.Fatal(string(wire.JSON(r)))
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed())/float64(time.Millisecond)/float64(b.N*len(hosts)), "ms/host")
}

// BenchmarkHandshakeResumedVsFull measures, in one run and interleaved so
// that machine noise hits both alike, a full mTLS handshake and a resumed
// one (TLS 1.3 ticket, the agent's resuming config and policy check) with
// RSA-4096 keys. Metrics: full-ms, resumed-ms and resumed/full.
func BenchmarkHandshakeResumedVsFull(b *testing.B) {
	p := rsa4096PKI(b)
	id, err := tlsx.LoadIdentity(p.Agent.Cert, p.Agent.Key, p.Agent.CA)
	if err != nil {
		b.Fatal(err)
	}
	client, err := tlsx.LoadClientConfig(p.Cert, p.KeyFile, p.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	server := tlsx.ResumingAgentServerConfig(id, func(string) bool { return true })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	type outcome struct {
		resumed bool
		err     error
	}
	served := make(chan outcome)
	go func() {
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			conn := tls.Server(raw, server)
			err = conn.Handshake()
			served <- outcome{conn.ConnectionState().DidResume, err}
			conn.Write([]byte{'x'}) // after the ticket, so the client has it
			conn.Close()
		}
	}()
	owner := clientCertOwner(client)
	one := func(sessions *sessioncache.Cache, wantResume bool) time.Duration {
		start := time.Now()
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conf := client.Clone()
		if sessions != nil {
			conf.ClientSessionCache = sessions.For(owner, "agent")
		}
		conn := tls.Client(raw, conf)
		if err := conn.Handshake(); err != nil {
			b.Fatal(err)
		}
		got := <-served
		elapsed := time.Since(start)
		if got.err != nil || got.resumed != wantResume {
			b.Fatalf("server: err %v, resumed %v, want %v", got.err, got.resumed, wantResume)
		}
		conn.Read(make([]byte, 1))
		conn.Close()
		return elapsed
	}
	warm := sessioncache.New(nil)
	one(warm, false)
	var full, resumed time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		full += one(nil, false)
		resumed += one(warm, true)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(full), "full-ms")
	b.ReportMetric(ms(resumed), "resumed-ms")
	b.ReportMetric(float64(resumed)/float64(full), "resumed/full")
}
