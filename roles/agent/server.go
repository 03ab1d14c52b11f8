package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/netserve"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/paths"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Timeouts bound each stage of a connection. Script execution itself is
// never bounded (SPEC §12.2).
type Timeouts struct {
	Handshake time.Duration // TLS handshake from accept; a slow client stalls no one else (B-6)
	Request   time.Duration // reading the request head and body (§9.1)
	Response  time.Duration // writing the response to a client that reads slowly
	Shutdown  time.Duration // how long running requests may finish after SIGTERM
	Hook      time.Duration // auth hook run; 0 = authhook.DefaultTimeout (D-19)
}

// DefaultTimeouts are the serve defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{Handshake: 10 * time.Second, Request: 30 * time.Second, Response: 60 * time.Second, Shutdown: 10 * time.Second}
}

// ServerOptions are a Server's dependencies.
type ServerOptions struct {
	ConfigPath    string // agent.conf
	AllowlistPath string // scripts.conf
	Paths         paths.Paths
	Log           zerolog.Logger
	Now           func() time.Time
	Stderr        io.Writer // warnings, as upstream's warn()
	Hostname      string    // "host" in /ping and /capabilities
	Version       string
	Timeouts      Timeouts
	// MaxConns bounds the connections handled at once (0: DefaultMaxConns),
	// whatever the rate limiter says (it can be off). Beyond it a new
	// connection sheds the one that has spent longest in its handshake or
	// request; connections whose script runs are never shed.
	MaxConns  int
	ShedAfter time.Duration // see netserve.Pool; 0 = its default
}

// DefaultMaxConns is the agent's connection cap: far above any control
// host's fan-out to one agent, far below what exhausts the process.
const DefaultMaxConns = 512

// Server is the agent's mTLS server on port 7443 (SPEC §9): one goroutine
// per connection, one request per connection.
type Server struct {
	configPath, allowlistPath string
	paths                     paths.Paths
	log                       zerolog.Logger
	now                       func() time.Time
	stderr                    io.Writer
	hostname, version         string
	timeouts                  Timeouts
	pool                      *netserve.Pool

	identity *tlsx.Identity
	// identityMu serialises identity swaps: a SIGHUP reload and a
	// renewal's store each read the files and swap under it.
	identityMu sync.Mutex
	tlsConfig  *tls.Config
	rt         atomic.Pointer[runtime]
	serial     storedSerial
	expiry     expiryCache
	routes     map[route]handler

	handshook func(tls.ConnectionState) // tests: sees each completed handshake
}

// NewServer performs the serve startup sequence up to listening (SPEC §4.2
// steps 1–4): agent.conf, the allowlist (script_dirs applied, D-8), the
// revoked serials, the stored serial, and the TLS identity. Errors are fatal
// to serve and are worded for the operator.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	if o.Timeouts == (Timeouts{}) {
		o.Timeouts = DefaultTimeouts()
	}
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	s := &Server{
		configPath: o.ConfigPath, allowlistPath: o.AllowlistPath, paths: o.Paths,
		log: o.Log, now: o.Now, stderr: o.Stderr,
		hostname: o.Hostname, version: o.Version, timeouts: o.Timeouts,
		pool: netserve.NewPool(o.MaxConns),
	}
	s.pool.ShedAfter = o.ShedAfter
	s.serial.stderr = o.Stderr
	s.routes = s.routeTable()

	cfg, warns, err := config.LoadAgent(o.ConfigPath, o.Paths)
	if err != nil {
		return nil, err
	}
	config.LogWarnings(s.log, warns)
	list, skipped, err := config.LoadAllowlist(o.AllowlistPath, cfg.ScriptDirs)
	s.warnSkipped(skipped)
	if err != nil {
		return nil, err
	}
	s.rt.Store(s.newRuntime(cfg, list))
	s.serial.get(cfg.SerialPath)

	s.identity, err = tlsx.LoadIdentity(cfg.Cert, cfg.Key, cfg.CA)
	if err != nil {
		return nil, fmt.Errorf("Cannot start server: %w", err)
	}
	s.tlsConfig = tlsx.ResumingAgentServerConfig(s.identity, s.mayResume)
	return s, nil
}

// mayResume lets a session resume only while its client certificate is not
// revoked and, when a serial is stored, is the stored one; otherwise the
// client falls back to a full handshake and meets the usual checks with the
// certificate it presents now.
func (s *Server) mayResume(peerSerial string) bool {
	rt := s.rt.Load()
	if _, revoked := rt.revoked.Match(peerSerial); revoked {
		return false
	}
	stored := s.serial.get(rt.cfg.SerialPath)
	return stored == "" || stored == peerSerial
}

// Listen opens the configured port on every address, IPv6 and IPv4 alike
// (IPv4 peers arrive IPv4-mapped and are shown as dotted IPv4).
func (s *Server) Listen() (net.Listener, error) {
	port := s.rt.Load().cfg.Port
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("Cannot start server: %w", err)
	}
	return ln, nil
}

