package fleet

import (
	"fmt"
	"strconv"
	"strings"
)

// Limit is a count given as "N" or "N%" (of the hosts of one call), the form
// of SSM Run Command's MaxConcurrency and MaxErrors.
type Limit struct {
	N       int
	Percent bool
	Set     bool // false: no limit given
}

// ParseLimit reads "N" or "N%" (N a whole number ≥ 0; a percentage at most
// 100). what names the option in the error.
func ParseLimit(what, s string) (Limit, error) {
	text := strings.TrimSpace(s)
	pct := strings.HasSuffix(text, "%")
	digits := strings.TrimSuffix(text, "%")
	n, err := strconv.Atoi(digits)
	if err != nil || n < 0 || digits == "" || digits[0] == '+' || digits[0] == '-' {
		return Limit{}, fmt.Errorf("%s: %q is not a whole number or a percentage (N or N%%)", what, s)
	}
	if pct && n > 100 {
		return Limit{}, fmt.Errorf("%s: %q is more than 100%%", what, s)
	}
	return Limit{N: n, Percent: pct, Set: true}, nil
}

// String is the limit as it was given: "3" or "10%".
func (l Limit) String() string {
	if l.Percent {
		return strconv.Itoa(l.N) + "%"
	}
	return strconv.Itoa(l.N)
}

// errorBudget is --max-errors for a call of total hosts: the number of
// failures tolerated. A percentage is of the hosts, rounded down (10% of 15
// hosts tolerates 1 failure, so the second stops the rest).
func (l Limit) errorBudget(total int) int {
	if l.Percent {
		return total * l.N / 100
	}
	return l.N
}

// Concurrency is --max-concurrency for a call of total hosts: 0 when unset
// (the engine's default); a percentage is of the hosts, rounded up, at
// least 1 (10% of 15 hosts is 2 at once). A plain 0 is refused by callers.
func (l Limit) Concurrency(total int) int {
	if !l.Set {
		return 0
	}
	if l.Percent {
		return max(1, (total*l.N+99)/100)
	}
	return l.N
}

// guard applies --max-errors: once more than the budget of hosts have
// failed, hosts not started yet are skipped; hosts in flight finish. Its
// methods run on the dispatch call's goroutine (dispatch's Admit and OnRun),
// so it needs no lock.
type guard struct {
	limit  Limit
	budget int
	failed int
}

func newGuard(l Limit, total int) *guard {
	if !l.Set {
		return nil
	}
	return &guard{limit: l, budget: l.errorBudget(total)}
}

// admit is dispatch.Client.Admit.
func (g *guard) admit(int) error {
	if g == nil || g.failed <= g.budget {
		return nil
	}
	return fmt.Errorf("%serror budget spent: %d hosts failed, max-errors %s", skippedPrefix, g.failed, g.limit)
}

// record counts one finished host.
func (g *guard) record(status string) {
	if g != nil && status != StatusOK && status != StatusSkipped {
		g.failed++
	}
}
