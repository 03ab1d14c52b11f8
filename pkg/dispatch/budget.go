package dispatch

import (
	"fmt"
	"math"
	"sync/atomic"
)

// DefaultOutputBudget is how many reply bytes one Run keeps across all its
// hosts unless Client.OutputBudget says otherwise: with each agent's reply
// capped (64 MiB read, 5 MiB per stream by default on Go agents), 500 hosts
// could otherwise hold gigabytes. It is a bound on memory, not a quota
// anyone should meet: 256 MiB holds 50 default-capped replies at their
// largest and any number of ordinary ones.
const DefaultOutputBudget = 256 << 20

// OutputBudgetError is a host whose reply was not read because keeping it
// would take the run's replies over the budget. The script did run.
type OutputBudgetError struct {
	Reply, Budget int64
}

func (e *OutputBudgetError) Error() string {
	return fmt.Sprintf("reply not kept: its %d bytes would take this run's replies over %d bytes in total "+
		"(the script ran; run it on fewer hosts at once to see its output)", e.Reply, e.Budget)
}

// outputBudget is the bytes a Run may still keep, shared by its hosts.
type outputBudget struct {
	total int64
	left  atomic.Int64
}

func newOutputBudget(n int64) *outputBudget {
	switch {
	case n == 0:
		n = DefaultOutputBudget
	case n < 0:
		n = math.MaxInt64
	}
	b := &outputBudget{total: n}
	b.left.Store(n)
	return b
}

// reserve takes n bytes, or none and an *OutputBudgetError.
func (b *outputBudget) reserve(n int64) error {
	for {
		left := b.left.Load()
		if n > left {
			return &OutputBudgetError{Reply: n, Budget: b.total}
		}
		if b.left.CompareAndSwap(left, left-n) {
			return nil
		}
	}
}
