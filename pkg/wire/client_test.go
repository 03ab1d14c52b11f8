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

func TestWriteClientRequest(t *testing.T) {
	var b bytes.Buffer
	if err := WriteClientRequest(&b, "POST", "/run", "web-01:7443", []byte(`{"script":"x"}`)); err != nil {
		t.Fatal(err)
	}
	want := "POST /run HTTP/1.1\r\nHost: web-01:7443\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"script\":\"x\"}"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	b.Reset()
	if err := WriteClientRequest(&b, "GET", "/capabilities", "[::1]:7443", nil); err != nil {
		t.Fatal(err)
	}
	want = "GET /capabilities HTTP/1.1\r\nHost: [::1]:7443\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	for _, bad := range [][3]string{{"", "/run", "h"}, {"POST", "/r un", "h"}, {"POST", "/run", "h\r\nX: y"}, {"POST", "", "h"}} {
		if err := WriteClientRequest(io.Discard, bad[0], bad[1], bad[2], nil); err == nil {
			t.Errorf("WriteClientRequest(%q) succeeded", bad)
		}
	}
}

// Upstream's agent (bin/ctrl-exec-agent self-ping, AgentPairing request)
// prints exactly this: HTTP/1.0, no Host.
func TestWriteRequest10(t *testing.T) {
	var b bytes.Buffer
	if err := WriteRequest10(&b, "POST", "/pair", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	want := "POST /pair HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}"
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := WriteRequest10(io.Discard, "POST", "/p q", nil); err == nil {
		t.Error("a path with a space was written")
	}
}

func TestReadClientResponse(t *testing.T) {
	type result struct {
		Status int
		Line   string
		Body   string
	}
	tests := []struct {
		name    string
		in      string
		want    result
		wantErr error
	}{
		{name: "agent 200", in: resp(200, "OK", `{"exit":0}`), want: result{200, "200 OK", `{"exit":0}`}},
		{name: "agent 403", in: resp(403, "Error", `{"error":"serial mismatch"}`), want: result{403, "403 Error", `{"error":"serial mismatch"}`}},
		{name: "body stops at Content-Length", in: resp(200, "OK", `{}`) + "trailing", want: result{200, "200 OK", `{}`}},
		{name: "no Content-Length reads to end", in: "HTTP/1.1 500 Internal Server Error\r\nX: y\r\n\r\n{\"a\":1}", want: result{500, "500 Internal Server Error", `{"a":1}`}},
		{name: "LF-only, lowercase header, no phrase", in: "HTTP/1.0 404\ncontent-length:  2 \n\n{}", want: result{404, "404", `{}`}},
		{name: "nothing", in: "", wantErr: ErrNoResponse},
		{name: "ends in headers", in: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n", wantErr: io.ErrUnexpectedEOF},
		{name: "short body", in: "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n{}", wantErr: io.ErrUnexpectedEOF},
		{name: "not HTTP", in: "SSH-2.0-OpenSSH\r\n\r\n", wantErr: errAny},
		{name: "bad code", in: "HTTP/1.0 2x0 OK\r\n\r\n", wantErr: errAny},
		{name: "bad Content-Length", in: "HTTP/1.0 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: errAny},
		{name: "over the body cap", in: "HTTP/1.0 200 OK\r\nContent-Length: 67108865\r\n\r\n", wantErr: errAny},
		{name: "too many headers", in: "HTTP/1.0 200 OK\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n", wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, line, body, err := ReadClientResponse(bufio.NewReader(strings.NewReader(tt.in)))
			switch {
			case tt.wantErr == nil && err != nil, tt.wantErr != nil && err == nil:
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, result{status, line, string(body)}); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

var errAny = errors.New("any error")

// A round trip over a socket against a server framed like the agent.
func TestClientAgainstAgentServer(t *testing.T) {
	addr, reqs := agentServer(t, AgentLimits())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	body := []byte(`{"script":"backup","args":[],"reqid":"r"}`)
	if err := WriteClientRequest(c, "POST", "/run", addr, body); err != nil {
		t.Fatal(err)
	}
	status, line, got, err := ReadClientResponse(bufio.NewReader(c))
	if err != nil {
		t.Fatal(err)
	}
	req := <-reqs
	type exchange struct {
		Status       int
		Line, Body   string
		Method, Path string
		ReqBody      string
		Host         string
	}
	want := exchange{200, "200 OK", `{"len":41}`, "POST", "/run", string(body), addr}
	gotX := exchange{status, line, string(got), req.Method, req.Path, string(req.Body), req.Header["host"]}
	if diff := cmp.Diff(want, gotX); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// A peer that resets the connection before sending anything reads the same
// as one that closes it: no response.
func TestReadClientResponseResetIsNoResponse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.ReadFull(c, make([]byte, 4)) // the request has arrived
		c.(*net.TCPConn).SetLinger(0)   // close with RST
		c.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST /run HTTP/1.1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // let the RST arrive before the read
	_, _, _, err = ReadClientResponse(bufio.NewReader(conn))
	if !errors.Is(err, ErrNoResponse) {
		t.Fatalf("err = %v, want ErrNoResponse", err)
	}
}
