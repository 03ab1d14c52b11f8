// Package pairing is how an agent gets its certificate (SPEC §11): the agent
// sends a CSR to the control host's pairing port (7444), an operator approves
// or denies it, and the control host delivers the signed certificate on the
// same connection.
//
// The control side is a queue directory (/var/lib/ctrl-exec/pairing) shared
// by the pairing-mode server, which holds each agent's connection, and the
// approve/deny commands, which may run in other processes — Perl or Go.
// The agent side is a client that submits, waits and stores the result.
package pairing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Reasons sent in the server's error and denial bodies (§11.2).
const (
	ReasonInvalid   = "invalid request"
	ReasonQueueFull = "pairing queue full"
	ReasonRejected  = "rejected by operator"
	ReasonTimeout   = "approval timeout"
	// ReasonStopped is a Go addition: pairing-mode ended while the agent
	// waited. Perl agents print it like any other reason.
	ReasonStopped = "pairing mode stopped"
	// reasonQueueError (Go): the request could not be written to the queue.
	reasonQueueError = "pairing queue unavailable on the control host"
)

// Submission is the agent's pairing request body (§11.2). Port and Tags are
// Go additions, which a Perl pairing server ignores: the agent's serve
// port, so the control host knows where to reach it (0 = not reported, as
// from Perl agents), and its agent.conf [tags], so it can be targeted by
// tag as soon as it is approved (nil = not reported).
type Submission struct {
	Hostname string            `json:"hostname"`
	CSR      string            `json:"csr"`
	Nonce    string            `json:"nonce"`
	Port     int               `json:"port,omitempty"`
	Tags     map[string]string `json:"tags,omitempty"`
}

// Encode is the request body the agent sends: compact JSON.
func (s Submission) Encode() []byte { return wire.JSON(s) }

// ParseSubmission decodes a pairing request body. It must be one JSON object
// whose hostname and csr are non-empty strings; nonce, when present, a
// string; port, when present, a whole number from 1 to 65535; tags, when
// present, an object whose values are strings. Anything else
// is refused (the server answers "invalid request"), including the non-object
// bodies that crash the Perl handler. Unknown fields are ignored.
func ParseSubmission(body []byte) (Submission, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return Submission{}, fmt.Errorf("body is not a JSON object: %w", err)
	}
	if raw == nil {
		return Submission{}, errors.New("body is not a JSON object: null")
	}
	if _, err := dec.Token(); err != io.EOF {
		return Submission{}, errors.New("trailing data after the JSON object")
	}
	var s Submission
	var err error
	if s.Hostname, err = stringField(raw, "hostname", true); err != nil {
		return Submission{}, err
	}
	if s.CSR, err = stringField(raw, "csr", true); err != nil {
		return Submission{}, err
	}
	if s.Nonce, err = stringField(raw, "nonce", false); err != nil {
		return Submission{}, err
	}
	if v, ok := raw["port"]; ok && string(v) != "null" {
		var f float64
		if err := json.Unmarshal(v, &f); err != nil || f != math.Trunc(f) || f < 1 || f > 65535 {
			return Submission{}, fmt.Errorf("port %.20s is not a port number", v)
		}
		s.Port = int(f)
	}
	if v, ok := raw["tags"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &s.Tags); err != nil {
			return Submission{}, errors.New("tags is not an object of strings")
		}
	}
	return s, nil
}

// stringField reads a string field; required ones must be present and non-empty.
func stringField(raw map[string]json.RawMessage, key string, required bool) (string, error) {
	v, ok := raw[key]
	if !ok || string(v) == "null" {
		if required {
			return "", fmt.Errorf("%s is missing", key)
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("%s is not a string", key)
	}
	if required && s == "" {
		return "", fmt.Errorf("%s is empty", key)
	}
	return s, nil
}

// statusBody is a server reply other than an approval.
type statusBody struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	ReqID  string `json:"reqid,omitempty"`
}

func errorBody(reason string) []byte  { return wire.JSON(statusBody{Status: "error", Reason: reason}) }
func deniedBody(reason string) []byte { return wire.JSON(statusBody{Status: "denied", Reason: reason}) }
func pendingBody(reqid string) []byte { return wire.JSON(statusBody{Status: "pending", ReqID: reqid}) }

// Approved is the body of {reqid}.approved and of the agent's second
// response on approval (§7.4): exactly these five keys.
type Approved struct {
	Status           string `json:"status"`
	Cert             string `json:"cert"`
	CA               string `json:"ca"`
	Nonce            string `json:"nonce"`
	DispatcherSerial string `json:"dispatcher_serial"`
}
