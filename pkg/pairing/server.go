package pairing

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/netserve"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/registry"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Server timing defaults (§11.4).
const (
	// Upstream looks for the operator's answer every 2 s. The answer is a
	// local file, so checking four times a second costs nothing and cuts
	// the wait between approve and the agent holding its certificate.
	DefaultPollInterval = 250 * time.Millisecond
	DefaultWindow       = 600 * time.Second
	DefaultMaxQueue     = 10
	// DefaultIOTimeout bounds the handshake plus reading the request, and
	// each response write. Upstream has none; a silent client then held a
	// handler for ever.
	DefaultIOTimeout = 60 * time.Second
	// DefaultMaxConns, plus MaxQueue for the agents waiting for an answer,
	// bounds the connections handled at once; upstream has no bound and the
	// agent-side rate limiter does not protect this port.
	DefaultMaxConns = 64
)

// Server is the pairing-mode connection handler (§11.4).
type Server struct {
	Queue *Queue
	// Registry, if set, has the delivery mark of an approval cleared once
	// the agent has its certificate, and the record of an approval that
	// could not be delivered removed.
	Registry     *registry.Registry
	MaxQueue     int           // pairing_max_queue; a request is refused when Count() >= MaxQueue
	PollInterval time.Duration // how often the queue is checked for an answer
	Window       time.Duration // how long an agent waits for an answer
	IOTimeout    time.Duration
	// MaxConns bounds the connections handled at once (0: DefaultMaxConns +
	// MaxQueue). Beyond it a new connection sheds the one that has spent
	// longest in its handshake or request; agents waiting for an answer are
	// never shed.
	MaxConns  int
	ShedAfter time.Duration    // see netserve.Pool; 0 = its default
	Now       func() time.Time // timestamps of queued requests; nil = time.Now
	Log       zerolog.Logger
	// Out gets the "Pairing request queued: …" line of each request; nil = none.
	Out io.Writer
	// Notify, if set, runs after each connection got its first answer
	// (queued or refused); interactive pairing-mode redraws its prompt.
	Notify func()

	queueMu sync.Mutex // the depth check and the write of a request are one step
}

// Serve accepts connections on ln (a TLS listener, see tlsx.PairingServerConfig)
// and handles each in its own goroutine until ctx ends. It then closes ln,
// lets every handler clean up, and returns nil; any other listener failure
// is returned after the same cleanup.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	n := s.MaxConns
	if n <= 0 {
		n = DefaultMaxConns + s.MaxQueue
	}
	pool := netserve.NewPool(n)
	pool.ShedAfter = s.ShedAfter
	err := netserve.AcceptLoop(ctx, ln, func(conn net.Conn) {
		slot, ok := pool.Admit(ctx, conn)
		if !ok {
			conn.Close()
			return
		}
		wg.Go(func() {
			defer slot.Release()
			s.Handle(ctx, conn, slot)
		})
	})
	if err != nil {
		return fmt.Errorf("pairing listener: %w", err)
	}
	return nil
}

