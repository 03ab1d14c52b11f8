// Package fleet is what ctrl-exec adds on top of the compatible fan-out
// engine (pkg/dispatch) for operating a fleet: one result taxonomy
// (`status`), targeting by tag, guardrails (concurrency, error budget),
// streaming of results as they finish, and the per-host audit event. The CLI
// and the API both go through it, so they agree on every value.
package fleet

import (
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// The values of a run result's "status" field.
const (
	StatusOK          = "ok"          // the script ran and exited 0
	StatusFailed      = "failed"      // the script ran and exited non-zero, or the reply was unusable
	StatusTimeout     = "timeout"     // read_timeout on the control host, or the agent's per-script timeout
	StatusUnreachable = "unreachable" // no usable reply: connect, TLS or connection failure
	StatusRefused     = "refused"     // the agent refused the request: 403/404/429/413, script not permitted
	StatusDenied      = "denied"      // an auth hook said no
	StatusLocked      = "locked"      // the host:script lock is held by another run
	StatusSkipped     = "skipped"     // not started because of --max-errors
)

// Statuses lists every value, in the order summaries print them.
var Statuses = []string{StatusOK, StatusFailed, StatusTimeout, StatusUnreachable,
	StatusRefused, StatusDenied, StatusLocked, StatusSkipped}

// Error texts this package puts into results itself.
const (
	skippedPrefix = "skipped: "
	lockedError   = "locked"
	deniedPrefix  = "denied: "
)

// Classify maps one run result object (§10.4) to its status. It reads only
// "exit" and "error", so results stored before status existed (an older run
// store, a Perl API) classify the same way. The mapping from the §10.3 texts:
//
//	no error, exit 0                                   ok
//	no error, exit non-zero or missing                 failed
//	"read timeout after <T>s", "500 read timeout",
//	  "script timeout after <T>s", "… (timeout)"       timeout
//	"500 Can't connect to …", "500 Server closed
//	  connection …", "500 request cancelled",
//	  "no response from child", other "500 <text>"
//	  made up by the control host                      unreachable
//	"… agent identity mismatch …",
//	  "agent identity unknown: …" (strict)            refused
//	"forbidden: …" (403), "request too large" (413),
//	  "404 …", "429 …", other "4xx …",
//	  "script not permitted"                           refused
//	"not authorised: …" (agent hook), "denied: …"      denied
//	"locked"                                           locked
//	"skipped: …"                                       skipped
//	anything else ("invalid JSON response", "500 Error"
//	  from the agent, "args must be an array", …)      failed
func Classify(o wire.Object) string {
	msg := o.Str("error")
	if msg == "" {
		if code, ok := o.Int("exit"); ok && code == 0 {
			return StatusOK
		}
		return StatusFailed
	}
	lower := strings.ToLower(msg)
	switch {
	case strings.HasPrefix(msg, skippedPrefix):
		return StatusSkipped
	case msg == lockedError:
		return StatusLocked
	case strings.HasPrefix(msg, "not authorised"), strings.HasPrefix(msg, deniedPrefix):
		return StatusDenied
	case strings.Contains(lower, "identity mismatch"), strings.HasPrefix(msg, "agent identity unknown: "):
		return StatusRefused
	case strings.HasPrefix(msg, "read timeout after "), strings.HasPrefix(msg, "script timeout after "),
		msg == "500 read timeout", strings.HasSuffix(msg, "(timeout)"):
		return StatusTimeout
	case strings.HasPrefix(msg, "forbidden: "), msg == "request too large", msg == "script not permitted":
		return StatusRefused
	case msg == "no response from child":
		return StatusUnreachable
	}
	code, text, _ := strings.Cut(msg, " ")
	if len(code) == 3 && code[0] == '4' && allDigits(code) {
		return StatusRefused
	}
	// The agent's own 500 says "Error" (§9.2) or the standard phrase; every
	// other "500 …" is the control host's word for a failed exchange.
	if code == "500" && text != "Error" && text != "Internal Server Error" {
		return StatusUnreachable
	}
	return StatusFailed
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// Annotate sets "status" on a run result (appended after the §10.4 fields,
// or replaced in place if an agent sent one) and returns it.
func Annotate(r *dispatch.RunResult) string {
	s := Classify(r.Object)
	r.Object.Set("status", s)
	return s
}

// Counts tallies results by status.
type Counts map[string]int

// Add counts one status.
func (c Counts) Add(status string) { c[status]++ }

// Object is the summary's counts: every status in Statuses order (zeros
// included, so a reader needs no defaults) and "total".
func (c Counts) Object(keys []string) wire.Object {
	var o wire.Object
	total := 0
	for _, k := range keys {
		o.Set(k, c[k])
		total += c[k]
	}
	o.Set("total", total)
	return o
}