// Serve accepts connections on ln until ctx ends, then stops accepting,
// gives requests in progress up to Timeouts.Shutdown to finish (connections
// still in the handshake or sending their request are closed at once) and
// returns nil. A listener failure other than a transient shortage of
// descriptors or memory is logged as accept-fatal and returned.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.log.Info().Int("PORT", listenerPort(ln, s.rt.Load().cfg.Port)).Msg("start")

	var conns sync.WaitGroup
	var serveErr error
	if err := netserve.AcceptLoop(ctx, ln, func(c net.Conn) {
		slot, ok := s.pool.Admit(ctx, c)
		if !ok {
			c.Close()
			return
		}
		conns.Go(func() {
			defer slot.Release()
			s.serveConn(ctx, c, slot)
		})
	}); err != nil {
		s.log.Error().Str("PEER", "unknown").Str("REASON", err.Error()).Msg("accept-fatal")
		serveErr = fmt.Errorf("accepting connections on %s: %w", ln.Addr(), err)
	}

	done := make(chan struct{})
	go func() { conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.timeouts.Shutdown):
		fmt.Fprintf(s.stderr, "Stopping with requests still running after %v; their scripts carry on without a reply\n", s.timeouts.Shutdown)
	}
	return serveErr
}

func listenerPort(ln net.Listener, fallback int) int {
	if a, ok := ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return fallback
}

// connGuard lets shutdown close a connection that has not reached its
// handler yet, while a connection whose request is being handled (its script
// running) is left to finish.
type connGuard struct {
	mu     sync.Mutex
	conn   net.Conn
	busy   bool
	closed bool
}

func (g *connGuard) closeIfIdle() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.busy {
		g.closed = true
		g.conn.Close()
	}
}

// enter marks the connection busy; false if shutdown already closed it.
func (g *connGuard) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = !g.closed
	return g.busy
}

// serveConn runs the connection pipeline of SPEC §9.1 for one connection.
func (s *Server) serveConn(ctx context.Context, raw net.Conn, slot *netserve.Slot) {
	defer raw.Close()
	guard := &connGuard{conn: raw}
	stop := context.AfterFunc(ctx, guard.closeIfIdle)
	defer stop()

	rt := s.rt.Load()
	peer := wire.NormalizeIP(raw.RemoteAddr().String())

	// D-15: the cheap checks come before the handshake; neither counts.
	if !rt.ipAllow.Allows(peer) {
		s.log.Warn().Str("PEER", peer).Msg("ip-block")
		return
	}
	if rt.limiter.Blocked(peer) {
		return
	}

	slot.SetDeadline(time.Now().Add(s.timeouts.Handshake))
	conn, err := tlsx.ServerHandshake(ctx, raw, s.tlsConfig)
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, tlsx.ErrPortCheck) || slot.Shed() {
			return // a shed connection is the cap's doing, not a probe
		}
		rt.limiter.RecordFailure(peer)
		s.log.Warn().Str("PEER", peer).Str("REASON", err.Error()).Msg("tls-failure")
		rt.limiter.Check(peer)
		return
	}
	defer conn.Close()
	if s.handshook != nil {
		s.handshook(conn.ConnectionState())
	}

	peerSerial := tlsx.PeerSerialHex(conn.ConnectionState())
	stored := s.serial.get(rt.cfg.SerialPath)
	revokedBy, revoked := rt.revoked.Match(peerSerial)
	// D-33: the volume limit is against floods and probes; the control host
	// itself (a CA-verified chain presenting the stored serial) is not counted.
	trusted := !revoked && peerSerial != "" && peerSerial == stored
	if !trusted && rt.limiter.Admit(peer) {
		return
	}
	if revoked {
		s.log.Warn().Str("PEER", peer).Str("SERIAL", peerSerial).
			Str("ENTRY", revokedBy.Entry).Str("READING", revokedBy.Reading).Msg("revoked-cert")
		s.respond(raw, conn, reply{403, errorBody("certificate revoked")})
		return
	}

	slot.SetDeadline(time.Now().Add(s.timeouts.Request))
	req, err := wire.ReadRequest(bufio.NewReader(conn), wire.AgentLimits())
	if err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) {
			s.respond(raw, conn, reply{re.Status, errorBody(re.Msg)})
			wire.Linger(conn, wire.LingerBytes, wire.LingerWait)
		}
		return
	}
	if !slot.Read() {
		return
	}
	_ = raw.SetDeadline(time.Time{}) // the script may run as long as it likes

	if !guard.enter() {
		return
	}
	h, ok := s.routes[route{req.Method, req.Path}]
	if !ok {
		h = notFound
	}
	// Handlers outlive a client that gives up and a shutdown in progress:
	// a script is never killed on their account (§12.2).
	c := &call{rt: rt, peer: peer, peerSerial: peerSerial, storedSerial: stored, req: req}
	s.respond(raw, conn, h(context.WithoutCancel(ctx), c))
}

// respond writes one response and leaves closing to the caller.
func (s *Server) respond(raw net.Conn, conn *tls.Conn, r reply) {
	_ = raw.SetWriteDeadline(time.Now().Add(s.timeouts.Response))
	_ = wire.WriteResponse(conn, r.code, r.body, wire.AgentPhrase)
}

func errorBody(msg string) []byte {
	return wire.JSON(map[string]string{"error": msg})
}
