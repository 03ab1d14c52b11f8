package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Requests per second through the real ctrl-exec-api process over loopback:
// GET /health (server and auth overhead only) and POST /run of `true` on one
// real agent (auth, locks, mTLS dispatch, the script, the run store), each
// with 1 and 32 clients in parallel. Run with `make bench`.

func BenchmarkAPIHealth(b *testing.B) {
	c := newAPIControl(b, apiOptions{allow: true}).start()
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			apiBenchRequests(b, clients, func(client *http.Client, _ int) (*http.Response, error) {
				return client.Get(c.url("/health"))
			})
		})
	}
}

func BenchmarkAPIRun(b *testing.B) {
	c := newAPIControl(b, apiOptions{allow: true}).start()
	// One allowlisted name per client: runs of one host:script pair are
	// serialised by the run locks, and a second one is refused (409).
	scripts := make([]string, 32)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("true-%d", i)
	}
	a := c.startAgent("agent-a", scripts...)
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			apiBenchRequests(b, clients, func(client *http.Client, worker int) (*http.Response, error) {
				body := `{"hosts":["` + a.target() + `"],"script":"` + scripts[worker] + `"}`
				return client.Post(c.url("/run"), "application/json", strings.NewReader(body))
			})
		})
	}
}

// BenchmarkAPIRunRSA4096 is POST /run with RSA-4096 keys, 8 clients in
// parallel against one agent, each client its own script: with the API's
// session cache (resumed handshakes) and with session_cache = off.
func BenchmarkAPIRunRSA4096(b *testing.B) {
	const clients = 8
	scripts := make([]string, clients)
	for i := range scripts {
		scripts[i] = fmt.Sprintf("true-%d", i)
	}
	for _, cache := range []string{"on", "off"} {
		c := newAPIControl(b, apiOptions{allow: true, bits: 4096, extraConf: []string{"session_cache = " + cache}}).start()
		a := c.startAgent("agent-a", scripts...)
		b.Run("session_cache="+cache+"/clients=8", func(b *testing.B) {
			apiBenchRequests(b, clients, func(client *http.Client, worker int) (*http.Response, error) {
				body := `{"hosts":["` + a.target() + `"],"script":"` + scripts[worker] + `"}`
				return client.Post(c.url("/run"), "application/json", strings.NewReader(body))
			})
		})
	}
}

// benchRequests shares b.N requests among clients workers and reports req/s.
// Every answer must be 200.
func apiBenchRequests(b *testing.B, clients int, send func(client *http.Client, worker int) (*http.Response, error)) {
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true, MaxConnsPerHost: clients}}
	next := make(chan struct{}, b.N)
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	var wg sync.WaitGroup
	var failed sync.Once
	b.ResetTimer()
	start := time.Now()
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				resp, err := send(client, w)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Do(func() { b.Error(err) })
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}
