package agent

import (
	"context"
	"strconv"
	"time"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/spawn"
)

// scriptDeadline bounds a script by its agent.conf [timeouts] entry (a Go
// addition; upstream scripts run unbounded, §12.2). Without one, ctx is
// returned as is.
func scriptDeadline(ctx context.Context, cfg *config.Agent, name string) (context.Context, time.Duration, context.CancelFunc) {
	secs, ok := cfg.ScriptTimeouts[name]
	if !ok {
		return ctx, 0, func() {}
	}
	limit := time.Duration(secs) * time.Second
	runCtx, cancel := context.WithTimeout(ctx, limit)
	return runCtx, limit, cancel
}

// timedOut reports a script killed because its own deadline passed, not
// because the agent is shutting down (parent ctx done).
func timedOut(parent, runCtx context.Context, res spawn.Result) bool {
	return res.Canceled && parent.Err() == nil && runCtx.Err() == context.DeadlineExceeded
}

// scriptTimeoutReply is the reply for a script killed by its timeout: exit
// -1 as for every script that did not complete, an "error" the control host
// classifies as status "timeout", and the output captured until the kill.
type scriptTimeoutReply struct {
	Script any    `json:"script"`
	Exit   int    `json:"exit"`
	Error  string `json:"error"`
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
	Reqid  any    `json:"reqid"`
}

func (s *Server) scriptTimedOut(c *call, name any, nameText string, reqid any, reqidText string, limit time.Duration, res spawn.Result) reply {
	secs := strconv.Itoa(int(limit / time.Second))
	s.log.Warn().Str("SCRIPT", nameText).Str("TIMEOUT", secs).Str("PEER", c.peer).Str("REQID", reqidText).Msg("script-timeout")
	s.log.Info().Str("SCRIPT", nameText).Int("EXIT", -1).Str("PEER", c.peer).Str("REQID", reqidText).Msg("run")
	return okReply(scriptTimeoutReply{
		Script: name, Exit: -1, Error: "script timeout after " + secs + "s",
		Stdout: spawn.ValidUTF8(res.Stdout), Stderr: spawn.ValidUTF8(res.Stderr), Reqid: reqid,
	})
}
