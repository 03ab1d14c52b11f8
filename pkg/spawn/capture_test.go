package spawn

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Whatever the chunking, a stream over the limit keeps its first and last
// halves around the marker; one within it is kept whole.
func TestCaptureKeepsHeadAndTail(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = 'a' + byte(i%26)
	}
	rng := rand.New(rand.NewSource(1))
	tests := []struct{ limit, size int }{
		{0, 10000}, {100, 0}, {100, 50}, {100, 100}, {100, 101}, {100, 10000},
		{101, 10000}, {1, 10}, {2, 3}, {4096, 10000},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 7, 64, 100000} {
			c := &capture{limit: tt.limit}
			for p := data[:tt.size]; len(p) > 0; {
				k := min(len(p), 1+rng.Intn(chunk))
				c.Write(p[:k])
				p = p[k:]
			}
			got, cut := c.bytes()
			want, wantCut := data[:tt.size], int64(0)
			if tt.limit > 0 && tt.size > tt.limit {
				h, r := tt.limit-tt.limit/2, tt.limit/2
				wantCut = int64(tt.size - h - r)
				want = []byte(string(data[:h]) + CutMarker(wantCut) + string(data[tt.size-r:tt.size]))
			}
			if !bytes.Equal(got, want) || cut != wantCut {
				t.Errorf("limit %d, %d bytes in chunks up to %d: cut %d (want %d)\n got %.200q\nwant %.200q", tt.limit, tt.size, chunk, cut, wantCut, got, want)
			}
		}
	}
}

// A cut never leaves half a UTF-8 sequence on either side of the marker.
func TestCaptureCutsWholeRunes(t *testing.T) {
	c := &capture{limit: 10}
	c.Write([]byte(strings.Repeat("é", 20))) // 40 bytes: head and ring 5 each, 2½ runes: 4 kept of each
	got, cut := c.bytes()
	if want := "éé" + CutMarker(32) + "éé"; string(got) != want || cut != 32 {
		t.Errorf("got %q (cut %d), want %q", got, cut, want)
	}
}

// A child printing 64 MiB with a 64 KiB cap costs the caller about the cap,
// not the output: allocations during Run stay far below what was printed.
func TestRunOutputMemoryIsBounded(t *testing.T) {
	const printed, limit = 64 << 20, 64 << 10
	cmd := Cmd{Path: "/bin/sh", Args: []string{"-c", fmt.Sprintf("head -c %d /dev/zero | tr '\\0' o; echo; echo end", printed)}, MaxOutput: limit}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res := Run(context.Background(), cmd)
	runtime.ReadMemStats(&after)
	if res.Exit != 0 {
		t.Fatalf("exit %d: %s", res.Exit, res.Stderr)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*limit+(1<<20) {
		t.Errorf("Run allocated %d bytes for %d printed with MaxOutput %d", alloc, printed, limit)
	}
	wantCut := int64(printed + len("\nend\n") - limit)
	want := strings.Repeat("o", limit/2) + CutMarker(wantCut) + strings.Repeat("o", limit/2-5) + "\nend\n"
	if diff := cmp.Diff(want, string(res.Stdout)); diff != "" || res.StdoutCut != wantCut {
		t.Errorf("cut %d (want %d); stdout (-want +got):\n%.500s", res.StdoutCut, wantCut, diff)
	}
}
