package wire

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"sync"
)

// Pairing messages are a CSR or a certificate pair: kilobytes. The caps only
// stop a peer from making us buffer without end.
const (
	MaxPairingHead = 64 << 10 // request head or response header block
	MaxPairingBody = 1 << 20
)

var (
	// ErrNoResponse: the server closed before sending anything.
	ErrNoResponse = errors.New("no response")
	// ErrNoContentLength: a pairing frame without a Content-Length header.
	ErrNoContentLength = errors.New("no Content-Length")
)

// Upstream's server searches the whole head, unanchored; its client anchors
// the search to a line start.
var (
	reHeadContentLength = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)Content-Length:[\t\n\f\r\v ]*(\d+)`) })
	reLineContentLength = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?i)^Content-Length:[\t\n\f\r\v ]*(\d+)`) })
)

// ReadPairingRequest is the pairing server's reader (§11.4 step 1): lines up
// to the first "\r\n\r\n" (CRLF required, the request line and method are
// ignored), Content-Length taken case-insensitively from anywhere in that
// head, then exactly that many bytes. No Content-Length, or 0, is an empty
// body. On any error the server answers "invalid request" if it still can.
func ReadPairingRequest(r *bufio.Reader) ([]byte, error) {
	var head []byte
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		line, err := readLine(r, MaxPairingHead-len(head))
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("pairing request head over %d bytes", MaxPairingHead)
		}
		head = append(head, line...)
		if err == io.EOF {
			return nil, fmt.Errorf("pairing request head ended before a blank line: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("read pairing request head: %w", err)
		}
	}
	n := 0
	if m := reHeadContentLength().FindSubmatch(head); m != nil {
		v, err := strconv.Atoi(string(m[1]))
		if err != nil || v > MaxPairingBody {
			return nil, fmt.Errorf("pairing request Content-Length %.20s over %d bytes", m[1], MaxPairingBody)
		}
		n = v
	}
	return readBody(r, n, "pairing request")
}

// WritePairingFrame writes one pairing response (§11.1); the status is
// always 200 and the outcome lives in the body.
func WritePairingFrame(w io.Writer, body []byte) error {
	return WriteResponse(w, 200, body, AgentPhrase)
}

// ReadPairingFrame is the pairing client's reader: header lines (the status
// line included, as upstream treats it) up to a blank line, Content-Length
// from a line starting with it (case-insensitive, last wins), then exactly
// that many bytes. It never reads past the frame, so it can be called again
// on the same reader for the second response.
func ReadPairingFrame(br *bufio.Reader) ([]byte, error) {
	n, seen, size := 0, false, 0
	for first := true; ; first = false {
		line, err := readLine(br, MaxPairingHead-size)
		if errors.Is(err, errLineTooLong) {
			return nil, fmt.Errorf("pairing response headers over %d bytes", MaxPairingHead)
		}
		if err == io.EOF && first && len(line) == 0 {
			return nil, ErrNoResponse
		}
		if err == io.EOF {
			return nil, fmt.Errorf("pairing response ended inside its headers: %w", io.ErrUnexpectedEOF)
		}
		if err != nil {
			return nil, fmt.Errorf("read pairing response: %w", err)
		}
		size += len(line)
		h := trimEOL(line)
		if len(h) == 0 {
			break
		}
		if m := reLineContentLength().FindSubmatch(h); m != nil {
			v, err := strconv.Atoi(string(m[1]))
			if err != nil || v > MaxPairingBody {
				return nil, fmt.Errorf("pairing response Content-Length %.20s over %d bytes", m[1], MaxPairingBody)
			}
			n, seen = v, true
		}
	}
	if !seen {
		return nil, ErrNoContentLength
	}
	return readBody(br, n, "pairing response")
}

// readBody reads exactly n bytes. Large claimed lengths are not allocated up
// front, so a peer that declares much and sends little costs little.
func readBody(r io.Reader, n int, what string) ([]byte, error) {
	const upfront = 64 << 10
	var body []byte
	var err error
	if n <= upfront {
		body = make([]byte, n)
		var got int
		got, err = io.ReadFull(r, body)
		body = body[:got]
	} else {
		body, err = io.ReadAll(io.LimitReader(r, int64(n)))
		if err == nil && len(body) < n {
			err = io.ErrUnexpectedEOF
		}
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("%s body: %d of %d bytes: %w", what, len(body), n, err)
	}
	return body, nil
}
