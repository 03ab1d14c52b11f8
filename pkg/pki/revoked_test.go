package pki_test

import (
	"math/big"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
)

// D-32: every upstream match is kept, and any reading of an entry that
// equals the peer's serial revokes it too.
func TestRevocationListReadings(t *testing.T) {
	tests := []struct {
		entry, peer string
		want        string // reading that matched, "" = not revoked
	}{
		// Control serials (≥ 0x01000000) are usually all digits.
		{"01000005", "01000005", pki.ReadingUpstream},
		{"01:00:00:05", "01000005", pki.ReadingHex}, // upstream misses (B-19)
		{"0x1000005", "01000005", pki.ReadingUpstream},
		{"0x01000005", "01000005", pki.ReadingUpstream},
		{"serial=01000005", "01000005", pki.ReadingUpstream},
		{"SERIAL=0x01000005", "01000005", pki.ReadingHex},
		{"0xserial=01000005", "01000005", pki.ReadingUpstream},
		{"16777221", "01000005", pki.ReadingDecimal}, // upstream misses (B-19)
		{"1000005", "01000005", pki.ReadingUpstream}, // decimal on both sides upstream
		{"01000006", "01000005", ""},
		{"01:00:00:06", "01000005", ""},
		{"16777222", "01000005", ""},
		// Serials with a letter match as upstream.
		{"ab", "ab", pki.ReadingUpstream},
		{"00:AB", "ab", pki.ReadingUpstream},
		{"171", "ab", pki.ReadingUpstream},
		{"serial=AB", "ab", pki.ReadingUpstream},
		{"ac", "ab", ""},
		// "10" upstream is decimal ten; read as hex it is sixteen: both go.
		{"10", "0a", pki.ReadingDecimal},
		{"10", "10", pki.ReadingUpstream},
		{"10", "11", ""},
		{"01000005", "", ""},
	}
	for _, tt := range tests {
		l := pki.NewRevocationList()
		if !l.Add(tt.entry) {
			t.Errorf("Add(%q) = false", tt.entry)
			continue
		}
		m, revoked := l.Match(tt.peer)
		if tt.want == "" {
			if revoked {
				t.Errorf("entry %q revokes peer %q (%s)", tt.entry, tt.peer, m.Reading)
			}
			continue
		}
		if diff := cmp.Diff(pki.RevocationMatch{Entry: tt.entry, Reading: tt.want}, m); diff != "" || !revoked {
			t.Errorf("entry %q, peer %q: revoked %v (-want +got):\n%s", tt.entry, tt.peer, revoked, diff)
		}
	}
}

func TestRevocationListRefusesNonSerials(t *testing.T) {
	l := pki.NewRevocationList()
	for _, e := range []string{"zz-top", "0o17", "1_000"} {
		if l.Add(e) {
			t.Errorf("Add(%q) = true", e)
		}
	}
	if l.Len() != 0 {
		t.Errorf("Len %d", l.Len())
	}
}

// An entry that is the peer's canonical serial, in any of the spellings
// D-32 lists, always revokes that peer.
func FuzzRevocationList(f *testing.F) {
	for _, b := range [][]byte{{1, 0, 0, 5}, {0xab}, {0x10}, {0}, {0x7f, 0xff, 0xff, 0xff, 0xff}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := new(big.Int).SetBytes(b)
		peer := n.Text(16)
		if len(peer)%2 == 1 {
			peer = "0" + peer
		}
		var colons []string
		for i := 0; i < len(peer); i += 2 {
			colons = append(colons, peer[i:i+2])
		}
		for _, entry := range []string{peer, strings.ToUpper(peer), "0x" + peer, "serial=" + peer,
			strings.Join(colons, ":"), n.Text(10)} {
			l := pki.NewRevocationList()
			if !l.Add(entry) {
				t.Fatalf("Add(%q) = false", entry)
			}
			if _, ok := l.Match(peer); !ok {
				t.Fatalf("entry %q does not revoke peer %s", entry, peer)
			}
		}
	})
}