// Handle serves one agent connection: read and check its request, queue
// it, answer "pending", then wait for an approval or denial and deliver it.
// It returns when the exchange is over, the agent hangs up, or ctx ends, and
// it always closes conn and removes the request's queue files it owns. The
// connection holds slot, sheddable until its request is read.
func (s *Server) Handle(ctx context.Context, conn net.Conn, slot *netserve.Slot) {
	defer conn.Close()
	ip := wire.NormalizeIP(conn.RemoteAddr().String())
	// Until the request is queued, a shutdown simply cuts the connection.
	cut := make(chan struct{})
	unwatch := context.AfterFunc(ctx, func() {
		conn.SetDeadline(time.Unix(1, 0))
		close(cut)
	})
	defer unwatch()
	slot.SetDeadline(time.Now().Add(s.ioTimeout()))
	if tc, ok := conn.(*tls.Conn); ok {
		if err := tc.HandshakeContext(ctx); err != nil {
			return // a port probe or a client that is not a pairing agent
		}
	}
	br := bufio.NewReader(conn)
	body, err := wire.ReadPairingRequest(br)
	if !slot.Read() {
		return // shed for a newer connection
	}
	if err != nil {
		s.refuse(conn, ip, ReasonInvalid, "invalid-request", err)
		return
	}
	sub, err := ParseSubmission(body)
	if err == nil {
		err = registry.CheckHostname(sub.Hostname)
	}
	if err == nil {
		err = checkCSR([]byte(sub.CSR), sub.Hostname)
	}
	if err != nil {
		s.refuse(conn, ip, ReasonInvalid, rejectReason(err), err)
		return
	}

	req := Request{
		ID:       pki.NewReqID(),
		Hostname: sub.Hostname,
		IP:       ip,
		CSR:      sub.CSR,
		Nonce:    sub.Nonce,
		Received: pki.ISOTime(s.now()),
		Code:     pki.PairingCode([]byte(sub.CSR)),
		Port:     sub.Port,
		Tags:     sub.Tags,
	}
	full, err := s.enqueue(req)
	switch {
	case full:
		s.refuse(conn, ip, ReasonQueueFull, "queue-full", nil)
		return
	case err != nil:
		s.Log.Error().Str("AGENT", req.Hostname).Str("IP", ip).Str("ERROR", err.Error()).Msg("pair-queue-error")
		s.send(conn, errorBody(reasonQueueError))
		s.notify()
		return
	}
	// Held while this handler lives: a request whose server is gone can
	// then be told apart (see RecoverOrphans).
	release, err := s.Queue.hold(req.ID)
	if err != nil {
		s.Log.Warn().Str("AGENT", req.Hostname).Str("REQID", req.ID).Str("ERROR", err.Error()).Msg("pair-queue-error")
	}
	defer release()
	s.Log.Info().Str("AGENT", req.Hostname).Str("IP", ip).Str("REQID", req.ID).Str("STATUS", "pending").Msg("pair-request")
	if s.Out != nil {
		fmt.Fprintf(s.Out, "Pairing request queued: %s (%s) - ID: %s\n", req.Hostname, ip, req.ID)
	}
	err = s.send(conn, pendingBody(req.ID))
	s.notify()
	if err != nil {
		s.abandon(req, "disconnected")
		return
	}
	if !unwatch() { // pairing-mode is stopping
		<-cut
		s.stopped(conn, req)
		return
	}
	s.await(ctx, conn, br, req)
}

// enqueue expires stale entries and adds req unless the queue is full.
func (s *Server) enqueue(req Request) (full bool, err error) {
	s.queueMu.Lock()
	defer s.queueMu.Unlock()
	s.Queue.ExpireStale()
	n, err := s.Queue.Count()
	if err != nil {
		return false, err
	}
	if n >= s.MaxQueue {
		return true, nil
	}
	return false, s.Queue.Add(req)
}

// await polls for the operator's answer and delivers it (§11.4 step 6).
func (s *Server) await(ctx context.Context, conn net.Conn, br *bufio.Reader, req Request) {
	// The agent sends nothing more; a read that returns means it hung up.
	conn.SetDeadline(time.Time{})
	gone := make(chan struct{})
	go func() {
		io.Copy(io.Discard, br)
		close(gone)
	}()
	defer func() {
		conn.Close() // ends the reader above
		<-gone
	}()

	window := time.NewTimer(s.window())
	defer window.Stop()
	// A shared queue (etcd) signals answers through a watch, started before
	// the first look so none is missed; the directory is polled.
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changed := s.Queue.watch(watchCtx, req.ID)
	var tickC <-chan time.Time
	if changed == nil {
		tick := time.NewTicker(s.pollInterval())
		defer tick.Stop()
		tickC = tick.C
	}
	for {
		// Files go before the answer does, so an agent that has its answer
		// never sees its request still queued.
		if body, approved, ok := s.Queue.answer(req.ID); ok {
			if approved {
				s.Queue.remove(req.ID, extApproved, extRequest)
			} else {
				s.Queue.remove(req.ID, extDenied)
			}
			err := s.send(conn, body)
			switch {
			case approved && err == nil:
				confirmDelivered(s.Registry, req.Hostname, req.ID, s.Log)
			case approved:
				DropUndelivered(s.Registry, req.Hostname, req.ID, s.Log)
			}
			return
		}
		select {
		case <-tickC:
		case <-changed:
		case <-window.C:
			s.Queue.remove(req.ID, extRequest)
			s.send(conn, deniedBody(ReasonTimeout))
			return
		case <-gone:
			s.abandon(req, "disconnected")
			return
		case <-ctx.Done():
			s.stopped(conn, req)
			return
		}
	}
}

