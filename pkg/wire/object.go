package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/perltext"
)

// Object is a JSON object that keeps its members in arrival order with their
// values exactly as encoded. Agent replies are passed on as Objects so any
// field an agent adds (a newer Perl or Go agent) reaches the caller untouched.
//
// Members are found through a key index, so decoding and every lookup cost
// the same however many members an object has: request bodies and agent
// replies are outside input. Like a slice, a copy of an Object shares its
// storage: change one copy only.
type Object struct {
	members []member
	index   map[string]int // key → position in members
}

type member struct {
	key   string
	value json.RawMessage
}

// Keys returns the member names in order.
func (o Object) Keys() []string {
	keys := make([]string, len(o.members))
	for i, m := range o.members {
		keys[i] = m.key
	}
	return keys
}

// Raw returns a member's encoded value.
func (o Object) Raw(key string) (json.RawMessage, bool) {
	if i, ok := o.find(key); ok {
		return o.members[i].value, true
	}
	return nil, false
}

// find returns key's position. The checks keep a copy that shares the index
// with a longer copy from seeing members it does not have.
func (o Object) find(key string) (int, bool) {
	i, ok := o.index[key]
	if !ok || i >= len(o.members) || o.members[i].key != key {
		return 0, false
	}
	return i, true
}

// Defined reports whether key is present with a value other than null
// (Perl's `defined`, which the upstream `//=` rules test).
func (o Object) Defined(key string) bool {
	v, ok := o.Raw(key)
	return ok && string(v) != "null"
}

// Str returns a member as Perl would print it: a string's text, a number as
// Perl prints it (perltext.Number), true as "1", false as "0"; "" for null or a missing member, and
// the encoded JSON for an object or array.
func (o Object) Str(key string) string {
	v, ok := o.Raw(key)
	if !ok {
		return ""
	}
	switch {
	case len(v) == 0, string(v) == "null":
		return ""
	case v[0] == '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	case string(v) == "true":
		return perltext.Bool(true)
	case string(v) == "false":
		return perltext.Bool(false)
	case v[0] == '[' || v[0] == '{':
		return string(v)
	}
	return perltext.Number(string(v))
}

// Int returns a member as Perl would numify it for %d: a number truncated
// toward zero, a string's leading integer (0 if none), true 1, false 0.
// ok is false when the member is missing or null.
func (o Object) Int(key string) (n int64, ok bool) {
	v, present := o.Raw(key)
	if !present || string(v) == "null" || len(v) == 0 {
		return 0, false
	}
	switch {
	case v[0] == '"':
		var s string
		_ = json.Unmarshal(v, &s)
		return leadingInt(s), true
	case string(v) == "true":
		return 1, true
	case string(v) == "false":
		return 0, true
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i, true
		}
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil || math.IsNaN(f) {
			return 0, true
		}
		return int64(math.Max(math.Min(math.Trunc(f), math.MaxInt64), math.MinInt64)), true
	}
	return 0, true // object or array: Perl numifies a reference to an address; call it 0
}

// leadingInt is Perl's numification of a string for %d: optional leading
// whitespace and sign, then digits; anything else stops the number.
func leadingInt(s string) int64 {
	s = perltext.TrimLeftSpace(s)
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	var n int64
	for i := 0; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		if n > (math.MaxInt64-9)/10 {
			break
		}
		n = n*10 + int64(s[i]-'0')
	}
	if neg {
		return -n
	}
	return n
}

// Set stores v (encoded without HTML escaping) under key, replacing a
// present member in place or appending a new one.
func (o *Object) Set(key string, v any) {
	raw, err := Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("dispatch: encode %q: %v", key, err)) // only our own plain values reach here
	}
	o.setRaw(key, raw)
}

// SetDefault stores v under key unless key is already defined (Perl `//=`).
func (o *Object) SetDefault(key string, v any) {
	if !o.Defined(key) {
		o.Set(key, v)
	}
}

// Delete removes key, keeping the other members in order. It builds new
// storage, so copies made before are not changed.
func (o *Object) Delete(key string) {
	if _, ok := o.find(key); !ok {
		return
	}
	var kept Object
	for _, m := range o.members {
		if m.key != key {
			kept.setRaw(m.key, m.value)
		}
	}
	*o = kept
}

func (o *Object) setRaw(key string, raw json.RawMessage) {
	if i, ok := o.find(key); ok {
		o.members[i].value = raw
		return
	}
	if o.index == nil {
		o.index = map[string]int{}
	}
	o.index[key] = len(o.members)
	o.members = append(o.members, member{key: key, value: raw})
}

// MarshalJSON encodes the members in order, compact, without HTML escaping.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(key)
		b.WriteByte(':')
		if err := json.Compact(&b, m.value); err != nil {
			return nil, fmt.Errorf("member %q: %w", m.key, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// errNotObject is returned by UnmarshalJSON for valid JSON that is not an object.
var errNotObject = errors.New("JSON value is not an object")

// UnmarshalJSON accepts exactly one JSON object in valid UTF-8 (Perl's
// decode_json rejects malformed UTF-8). A repeated key keeps its first
// position and its last value, as a Perl hash would keep the last value.
func (o *Object) UnmarshalJSON(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("JSON text is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errNotObject
	}
	var out Object
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return fmt.Errorf("object key %v is not a string", tok)
		}
		var raw json.RawMessage // a copy of the input: RawMessage.UnmarshalJSON copies
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		out.setRaw(key, raw)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	*o = out
	return nil
}

// ParseObject decodes one JSON object (see UnmarshalJSON).
func ParseObject(data []byte) (Object, error) {
	var o Object
	err := o.UnmarshalJSON(data)
	return o, err
}
