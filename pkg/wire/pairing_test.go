package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReadPairingRequest(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		want     string
		wantRest string
		wantErr  error
	}{
		{name: "agent request", in: "POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
			want: `{"a":1}`},
		{name: "content-length any case, bytes after the body unread", in: "POST /pair HTTP/1.0\r\ncontent-LENGTH:2\r\n\r\n{}extra",
			want: `{}`, wantRest: "extra"},
		{name: "Content-Length found anywhere in the head", in: "POST /pair?Content-Length: 2 HTTP/1.0\r\n\r\n{}",
			want: `{}`},
		{name: "first match wins", in: "POST / HTTP/1.0\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}",
			want: `{`, wantRest: "}"},
		{name: "no Content-Length is an empty body", in: "POST /pair HTTP/1.0\r\n\r\n{}", want: "", wantRest: "{}"},
		{name: "LF-only head never ends", in: "POST /pair HTTP/1.0\nContent-Length: 2\n\n{}", wantErr: io.ErrUnexpectedEOF},
		{name: "empty connection", in: "", wantErr: io.ErrUnexpectedEOF},
		{name: "short body", in: "POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\n{}", wantErr: io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			got, err := ReadPairingRequest(br)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			rest, _ := io.ReadAll(br)
			if diff := cmp.Diff([]string{tt.want, tt.wantRest}, []string{string(got), string(rest)}); diff != "" {
				t.Errorf("[body rest] (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadPairingRequestLimits(t *testing.T) {
	for name, in := range map[string]string{
		"head over 64 KiB": "POST / HTTP/1.0\r\n" + strings.Repeat("X: y\r\n", MaxPairingHead/6) + "\r\n",
		"body over 1 MiB":  "POST / HTTP/1.0\r\nContent-Length: 1048577\r\n\r\n",
	} {
		if _, err := ReadPairingRequest(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func frame(body string) string {
	var b bytes.Buffer
	WritePairingFrame(&b, []byte(body))
	return b.String()
}

func TestWritePairingFrame(t *testing.T) {
	want := "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"status\":\"pending\"}"
	if diff := cmp.Diff(want, frame(`{"status":"pending"}`)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestReadPairingFrame(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr error // from the read after the wanted frames
	}{
		{name: "two frames then end", in: frame(`{"status":"pending","reqid":"r"}`) + frame(`{"status":"denied"}`),
			want: []string{`{"status":"pending","reqid":"r"}`, `{"status":"denied"}`}, wantErr: ErrNoResponse},
		{name: "LF-only and lowercase header", in: "HTTP/1.0 200 OK\ncontent-length: 2\n\n{}",
			want: []string{`{}`}, wantErr: ErrNoResponse},
		{name: "last Content-Length wins", in: "HTTP/1.0 200 OK\r\nContent-Length: 9\r\nContent-Length:1\r\n\r\n{}",
			want: []string{`{`}, wantErr: io.ErrUnexpectedEOF},
		{name: "no Content-Length", in: "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}", wantErr: ErrNoContentLength},
		{name: "Content-Length not at a line start", in: "HTTP/1.0 200 OK\r\nX-Content-Length: 2\r\n\r\n{}", wantErr: ErrNoContentLength},
		{name: "zero length", in: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", want: []string{""}, wantErr: ErrNoResponse},
		{name: "nothing", in: "", wantErr: ErrNoResponse},
		{name: "ends in headers", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "short body", in: "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n{}", wantErr: io.ErrUnexpectedEOF},
		{name: "body over 1 MiB", in: "HTTP/1.0 200 OK\r\nContent-Length: 1048577\r\n\r\n", wantErr: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tt.in))
			var got []string
			for range tt.want {
				b, err := ReadPairingFrame(br)
				if err != nil {
					t.Fatalf("frame %d: %v", len(got)+1, err)
				}
				got = append(got, string(b))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("frames (-want +got):\n%s", diff)
			}
			_, err := ReadPairingFrame(br)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("final read error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// The pairing server sends the second frame minutes after the first and
// keeps the connection open; the client must return each frame as soon as
// its last byte arrives.
func TestPairingFramesOverSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	first := `{"status":"pending","reqid":"0123456789abcdef"}`
	second := `{"status":"approved","cert":"-----BEGIN CERTIFICATE-----\n...","nonce":"n"}`
	request := "POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"csr\":\"pem\"}"

	clientRead := make(chan struct{})
	serverErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			serverErr <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		body, err := ReadPairingRequest(bufio.NewReader(c))
		if err != nil || string(body) != `{"csr":"pem"}` {
			serverErr <- errors.Join(err, errors.New("server read "+string(body)))
			return
		}
		WritePairingFrame(c, []byte(first))
		<-clientRead
		// Byte by byte, as a slow link would deliver it.
		for _, b := range []byte(frame(second)) {
			if _, err := c.Write([]byte{b}); err != nil {
				serverErr <- err
				return
			}
		}
		<-clientRead
		serverErr <- nil
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.(*net.TCPConn).SetNoDelay(true)
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var got []string
	for range 2 {
		b, err := ReadPairingFrame(br)
		if err != nil {
			t.Fatalf("frame %d: %v", len(got)+1, err)
		}
		got = append(got, string(b))
		clientRead <- struct{}{}
	}
	if diff := cmp.Diff([]string{first, second}, got); diff != "" {
		t.Errorf("frames (-want +got):\n%s", diff)
	}
	if err := <-serverErr; err != nil {
		t.Fatal(err)
	}
}

// net.Pipe hands over exactly what each Write holds, so a one-byte writer
// makes every read return a single byte.
func TestPairingFrameByteByByte(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() {
		defer server.Close()
		for _, b := range []byte(frame(`{"a":1}`) + frame(`{"b":2}`)) {
			if _, err := server.Write([]byte{b}); err != nil {
				return
			}
		}
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	var got []string
	for range 2 {
		b, err := ReadPairingFrame(br)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(b))
	}
	if diff := cmp.Diff([]string{`{"a":1}`, `{"b":2}`}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
