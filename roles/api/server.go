package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Connection and shutdown bounds. Operations themselves are bounded by the
// dispatch engine (read_timeout per host) and the auth hook timeout.
const (
	requestTimeout = 30 * time.Second // TLS handshake plus the whole request
	writeTimeout   = 30 * time.Second // the whole response
	lingerTimeout  = 2 * time.Second  // draining unread input after a refused request
	drainTimeout   = 30 * time.Second // in-flight requests at shutdown
	slotWait       = 5 * time.Second  // waiting for an api_max_inflight slot before 503
)

// serverDeps is everything a Server needs; tests build one directly.
type serverDeps struct {
	conf    *config.Control
	paths   paths.Paths
	log     zerolog.Logger
	now     func() time.Time
	fleet   fleet
	tls     *tls.Config // nil: plain HTTP
	version string
}

// Server answers API requests, one per connection, each on its own
// goroutine so that a slow or silent client never holds up another.
type Server struct {
	serverDeps
	store runStore
	slots chan struct{} // api_max_inflight tokens for agent-contacting operations
	conns sync.WaitGroup

	mu       sync.Mutex
	reading  map[net.Conn]struct{} // connections whose request is not read yet
	stopping bool
}

func newServer(d serverDeps) *Server {
	n := d.conf.APIMaxInflight
	if n <= 0 {
		n = config.DefaultAPIMaxInflight
	}
	return &Server{
		serverDeps: d,
		store:      runStore{dir: d.paths.RunsDir(), now: d.now, log: d.log},
		slots:      make(chan struct{}, n),
		reading:    map[net.Conn]struct{}{},
	}
}

// Serve accepts connections on ln until ctx ends, then closes ln, lets the
// requests in progress finish for up to drainTimeout, cancels the rest and
// returns. The error is nil after a stop by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests outlive ctx: they are cancelled only when draining times out.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()

	acceptCtx, stopAccepting := context.WithCancel(ctx)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		<-acceptCtx.Done()
		ln.Close()
	}()
	err := s.acceptLoop(reqCtx, ln)
	if ctx.Err() != nil {
		err = nil // stopped on purpose
	}
	stopAccepting()
	<-closed
	s.dropUnread()

	idle := make(chan struct{})
	go func() { s.conns.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(drainTimeout):
		cancelRequests()
		<-idle
	}
	return err
}

// startReading registers a connection whose request is being read; false
// when the server is stopping and the connection should just be closed.
func (s *Server) startReading(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.reading[c] = struct{}{}
	return true
}

func (s *Server) doneReading(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.reading, c)
}

// dropUnread ends, at shutdown, the connections that have not delivered a
// request yet (idle or slow clients), so they do not hold the stop up for
// their read deadline. Requests already read are left to finish.
func (s *Server) dropUnread() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = true
	for c := range s.reading {
		c.SetReadDeadline(time.Now())
	}
}

// acceptLoop hands each connection to its own goroutine. Temporary accept
// failures (out of file descriptors) back off and retry; a closed listener
// ends the loop.
func (s *Server) acceptLoop(ctx context.Context, ln net.Listener) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		s.conns.Add(1)
		go func() {
			defer s.conns.Done()
			s.handleConn(ctx, conn)
		}()
	}
}

// isTemporary reports accept errors worth retrying (EMFILE, ENFILE,
// ECONNABORTED and the like), which net reports as Temporary.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// handleConn serves the one request of a connection.
func (s *Server) handleConn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	peer := peerIP(raw.RemoteAddr())
	raw.SetReadDeadline(time.Now().Add(requestTimeout))
	if !s.startReading(raw) {
		return
	}
	req, err := s.readRequest(ctx, raw, peer)
	s.doneReading(raw)
	if err != nil {
		return
	}
	s.respond(req.conn, s.handle(ctx, req.Request, peer))
}

// readRequest performs the TLS handshake, if any, and reads the request.
// Framing errors are answered here (and err is then non-nil too).
func (s *Server) readRequest(ctx context.Context, raw net.Conn, peer string) (*connRequest, error) {
	var conn net.Conn = raw
	if s.tls != nil {
		tc := tls.Server(raw, s.tls)
		hctx, cancel := context.WithTimeout(ctx, requestTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return nil, err // a failed handshake gets no HTTP answer, as upstream
		}
		conn = tc
	}

	req, err := wire.ReadRequest(bufio.NewReader(conn), wire.APILimits())
	if err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) {
			s.log.Warn().Str("PEER", peer).Int("STATUS", re.Status).Str("REASON", re.Msg).Msg("api-reject")
			s.respond(conn, errorResponse(re.Status, "bad request", re.Msg))
			linger(conn, raw)
		}
		return nil, err // otherwise the connection failed or timed out: nobody to answer
	}
	return &connRequest{Request: req, conn: conn}, nil
}

// connRequest is a request and the connection (TLS or not) to answer on.
type connRequest struct {
	*wire.Request
	conn net.Conn
}

// respond writes the response within writeTimeout.
func (s *Server) respond(conn net.Conn, r response) {
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	wire.WriteResponse(conn, r.status, r.body, phrase)
}

// linger half-closes the connection and discards what the client is still
// sending (the body of a refused request), briefly, so that closing with
// unread input does not reset the connection before the client has read
// the answer.
func linger(conn, raw net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := conn.(closeWriter); ok {
		cw.CloseWrite()
	}
	raw.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.Copy(io.Discard, io.LimitReader(raw, 4<<20))
}

// phrase is the API's reason-phrase table plus 503, which this server
// answers when every api_max_inflight slot is taken (a Go addition).
func phrase(code int) string {
	if code == 503 {
		return "Service Unavailable"
	}
	return wire.APIPhrase(code)
}

// peerIP is the client's address without the port.
func peerIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return "unknown"
}

// acquireSlot takes an api_max_inflight slot, waiting up to slotWait. The
// returned release must be called once the operation is over; ok is false
// when no slot came free in time.
func (s *Server) acquireSlot(ctx context.Context) (release func(), ok bool) {
	t := time.NewTimer(slotWait)
	defer t.Stop()
	select {
	case s.slots <- struct{}{}:
		return func() { <-s.slots }, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}
