package wire

import (
	"io"
	"net"
	"time"
)

// Linger bounds for a server that refuses a request it has not read whole.
const (
	LingerBytes = 4 << 20         // more than the largest body a client may be refused for
	LingerWait  = 2 * time.Second // a client that keeps sending after that gets a reset
)

// Linger is what a server does after answering a request it refused without
// reading it all (413, 431, 400): it ends its side of the connection and
// discards what the client is still sending, up to maxBytes or maxWait,
// whichever comes first. Closing with unread input would make the kernel
// reset the connection, and a client still sending its body would then see
// "connection reset" instead of the answer.
//
// conn is the connection the answer went out on. Each layer that can is
// half-closed (a *tls.Conn sends close_notify, a TCP connection a FIN) and
// the bytes of the innermost one are discarded unread, by way of NetConn
// methods. The caller still closes conn.
func Linger(conn net.Conn, maxBytes int64, maxWait time.Duration) {
	type closeWriter interface{ CloseWrite() error }
	type wrapper interface{ NetConn() net.Conn }
	raw := conn
	for {
		if cw, ok := raw.(closeWriter); ok {
			_ = cw.CloseWrite()
		}
		w, ok := raw.(wrapper)
		if !ok {
			break
		}
		raw = w.NetConn()
	}
	_ = raw.SetReadDeadline(time.Now().Add(maxWait))
	_, _ = io.Copy(io.Discard, io.LimitReader(raw, maxBytes))
}
