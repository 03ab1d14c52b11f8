// Package wire holds ctrl-exec's on-the-wire framing: the raw HTTP/1.x
// request reader and byte-exact HTTP/1.0 responses of the agent (SPEC §9.2)
// and API (§14.1), the two-frame pairing exchange (§11.1), the control
// host's minimal client for agent requests (§10.1), and compact JSON (§2.3);
// also what every server does at a connection's edge: spell the peer's
// address (NormalizeIP) and linger after refusing a request (Linger).
//
// None of it goes through net/http: Perl peers compare status lines such as
// "403 Error" literally, and one request per connection needs no more.
package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// RequestError is a request the server answers with Status and an error body
// built from Msg, then closes. The agent sends {"error":Msg}; the API wraps
// Msg in its §14.3 shape.
type RequestError struct {
	Status int
	Msg    string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("read request: %s (HTTP %d)", e.Msg, e.Status)
}

// The request errors ReadRequest returns; compare with errors.Is.
var (
	// End of input before a request line, or a blank request line (§20.4:
	// upstream routes a blank line to 404; Go answers 400 for both).
	ErrEmptyRequest = &RequestError{Status: 400, Msg: "empty request"}
	// More than Limits.MaxHeaders header lines; no body has been read.
	ErrTooManyHeaders = &RequestError{Status: 431, Msg: "too many headers"}
	// Declared Content-Length above Limits.MaxBody; the body was not read.
	ErrTooLarge = &RequestError{Status: 413, Msg: "request too large"}
	// A request line longer than Limits.MaxLineBytes (Go-defined; upstream
	// has no limit). 400 because 414 would read "414 Error" to Perl clients.
	ErrRequestLineTooLong = &RequestError{Status: 400, Msg: "request line too long"}
	// A header line longer than Limits.MaxLineBytes (Go-defined).
	ErrHeaderLineTooLong = &RequestError{Status: 431, Msg: "header line too long"}
	// The connection ended before Content-Length bytes of body arrived.
	// Upstream would hand the partial body to the handler; Go refuses it.
	ErrIncompleteBody = &RequestError{Status: 400, Msg: "incomplete body"}
)

// CLRule says which Content-Length header counts (the two upstream servers
// differ and Go keeps each one's behaviour).
type CLRule int

const (
	// CLLastValue (agent): the last Content-Length header wins whatever its
	// value; its leading decimal digits are the length, no digits = 0.
	CLLastValue CLRule = iota
	// CLLastNumeric (API): only headers whose value starts with a digit
	// count, the last of them wins; none = 0.
	CLLastNumeric
)

// Limits bound what ReadRequest accepts.
type Limits struct {
	MaxHeaders    int   // header lines allowed; one more is ErrTooManyHeaders
	MaxBody       int64 // largest Content-Length read; more is ErrTooLarge
	MaxLineBytes  int   // longest request or header line, line ending included
	ContentLength CLRule
}

// AgentLimits are the agent's §9.2 limits.
func AgentLimits() Limits {
	return Limits{MaxHeaders: 32, MaxBody: 1 << 20, MaxLineBytes: 16 << 10, ContentLength: CLLastValue}
}

// APILimits are the agent's limits applied to the API (D-20) with the API's
// own Content-Length rule.
func APILimits() Limits {
	l := AgentLimits()
	l.ContentLength = CLLastNumeric
	return l
}

// Request is one parsed request.
type Request struct {
	Method        string            // as sent (the API uppercases it)
	Path          string            // exact, query included; "" when missing
	Header        map[string]string // names lowercased, last wins, values untrimmed at the end
	ContentLength int64             // per Limits.ContentLength; len(Body) equals it
	Body          []byte
}

// ReadRequest reads one request the way upstream's handlers do: the request
// line split on whitespace, header lines up to a blank line (CRLF or LF; end
// of input also ends the headers), then exactly Content-Length body bytes.
// Protocol problems come back as a *RequestError (one of the Err values);
// any other error is an I/O failure to answer with silence.
func ReadRequest(r *bufio.Reader, lim Limits) (*Request, error) {
	req, err := ReadRequestHead(r, lim)
	if err != nil {
		return nil, err
	}
	if err := ReadRequestBody(r, req); err != nil {
		return nil, err
	}
	return req, nil
}

