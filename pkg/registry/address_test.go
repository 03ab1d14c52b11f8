package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// Addresses keeps the records' order, asks at most MaxLookups names at once
// and falls back to the recorded ip for a name that does not resolve.
func TestAddressesBoundedAndOrdered(t *testing.T) {
	const n = 3 * MaxLookups
	recs := make([]Record, n)
	want := make([]string, n)
	for i := range recs {
		recs[i] = Record{FieldHostname: fmt.Sprintf("h%d", i), FieldIP: fmt.Sprintf("10.0.0.%d", i)}
		want[i] = fmt.Sprintf("h%d:7443", i)
		if i%2 == 1 {
			want[i] = fmt.Sprintf("10.0.0.%d:7443", i)
		}
	}
	var inflight, most atomic.Int32
	gate := make(chan struct{})
	var once sync.Once
	lookup := func(ctx context.Context, host string) ([]string, error) {
		now := inflight.Add(1)
		defer inflight.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		if now == MaxLookups {
			once.Do(func() { close(gate) })
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var i int
		fmt.Sscanf(host, "h%d", &i)
		if i%2 == 1 {
			return nil, errors.New("no such host")
		}
		return []string{"192.0.2.1"}, nil
	}
	got := Addresses(context.Background(), recs, lookup)
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	if m := most.Load(); m != MaxLookups {
		t.Errorf("at most %d lookups at once, want %d", m, MaxLookups)
	}
}
