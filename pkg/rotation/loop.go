package rotation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/sessioncache"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/testknobs"
)

// DefaultFirstPass is how long after start the loop first checks (§15.2.1),
// so pairing-mode is listening before any broadcast goes out.
const DefaultFirstPass = 5 * time.Second

// Loop is the background check loop of §15.2.1. It runs in pairing-mode and,
// when api_rotation_loop is set (D-24), in ctrl-exec-api: only one node of an
// HA pair should run it, or both would rotate.
type Loop struct {
	Rotator   *Rotator
	FirstPass time.Duration // delay before the first pass; 0 means DefaultFirstPass
	Interval  time.Duration // between passes (cert_check_interval); 0 means 4 hours
	// Leading, if set, says whether this node may run a pass now (the etcd
	// backend's election): a node that does not lead skips its passes,
	// and the first pass it leads is a first pass.
	Leading func() bool
}

// Run checks until ctx ends. The first pass checks and rotates, broadcasts
// and expires stale agents; each later pass, one Interval after the last,
// expires stale agents, checks, then broadcasts if it rotated or any agent
// is still pending. Every pass ends by deleting the .prev pair when it is no
// longer needed. A failing step is logged and the loop carries on.
func (l *Loop) Run(ctx context.Context) {
	first := l.FirstPass
	if first <= 0 {
		first = DefaultFirstPass
	}
	if !sleep(ctx, first) {
		return
	}
	interval := l.Interval
	if interval <= 0 {
		interval = config.DefaultCertCheckInterval * time.Second
	}
	didFirst := false
	for {
		switch {
		case l.Leading != nil && !l.Leading():
		case !didFirst:
			l.firstPass(ctx)
			didFirst = true
		default:
			l.pass(ctx)
		}
		if !sleep(ctx, interval) {
			return
		}
	}
}

func (l *Loop) firstPass(ctx context.Context) {
	r := l.Rotator
	l.check(ctx)
	if _, err := r.Broadcast(ctx); err != nil {
		l.warn("broadcast-error", err)
	}
	if err := r.ExpireStale(ctx); err != nil {
		l.warn("expire-stale-error", err)
	}
	l.cleanup(ctx)
}

func (l *Loop) pass(ctx context.Context) {
	r := l.Rotator
	if err := r.ExpireStale(ctx); err != nil {
		l.warn("expire-stale-error", err)
	}
	res, err := l.check(ctx)
	switch {
	case err != nil:
	case res.Rotated:
		if _, err := r.Broadcast(ctx); err != nil {
			l.warn("broadcast-error", err)
		}
	default:
		pending, err := r.AnyPending()
		if err != nil {
			l.warn("broadcast-retry-error", err)
		} else if pending {
			if _, err := r.Broadcast(ctx); err != nil {
				l.warn("broadcast-retry-error", err)
			}
		}
	}
	l.cleanup(ctx)
}

// check runs CheckAndRotate and logs its failure: cert-check-warn for what
// upstream reports in its result, cert-check-error for the rest.
func (l *Loop) check(ctx context.Context) (Result, error) {
	res, err := l.Rotator.CheckAndRotate(ctx)
	var w *Warning
	switch {
	case errors.As(err, &w):
		l.warn("cert-check-warn", err)
	case err != nil:
		l.warn("cert-check-error", err)
	}
	return res, err
}

func (l *Loop) cleanup(ctx context.Context) {
	if _, err := l.Rotator.CleanupPrev(ctx); err != nil {
		l.warn("cert-check-error", fmt.Errorf("delete the previous ctrl-exec cert: %w", err))
	}
}

func (l *Loop) warn(action string, err error) {
	l.Rotator.Log.Warn().Str("ERROR", err.Error()).Msg(action)
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Start runs l in a goroutine and returns a function that stops it and
// waits for it to finish (safe to call more than once). The loop also stops
// when ctx ends.
func Start(ctx context.Context, l Loop) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Run(ctx)
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// FirstPassFromEnv is the first-pass delay: DefaultFirstPass, or in a test
// build $CTRL_EXEC_TEST_CHECK_DELAY when it holds a positive duration.
func FirstPassFromEnv() time.Duration {
	return testknobs.Duration(testknobs.CheckDelay, DefaultFirstPass)
}

// ClockFromEnv returns real, or in a test build when $CTRL_EXEC_TEST_NOW
// holds an ISO time, a clock that starts at that time and runs at real
// speed. It sets the clock of rotation and the check loop; renewal and
// signing during pings are not affected.
func ClockFromEnv(real func() time.Time) func() time.Time {
	start, err := time.Parse("2006-01-02T15:04:05Z", testknobs.Lookup(testknobs.Now))
	if err != nil {
		return real
	}
	t0 := real()
	return func() time.Time { return start.Add(real().Sub(t0)) }
}

// StartLoop is how a role runs the loop (pairing-mode, and the API with
// api_rotation_loop): Start with the first-pass delay of FirstPassFromEnv,
// cfg's cert_check_interval and leading, the state backend's election
// (nil: this node always leads).
func StartLoop(ctx context.Context, cfg *config.Control, r *Rotator, leading func() bool) (stop func()) {
	return Start(ctx, Loop{
		Rotator:   r,
		FirstPass: FirstPassFromEnv(),
		Interval:  time.Duration(cfg.CertCheckInterval) * time.Second,
		Leading:   leading,
	})
}

// ForgetSessions is the AfterRotate of a role whose client resumes TLS
// sessions: the ctrl-exec certificate changed, so the in-memory cache
// (nil: none) is cleared and every user's cache file under stateDir is
// removed. A file that cannot be removed goes to warn.
func ForgetSessions(sessions *sessioncache.Cache, stateDir string, warn func(error)) func() {
	return func() {
		if sessions != nil {
			sessions.Clear()
		}
		if err := sessioncache.Remove(stateDir); err != nil && warn != nil {
			warn(err)
		}
	}
}
