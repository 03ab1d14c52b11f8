package dispatch

import (
	"encoding/json"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// RunResult is one host's outcome of Run. It marshals to the §10.4 object:
//
//	agent reply      the agent's object, "host" and "reqid" filled in if absent, "rtt" set
//	reply not JSON   {"host","exit":-1,"error":"invalid JSON response","rtt","reqid"}
//	no reply / HTTP  {"host","script","exit":-1,"error","rtt","reqid"}
type RunResult struct {
	Target Target // the host as contacted; not part of the JSON
	wire.Object
}

// MarshalJSON encodes the result object only.
func (r RunResult) MarshalJSON() ([]byte, error) { return r.Object.MarshalJSON() }

// Exit is the script's exit status; ok is false when the object has none.
func (r RunResult) Exit() (code int64, ok bool) { return r.Int("exit") }

// Failed reports an exit status that is missing or not 0, the rule for the
// CLI's exit code.
func (r RunResult) Failed() bool {
	code, ok := r.Exit()
	return !ok || code != 0
}

// PingResult is one host's outcome of Ping. It marshals to the §10.5 object:
// the agent's reply plus "rtt" (its "host" is the agent-reported name), or
// {"host","status":"error","error","rtt"} with the target host.
type PingResult struct {
	Target Target
	wire.Object
	// Tags are the agent's [tags] when the client asked for them
	// (Client.WantTags) and the agent sent them; never part of the JSON.
	Tags map[string]string
}

// MarshalJSON encodes the result object only.
func (r PingResult) MarshalJSON() ([]byte, error) { return r.Object.MarshalJSON() }

// OK reports status "ok".
func (r PingResult) OK() bool { return r.Str("status") == "ok" }

// CapResult is one host's outcome of Capabilities (§10.6): the agent's reply
// plus "rtt", or {"host","status":"error","error","rtt"}.
type CapResult struct {
	Target Target
	wire.Object
}

// MarshalJSON encodes the result object only.
func (r CapResult) MarshalJSON() ([]byte, error) { return r.Object.MarshalJSON() }

// OK reports status "ok".
func (r CapResult) OK() bool { return r.Str("status") == "ok" }

// Scripts returns the "scripts" array's elements (none if it is missing or
// not an array).
func (r CapResult) Scripts() []json.RawMessage {
	raw, ok := r.Raw("scripts")
	if !ok {
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	return list
}
