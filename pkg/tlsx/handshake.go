package tlsx

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync/atomic"
)

// ErrPortCheck is ServerHandshake's error for a peer that connected and
// closed without sending a byte: a port check, not a failed handshake, so
// servers neither log it as tls-failure nor count it as a probe.
var ErrPortCheck = errors.New("peer closed the connection without sending anything")

// ServerHandshake runs the server side of the TLS handshake on raw, bounded
// by ctx and raw's deadlines. Any failure but ErrPortCheck is what the
// servers log as tls-failure with the error as REASON.
func ServerHandshake(ctx context.Context, raw net.Conn, conf *tls.Config) (*tls.Conn, error) {
	counted := &countingConn{Conn: raw}
	conn := tls.Server(counted, conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		if counted.n.Load() == 0 && errors.Is(err, io.EOF) {
			return nil, ErrPortCheck
		}
		return nil, err
	}
	return conn, nil
}

// countingConn counts the bytes the peer sent.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// NetConn returns the connection underneath, as tls.Conn.NetConn does, so
// that wire.Linger can half-close it.
func (c *countingConn) NetConn() net.Conn { return c.Conn }
