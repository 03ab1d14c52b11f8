// Package authhook runs the operator's auth hook (SPEC §13) through
// pkg/spawn and maps its outcome to a Decision, logging it as `auth`.
package authhook

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/pki"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/spawn"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// DefaultTimeout bounds a hook run when the caller gives none (SPEC §20 D-19).
const DefaultTimeout = 30 * time.Second

// Actions passed as Request.Action (SPEC §13.3).
const (
	ActionRun       = "run"
	ActionPing      = "ping"
	ActionAPI       = "api"
	ActionDiscovery = "discovery"
)

// Hook exit codes with a fixed meaning (SPEC §13.2).
const (
	CodeDenied         = 1
	CodeBadCredentials = 2
	CodeInsufficient   = 3
)

// Request is what the hook is asked to authorise. The agent leaves Hosts
// empty; it reaches the hook as [] and ENVEXEC_HOSTS="".
type Request struct {
	Action   string
	Script   string
	Hosts    []string
	Args     []string
	Username string
	Token    string
	SourceIP string // "" means 127.0.0.1 (the CLI)
}

// Decision is the outcome of an authorisation. Reason and Code are set only
// when OK is false.
type Decision struct {
	OK     bool
	Reason string
	Code   int
}

// Check runs the hook at hookPath for req and maps its exit (SPEC §13.2):
// 0 allows; 1, 2, 3 and any other N deny with their reason and code N; a
// hook that cannot be executed, dies by a signal, or outlives timeout (0 =
// DefaultTimeout) or ctx is denied with `denied`, code 1, and its process
// group is killed. The token goes to the hook but never into the log.
func Check(ctx context.Context, log zerolog.Logger, hookPath string, req Request, now func() time.Time, timeout time.Duration) Decision {
	if req.SourceIP == "" {
		req.SourceIP = "127.0.0.1"
	}
	if !isExecutableFile(hookPath) {
		log.Error().Str("RESULT", "error").Str("REASON", "hook-not-executable").Str("HOOK", hookPath).Msg("auth")
		return Decision{Reason: "auth hook not found or not executable: " + hookPath, Code: CodeDenied}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	stamp := pki.ISOTime(now())
	res := spawn.Run(ctx, spawn.Cmd{
		Path:          hookPath,
		Env:           append(os.Environ(), Env(req, stamp)...),
		Stdin:         Stdin(req, stamp),
		StdinTimeout:  timeout,
		DiscardOutput: true,
	})

	d := decide(res)
	if why := failure(res, ctx.Err()); why != "" {
		ev := log.Error().Str("RESULT", "error").Str("REASON", why).Str("HOOK", hookPath)
		switch why {
		case "hook-exec-failed":
			ev = ev.Str("ERROR", res.Err.Error())
		case "hook-signaled":
			ev = ev.Int("SIGNAL", int(res.Signal))
		}
		ev.Msg("auth")
	}
	logDecision(log, d, "", req)
	return d
}

// decide maps a hook run to a Decision.
func decide(res spawn.Result) Decision {
	switch {
	case res.Err != nil, res.Canceled, res.Signaled:
		return Decision{Reason: "denied", Code: CodeDenied}
	case res.Exit == 0:
		return Decision{OK: true}
	case res.Exit == CodeDenied:
		return Decision{Reason: "denied", Code: CodeDenied}
	case res.Exit == CodeBadCredentials:
		return Decision{Reason: "bad credentials", Code: CodeBadCredentials}
	case res.Exit == CodeInsufficient:
		return Decision{Reason: "insufficient privilege", Code: CodeInsufficient}
	default:
		return Decision{Reason: "hook exited " + strconv.Itoa(res.Exit), Code: res.Exit}
	}
}

// failure names why a hook gave no exit status of its own, or "" if it did:
// Go-defined REASON values for an `auth RESULT=error` line, so an operator
// can tell a broken or slow hook from one that said no.
func failure(res spawn.Result, ctxErr error) string {
	switch {
	case res.Canceled && errors.Is(ctxErr, context.DeadlineExceeded):
		return "hook-timeout"
	case res.Canceled:
		return "hook-canceled"
	case res.Err != nil:
		return "hook-exec-failed"
	case res.Signaled:
		return "hook-signaled"
	}
	return ""
}

// NoHookCLI is the decision when the control-host CLI has no hook: pass
// (SPEC §13.3; the CLI is already gated by system permissions).
func NoHookCLI(log zerolog.Logger, req Request) Decision {
	if req.SourceIP == "" {
		req.SourceIP = "127.0.0.1"
	}
	d := Decision{OK: true}
	logDecision(log, d, "no-hook-cli", req)
	return d
}

// NoHookAPI is the decision when the API server has no hook: apiAuthDefault
// `allow` (any case) passes, anything else denies (SPEC §13.3).
func NoHookAPI(log zerolog.Logger, req Request, apiAuthDefault string) Decision {
	if req.SourceIP == "" {
		req.SourceIP = "127.0.0.1"
	}
	if strings.EqualFold(apiAuthDefault, "allow") {
		d := Decision{OK: true}
		logDecision(log, d, "no-hook-allow", req)
		return d
	}
	d := Decision{Reason: "no auth hook configured", Code: CodeDenied}
	logDecision(log, d, "no-hook-deny", req)
	return d
}

// logDecision writes the `auth` pass (INFO) or deny (WARNING) line; reason
// overrides the REASON field. Never the token.
func logDecision(log zerolog.Logger, d Decision, reason string, req Request) {
	user := req.Username
	if user == "" {
		user = "(none)"
	}
	var ev *zerolog.Event
	if d.OK {
		ev = log.Info().Str("RESULT", "pass")
	} else {
		ev = log.Warn().Str("RESULT", "deny")
		if reason == "" {
			reason = d.Reason
		}
	}
	if reason != "" {
		ev = ev.Str("REASON", reason)
	}
	ev.Str("AUTHACTION", req.Action).Str("USER", user).Str("IP", req.SourceIP).Msg("auth")
}

// Env returns the ENVEXEC_* variables of SPEC §13.1 for req, stamped with
// the ISO time stamp.
func Env(req Request, stamp string) []string {
	return []string{
		"ENVEXEC_ACTION=" + req.Action,
		"ENVEXEC_SCRIPT=" + req.Script,
		"ENVEXEC_HOSTS=" + strings.Join(req.Hosts, ","),
		"ENVEXEC_ARGS=" + strings.Join(req.Args, " "),
		"ENVEXEC_ARGS_JSON=" + string(wire.JSON(nonNil(req.Args))),
		"ENVEXEC_USERNAME=" + req.Username,
		"ENVEXEC_TOKEN=" + req.Token,
		"ENVEXEC_SOURCE_IP=" + req.SourceIP,
		"ENVEXEC_TIMESTAMP=" + stamp,
	}
}

// Stdin returns the compact JSON context of SPEC §13.1 for req.
func Stdin(req Request, stamp string) []byte {
	return wire.JSON(struct {
		Action    string   `json:"action"`
		Script    string   `json:"script"`
		Hosts     []string `json:"hosts"`
		Args      []string `json:"args"`
		Username  string   `json:"username"`
		Token     string   `json:"token"`
		SourceIP  string   `json:"source_ip"`
		Timestamp string   `json:"timestamp"`
	}{req.Action, req.Script, nonNil(req.Hosts), nonNil(req.Args), req.Username, req.Token, req.SourceIP, stamp})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// isExecutableFile is Perl's `-f $hook && -x $hook`: a regular file (after
// symlinks) executable by the effective user.
func isExecutableFile(path string) bool {
	if path == "" {
		return false
	}
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return unix.Faccessat(unix.AT_FDCWD, path, unix.X_OK, unix.AT_EACCESS) == nil
}
