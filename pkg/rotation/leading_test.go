package rotation

import (
	"context"
	"testing"
	"time"
)

// A node that does not lead runs no pass at all: the loop has no Rotator
// here, so any pass would panic.
func TestLoopSkipsPassesWhileNotLeading(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	asked := 0
	l := Loop{FirstPass: time.Nanosecond, Interval: time.Nanosecond, Leading: func() bool {
		if asked++; asked == 5 {
			cancel()
		}
		return false
	}}
	l.Run(ctx)
	if asked < 5 {
		t.Errorf("Leading asked %d times, want 5", asked)
	}
}
