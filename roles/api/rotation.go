package api

import (
	"context"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
)

// startRotationLoop is where the API runs the control-host certificate
// rotation check loop when ctrl-exec.conf sets api_rotation_loop (D-24,
// SPEC §15.2.1); by default only pairing-mode runs it. The loop itself is
// not written yet (issue 6): for now this starts nothing. It must return a
// stop function that ends the loop and waits for it; serve calls it before
// logging api-stop.
func startRotationLoop(ctx context.Context, cfg *config.Control, e *env) (stop func()) {
	if !cfg.APIRotationLoop {
		return func() {}
	}
	_ = ctx // issue 6: run the check loop until ctx ends
	return func() {}
}
