package pairing

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/tlsx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// ConnectWindow bounds connecting plus the TLS handshake (§11.3): longer
// than the server's 600 s wait, as upstream.
const ConnectWindow = 660 * time.Second

// ResolveError: the control host's name did not resolve (§4.3 step 5).
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return fmt.Sprintf("resolve %s: %v", e.Host, e.Err) }
func (e *ResolveError) Unwrap() error { return e.Err }

// ConnectError: no TCP connection or no TLS session with the control host.
type ConnectError struct {
	Addr string
	Err  error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connect failed: %s: %v", e.Addr, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// Client submits pairing requests.
type Client struct {
	// Dialer makes the TCP connection; nil = a net.Dialer.
	Dialer interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	}
	TLS *tls.Config // nil = tlsx.PairingClientConfig(), or the pinned one
	// CAFingerprint pins the control host's CA (pki.Fingerprint spelling,
	// from request-pairing --ca-fingerprint): the server must chain to it
	// before the request is sent when it sends its CA, and the approval
	// must deliver that CA. "" = trust on first use, checked after approval
	// against the delivered CA only (D-14).
	CAFingerprint string
}

// Pending is a submitted request whose connection stays open for the
// answer.
type Pending struct {
	ReqID string
	// PinChecked: the server's chain was checked against CAFingerprint
	// before the request went out. False with a pin when the server sent
	// its certificate alone (a Perl control host): the pin is then checked
	// against the CA the approval delivers.
	PinChecked bool
	pin        string
	nonce      string
	conn       *tls.Conn
	br         *bufio.Reader
}

// Result is an approval: the agent's certificate, the CA and the ctrl-exec
// serial to store.
type Result struct {
	CertPEM          string
	CAPEM            string
	DispatcherSerial string
}

// Submit connects to host:port, sends sub with a fresh nonce and reads the acknowledgement (§11.3). Failures to resolve or to
// connect come back as *ResolveError or *ConnectError, a server that does
// not chain to the pinned CA as a *tlsx.PinError (nothing was sent); a
// refusal by the server is an error carrying its reason ("pairing queue
// full").
func (c *Client) Submit(ctx context.Context, host string, port int, sub Submission) (*Pending, error) {
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	cctx, cancel := context.WithTimeout(ctx, ConnectWindow)
	defer cancel()
	var d interface {
		DialContext(ctx context.Context, network, addr string) (net.Conn, error)
	} = &net.Dialer{}
	if c.Dialer != nil {
		d = c.Dialer
	}
	raw, err := d.DialContext(cctx, "tcp", addr)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			return nil, &ResolveError{Host: host, Err: err}
		}
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	cfg := c.TLS
	switch {
	case cfg != nil:
	case c.CAFingerprint != "":
		cfg = tlsx.PinnedPairingClientConfig(c.CAFingerprint)
	default:
		cfg = tlsx.PairingClientConfig()
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(cctx); err != nil {
		raw.Close()
		var pe *tlsx.PinError
		if errors.As(err, &pe) {
			return nil, pe
		}
		return nil, &ConnectError{Addr: addr, Err: err}
	}
	sub.Nonce = pki.NewNonce()
	p := &Pending{nonce: sub.Nonce, pin: c.CAFingerprint, conn: conn, br: bufio.NewReader(conn)}
	if p.pin != "" {
		// The handshake refused a chain that fails; this says whether
		// there was one to check.
		checked, err := tlsx.CheckPinnedChain(conn.ConnectionState().PeerCertificates, p.pin)
		if err != nil {
			conn.Close()
			return nil, err
		}
		p.PinChecked = checked
	}
	reqid, err := p.submit(cctx, sub)
	if err != nil {
		conn.Close()
		return nil, err
	}
	p.ReqID = reqid
	return p, nil
}

