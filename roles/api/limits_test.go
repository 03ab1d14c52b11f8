package api

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
)

// Many slow clients cannot starve the API: with every connection slot held
// by a client still sending its headers, a new client sheds the one that has
// been reading longest and is served. Head and body deadlines are an hour
// here, so only shedding can explain the answer.
func TestAPISlowClientsAreShed(t *testing.T) {
	const maxConns, slow = 4, 30
	srv, url, _ := startServerLimits(t, &fakeFleet{}, &config.Control{}, connLimits{
		HeadTimeout: time.Hour, BodyTimeout: time.Hour, MaxConns: maxConns, ShedAfter: -1,
	})
	addr := strings.TrimPrefix(url, "http://")

	var dribblers []net.Conn
	for range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /health HTTP/1.0\r\nX-Slow: ")); err != nil {
			t.Fatal(err)
		}
		dribblers = append(dribblers, c)
	}

	fast, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	fast.Write([]byte("GET /health HTTP/1.0\r\n\r\n"))
	fast.SetReadDeadline(time.Now().Add(20 * time.Second)) // failure detection only
	resp, err := http.ReadResponse(bufio.NewReader(fast), nil)
	if err != nil {
		t.Fatalf("a normal request behind %d slow clients: %v", slow, err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}

	// Every slow client but the maxConns-1 still holding a slot was cut
	// without an answer.
	cut := 0
	for _, c := range dribblers {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := c.Read(make([]byte, 1))
		if n == 0 && !isTimeout(err) {
			cut++
		}
	}
	if cut < slow-(maxConns-1) {
		t.Errorf("%d of %d slow clients cut, want at least %d", cut, slow, slow-(maxConns-1))
	}
	if n := srv.pool.Reading(); n > maxConns {
		t.Errorf("%d connections reading at once, cap %d", n, maxConns)
	}
}

// A client that keeps sending header bytes is cut when HeadTimeout has
// passed, however steadily it sends; a client whose headers are in gets
// BodyTimeout for its body instead.
func TestAPIHeadAndBodyDeadlines(t *testing.T) {
	closedWithoutAnswer := func(t *testing.T, c net.Conn) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(20 * time.Second)) // failure detection only
		got, err := io.ReadAll(c)
		if isTimeout(err) || len(got) != 0 {
			t.Errorf("connection not cut: read %q, %v", got, err)
		}
	}

	t.Run("head", func(t *testing.T) {
		_, url, _ := startServerLimits(t, &fakeFleet{}, &config.Control{}, connLimits{HeadTimeout: 300 * time.Millisecond, BodyTimeout: time.Hour})
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /health HTTP/1.0\r\nX-Slow: "))
		stop := make(chan struct{})
		defer close(stop)
		go func() { // a byte every 20 ms, for ever
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					if _, err := c.Write([]byte("x")); err != nil {
						return
					}
				}
			}
		}()
		closedWithoutAnswer(t, c)
	})

	t.Run("body", func(t *testing.T) {
		_, url, _ := startServerLimits(t, &fakeFleet{}, &config.Control{}, connLimits{HeadTimeout: time.Hour, BodyTimeout: 300 * time.Millisecond})
		c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("POST /ping HTTP/1.0\r\nContent-Length: 10\r\n\r\n{"))
		closedWithoutAnswer(t, c)
	})
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Concurrent requests run at most api_max_inflight auth hooks at once, and
// every request still gets its answer.
func TestAPIHookRunsAreBounded(t *testing.T) {
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	hook := filepath.Join(dir, "hook")
	script := fmt.Sprintf("#!/bin/sh\necho start >> %s\nsleep 0.2\necho end >> %s\n", trace, trace)
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	const inflight, clients = 2, 12
	_, url, _ := startServer(t, &fakeFleet{}, &config.Control{APIMaxInflight: inflight, AuthHook: hook})

	var wg sync.WaitGroup
	codes := make(chan int, clients)
	for range clients {
		wg.Go(func() {
			resp, err := http.Get(url + "/health")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Errorf("status %d", code)
		}
	}

	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	running, most, starts := 0, 0, 0
	for _, line := range strings.Fields(string(data)) {
		if line == "start" {
			running++
			starts++
		} else {
			running--
		}
		most = max(most, running)
	}
	if starts != clients || most > inflight {
		t.Errorf("%d hook runs, at most %d at once; want %d runs, at most %d at once", starts, most, clients, inflight)
	}
}
