package api

import (
	"context"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/state"
)

// startRotationLoop runs the control-host certificate rotation check loop
// (§15.2.1) inside the API when ctrl-exec.conf sets api_rotation_loop (D-24);
// by default only pairing-mode runs it. With files, enable it on one node of
// an HA pair only: two loops sharing one CA would each rotate and
// broadcast; with etcd the nodes elect one loop to run at a time.
//
// The loop logs with the API's ident. It returns a function that stops the
// loop and waits for it; serve calls it before logging api-stop. Test builds
// read the knobs pairing-mode reads: $CTRL_EXEC_TEST_CHECK_DELAY, $CTRL_EXEC_TEST_NOW.
func startRotationLoop(ctx context.Context, cfg *config.Control, e *env, sessions *sessioncache.Cache, b *state.Backend) (stop func()) {
	if !cfg.APIRotationLoop {
		return func() {}
	}
	client := dispatch.NewClient(cfg, e.log)
	b.ShareIdentity(client)
	client.Sessions = sessions // nil when session_cache = off
	r := rotation.New(cfg, client, e.log, rotation.ClockFromEnv(e.now))
	r.Registry, r.Serials, r.Store = b.RegistryIn(cfg.RegistryDir), b.Serials, b.RotationStore(cfg.RotationFile)
	r.AfterRotate = rotation.ForgetSessions(sessions, e.paths.StateDir(), nil)
	return rotation.StartLoop(ctx, cfg, r, b.Elect("rotation")) // etcd: one node's loop at a time
}

// followIdentity keeps this node on the ctrl-exec certificate and key the
// etcd backend shares (a watch): a rotation on any node rewrites the key
// files here, the next dispatch reads them, and TLS sessions made with the
// old certificate are dropped. Files: nothing to follow.
func followIdentity(ctx context.Context, cfg *config.Control, e *env, sessions *sessioncache.Cache, b *state.Backend) (stop func()) {
	return b.FollowIdentity(ctx, cfg.CADir, e.log, rotation.ForgetSessions(sessions, e.paths.StateDir(), nil))
}
