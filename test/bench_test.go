package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
)

// fleetSizes are the agent counts of BenchmarkFleet.
var fleetSizes = []int{1, 50, 200}

// BenchmarkFleet measures the real CLI against N real agents on loopback,
// all keys RSA-4096 as in production (made once per run; the agents share
// one key, each has its own certificate):
//
//	run/agents=N        wall time of `ctrl-exec run <N hosts> true`
//	run-json/agents=N   the same with --json
//	run-ndjson/agents=N the same with --ndjson (one line per host as it finishes)
//	ping/agents=N       wall time of `ctrl-exec ping <N hosts>`
//
// Metrics: ms/op (wall time of one CLI process), ms/host, floor-ratio (wall
// time over N × one handshake ÷ cores: 1.0 would mean the fan-out costs no
// more than the handshakes' CPU spread over every core), handshake-ms (one
// full mTLS handshake, both ends in one process) and agent-rss-KiB (an idle
// agent's VmRSS just after it started listening) and cli-cpu-ms/op (user +
// system CPU of the ctrl-exec process alone: the control host's share).
func BenchmarkFleet(b *testing.B) {
	p := sharedFleetPKI(b, 4096)
	handshake := handshakeCost(b, p, 20)
	cores := runtime.NumCPU()
	for _, n := range fleetSizes {
		b.Run("agents="+strconv.Itoa(n), func(b *testing.B) {
			agents := make([]*realAgent, n)
			for i := range agents {
				agents[i] = launchRealAgent(b, p, fmt.Sprintf("agent-%03d", i+1))
			}
			hosts := make([]string, n)
			var rssTotal int
			for i, a := range agents {
				if err := a.waitReady(60 * time.Second); err != nil {
					b.Skip(err)
				}
				hosts[i] = a.target()
			}
			for _, a := range agents {
				rss, err := a.rssKiB()
				if err != nil {
					b.Fatal(err)
				}
				rssTotal += rss
			}
			dir := b.TempDir()
			ctrl := &Root{Dir: dir, LogFile: dir + "/log", Hostname: "control"}
			p.installControl(b, dir, "read_timeout = 120")

			floor := time.Duration(n) * handshake / time.Duration(cores)
			for _, mode := range []struct {
				name string
				args []string
			}{
				{"run", append(append([]string{"run"}, hosts...), "true")},
				// run-json against run-ndjson: what streaming costs (issue 10: at most 5 %).
				{"run-json", append(append([]string{"run", "--json"}, hosts...), "true")},
				{"run-ndjson", append(append([]string{"run", "--ndjson"}, hosts...), "true")},
				{"ping", append([]string{"ping"}, hosts...)},
			} {
				b.Run(mode.name, func(b *testing.B) {
					var cliCPU time.Duration
					for i := 0; i < b.N; i++ {
						var out, errOut bytes.Buffer
						cmd := ctrl.Command(context.Background(), "ctrl-exec", mode.args...)
						cmd.Stdout, cmd.Stderr = &out, &errOut
						if err := cmd.Run(); err != nil {
							b.Fatalf("%s: %v\n%s\n%s", mode.name, err, tail(out.String()), errOut.String())
						}
						cliCPU += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
					}
					perOp := b.Elapsed() / time.Duration(b.N)
					b.ReportMetric(float64(cliCPU)/float64(time.Millisecond)/float64(b.N), "cli-cpu-ms/op")
					b.ReportMetric(float64(perOp)/float64(time.Millisecond), "ms/op")
					b.ReportMetric(float64(perOp)/float64(time.Millisecond)/float64(n), "ms/host")
					b.ReportMetric(float64(perOp)/float64(floor), "floor-ratio")
					b.ReportMetric(float64(handshake)/float64(time.Millisecond), "handshake-ms")
					b.ReportMetric(float64(rssTotal)/float64(n), "agent-rss-KiB")
				})
			}
		})
	}
}

// tail is the end of a long output, for failure messages.
func tail(s string) string {
	if len(s) > 2000 {
		return "…" + s[len(s)-2000:]
	}
	return s
}

// handshakeCost is the mean wall time of one full mTLS handshake over
// loopback with the fleet's keys and the production TLS configs, both ends
// in this process and one handshake at a time: the CPU the two ends spend.
func handshakeCost(tb testing.TB, p *fleetPKI, rounds int) time.Duration {
	tb.Helper()
	ids := p.installAgentIdentity(tb, tb.TempDir(), "handshake")
	id, err := tlsx.LoadIdentity(ids.cert, ids.key, ids.ca)
	if err != nil {
		tb.Fatal(err)
	}
	client, err := tlsx.LoadClientConfig(p.ctrlCert, p.ctrlKey, ids.ca)
	if err != nil {
		tb.Fatal(err)
	}
	server := tlsx.AgentServerConfig(id)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error)
	go func() {
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
	one := func() {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		conn := tls.Client(raw, client)
		if err := conn.Handshake(); err != nil {
			tb.Fatal(err)
		}
		if err := <-served; err != nil { // the server verifies our certificate last
			tb.Fatal(err)
		}
		conn.Close()
	}
	one() // warm up
	start := time.Now()
	for i := 0; i < rounds; i++ {
		one()
	}
	return time.Since(start) / time.Duration(rounds)
}
