package ctrlexec

import (
	"context"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
)

// startCheckLoop starts the certificate rotation check loop (§15.2.1) that
// runs inside pairing-mode: first pass 5 s after start, then every
// cert_check_interval seconds. It returns a function that stops the loop and
// waits for it to end (safe to call more than once; B-9: the loop never
// outlives pairing-mode).
//
// Test knobs (end-to-end tests only): $CTRL_EXEC_TEST_CHECK_DELAY replaces
// the 5 s, $CTRL_EXEC_TEST_NOW sets the loop's clock (see pkg/rotation).
func startCheckLoop(ctx context.Context, e *env, conf *config.Control) (stop func()) {
	return rotation.Start(ctx, rotation.Loop{
		Rotator:   newRotator(e, conf),
		FirstPass: rotation.FirstPassFromEnv(),
		Interval:  time.Duration(conf.CertCheckInterval) * time.Second,
	})
}

// newRotator is rotation as the CLI runs it: the dispatch client of
// ctrl-exec.conf and the role's clock (or the test clock).
func newRotator(e *env, conf *config.Control) *rotation.Rotator {
	return rotation.New(conf, dispatch.NewClient(conf, e.log), e.log, rotation.ClockFromEnv(e.now))
}
