package dispatch

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// Agent replies: whatever ParseObject accepts re-encodes to equivalent
// compact JSON whose members read back the same.
func FuzzParseObject(f *testing.F) {
	for _, seed := range []string{
		`{"script":"hello","exit":0,"stdout":"hi\n","stderr":"","reqid":"a3f9b2c10001dead"}`,
		`{"status":"ok","host":"web-01","version":"0.8.4","expiry":"Jun  7 10:00:00 2028 GMT","reqid":"r"}`,
		`{"a":1,"a":2,"n":null,"t":true,"o":{"x":[1,{"y":"\u00e9"}]},"s":"<&>"}`,
		`{}`, `[]`, `1`, `"s"`, `{"a":1}x`, "{\"a\":\"\xff\"}", ` {"a" : 1e400 } `, `{"exit":"42abc"}`,
		`{"a":1,"b":2,"a":3,"c":4,"b":5,"":6,"":null}`,
	} {
		f.Add([]byte(seed))
	}
	f.Add(manyKeys(2000)) // many members, every tenth repeated
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		for i, k := range o.Keys() {
			if j, ok := o.find(k); !ok || j != i {
				t.Fatalf("key %q at %d is indexed at %d, %v", k, i, j, ok)
			}
		}
		enc, err := o.MarshalJSON()
		if err != nil {
			t.Fatalf("re-encode %q: %v", data, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, enc); err != nil || compact.String() != string(enc) {
			t.Fatalf("re-encoding %q is not compact JSON: %s", data, enc)
		}
		back, err := ParseObject(enc)
		if err != nil {
			t.Fatalf("re-encoding %s does not parse: %v", enc, err)
		}
		if strings.Join(back.Keys(), "\x00") != strings.Join(o.Keys(), "\x00") {
			t.Fatalf("keys %q became %q", o.Keys(), back.Keys())
		}
		for _, k := range o.Keys() {
			if o.Str(k) != back.Str(k) {
				t.Fatalf("member %q: %q became %q", k, o.Str(k), back.Str(k))
			}
			n1, ok1 := o.Int(k)
			n2, ok2 := back.Int(k)
			if n1 != n2 || ok1 != ok2 {
				t.Fatalf("member %q numifies to %d,%v then %d,%v", k, n1, ok1, n2, ok2)
			}
		}
	})
}

// Host arguments: the parts always rebuild the argument.
func FuzzParseTarget(f *testing.F) {
	for _, seed := range []string{"web-01", "web-01:7443", "fe80::1", "[fe80::1]", "[::1]:9443", "[::1]x", ":1", "a:", "[]:1", "[a]:", "h:007443"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		tg := ParseTarget(arg, 7443)
		if tg.Arg != arg || tg.Host == "" && arg != "" || tg.Port == "" || !allDigits(tg.Port) {
			t.Fatalf("ParseTarget(%q) = %#v", arg, tg)
		}
		switch {
		case tg.Host == arg && tg.Port == "7443":
		case tg.Host+":"+tg.Port == arg:
		case "["+tg.Host+"]" == arg && tg.Port == "7443":
		case "["+tg.Host+"]:"+tg.Port == arg:
		default:
			t.Fatalf("ParseTarget(%q) = %#v does not rebuild the argument", arg, tg)
		}
	})
}
