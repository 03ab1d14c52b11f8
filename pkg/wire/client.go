package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
)

// Caps on an agent's response as read by the control host. Script output is
// returned whole, so the body cap is generous; the head is two headers.
const (
	MaxClientBody    = 64 << 20
	maxClientHeaders = 100
	maxClientLine    = 16 << 10
)

// WriteClientRequest writes the control host's request to an agent (§10.1):
// HTTP/1.1, Host, Connection: close, Content-Type: application/json and an
// explicit Content-Length (0 for a nil body), in one write. method, path and
// host are refused if they could break the request line or a header.
func WriteClientRequest(w io.Writer, method, path, host string, body []byte) error {
	if err := writeRequest(w, method, path, host, true, body); err != nil {
		return fmt.Errorf("send %s %s to %s: %w", method, path, host, err)
	}
	return nil
}

// WriteRequest10 writes the HTTP/1.0 request upstream's agent sends to the
// pairing port and in self-ping: the request line, Content-Type:
// application/json and Content-Length, no Host, in one write. A failed write
// comes back as is, for the caller to name.
func WriteRequest10(w io.Writer, method, path string, body []byte) error {
	return writeRequest(w, method, path, "", false, body)
}

// writeRequest is HTTP/1.1 with Host and Connection: close, or HTTP/1.0
// without them.
func writeRequest(w io.Writer, method, path, host string, http11 bool, body []byte) error {
	if method == "" || strings.ContainsAny(method, " \t\r\n") ||
		path == "" || strings.ContainsAny(path, " \t\r\n") ||
		strings.ContainsAny(host, "\r\n") {
		return fmt.Errorf("request %q %q to %q: method, path or host not usable in a request line", method, path, host)
	}
	var b bytes.Buffer
	b.Grow(160 + len(body))
	if http11 {
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, path, host)
	} else {
		fmt.Fprintf(&b, "%s %s HTTP/1.0\r\n", method, path)
	}
	fmt.Fprintf(&b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	_, err := w.Write(b.Bytes())
	return err
}

// ReadClientResponse reads an agent's HTTP/1.x response. statusLine is the
// part after the version ("403 Error"), the form Perl's LWP reports and
// §10.3 quotes. The body is Content-Length bytes when that header is there,
// else everything up to end of input; over MaxClientBody is an error.
// Chunked encoding is not understood (agents never send it).
func ReadClientResponse(br *bufio.Reader) (status int, statusLine string, body []byte, err error) {
	return ReadClientResponseWithin(br, nil)
}

// ReadClientResponseWithin is ReadClientResponse that asks reserve for the
// body's bytes before keeping them: once for the whole Content-Length before
// reading it, or chunk by chunk without one. An error from reserve ends the
// read unread and comes back wrapped. A nil reserve allows everything.
func ReadClientResponseWithin(br *bufio.Reader, reserve func(n int64) error) (status int, statusLine string, body []byte, err error) {
	if reserve == nil {
		reserve = func(int64) error { return nil }
	}
	line, err := readLine(br, maxClientLine)
	if err != nil {
		return 0, "", nil, clientHeadErr(line, true, err)
	}
	status, statusLine, err = parseStatusLine(string(trimEOL(line)))
	if err != nil {
		return 0, "", nil, err
	}

	length := int64(-1)
	for count := 0; ; count++ {
		if count > maxClientHeaders {
			return 0, "", nil, fmt.Errorf("agent response has over %d header lines", maxClientHeaders)
		}
		line, err := readLine(br, maxClientLine)
		if err != nil {
			return 0, "", nil, clientHeadErr(line, false, err)
		}
		h := trimEOL(line)
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok || !strings.EqualFold(string(bytes.TrimSpace(name)), "Content-Length") {
			continue
		}
		v := string(bytes.TrimSpace(value))
		n, perr := strconv.ParseInt(v, 10, 64)
		if perr != nil || n < 0 {
			return 0, "", nil, fmt.Errorf("agent response Content-Length %q is not a byte count", v)
		}
		length = n
	}

	if length > MaxClientBody {
		return 0, "", nil, fmt.Errorf("agent response body of %d bytes is over the %d byte limit", length, MaxClientBody)
	}
	if length >= 0 {
		if err := reserve(length); err != nil {
			return 0, "", nil, fmt.Errorf("agent response body of %d bytes: %w", length, err)
		}
		body, err = readBody(br, int(length), "agent response")
		if err != nil {
			return 0, "", nil, err
		}
		return status, statusLine, body, nil
	}
	body, err = readToEOF(br, reserve)
	if err != nil {
		return 0, "", nil, err
	}
	return status, statusLine, body, nil
}

// readToEOF reads a body without Content-Length, at most MaxClientBody,
// reserving each chunk before keeping it.
func readToEOF(r io.Reader, reserve func(int64) error) ([]byte, error) {
	var body []byte
	chunk := make([]byte, 64<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			if len(body)+n > MaxClientBody {
				return nil, fmt.Errorf("agent response body is over the %d byte limit", MaxClientBody)
			}
			if rerr := reserve(int64(n)); rerr != nil {
				return nil, fmt.Errorf("agent response body over %d bytes: %w", len(body)+n, rerr)
			}
			body = append(body, chunk[:n]...)
		}
		if err == io.EOF {
			if body == nil {
				body = []byte{}
			}
			return body, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read agent response body: %w", err)
		}
	}
}

func clientHeadErr(line []byte, first bool, err error) error {
	switch {
	case errors.Is(err, errLineTooLong):
		return fmt.Errorf("agent response line over %d bytes", maxClientLine)
	case first && len(line) == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)):
		// A reset before any byte is the same event to the operator as a
		// clean close (LWP says so for both): e.g. a rate-blocked agent.
		return fmt.Errorf("agent closed the connection without a response: %w", ErrNoResponse)
	case err == io.EOF:
		return fmt.Errorf("agent response ended inside its headers: %w", io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("read agent response: %w", err)
}

// parseStatusLine splits "HTTP/1.0 403 Error" into 403 and "403 Error".
func parseStatusLine(line string) (int, string, error) {
	version, rest, _ := strings.Cut(line, " ")
	code, _, _ := strings.Cut(rest, " ")
	if !strings.HasPrefix(version, "HTTP/") || len(code) != 3 {
		return 0, "", fmt.Errorf("agent response status line %.80q is not HTTP", line)
	}
	n, err := strconv.Atoi(code)
	if err != nil || n < 100 {
		return 0, "", fmt.Errorf("agent response status line %.80q has no status code", line)
	}
	return n, strings.TrimRight(rest, " "), nil
}
