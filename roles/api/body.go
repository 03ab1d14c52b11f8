package api

import (
	"encoding/json"
	"strconv"
	"strings"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/config"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/dispatch"
	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// Refusals of a request body (§14.4, §14.5), sent as 400 details.
const (
	msgBodyRequired = "request body required"
	msgInvalidJSON  = "invalid JSON body"
	msgHosts        = "hosts must be a non-empty array"
	msgScript       = "script name required (alphanumeric and hyphens only)"
	msgArgs         = "args must be an array"
)

// requestBody is a request's body and the credentials that come with it.
type requestBody struct {
	raw      []byte
	obj      wire.Object // the members when raw is one JSON object
	isObject bool
	username string
	token    string
	accept   string // the Accept header (streaming, fleetops.go)
}

// parseBody reads the body as a JSON object, if it is one, and settles the
// credentials: username from the body; token from the body when it has a
// non-null "token", else from an "Authorization: Bearer" header. Non-string
// values are read as Perl would print them, as upstream did.
func parseBody(raw []byte, authorization string) requestBody {
	b := requestBody{raw: raw, token: bearerToken(authorization)}
	if len(raw) == 0 {
		return b
	}
	obj, err := wire.ParseObject(raw)
	if err != nil {
		return b
	}
	b.obj, b.isObject = obj, true
	b.username = obj.Str("username")
	if obj.Defined("token") {
		b.token = obj.Str("token")
	}
	return b
}

// bearerToken extracts <token> from "Bearer <token>" (scheme in any case).
func bearerToken(authorization string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// requireObject is the body rule of POST /ping and /run: present, and a
// JSON object. It returns the 400 detail, or "".
func (b requestBody) requireObject() string {
	switch {
	case len(b.raw) == 0:
		return msgBodyRequired
	case !b.isObject:
		return msgInvalidJSON
	}
	return ""
}

// hosts returns the "hosts" list. With required, a missing, empty or
// non-array value is refused; without, it is an empty list (discovery then
// asks the registry). Elements must be strings (upstream stringified them),
// and at most dispatch.MaxHosts (D-21).
func (b requestBody) hosts(required bool) ([]string, string) {
	list, isArray := b.array("hosts")
	if !isArray || len(list) == 0 {
		if required {
			return nil, msgHosts
		}
		return nil, ""
	}
	hosts, ok := stringElements(list)
	if !ok {
		return nil, msgHosts
	}
	if len(hosts) > dispatch.MaxHosts {
		return nil, dispatch.ErrTooManyHosts.Error()
	}
	return hosts, ""
}

// script returns "script" if it is a string of allowlist-name characters.
func (b requestBody) script() (string, string) {
	raw, ok := b.obj.Raw("script")
	var s string
	if !ok || json.Unmarshal(raw, &s) != nil || !config.ValidScriptName(s) {
		return "", msgScript
	}
	return s, ""
}

// args returns "args": absent or null is no arguments; otherwise an array
// of strings.
func (b requestBody) args() ([]string, string) {
	if !b.obj.Defined("args") {
		return []string{}, ""
	}
	list, isArray := b.array("args")
	if !isArray {
		return nil, msgArgs
	}
	args, ok := stringElements(list)
	if !ok {
		return nil, msgArgs
	}
	return args, ""
}

// array returns a member's elements when it is a JSON array.
func (b requestBody) array(key string) ([]json.RawMessage, bool) {
	raw, ok := b.obj.Raw(key)
	if !ok || len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return nil, false
	}
	return list, true
}

// stringElements decodes every element as a string; ok is false if one is
// not a JSON string.
func stringElements(list []json.RawMessage) ([]string, bool) {
	out := make([]string, len(list))
	for i, raw := range list {
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &out[i]) != nil {
			return nil, false
		}
	}
	return out, true
}

func itoa(n int) string { return strconv.Itoa(n) }
