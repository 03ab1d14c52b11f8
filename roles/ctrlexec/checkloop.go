package ctrlexec

import (
	"context"
	"fmt"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/rotation"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
)

// startCheckLoop starts the certificate rotation check loop (§15.2.1) that
// runs inside pairing-mode: first pass 5 s after start, then every
// cert_check_interval seconds. It returns a function that stops the loop and
// waits for it to end (safe to call more than once; B-9: the loop never
// outlives pairing-mode).
//
// Test builds only (pkg/testknobs): $CTRL_EXEC_TEST_CHECK_DELAY replaces the
// 5 s, $CTRL_EXEC_TEST_NOW sets the loop's clock (see pkg/rotation).
//
// With etcd it also follows the shared ctrl-exec identity (a watch): a
// rotation on another node rewrites this node's key files at once, and
// the loop's TLS sessions are dropped as after its own rotation.
func startCheckLoop(ctx context.Context, e *env, conf *config.Control) (stop func()) {
	r := newRotator(e, conf)
	stopFollow := e.state.FollowIdentity(ctx, conf.CADir, e.log, r.AfterRotate)
	stopLoop := rotation.StartLoop(ctx, conf, r, e.state.Elect("rotation")) // etcd: one node's loop at a time
	return func() { stopLoop(); stopFollow() }
}

// newRotator is rotation as the CLI runs it: the dispatch client of
// ctrl-exec.conf and the role's clock (or the test clock). In pairing-mode
// the client keeps its TLS sessions in memory between passes; a rotation
// drops them and every user's session cache file.
func newRotator(e *env, conf *config.Control) *rotation.Rotator {
	client := dispatch.NewClient(conf, e.log)
	e.state.ShareIdentity(client) // nil (files) unless the caller opened it
	if conf.SessionCache {
		client.Sessions = sessioncache.New(e.now)
	}
	r := rotation.New(conf, client, e.log, rotation.ClockFromEnv(e.now))
	if e.state != nil { // opened by the caller: pairing-mode, rotate-cert
		r.Registry = e.state.RegistryIn(conf.RegistryDir)
		r.Serials = e.state.Serials
		r.Store = e.state.RotationStore(conf.RotationFile)
	}
	r.AfterRotate = rotation.ForgetSessions(client.Sessions, e.paths.StateDir(), e.warnSessionCache)
	return r
}

func (e *env) warnSessionCache(err error) {
	fmt.Fprintf(e.stderr, "Warning: TLS session cache not removed: %v\n", err)
}
