package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/rs/zerolog"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/logx"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki/pkitest"
)

func TestParseRevoked(t *testing.T) {
	tests := []struct {
		name, content string
		len           int      // distinct serials upstream's reading revokes
		revoked       []string // peers (canonical hex) it revokes
		warn          string
	}{
		{"empty", "", 0, nil, ""},
		{"comments and blanks", "# header\n\n   \n# ab\n", 0, nil, ""},
		{"every spelling", "ab\n0xAC\nserial=AD\n00:AE\n175\nB0 # inline comment\n\t0b1\r\n", 7,
			[]string{"ab", "ac", "ad", "ae", "af", "b0", "0b1"}, ""},
		{"digit-only hex is decimal and hex", "0A\nserial=10\n", 2, []string{"0a", "10"}, ""},
		{"not a serial", "zz-top\nab\n", 1, []string{"ab"}, "ACTION=config-warn ENTRY=zz-top MSG=\"revoked serial not understood - entry ignored\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log syncBuffer
			set := parseRevoked([]byte(tt.content), logx.NewWriter("x", &log))
			if set.Len() != tt.len {
				t.Errorf("Len %d, want %d", set.Len(), tt.len)
			}
			for _, peer := range tt.revoked {
				if _, ok := set.Match(peer); !ok {
					t.Errorf("peer %s not revoked", peer)
				}
			}
			if _, ok := set.Match("c0ffee"); ok {
				t.Error("an unlisted peer is revoked")
			}
			_, gotWarn, _ := strings.Cut(log.String(), "]: ")
			if diff := cmp.Diff(tt.warn, gotWarn); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRevokesNormalisesThePeer(t *testing.T) {
	// Entry "10" is decimal ten upstream, "a"; the peer's canonical hex goes
	// through the same function, so serial 0x10 ("10") matches too. D-32
	// adds the entry's own readings: decimal ten also revokes "0a".
	set := parseRevoked([]byte("10\n"), zerolog.Nop())
	for peer, want := range map[string]bool{"10": true, "0a": true, "a": true, "11": false, "": false} {
		if _, got := set.Match(peer); got != want {
			t.Errorf("Match(%q) = %v, want %v", peer, got, want)
		}
	}
}

func TestLoadRevokedAbsentFile(t *testing.T) {
	var log syncBuffer
	path := filepath.Join(t.TempDir(), "revoked-serials")
	if set := loadRevoked(path, logx.NewWriter("x", &log), nil); set.Len() != 0 {
		t.Errorf("set %v", set)
	}
	want := `ACTION=revoked-serials-absent PATH=` + path + ` REASON="file not found - no serials revoked"` + "\n"
	if _, got, _ := strings.Cut(log.String(), "]: "); got != want {
		t.Errorf("log %q, want %q", got, want)
	}
}

func TestStoredSerialFollowsTheFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ctrl-exec-serial")
	var s storedSerial
	if got := s.get(path); got != "" {
		t.Errorf("absent: %q", got)
	}
	steps := []string{"01000005\n", "01000006\n", "bad!\n", "0abc\n"}
	want := []string{"01000005", "01000006", "", "0abc"}
	for i, content := range steps {
		// Replaced the way update-ctrl-exec-serial does: a new file renamed in.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
		if got := s.get(path); got != want[i] {
			t.Errorf("after writing %q: %q, want %q", content, got, want[i])
		}
	}
	// Rewritten in place with the same size.
	if err := os.WriteFile(path, []byte("0abd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := s.get(path); got != "0abd" {
		t.Errorf("in-place rewrite: %q", got)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if got := s.get(path); got != "" {
		t.Errorf("after removal: %q", got)
	}
}

func FuzzParseRevoked(f *testing.F) {
	for _, seed := range []string{"ab\n", "0xAB\nserial=ab\n00:ab\n171\n", "# c\n  x_y  \n", "::\n0x\nserial=\n", "\x00\xff"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, ok := parseRevoked(data, zerolog.Nop()).Match(""); ok {
			t.Fatal("a peer without a serial is revoked")
		}
	})
}

func FuzzDecodeObject(f *testing.F) {
	for _, seed := range []string{`{"script":"x","args":["a",1,true,null],"reqid":5}`, `[]`, `{"a":{}} `, `{`, "{\"\xff\":1}", `null`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		obj, ok := decodeObject(body)
		if !ok {
			return
		}
		for _, key := range []string{"script", "args", "reqid", "username", "token"} {
			_ = logText(obj.get(key))
		}
		if list, isList := obj.get("args").([]any); isList {
			scalarTexts(list)
		}
	})
}

// The cached /ping expiry follows the files: a replaced certificate shows
// its own date, a missing key makes it "unknown", a restored key brings it back.
func TestExpiryCacheFollowsTheFiles(t *testing.T) {
	c := testCerts(t)
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "agent.crt"), filepath.Join(dir, "agent.key")
	copyTo := func(from, to string) {
		data, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(c.agentCert, cert)
	copyTo(c.agentKey, key)
	cfg := &config.Agent{Cert: cert, Key: key, CA: c.ca}
	var e expiryCache
	var got []string
	got = append(got, e.get(cfg), e.get(cfg))
	csr, err := pki.CreateCSR(pkitest.Key(t, 2048, 1), "agent-test")
	if err != nil {
		t.Fatal(err)
	}
	renewed, err := c.authority.SignCSR(csr, 10, time.Now(), pki.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cert, pki.CertPEM(renewed), 0o600); err != nil {
		t.Fatal(err)
	}
	got = append(got, e.get(cfg))
	os.Rename(key, key+".away")
	got = append(got, e.get(cfg))
	os.Rename(key+".away", key)
	got = append(got, e.get(cfg))
	a, b := pki.FormatOpenSSLDate(c.agentNotAfter), pki.FormatOpenSSLDate(renewed.NotAfter)
	if diff := cmp.Diff([]string{a, a, b, "unknown", b}, got); diff != "" {
		t.Errorf("expiry (-want +got):\n%s", diff)
	}
}
