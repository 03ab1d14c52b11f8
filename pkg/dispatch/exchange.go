package dispatch

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Reply is an agent's HTTP answer.
type Reply struct {
	Status     int    // e.g. 403
	StatusLine string // e.g. "403 Error": the code and the agent's reason phrase
	Body       []byte
	RTT        time.Duration // connect, handshake, request and response
}

// OK reports a 2xx status.
func (r Reply) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Phase says how far an exchange got before it failed.
type Phase int

const (
	PhaseConnect  Phase = iota // TCP connect, name lookup, TLS handshake
	PhaseExchange              // sending the request or reading the response
)

// TransportError is an exchange that produced no HTTP status. Its text is
// the status-line style Perl's LWP reports and operators grep for:
//
//	500 Can't connect to web-01:7443 (Connection refused)
//	500 read timeout
type TransportError struct {
	Target   Target
	Phase    Phase
	Timeout  bool  // the per-host deadline passed
	Canceled bool  // the caller's context was cancelled
	Err      error // the underlying cause
}

func (e *TransportError) Error() string {
	if e.Phase == PhaseConnect {
		return "500 Can't connect to " + e.Target.String() + " (" + connectReason(e) + ")"
	}
	switch {
	case e.Canceled:
		return "500 request cancelled"
	case e.Timeout:
		return "500 read timeout"
	case errors.Is(e.Err, wire.ErrNoResponse):
		return "500 Server closed connection without sending any data back"
	}
	return "500 " + strings.TrimPrefix(e.Err.Error(), "500 ")
}

func (e *TransportError) Unwrap() error { return e.Err }

// connectReason words a connect or handshake failure like the C library
// and OpenSSL messages upstream shows inside the parentheses.
func connectReason(e *TransportError) string {
	switch {
	case e.Canceled:
		return "cancelled"
	case e.Timeout:
		return "timeout"
	}
	err := e.Err
	var dnsErr *net.DNSError
	var errno syscall.Errno
	var verifyErr *tls.CertificateVerificationError
	var unknownAuth x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var alert tls.AlertError
	var addrErr *net.AddrError
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "Name or service not known"
	case errors.As(err, &dnsErr):
		return capitalise(dnsErr.Err)
	case errors.As(err, &unknownAuth):
		return "SSL connect attempt failed: certificate verify failed: agent certificate not signed by the ctrl-exec CA"
	case errors.As(err, &invalid):
		return "SSL connect attempt failed: certificate verify failed: " + strings.TrimPrefix(invalid.Error(), "x509: ")
	case errors.As(err, &verifyErr):
		return "SSL connect attempt failed: certificate verify failed: " + strings.TrimPrefix(verifyErr.Err.Error(), "x509: ")
	case errors.As(err, &alert):
		return "SSL connect attempt failed: " + alert.Error()
	case errors.As(err, &errno):
		return capitalise(errno.Error())
	case errors.As(err, &addrErr):
		return capitalise(addrErr.Err)
	}
	if alert := remoteAlert(err); alert != nil {
		return "SSL connect attempt failed: " + alert.Error()
	}
	return err.Error()
}

// remoteAlert returns the TLS alert the agent sent, if err is one. With
// TLS 1.3 an agent that refuses our certificate says so only after our side
// of the handshake is done, so the alert can arrive with the first read.
func remoteAlert(err error) error {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "remote error" {
		return opErr
	}
	return nil
}

var capitalise = perltext.Capitalise

// answerAfterWriteError is how long a reply is waited for once sending the
// request failed: an agent that refused it has answered already.
const answerAfterWriteError = time.Second

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// exchange makes one request to t over a fresh mTLS connection and reads the
// whole reply, all within c's per-host deadline. Cancelling ctx ends it too.
func (c *Client) exchange(ctx context.Context, cfg *tls.Config, t Target, method, path string, body []byte) (Reply, error) {
	return c.exchangeWithin(ctx, cfg, t, method, path, body, nil)
}

