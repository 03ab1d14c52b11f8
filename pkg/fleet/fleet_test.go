package fleet

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ctrl-exec-go/ctrl-exec/pkg/wire"
)

// TestClassify pins the mapping from every §10.3/§10.4 text to a status.
func TestClassify(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"exit":0}`, StatusOK},
		{`{"exit":0,"error":""}`, StatusOK},
		{`{"exit":3}`, StatusFailed},
		{`{"exit":null}`, StatusFailed},
		{`{}`, StatusFailed},
		{`{"exit":-1,"error":"read timeout after 60s"}`, StatusTimeout},
		{`{"exit":-1,"error":"script timeout after 2s"}`, StatusTimeout},
		{`{"status":"error","error":"500 read timeout"}`, StatusTimeout},
		{`{"exit":-1,"error":"500 Can't connect to h:7443 (timeout)"}`, StatusTimeout},
		{`{"exit":-1,"error":"500 Can't connect to h:7443 (Connection refused)"}`, StatusUnreachable},
		{`{"exit":-1,"error":"500 Server closed connection without sending any data back"}`, StatusUnreachable},
		{`{"exit":-1,"error":"500 request cancelled"}`, StatusUnreachable},
		{`{"exit":-1,"error":"no response from child"}`, StatusUnreachable},
		{`{"exit":-1,"error":"500 Can't connect to h:7443 (agent identity mismatch: CN x)"}`, StatusRefused},
		{`{"exit":-1,"error":"agent identity mismatch: expected web-01, got web-02"}`, StatusRefused},
		{`{"exit":-1,"error":"agent identity unknown: 10.0.0.9:7443 is not in the agent registry (agent_identity = strict)"}`, StatusRefused},
		{`{"exit":-1,"error":"forbidden: serial mismatch"}`, StatusRefused},
		{`{"exit":-1,"error":"forbidden: 403 Error"}`, StatusRefused},
		{`{"exit":-1,"error":"request too large"}`, StatusRefused},
		{`{"exit":-1,"error":"404 Not Found"}`, StatusRefused},
		{`{"exit":-1,"error":"429 Too Many Requests"}`, StatusRefused},
		{`{"exit":-1,"error":"script not permitted"}`, StatusRefused},
		{`{"exit":-1,"error":"not authorised: denied"}`, StatusDenied},
		{`{"exit":-1,"error":"denied: bad credentials"}`, StatusDenied},
		{`{"exit":-1,"error":"locked"}`, StatusLocked},
		{`{"exit":-1,"error":"skipped: error budget spent: 2 hosts failed, max-errors 1"}`, StatusSkipped},
		{`{"exit":-1,"error":"500 Error"}`, StatusFailed},
		{`{"exit":-1,"error":"invalid JSON response"}`, StatusFailed},
		{`{"exit":-1,"error":"args must be an array"}`, StatusFailed},
	}
	for _, tt := range tests {
		o, err := wire.ParseObject([]byte(tt.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := Classify(o); got != tt.want {
			t.Errorf("Classify(%s) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in   string
		want Limit
		bad  bool
	}{
		{in: "0", want: Limit{N: 0, Set: true}},
		{in: "3", want: Limit{N: 3, Set: true}},
		{in: "10%", want: Limit{N: 10, Percent: true, Set: true}},
		{in: "100%", want: Limit{N: 100, Percent: true, Set: true}},
		{in: "101%", bad: true},
		{in: "-1", bad: true},
		{in: "+1", bad: true},
		{in: "%", bad: true},
		{in: "x", bad: true},
		{in: "", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseLimit("--max-errors", tt.in)
		if (err != nil) != tt.bad {
			t.Errorf("ParseLimit(%q) err = %v, want bad=%v", tt.in, err, tt.bad)
			continue
		}
		if diff := cmp.Diff(tt.want, got); !tt.bad && diff != "" {
			t.Errorf("ParseLimit(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

// TestLimitArithmetic pins SSM's reading: the error budget is "more than
// N failed"; a percentage budget rounds down, a percentage concurrency up.
func TestLimitArithmetic(t *testing.T) {
	pct := func(n int) Limit { return Limit{N: n, Percent: true, Set: true} }
	if got := pct(10).errorBudget(15); got != 1 {
		t.Errorf("10%% of 15 budget = %d, want 1", got)
	}
	if got := pct(40).errorBudget(10); got != 4 {
		t.Errorf("40%% of 10 budget = %d, want 4", got)
	}
	if got := pct(10).Concurrency(15); got != 2 {
		t.Errorf("10%% of 15 concurrency = %d, want 2", got)
	}
	if got := pct(1).Concurrency(5); got != 1 {
		t.Errorf("1%% of 5 concurrency = %d, want 1", got)
	}
	g := newGuard(Limit{N: 1, Set: true}, 10)
	var admitted []bool
	for _, s := range []string{StatusFailed, StatusOK, StatusTimeout, StatusOK} {
		admitted = append(admitted, g.admit(0) == nil)
		g.record(s)
	}
	admitted = append(admitted, g.admit(0) == nil)
	if diff := cmp.Diff([]bool{true, true, true, false, false}, admitted); diff != "" {
		t.Errorf("admissions (-want +got):\n%s", diff)
	}
	if newGuard(Limit{}, 10).admit(0) != nil {
		t.Error("an unset limit refused a host")
	}
}

func TestSelect(t *testing.T) {
	agents := []map[string]string{
		{"role": "web", "env": "prod"},
		{"role": "db-primary", "env": "prod"},
		{"role": "db-replica", "env": "test"},
		nil,
	}
	sel := func(s ...string) []TagSelector {
		var out []TagSelector
		for _, x := range s {
			ts, err := ParseTagSelector(x)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ts)
		}
		return out
	}
	tests := []struct {
		sels []TagSelector
		want []int
		err  string
	}{
		{sels: sel("role=web"), want: []int{0}},
		{sels: sel("role=db*"), want: []int{1, 2}},
		{sels: sel("role=db*", "env=prod"), want: []int{1}},
		{sels: sel("role=nope", "env=prod"), err: "no registered agent matches tag role=nope (" + Freshness + ")"},
		{sels: sel("role=web", "env=test"), err: "no registered agent matches all of tag role=web, tag env=test together (each matches some agents)"},
	}
	for _, tt := range tests {
		got, err := Select(agents, tt.sels)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err || !errors.Is(err, ErrNoTagMatch) {
				t.Errorf("Select(%v) err = %v, want %q", tt.sels, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Select(%v) (-want +got):\n%s", tt.sels, diff)
		}
	}
	if _, err := ParseTagSelector("novalue"); err == nil {
		t.Error("a selector without = was accepted")
	}
	if got := Union([]string{"a", "b"}, []string{"b", "c"}); !cmp.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("Union = %v", got)
	}
}