func (p *Pending) submit(ctx context.Context, sub Submission) (string, error) {
	stop := context.AfterFunc(ctx, func() { p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	body := sub.Encode()
	if err := wire.WriteRequest10(p.conn, "POST", "/pair", body); err != nil {
		return "", fmt.Errorf("send pairing request: %w", err)
	}
	frame, err := wire.ReadPairingFrame(p.br)
	switch {
	case errors.Is(err, wire.ErrNoResponse):
		return "", errors.New("no response from ctrl-exec")
	case errors.Is(err, wire.ErrNoContentLength):
		return "", errors.New("no Content-Length in pairing acknowledgement")
	case err != nil:
		return "", err
	case len(frame) == 0:
		return "", errors.New("empty acknowledgement body")
	}
	var ack struct {
		Status *string `json:"status"`
		Reason *string `json:"reason"`
		ReqID  any     `json:"reqid"`
	}
	if err := json.Unmarshal(frame, &ack); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return "", fmt.Errorf("bad JSON in acknowledgement: %v", err)
		}
		return "", fmt.Errorf("unexpected acknowledgement: %s", frame)
	}
	if ack.Status != nil && *ack.Status == "error" {
		if ack.Reason != nil && *ack.Reason != "" {
			return "", errors.New(*ack.Reason)
		}
		return "", errors.New("ctrl-exec returned error")
	}
	reqid, _ := ack.ReqID.(string)
	if ack.Status == nil || *ack.Status != "pending" || reqid == "" || reqid == "0" {
		return "", fmt.Errorf("unexpected acknowledgement: %s", frame)
	}
	return reqid, nil
}

// Await reads the answer (§11.3). It waits until the server answers or hangs
// up, or ctx ends (then ctx's error is returned), and always closes the
// connection. A denial is an error carrying the server's reason. An
// approval is accepted only from a server whose certificate chains to the
// CA the approval delivers (D-14), and with a pin only if that CA is the
// pinned one: otherwise the session may have been intercepted, and the
// error says so.
func (p *Pending) Await(ctx context.Context) (*Result, error) {
	defer p.conn.Close()
	stop := context.AfterFunc(ctx, func() { p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	frame, err := wire.ReadPairingFrame(p.br)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	switch {
	case errors.Is(err, wire.ErrNoResponse):
		return nil, errors.New("ctrl-exec closed the connection without a pairing result")
	case errors.Is(err, wire.ErrNoContentLength):
		return nil, errors.New("no Content-Length in pairing result")
	case err != nil:
		return nil, err
	case len(frame) == 0:
		return nil, errors.New("empty result body")
	}
	var res struct {
		Status           any `json:"status"`
		Reason           any `json:"reason"`
		Cert             any `json:"cert"`
		CA               any `json:"ca"`
		Nonce            any `json:"nonce"`
		DispatcherSerial any `json:"dispatcher_serial"`
	}
	if err := json.Unmarshal(frame, &res); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("unexpected pairing result: %s", frame)
		}
		return nil, fmt.Errorf("bad JSON in result: %v", err)
	}
	if res.Status == "approved" {
		if text(res.Nonce) != p.nonce {
			return nil, errors.New("nonce mismatch in pairing result")
		}
		r := &Result{CertPEM: text(res.Cert), CAPEM: text(res.CA), DispatcherSerial: text(res.DispatcherSerial)}
		if err := verifyServer(p.conn.ConnectionState(), r.CAPEM, p.pin); err != nil {
			return nil, err
		}
		return r, nil
	}
	if reason := text(res.Reason); reason != "" {
		return nil, errors.New(reason)
	}
	return nil, errors.New("denied")
}

// Close ends the connection without waiting for the answer.
func (p *Pending) Close() error { return p.conn.Close() }

// text is a JSON value as Perl would print it in a string context, for
// the few fields compared or shown; "" for an array or object.
func text(v any) string {
	s, _ := perltext.Scalar(v)
	return s
}

// verifyServer checks that the pairing server's certificate chains to the
// CA it delivered (D-14), and with a pin that this CA is the pinned one.
func verifyServer(cs tls.ConnectionState, caPEM, pin string) error {
	cas, err := pki.ParseCertsPEM([]byte(caPEM))
	if err != nil {
		return fmt.Errorf("pairing result: CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	trusted := 0
	for _, c := range cas {
		if pin == "" || pki.Fingerprint(c) == pin {
			pool.AddCert(c)
			trusted++
		}
	}
	if trusted == 0 {
		return fmt.Errorf("the CA delivered with the approval is %s, not the pinned %s - nothing was stored", pki.Fingerprint(cas[0]), pin)
	}
	if err := tlsx.VerifyPeerChain(cs.PeerCertificates, pool); err != nil {
		return fmt.Errorf("the pairing server's certificate does not chain to the CA it delivered (%v): the session may have been intercepted - nothing was stored", err)
	}
	return nil
}
