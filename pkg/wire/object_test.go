package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// manyKeys is a JSON object of n members "k0".."k<n-1>" whose values are
// their positions, then every tenth key again with the value -1.
func manyKeys(n int) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i := range n {
		fmt.Fprintf(&b, `"k%d":%d,`, i, i)
	}
	for i := 0; i < n; i += 10 {
		fmt.Fprintf(&b, `"k%d":-1,`, i)
	}
	b.Truncate(b.Len() - 1)
	b.WriteByte('}')
	return b.Bytes()
}

// A body of many keys (the API parses request bodies before
// authorisation, and 1 MiB holds some 100 000) decodes with one index lookup per key: each key is in the
// index at its own position, so no lookup scans the members. Upstream's
// semantics hold: first position, last value.
func TestParseObjectManyKeys(t *testing.T) {
	const n = 10_000 // the index check holds for any n; 100 000 took seconds under -race
	o, err := ParseObject(manyKeys(n))
	if err != nil {
		t.Fatal(err)
	}
	if len(o.members) != n || len(o.index) != n {
		t.Fatalf("%d members, %d indexed; want %d each", len(o.members), len(o.index), n)
	}
	for i, m := range o.members {
		want := "k" + strconv.Itoa(i)
		if m.key != want || o.index[m.key] != i {
			t.Fatalf("member %d is %q, indexed at %d", i, m.key, o.index[m.key])
		}
		wantValue := int64(i)
		if i%10 == 0 {
			wantValue = -1
		}
		if got, ok := o.Int(want); !ok || got != wantValue {
			t.Fatalf("Int(%q) = %d, %v; want %d", want, got, ok, wantValue)
		}
	}
	o.Set("k5", "five")
	o.Set("new", true)
	if o.Str("k5") != "five" || o.Keys()[5] != "k5" || o.Keys()[n] != "new" || !o.Defined("new") {
		t.Errorf("Set on a decoded object: k5=%q keys[5]=%q keys[n]=%q", o.Str("k5"), o.Keys()[5], o.Keys()[n])
	}
}

// A copy shares storage with the original; members added to one after the
// copy are not found through the other.
func TestObjectCopyDoesNotSeeLaterMembers(t *testing.T) {
	var o Object
	o.Set("a", 1)
	cp := o
	o.Set("b", 2)
	if _, ok := cp.Raw("b"); ok {
		t.Error("the copy sees a member added to the original after copying")
	}
	if got := o.Str("b"); got != "2" {
		t.Errorf("original b = %q", got)
	}
}

// BenchmarkParseObject reports the cost per key: flat from 1 000 to
// 100 000 keys (it was quadratic: ~13 s of CPU for 110 000 keys).
func BenchmarkParseObject(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		data := manyKeys(n)
		b.Run("keys="+strconv.Itoa(n), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if _, err := ParseObject(data); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/key")
		})
	}
}

func TestObject(t *testing.T) {
	o, err := ParseObject([]byte(` {"b":1, "a":"x","b":2,"n":null,"t":true,"f":false,"s":"42abc","fl":-3.9,"o":{"k":[1, 2]}} `))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := objJSON(t, o), `{"b":2,"a":"x","n":null,"t":true,"f":false,"s":"42abc","fl":-3.9,"o":{"k":[1,2]}}`; got != want {
		t.Errorf("round trip %s, want %s", got, want)
	}
	type intCase struct {
		n  int64
		ok bool
	}
	ints := map[string]intCase{"b": {2, true}, "n": {0, false}, "missing": {0, false}, "t": {1, true}, "f": {0, true}, "s": {42, true}, "fl": {-3, true}, "a": {0, true}}
	for k, want := range ints {
		n, ok := o.Int(k)
		if (intCase{n, ok}) != want {
			t.Errorf("Int(%q) = %d,%v want %v", k, n, ok, want)
		}
	}
	strs := map[string]string{"b": "2", "a": "x", "n": "", "t": "1", "f": "0", "o": `{"k":[1, 2]}`, "missing": ""}
	for k, want := range strs {
		if got := o.Str(k); got != want {
			t.Errorf("Str(%q) = %q want %q", k, got, want)
		}
	}
	o.SetDefault("n", "filled")
	o.SetDefault("a", "kept?")
	o.Set("new", []string{})
	if got, want := objJSON(t, o), `{"b":2,"a":"x","n":"filled","t":true,"f":false,"s":"42abc","fl":-3.9,"o":{"k":[1,2]},"new":[]}`; got != want {
		t.Errorf("after sets %s, want %s", got, want)
	}
	for _, bad := range []string{``, `[]`, `1`, `"s"`, `{"a":1}x`, `{"a":}`, "{\"a\":\"\xff\"}", `{"a":1`} {
		if _, err := ParseObject([]byte(bad)); err == nil {
			t.Errorf("ParseObject(%q) accepted", bad)
		}
	}
	var round Object
	if err := json.Unmarshal([]byte(`{"x":1}`), &round); err != nil || round.Str("x") != "1" {
		t.Errorf("json.Unmarshal into Object: %v %v", err, round)
	}
}

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

func objJSON(t *testing.T, o Object) string {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
