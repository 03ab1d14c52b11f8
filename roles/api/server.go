package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/netserve"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/runstore"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Connection and shutdown bounds. Operations themselves are bounded by the
// dispatch engine (read_timeout per host) and the auth hook timeout.
const (
	requestTimeout = 30 * time.Second // TLS handshake plus the whole request
	writeTimeout   = 30 * time.Second // the whole response
	drainTimeout   = 30 * time.Second // in-flight requests at shutdown
	slotWait       = 5 * time.Second  // waiting for an api_max_inflight slot before 503
	connsPerSlot   = 4                // connections served at once per api_max_inflight slot
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
	commit  string // /health only, with the Go version
	goVer   string
}

// Server answers API requests, one per connection, each on its own
// goroutine so that a slow or silent client never holds up another. Three
// bounds, all from api_max_inflight (n): n agent-contacting operations (the
// rest wait briefly, then get 503), n auth hook runs (the rest wait), and
// connsPerSlot×n connections (the rest wait in the kernel's listen queue).
type Server struct {
	serverDeps
	store     runStore
	slots     chan struct{} // api_max_inflight tokens for agent-contacting operations
	hookSlots chan struct{} // auth hook runs at once
	connSlots chan struct{} // connections being served at once
	conns     sync.WaitGroup

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
		store:      runStore{Store: runstore.Store{Dir: d.paths.RunsDir(), Now: d.now}, log: d.log},
		slots:      make(chan struct{}, n),
		hookSlots:  make(chan struct{}, n),
		connSlots:  make(chan struct{}, connsPerSlot*n),
		reading:    map[net.Conn]struct{}{},
	}
}

// Serve accepts connections on ln until ctx ends, then closes ln, lets the
// requests in progress finish for up to drainTimeout, cancels the rest and
// returns. The error is nil after a stop by ctx. While every connection slot
// is taken, Serve accepts nothing: new clients wait in the listen queue
// rather than being refused (refusing over TLS would cost a handshake).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests outlive ctx: they are cancelled only when draining times out.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()

	err := netserve.AcceptLoop(ctx, ln, func(conn net.Conn) {
		select {
		case s.connSlots <- struct{}{}:
		case <-ctx.Done():
			conn.Close()
			return
		}
		s.conns.Go(func() {
			defer func() { <-s.connSlots }()
			s.handleConn(reqCtx, conn)
		})
	})
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

// isStopping reports a shutdown in progress: failures it causes are not logged.
func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
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

// handleConn serves the one request of a connection.
func (s *Server) handleConn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	peer := wire.NormalizeIP(raw.RemoteAddr().String())
	raw.SetReadDeadline(time.Now().Add(requestTimeout))
	if !s.startReading(raw) {
		return
	}
	req, err := s.readRequest(ctx, raw, peer)
	s.doneReading(raw)
	if err != nil {
		return
	}
	if r := s.handle(ctx, req.Request, peer); r.stream != nil {
		writeStream(req.conn, r)
	} else {
		s.respond(req.conn, r)
	}
}

// readRequest performs the TLS handshake, if any, and reads the request.
// Framing errors are answered here (and err is then non-nil too).
func (s *Server) readRequest(ctx context.Context, raw net.Conn, peer string) (*connRequest, error) {
	var conn net.Conn = raw
	if s.tls != nil {
		hctx, cancel := context.WithTimeout(ctx, requestTimeout)
		tc, err := tlsx.ServerHandshake(hctx, raw, s.tls)
		cancel()
		if err != nil { // no HTTP answer, as upstream
			if !errors.Is(err, tlsx.ErrPortCheck) && !s.isStopping() {
				s.log.Warn().Str("PEER", peer).Str("REASON", err.Error()).Msg("tls-failure")
			}
			return nil, err
		}
		conn = tc
	}

	req, err := wire.ReadRequest(bufio.NewReader(conn), wire.APILimits())
	if err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) {
			s.log.Warn().Str("PEER", peer).Int("STATUS", re.Status).Str("REASON", re.Msg).Msg("api-reject")
			s.respond(conn, errorResponse(re.Status, "bad request", re.Msg))
			wire.Linger(conn, wire.LingerBytes, wire.LingerWait)
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

// phrase is the API's reason-phrase table plus 503, which this server
// answers when every api_max_inflight slot is taken (a Go addition).
func phrase(code int) string {
	if code == 503 {
		return "Service Unavailable"
	}
	return wire.APIPhrase(code)
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
