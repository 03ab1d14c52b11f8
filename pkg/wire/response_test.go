package wire

import (
	"bytes"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteResponse(t *testing.T) {
	tests := []struct {
		code    int
		body    string
		phrases PhraseTable
		want    string
	}{
		{200, `{"ok":1}`, AgentPhrase, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"ok\":1}"},
		{403, `{"error":"certificate revoked"}`, AgentPhrase, "HTTP/1.0 403 Error\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n{\"error\":\"certificate revoked\"}"},
		{500, `{}`, AgentPhrase, "HTTP/1.0 500 Error\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{403, `{}`, APIPhrase, "HTTP/1.0 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"},
		{418, ``, APIPhrase, "HTTP/1.0 418 Unknown\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n"},
		{200, `"é"`, APIPhrase, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\n\r\n\"é\""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := WriteResponse(&b, tt.code, []byte(tt.body), tt.phrases); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, b.String()); diff != "" {
			t.Errorf("%d %s (-want +got):\n%s", tt.code, tt.body, diff)
		}
	}
}

func TestPhraseTables(t *testing.T) {
	codes := []int{200, 400, 403, 404, 409, 413, 431, 500, 503}
	got := map[string][]string{}
	for _, c := range codes {
		got["agent"] = append(got["agent"], AgentPhrase(c))
		got["api"] = append(got["api"], APIPhrase(c))
	}
	want := map[string][]string{
		"agent": {"OK", "Bad Request", "Error", "Not Found", "Error", "Content Too Large", "Request Header Fields Too Large", "Error", "Error"},
		"api":   {"OK", "Bad Request", "Forbidden", "Not Found", "Conflict", "Content Too Large", "Request Header Fields Too Large", "Internal Server Error", "Unknown"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestJSON(t *testing.T) {
	tests := []struct {
		in   any
		want string
	}{
		{map[string]any{"b": []string{"<x>", "a&b"}, "a": 1}, `{"a":1,"b":["<x>","a&b"]}`},
		{map[string]bool{"ok": false}, `{"ok":false}`},
		{struct {
			Error string `json:"error"`
		}{"not found"}, `{"error":"not found"}`},
		{"line\nbreak", `"line\nbreak"`},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, string(JSON(tt.in))); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	}
	if _, err := Marshal(math.NaN()); err == nil {
		t.Error("Marshal(NaN) succeeded")
	}
}
