package dispatch

import (
	"bytes"
	"fmt"
	"strconv"
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
