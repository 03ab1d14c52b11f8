package pairing

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestPairingParseSubmission(t *testing.T) {
	tests := []struct {
		body    string
		want    Submission
		wantErr string
	}{
		{`{"hostname":"web-01","csr":"C","nonce":"N"}`, Submission{Hostname: "web-01", CSR: "C", Nonce: "N"}, ""},
		{`{"hostname":"web-01","csr":"C"}`, Submission{Hostname: "web-01", CSR: "C"}, ""},
		{`{"hostname":"web-01","csr":"C","nonce":null,"port":7543,"extra":[1]}`, Submission{Hostname: "web-01", CSR: "C", Port: 7543}, ""},
		{` {"hostname":"h","csr":"C"} ` + "\n", Submission{Hostname: "h", CSR: "C"}, ""},
		{``, Submission{}, "not a JSON object"},
		{`null`, Submission{}, "not a JSON object"},
		{`[]`, Submission{}, "not a JSON object"},
		{`"x"`, Submission{}, "not a JSON object"},
		{`{"hostname":"h","csr":"C"} {}`, Submission{}, "trailing data"},
		{`{"csr":"C"}`, Submission{}, "hostname is missing"},
		{`{"hostname":"","csr":"C"}`, Submission{}, "hostname is empty"},
		{`{"hostname":7,"csr":"C"}`, Submission{}, "hostname is not a string"},
		{`{"hostname":"h"}`, Submission{}, "csr is missing"},
		{`{"hostname":"h","csr":null}`, Submission{}, "csr is missing"},
		{`{"hostname":"h","csr":"C","nonce":5}`, Submission{}, "nonce is not a string"},
		{`{"hostname":"h","csr":"C","port":0}`, Submission{}, "not a port number"},
		{`{"hostname":"h","csr":"C","port":65536}`, Submission{}, "not a port number"},
		{`{"hostname":"h","csr":"C","port":1.5}`, Submission{}, "not a port number"},
		{`{"hostname":"h","csr":"C","port":"7443"}`, Submission{}, "not a port number"},
		{`{"hostname":"h","csr":"C","tags":{"role":"web","env":"prod"}}`, Submission{Hostname: "h", CSR: "C", Tags: map[string]string{"role": "web", "env": "prod"}}, ""},
		{`{"hostname":"h","csr":"C","tags":null}`, Submission{Hostname: "h", CSR: "C"}, ""},
		{`{"hostname":"h","csr":"C","tags":{"n":1}}`, Submission{}, "tags is not an object of strings"},
		{`{"hostname":"h","csr":"C","tags":["role"]}`, Submission{}, "tags is not an object of strings"},
	}
	for _, tt := range tests {
		got, err := ParseSubmission([]byte(tt.body))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseSubmission(%s) = %+v, %v; want error %q", tt.body, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseSubmission(%s): %v", tt.body, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseSubmission(%s) (-want +got):\n%s", tt.body, diff)
		}
	}
}

func TestPairingSubmissionEncode(t *testing.T) {
	got := string(Submission{Hostname: "h", CSR: "-----BEGIN CERTIFICATE REQUEST-----\n<x>\n", Nonce: "n"}.Encode())
	want := `{"hostname":"h","csr":"-----BEGIN CERTIFICATE REQUEST-----\n<x>\n","nonce":"n"}`
	if got != want {
		t.Errorf("Encode = %s, want %s", got, want)
	}
	// Tags are an extra key only when there are some (a Perl server ignores it).
	got = string(Submission{Hostname: "h", CSR: "C", Tags: map[string]string{"role": "web"}}.Encode())
	if want := `{"hostname":"h","csr":"C","nonce":"","tags":{"role":"web"}}`; got != want {
		t.Errorf("Encode with tags = %s, want %s", got, want)
	}
}

// FuzzPairingRequest: the pairing server's parser of what any network peer
// sends must never panic, and what it accepts must satisfy its contract.
func FuzzPairingRequest(f *testing.F) {
	for _, seed := range []string{
		`{"hostname":"web-01","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n","nonce":"0123456789abcdef0123456789abcdef"}`,
		`{"hostname":"web-01","csr":"C","port":7443}`,
		`{"hostname":"web-01","csr":"C","tags":{"role":"web"}}`, `{"hostname":"h","csr":"C","tags":{}}`,
		`{"hostname":"","csr":""}`, `[]`, `null`, `{}`, `{"port":1e400}`, `{"hostname":"\u0000","csr":"\ud800"}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		s, err := ParseSubmission(body)
		if err != nil {
			return
		}
		if s.Hostname == "" || s.CSR == "" || s.Port < 0 || s.Port > 65535 {
			t.Errorf("accepted %+v from %q", s, body)
		}
		again, err := ParseSubmission(s.Encode())
		if err != nil || !cmp.Equal(again, s, cmpopts.EquateEmpty()) {
			t.Errorf("round trip of %+v: %+v, %v", s, again, err)
		}
	})
}
