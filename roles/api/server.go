package api

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/netserve"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Connection and shutdown bounds. Operations themselves are bounded by the
// dispatch engine (read_timeout per host) and the auth hook timeout.
const (
	writeTimeout = 30 * time.Second // the whole response
	drainTimeout = 30 * time.Second // in-flight requests at shutdown
	slotWait     = 5 * time.Second  // waiting for an api_max_inflight slot before 503 (serverDeps.slotWait: 0)
	connsPerSlot = 4                // connections served at once per api_max_inflight slot
)

// connLimits bound each connection before its request is handled.
type connLimits struct {
	// HeadTimeout bounds the TLS handshake and the request line and headers,
	// from accept: a client dribbling its headers is cut after it, however
	// steadily it sends.
	HeadTimeout time.Duration
	// BodyTimeout bounds the body, once the headers are in.
	BodyTimeout time.Duration
	// MaxConns bounds the connections handled at once (0: connsPerSlot ×
	// api_max_inflight). Beyond it a new connection sheds the one that has
	// been reading its request longest (see netserve.Pool).
	MaxConns  int
	ShedAfter time.Duration // 0: netserve.DefaultShedAfter
}

func defaultConnLimits() connLimits {
	return connLimits{HeadTimeout: 5 * time.Second, BodyTimeout: 30 * time.Second}
}

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
	limits  connLimits     // zero fields: defaultConnLimits
	state   *state.Backend // nil: the files

	slotWait time.Duration // 0: the slotWait constant
}

// Server answers API requests, one per connection, each on its own
// goroutine so that a slow or silent client never holds up another. Three
// bounds, all from api_max_inflight (n): n agent-contacting operations (the
// rest wait briefly, then get 503), n auth hook runs (the rest wait), and
// connsPerSlot×n connections (beyond it a new client sheds the slowest
// reader; with none to shed it waits in the kernel's listen queue).
type Server struct {
	serverDeps
	store     runStore
	slots     chan struct{} // api_max_inflight tokens for agent-contacting operations
	hookSlots chan struct{} // auth hook runs at once
	pool      *netserve.Pool
	conns     sync.WaitGroup
	stopping  atomic.Bool
}

func newServer(d serverDeps) *Server {
	n := d.conf.APIMaxInflight
	if n <= 0 {
		n = config.DefaultAPIMaxInflight
	}
	def := defaultConnLimits()
	if d.limits.HeadTimeout <= 0 {
		d.limits.HeadTimeout = def.HeadTimeout
	}
	if d.limits.BodyTimeout <= 0 {
		d.limits.BodyTimeout = def.BodyTimeout
	}
	if d.limits.MaxConns <= 0 {
		d.limits.MaxConns = connsPerSlot * n
	}
	pool := netserve.NewPool(d.limits.MaxConns)
	pool.ShedAfter = d.limits.ShedAfter
	if d.state == nil {
		d.state = state.Files(d.paths, d.now)
	}
	if d.slotWait <= 0 {
		d.slotWait = slotWait
	}
	return &Server{
		serverDeps: d,
		store:      runStore{Runs: d.state.Runs, log: d.log},
		slots:      make(chan struct{}, n),
		hookSlots:  make(chan struct{}, n),
		pool:       pool,
	}
}

// Serve accepts connections on ln until ctx ends, then closes ln, lets the
// requests in progress finish for up to drainTimeout, cancels the rest and
// returns. The error is nil after a stop by ctx. While every connection slot
// is taken by a request being handled, Serve accepts nothing: new clients
// wait in the listen queue rather than being refused (refusing over TLS
// would cost a handshake); a slot held by a client still sending its
// request is given to the newcomer instead.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests outlive ctx: they are cancelled only when draining times out.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()

	err := netserve.AcceptLoop(ctx, ln, func(conn net.Conn) {
		slot, ok := s.pool.Admit(ctx, conn)
		if !ok {
			conn.Close()
			return
		}
		s.conns.Go(func() {
			defer slot.Release()
			s.handleConn(reqCtx, conn, slot)
		})
	})
	// Connections that have not delivered a request yet (idle or slow
	// clients) are cut, so they do not hold the stop up for their deadline.
	s.stopping.Store(true)
	s.pool.Stop()

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

// isStopping reports a shutdown in progress: failures it causes are not logged.
func (s *Server) isStopping() bool { return s.stopping.Load() }

// handleConn serves the one request of a connection.
func (s *Server) handleConn(ctx context.Context, raw net.Conn, slot *netserve.Slot) {
	defer raw.Close()
	peer := wire.NormalizeIP(raw.RemoteAddr().String())
	slot.SetReadDeadline(time.Now().Add(s.limits.HeadTimeout))
	req, err := s.readRequest(ctx, raw, peer, slot)
	if err != nil || !slot.Read() {
		return
	}
	if r := s.handle(ctx, req.Request, peer); r.stream != nil {
		writeStream(req.conn, r)
	} else {
		s.respond(req.conn, r)
	}
}

// readRequest performs the TLS handshake, if any, and reads the request:
// handshake and head within HeadTimeout of accept, the body within
// BodyTimeout of the head. Framing errors are answered here (and err is
// then non-nil too).
func (s *Server) readRequest(ctx context.Context, raw net.Conn, peer string, slot *netserve.Slot) (*connRequest, error) {
	var conn net.Conn = raw
	if s.tls != nil {
		hctx, cancel := context.WithTimeout(ctx, s.limits.HeadTimeout)
		tc, err := tlsx.ServerHandshake(hctx, raw, s.tls)
		cancel()
		if err != nil { // no HTTP answer, as upstream
			if !errors.Is(err, tlsx.ErrPortCheck) && !s.isStopping() && !slot.Shed() {
				s.log.Warn().Str("PEER", peer).Str("REASON", err.Error()).Msg("tls-failure")
			}
			return nil, err
		}
		conn = tc
	}

	br := bufio.NewReader(conn)
	req, err := wire.ReadRequestHead(br, wire.APILimits())
	if err == nil {
		slot.SetReadDeadline(time.Now().Add(s.limits.BodyTimeout))
		err = wire.ReadRequestBody(br, req)
	}
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
	t := time.NewTimer(s.slotWait)
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
