package netserve

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// failing is a real listener whose next Accept calls fail with errs first.
type failing struct {
	net.Listener
	mu   sync.Mutex
	errs []error
}

func (f *failing) Accept() (net.Conn, error) {
	f.mu.Lock()
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

func listen(t *testing.T, errs ...error) *failing {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &failing{Listener: ln, errs: errs}
}

func TestAcceptLoop(t *testing.T) {
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	fatal := errors.New("listener broken")
	tests := []struct {
		name    string
		errs    []error
		wantErr error // nil: serves, then stops with ctx
	}{
		{"serves until stopped", nil, nil},
		{"out of descriptors is retried", []error{emfile, emfile, emfile}, nil},
		{"other failures end the loop", []error{fatal}, fatal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t, tt.errs...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			got := make(chan net.Conn, 1)
			done := make(chan error, 1)
			go func() { done <- AcceptLoop(ctx, ln, func(c net.Conn) { got <- c }) }()

			if tt.wantErr != nil {
				if err := <-done; !errors.Is(err, tt.wantErr) {
					t.Fatalf("AcceptLoop = %v, want %v", err, tt.wantErr)
				}
			} else {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				select {
				case s := <-got:
					s.Close()
				case <-time.After(10 * time.Second):
					t.Fatal("connection not handed over")
				}
				cancel()
				if err := <-done; err != nil {
					t.Fatalf("AcceptLoop after stop = %v", err)
				}
			}
			// Asked directly: a dial could reach another process that has
			// taken the port since.
			tl := ln.Listener.(*net.TCPListener)
			tl.SetDeadline(time.Now()) // an open listener fails at once with a timeout
			if _, err := tl.Accept(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("listener still open after AcceptLoop returned (Accept: %v)", err)
			}
		})
	}
}