// exchangeWithin is exchange with the reply body's bytes reserved from a
// budget before they are read (see wire.ReadClientResponseWithin).
func (c *Client) exchangeWithin(ctx context.Context, cfg *tls.Config, t Target, method, path string, body []byte, reserve func(int64) error) (Reply, error) {
	start := c.now()
	if t.Unregistered {
		return Reply{}, &IdentityError{Target: t}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout())
	defer cancel()
	fail := func(phase Phase, err error) (Reply, error) {
		te := &TransportError{Target: t, Phase: phase, Err: err}
		// The socket deadline and the context timer fire at the same
		// instant in either order: a socket timeout is the deadline too.
		var ne net.Error
		te.Canceled = errors.Is(ctx.Err(), context.Canceled)
		te.Timeout = !te.Canceled && (errors.Is(ctx.Err(), context.DeadlineExceeded) ||
			errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()))
		return Reply{RTT: c.now().Sub(start)}, te
	}

	conf := cfg.Clone()
	if net.ParseIP(t.Host) == nil {
		conf.ServerName = t.Host // SNI, as upstream sends; the chain check ignores names
	}
	checkIdentity(conf, t)
	slot := c.sessionSlot(conf, t)
	if slot == nil || !slot.Holds() {
		tlsx.PrefetchClientKey(conf) // a full handshake will sign
	}
	raw, conn, err := connect(ctx, conf, t)
	var ie *IdentityError
	if err != nil && !errors.As(err, &ie) && slot != nil && slot.Offered() && ctx.Err() == nil {
		// An agent that aborts on a resumption attempt gets one full
		// handshake; crypto/tls has already dropped the session. No request
		// byte was sent, so nothing runs twice.
		conf.ClientSessionCache = nil
		raw, conn, err = connect(ctx, conf, t)
	}
	if errors.As(err, &ie) {
		// The wrong agent: refused in the handshake, nothing was sent.
		c.Log.Warn().Str("TARGET", t.String()).Str("EXPECTED", strings.Join(ie.Expected, ",")).
			Str("GOT", ie.Got).Msg("identity-mismatch")
		return Reply{RTT: c.now().Sub(start)}, ie
	}
	if err != nil {
		return fail(PhaseConnect, err)
	}
	defer raw.Close()
	if slot != nil && conn.ConnectionState().DidResume {
		slot.Resumed()
	}
	deadline, _ := ctx.Deadline()
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	writeErr := wire.WriteClientRequest(conn, method, path, t.Addr(), body)
	if writeErr != nil {
		// An agent refusing a request it has not read (413) may answer and
		// close while we are still sending; the answer can still be read.
		if ctx.Err() != nil {
			return fail(PhaseExchange, writeErr)
		}
		raw.SetReadDeadline(earliest(deadline, time.Now().Add(answerAfterWriteError)))
	}
	status, line, respBody, err := wire.ReadClientResponseWithin(bufio.NewReaderSize(conn, 16<<10), reserve)
	if err != nil {
		if remoteAlert(err) != nil {
			return fail(PhaseConnect, err)
		}
		if writeErr != nil {
			return fail(PhaseExchange, writeErr)
		}
		return fail(PhaseExchange, err)
	}
	if !strings.Contains(line, " ") {
		line += " " + http.StatusText(status) // LWP fills in a missing reason phrase
	}
	if slot != nil && status == 403 && isSerialMismatch(respBody) {
		c.Sessions.Drop(t.Addr()) // the next contact makes a full handshake
	}
	return Reply{Status: status, StatusLine: strings.TrimRight(line, " "), Body: respBody, RTT: c.now().Sub(start)}, nil
}

// connect dials t and runs the TLS handshake, all bounded by ctx, whose
// deadline also becomes the connection's for what follows.
func connect(ctx context.Context, conf *tls.Config, t Target) (net.Conn, *tls.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", t.Addr())
	if err != nil {
		return nil, nil, err
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := tls.Client(raw, conf)
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, err
	}
	return raw, conn, nil
}

// sessionSlot attaches the client's session cache, if any, to conf for one
// connection to t, filed under the certificate conf presents.
func (c *Client) sessionSlot(conf *tls.Config, t Target) *sessioncache.Slot {
	if c.Sessions == nil {
		return nil
	}
	owner := clientCertOwner(conf)
	if owner == "" {
		return nil
	}
	slot := c.Sessions.For(owner, t.Addr())
	conf.ClientSessionCache = slot
	return slot
}

func clientCertOwner(conf *tls.Config) string {
	leaf := tlsx.ClientCertificateDER(conf)
	if leaf == nil {
		return ""
	}
	return sessioncache.Owner(leaf)
}

// isSerialMismatch reports the agent's "serial mismatch" refusal.
func isSerialMismatch(body []byte) bool {
	obj, err := wire.ParseObject(body)
	return err == nil && obj.Str("error") == "serial mismatch"
}