// ReadRequestHead is the first part of ReadRequest: the request line and
// headers, with ContentLength set (already checked against lim.MaxBody) and
// no Body yet. A server bounds the head and the body with different
// deadlines by reading them apart.
func ReadRequestHead(r *bufio.Reader, lim Limits) (*Request, error) {
	line, err := readLine(r, lim.MaxLineBytes)
	switch {
	case errors.Is(err, errLineTooLong):
		return nil, ErrRequestLineTooLong
	case err == io.EOF && len(line) == 0:
		return nil, ErrEmptyRequest
	case err != nil && err != io.EOF:
		return nil, fmt.Errorf("read request line: %w", err)
	}
	fields := strings.FieldsFunc(string(trimEOL(line)), perltext.IsSpaceRune)
	if len(fields) == 0 {
		return nil, ErrEmptyRequest
	}
	req := &Request{Method: fields[0], Header: map[string]string{}}
	if len(fields) > 1 {
		req.Path = fields[1]
	}

	var numericCL int64
	for count := 0; err == nil; {
		line, err = readLine(r, lim.MaxLineBytes)
		if errors.Is(err, errLineTooLong) {
			return nil, ErrHeaderLineTooLong
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read request headers: %w", err)
		}
		h := trimEOL(line)
		if len(h) == 0 {
			break
		}
		if count++; count > lim.MaxHeaders {
			return nil, ErrTooManyHeaders
		}
		name, value, ok := splitHeader(h)
		if !ok {
			continue
		}
		req.Header[name] = value
		if name == "content-length" && value != "" && isDigit(value[0]) {
			numericCL = leadingDigits(value)
		}
	}

	n := numericCL
	if lim.ContentLength == CLLastValue {
		n = leadingDigits(req.Header["content-length"])
	}
	if n > lim.MaxBody {
		return nil, ErrTooLarge
	}
	req.ContentLength = n
	return req, nil
}

// ReadRequestBody reads the ContentLength body bytes of a request whose
// head ReadRequestHead returned.
func ReadRequestBody(r *bufio.Reader, req *Request) error {
	if req.ContentLength == 0 {
		return nil
	}
	body, err := readBody(r, int(req.ContentLength), "request")
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrIncompleteBody
	}
	if err != nil {
		return err
	}
	req.Body = body
	return nil
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line including its "\n", or what remains before
// end of input together with io.EOF. The slice may alias r's buffer.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	frag, err := r.ReadSlice('\n')
	if len(frag) > max {
		return nil, errLineTooLong
	}
	if err != bufio.ErrBufferFull {
		return frag, err
	}
	line := append([]byte(nil), frag...)
	for err == bufio.ErrBufferFull {
		frag, err = r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
	}
	return line, err
}

// trimEOL drops one "\r\n" or "\n" line ending.
func trimEOL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

// splitHeader applies upstream's /^([^:]+):\s*(.*)$/ and lowercases the name
// (ASCII only, as Perl's lc on byte strings).
func splitHeader(line []byte) (name, value string, ok bool) {
	i := 0
	for i < len(line) && line[i] != ':' {
		i++
	}
	if i == 0 || i == len(line) {
		return "", "", false
	}
	j := i + 1
	for j < len(line) && perltext.IsSpace(line[j]) {
		j++
	}
	return perltext.Lower(string(line[:i])), string(line[j:]), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// leadingDigits is the value of s's leading decimal digits, 0 without any,
// saturating well above any body limit.
func leadingDigits(s string) int64 {
	const ceiling = 1 << 62
	var n int64
	for i := 0; i < len(s) && isDigit(s[i]); i++ {
		if n < ceiling/10 {
			n = n*10 + int64(s[i]-'0')
		} else {
			n = ceiling
		}
	}
	return n
}
