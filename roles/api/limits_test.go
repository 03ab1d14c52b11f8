package api

import (
	"bufio"
	"fmt"
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

// unread is how many connections the server is reading a request from.
func (s *Server) unread() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.reading)
}

// Many slow clients hold at most connsPerSlot×api_max_inflight connections;
// the others, and a well-behaved client behind them, wait to be accepted
// and are served once the slow ones go.
func TestAPIConnectionCapHoldsOffSlowClients(t *testing.T) {
	srv, url, _ := startServer(t, &fakeFleet{}, &config.Control{APIMaxInflight: 2})
	addr := strings.TrimPrefix(url, "http://")
	const capacity = connsPerSlot * 2

	var slow []net.Conn
	for range 30 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write([]byte("GET /health HTTP/1.0\r\n")); err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.unread() < capacity && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for any connection beyond the cap to be taken on
	if n := srv.unread(); n != capacity {
		t.Fatalf("%d connections taken on at once, want %d", n, capacity)
	}

	fast, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	fast.Write([]byte("GET /health HTTP/1.0\r\n\r\n"))
	fast.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := fast.Read(make([]byte, 1)); n != 0 || !isTimeout(err) {
		t.Fatalf("served while every connection slot was taken: n=%d err=%v", n, err)
	}

	for _, c := range slow {
		c.Close()
	}
	fast.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(fast), nil)
	if err != nil {
		t.Fatalf("after the slow clients left: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
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
