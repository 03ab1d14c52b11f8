package ctrlexec

import (
	"context"
	"sync"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
)

// startCheckLoop starts the certificate rotation check loop (§15.2) that runs
// inside pairing-mode, first pass 5 s after start, and returns a function
// that stops the loop and waits for it to end (safe to call more than once;
// B-9: the loop never outlives pairing-mode).
//
// HOOK: the rotation issue implements the loop here. Until then there is no
// loop, and pairing-mode works without it.
func startCheckLoop(ctx context.Context, e *env, conf *config.Control) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done() // no checks yet
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}
