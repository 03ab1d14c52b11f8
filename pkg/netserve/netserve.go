// Package netserve is the accept loop the agent and the API share: one
// handler call per connection, transient accept failures (out of
// descriptors, an aborted connection) retried with backoff, and a stop that
// closes the listener when the context ends.
package netserve

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"
)

// AcceptLoop accepts connections on ln and passes each to handle on the
// loop's goroutine: handle starts the connection's own goroutine, and may
// block first to hold further accepts back (new connections then wait in
// the kernel's listen queue). When ctx ends, ln is closed and AcceptLoop
// returns nil; when ln fails for good, ln is closed and the error returned.
// Either way ln is closed by the time AcceptLoop returns.
func AcceptLoop(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	backoff := time.Duration(0)
	for {
		conn, err := ln.Accept()
		if err == nil {
			backoff = 0
			handle(conn)
			continue
		}
		if ctx.Err() != nil {
			ln.Close() // again, if the AfterFunc has: done by the time we return
			return nil
		}
		if !transient(err) {
			ln.Close()
			return err
		}
		backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
	}
}

// transient reports an accept failure that a later accept may not repeat:
// a shortage of descriptors or memory, an aborted connection, a timeout.
func transient(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.EINTR, syscall.EPROTO, syscall.EPERM} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
