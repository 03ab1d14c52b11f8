package wire

import (
	"bufio"
	"bytes"
	"errors"
	"testing"
)

func FuzzReadRequest(f *testing.F) {
	f.Add([]byte("POST /run HTTP/1.1\r\nContent-Length: 7\r\n\r\n{\"a\":1}"), false)
	f.Add([]byte("GET /capabilities HTTP/1.0\n\n"), true)
	f.Add([]byte("POST /ping HTTP/1.0\r\nContent-Length: 99999999999999999999\r\n\r\n"), false)
	f.Add([]byte("POST /run HTTP/1.0\r\nContent-Length: 2\r\ncontent-length: x\r\n\r\n{}"), true)
	f.Add([]byte("\r\n"), false)
	f.Add([]byte("GET / HTTP/1.0\r\na:1\r\nb:2\r\nc:3\r\nd:4\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, in []byte, api bool) {
		lim := Limits{MaxHeaders: 3, MaxBody: 64, MaxLineBytes: 32, ContentLength: CLLastValue}
		if api {
			lim.ContentLength = CLLastNumeric
		}
		req, err := ReadRequest(bufio.NewReader(bytes.NewReader(in)), lim)
		var re *RequestError
		if err != nil {
			if !errors.As(err, &re) {
				t.Fatalf("in-memory input gave a non-request error: %v", err)
			}
			return
		}
		if req.Method == "" || len(req.Header) > lim.MaxHeaders {
			t.Fatalf("bad request %+v", req)
		}
		if int64(len(req.Body)) != req.ContentLength || req.ContentLength > lim.MaxBody {
			t.Fatalf("body %d bytes, Content-Length %d", len(req.Body), req.ContentLength)
		}
	})
}

func FuzzReadPairingRequest(f *testing.F) {
	f.Add([]byte("POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("x\r\n\r\n"))
	f.Add([]byte("Content-Length:5\r\n\r\nab"))
	f.Fuzz(func(t *testing.T, in []byte) {
		body, err := ReadPairingRequest(bufio.NewReader(bytes.NewReader(in)))
		if err == nil && len(body) > MaxPairingBody {
			t.Fatalf("%d byte body", len(body))
		}
		if err == nil && !bytes.HasSuffix(in[:bytes.Index(in, []byte("\r\n\r\n"))+4+len(body)], body) {
			t.Fatalf("body %q is not the bytes after the head", body)
		}
	})
}

func FuzzReadPairingFrame(f *testing.F) {
	f.Add([]byte("HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"))
	f.Add([]byte("HTTP/1.0 200 OK\ncontent-length:0\n\n"))
	f.Add([]byte("Content-Length: 3\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for range 2 {
			body, err := ReadPairingFrame(br)
			if err != nil {
				return
			}
			if len(body) > MaxPairingBody {
				t.Fatalf("%d byte body", len(body))
			}
		}
	})
}

func FuzzReadClientResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.0 403 Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"))
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\nto the end"))
	f.Add([]byte("HTTP/1.0 200\ncontent-length: 1\n\nab"))
	f.Fuzz(func(t *testing.T, in []byte) {
		status, line, body, err := ReadClientResponse(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			return
		}
		if status < 100 || status > 999 || len(line) < 3 || len(body) > len(in) {
			t.Fatalf("status %d line %q body %d bytes", status, line, len(body))
		}
	})
}
