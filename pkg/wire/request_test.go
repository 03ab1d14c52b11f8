package wire

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func headers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-H%d: v\r\n", i)
	}
	return b.String()
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want *Request
		err  error
	}{
		{
			name: "post with body",
			in:   "POST /run HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/run", ContentLength: 7, Body: []byte(`{"a":1}`),
				Header: map[string]string{"host": "a", "content-type": "application/json", "content-length": "7"}},
		},
		{
			name: "LF-only lines",
			in:   "POST /ping HTTP/1.0\nContent-Length: 2\n\n{}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/ping", ContentLength: 2, Body: []byte("{}"),
				Header: map[string]string{"content-length": "2"}},
		},
		{
			name: "path kept exact with query, method as sent",
			in:   "get /status/ab%20c?x=1&y HTTP/1.1\r\n\r\n",
			lim:  APILimits(),
			want: &Request{Method: "get", Path: "/status/ab%20c?x=1&y", Header: map[string]string{}},
		},
		{
			name: "missing path and version",
			in:   "GET\r\n\r\n",
			lim:  APILimits(),
			want: &Request{Method: "GET", Header: map[string]string{}},
		},
		{
			name: "leading and repeated whitespace in request line",
			in:   "  GET \t /capabilities   HTTP/1.0\r\n\r\n",
			lim:  AgentLimits(),
			want: &Request{Method: "GET", Path: "/capabilities", Header: map[string]string{}},
		},
		{
			name: "header names lowercased, last wins, value keeps inner and trailing spaces",
			in:   "GET / HTTP/1.0\r\nX-A: one\r\nx-a:\t two  \r\nNoColon\r\n: empty name\r\nK:v:w\r\n\r\n",
			lim:  AgentLimits(),
			want: &Request{Method: "GET", Path: "/", Header: map[string]string{"x-a": "two  ", "k": "v:w"}},
		},
		{
			name: "end of input ends the headers",
			in:   "GET /capabilities HTTP/1.0\r\nHost: a\r\n",
			lim:  AgentLimits(),
			want: &Request{Method: "GET", Path: "/capabilities", Header: map[string]string{"host": "a"}},
		},
		{
			name: "request line without newline",
			in:   "GET /capabilities",
			lim:  AgentLimits(),
			want: &Request{Method: "GET", Path: "/capabilities", Header: map[string]string{}},
		},
		{
			name: "agent: non-numeric Content-Length is 0",
			in:   "POST /run HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/run", Header: map[string]string{"content-length": "abc"}},
		},
		{
			name: "agent: last Content-Length wins even when not numeric",
			in:   "POST /run HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: x\r\n\r\n{}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/run", Header: map[string]string{"content-length": "x"}},
		},
		{
			name: "api: last numeric Content-Length wins",
			in:   "POST /run HTTP/1.1\r\nContent-Length: 2\r\ncontent-length: x\r\n\r\n{}",
			lim:  APILimits(),
			want: &Request{Method: "POST", Path: "/run", ContentLength: 2, Body: []byte("{}"),
				Header: map[string]string{"content-length": "x"}},
		},
		{
			name: "leading digits count",
			in:   "POST /run HTTP/1.1\r\nContent-Length: 2 bytes\r\n\r\n{}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/run", ContentLength: 2, Body: []byte("{}"),
				Header: map[string]string{"content-length": "2 bytes"}},
		},
		{
			name: "body bytes past Content-Length stay unread",
			in:   "POST /run HTTP/1.1\r\nContent-Length: 1\r\n\r\n{}",
			lim:  AgentLimits(),
			want: &Request{Method: "POST", Path: "/run", ContentLength: 1, Body: []byte("{"),
				Header: map[string]string{"content-length": "1"}},
		},
		{name: "32 headers", in: "GET / HTTP/1.0\r\n" + headers(32) + "\r\n", lim: AgentLimits(),
			want: &Request{Method: "GET", Path: "/", Header: func() map[string]string {
				m := map[string]string{}
				for i := range 32 {
					m[fmt.Sprintf("x-h%d", i)] = "v"
				}
				return m
			}()}},
		{name: "33 headers", in: "GET / HTTP/1.0\r\n" + headers(33) + "\r\n", lim: AgentLimits(), err: ErrTooManyHeaders},
		{name: "33 lines that are not headers", in: "GET / HTTP/1.0\r\n" + strings.Repeat("junk\r\n", 33) + "\r\n", lim: AgentLimits(), err: ErrTooManyHeaders},
		{name: "empty input", in: "", lim: AgentLimits(), err: ErrEmptyRequest},
		{name: "blank request line", in: "\r\nGET / HTTP/1.0\r\n\r\n", lim: AgentLimits(), err: ErrEmptyRequest},
		{name: "whitespace request line", in: " \t\r\n", lim: APILimits(), err: ErrEmptyRequest},
		{name: "over MaxBody", in: "POST /run HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", lim: AgentLimits(), err: ErrTooLarge},
		{name: "huge Content-Length", in: "POST /run HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n\r\n", lim: APILimits(), err: ErrTooLarge},
		{name: "short body", in: "POST /run HTTP/1.1\r\nContent-Length: 10\r\n\r\n{}", lim: AgentLimits(), err: ErrIncompleteBody},
		{name: "long request line", in: "GET /" + strings.Repeat("a", 16<<10) + " HTTP/1.0\r\n\r\n", lim: AgentLimits(), err: ErrRequestLineTooLong},
		{name: "long header line", in: "GET / HTTP/1.0\r\nX: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", lim: AgentLimits(), err: ErrHeaderLineTooLong},
		{name: "header line at the limit", in: "GET / HTTP/1.0\r\nX: " + strings.Repeat("a", 16<<10-5) + "\r\n\r\n", lim: AgentLimits(),
			want: &Request{Method: "GET", Path: "/", Header: map[string]string{"x": strings.Repeat("a", 16<<10-5)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadRequest(bufio.NewReader(strings.NewReader(tt.in)), tt.lim)
			if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequestErrorStatus(t *testing.T) {
	got := map[string]int{}
	for _, e := range []*RequestError{ErrEmptyRequest, ErrTooManyHeaders, ErrTooLarge, ErrRequestLineTooLong, ErrHeaderLineTooLong, ErrIncompleteBody} {
		got[e.Msg] = e.Status
	}
	want := map[string]int{
		"empty request": 400, "too many headers": 431, "request too large": 413,
		"request line too long": 400, "header line too long": 431, "incomplete body": 400,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// agentServer answers one request per connection the way the agent does and
// reports what it read.
func agentServer(t *testing.T, lim Limits) (addr string, reqs <-chan *Request) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *Request, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			req, err := ReadRequest(bufio.NewReader(c), lim)
			var re *RequestError
			switch {
			case errors.As(err, &re):
				WriteResponse(c, re.Status, JSON(map[string]string{"error": re.Msg}), AgentPhrase)
			case err != nil:
			default:
				out <- req
				WriteResponse(c, 200, JSON(map[string]any{"len": len(req.Body)}), AgentPhrase)
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String(), out
}

// exchange sends raw without closing its side and returns everything the
// server sends until it closes: a server that waited for more input would
// make this time out.
func exchange(t *testing.T, addr, raw string, closeWrite bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		c.(*net.TCPConn).CloseWrite()
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading response: %v (got %q)", err, got)
	}
	return string(got)
}

func resp(code int, phrase, body string) string {
	return fmt.Sprintf("HTTP/1.0 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", code, phrase, len(body), body)
}

func TestAgentFramingOverSocket(t *testing.T) {
	addr, _ := agentServer(t, AgentLimits())
	mib := strings.Repeat("x", 1<<20)
	tests := []struct {
		name       string
		raw        string
		closeWrite bool
		want       string
	}{
		{"1 MiB body accepted", "POST /run HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n" + mib, false,
			resp(200, "OK", `{"len":1048576}`)},
		{"1 MiB + 1 refused before the body is sent", "POST /run HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", false,
			resp(413, "Content Too Large", `{"error":"request too large"}`)},
		{"32 headers accepted", "GET /capabilities HTTP/1.0\r\n" + headers(32) + "\r\n", false,
			resp(200, "OK", `{"len":0}`)},
		{"33rd header refused before the blank line or body", "POST /run HTTP/1.0\r\nContent-Length: 5\r\n" + headers(32), false,
			resp(431, "Request Header Fields Too Large", `{"error":"too many headers"}`)},
		{"LF-only lines", "POST /ping HTTP/1.0\nContent-Length: 2\n\n{}", false,
			resp(200, "OK", `{"len":2}`)},
		{"empty connection", "", true,
			resp(400, "Bad Request", `{"error":"empty request"}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, exchange(t, addr, tt.raw, tt.closeWrite)); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
		})
	}
}

func BenchmarkReadRequest(b *testing.B) {
	body := `{"script":"backup","args":["--full"],"reqid":"a3f9b2c10001dead","username":"ops","token":"t0k3n"}`
	raw := "POST /run HTTP/1.1\r\nHost: web-01:7443\r\nUser-Agent: ctrl-exec\r\nConnection: close\r\n" +
		fmt.Sprintf("Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body)) + body
	r := strings.NewReader(raw)
	br := bufio.NewReader(r)
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		r.Reset(raw)
		br.Reset(r)
		if _, err := ReadRequest(br, AgentLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