// stopped tells a waiting agent that pairing-mode is ending and drops its
// request.
func (s *Server) stopped(conn net.Conn, req Request) {
	s.abandon(req, "pairing-mode-stopped")
	conn.SetWriteDeadline(time.Now().Add(2 * time.Second)) // do not hold up the shutdown
	wire.WritePairingFrame(conn, deniedBody(ReasonStopped))
}

// abandon removes a request whose agent can no longer be answered, with
// any answer already written for it (B-15).
func (s *Server) abandon(req Request, reason string) {
	_, approved, _ := s.Queue.answer(req.ID)
	s.Queue.remove(req.ID, extRequest, extApproved, extDenied)
	if approved {
		DropUndelivered(s.Registry, req.Hostname, req.ID, s.Log)
	}
	s.Log.Warn().Str("AGENT", req.Hostname).Str("IP", req.IP).Str("REQID", req.ID).Str("REASON", reason).Msg("pair-abandon")
}

// refuse answers an error body and ends the connection. Refusals are logged
// as pair-reject; upstream logs only the queue-full case.
func (s *Server) refuse(conn net.Conn, ip, reason, logReason string, cause error) {
	ev := s.Log.Info().Str("IP", ip).Str("REASON", logReason)
	if cause != nil {
		ev = ev.Str("ERROR", cause.Error())
	}
	ev.Msg("pair-reject")
	s.send(conn, errorBody(reason))
	s.notify()
}

func (s *Server) send(conn net.Conn, body []byte) error {
	conn.SetWriteDeadline(time.Now().Add(s.ioTimeout()))
	return wire.WritePairingFrame(conn, body)
}

func (s *Server) notify() {
	if s.Notify != nil {
		s.Notify()
	}
}

func (s *Server) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Server) pollInterval() time.Duration {
	if s.PollInterval <= 0 {
		return DefaultPollInterval
	}
	return s.PollInterval
}

func (s *Server) window() time.Duration {
	if s.Window <= 0 {
		return DefaultWindow
	}
	return s.Window
}

func (s *Server) ioTimeout() time.Duration {
	if s.IOTimeout <= 0 {
		return DefaultIOTimeout
	}
	return s.IOTimeout
}

// rejectReason is the pair-reject REASON for a request that fails its checks:
// weak-key and multiple-cn name the D-35 refusals, anything else is an
// invalid request. The agent is told "invalid request" in every case, as
// upstream's wire has no other reason for a bad request.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, pki.ErrWeakKey):
		return "weak-key"
	case errors.Is(err, pki.ErrMultipleCN):
		return "multiple-cn"
	}
	return "invalid-request"
}

// checkCSR applies the signing checks (§8.1) on receipt, so an operator is
// never asked to approve a request that cannot be signed, and requires the
// CN to be the hostname the agent claims: the approval prompt shows the
// hostname while the certificate names the CN, and an honest agent (Perl or
// Go) always uses one name for both (B-14).
func checkCSR(csrPEM []byte, hostname string) error {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return fmt.Errorf("CSR: %w", err)
	}
	if cn := csr.Subject.CommonName; cn != hostname {
		return fmt.Errorf("CSR is for '%s' but the agent claims to be '%s'", cn, hostname)
	}
	return nil
}
