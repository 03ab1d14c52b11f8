package wire

import (
	"bufio"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// refuser is a loopback server that refuses every request over the agent's
// limits with its 413, then lingers, and reports on lingered that it has.
// Without the Linger call a client still sending sees a reset.
func refuser(t *testing.T, maxBytes int64, maxWait time.Duration, lingered chan<- struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				_, err := ReadRequest(bufio.NewReader(conn), AgentLimits())
				var re *RequestError
				if !errors.As(err, &re) {
					return
				}
				WriteResponse(conn, re.Status, JSON(map[string]string{"error": re.Msg}), AgentPhrase)
				Linger(conn, maxBytes, maxWait)
				if lingered != nil {
					lingered <- struct{}{}
				}
			})
		}
	})
	return ln.Addr().String()
}

// sendBig writes a request with a 2 MiB body and reads the answer.
func sendBig(addr string) (string, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := WriteClientRequest(conn, "POST", "/run", "h", []byte(strings.Repeat("x", 2<<20))); err != nil {
		return "", err
	}
	_, status, _, err := ReadClientResponse(bufio.NewReader(conn))
	return status, err
}

// A client still sending a body the server refused reads the refusal,
// every time, when the server lingers.
func TestLingerLetsTheClientReadTheRefusal(t *testing.T) {
	addr := refuser(t, LingerBytes, LingerWait, nil)
	for i := range 20 {
		status, err := sendBig(addr)
		if err != nil || status != "413 Content Too Large" {
			t.Fatalf("request %d: %q, %v", i+1, status, err)
		}
	}
}

// Linger is bounded: a client that keeps sending past maxBytes, or sends
// nothing and stays, does not keep it.
func TestLingerIsBounded(t *testing.T) {
	for _, tt := range []struct {
		name     string
		maxBytes int64
		maxWait  time.Duration
		send     bool
	}{
		{"byte limit", 64 << 10, time.Hour, true},
		{"time limit", LingerBytes, 100 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lingered := make(chan struct{}, 1)
			addr := refuser(t, tt.maxBytes, tt.maxWait, lingered)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write([]byte("POST /run HTTP/1.0\r\nContent-Length: 99999999\r\n\r\n"))
			stop := make(chan struct{})
			defer close(stop)
			if tt.send {
				go func() {
					chunk := make([]byte, 32<<10)
					for {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := conn.Write(chunk); err != nil {
							return
						}
					}
				}()
			}
			select {
			case <-lingered:
			case <-time.After(20 * time.Second):
				t.Fatal("Linger did not return")
			}
		})
	}
}
