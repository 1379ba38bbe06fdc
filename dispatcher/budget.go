package dispatcher

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"warngate/warning"
)

// budget bounds the recipients a process has with a provider that cannot
// be asked what it accepted: a chunk takes its part before it is handed
// over and gives it back once the provider's answer is recorded, so a
// process killed at any instant leaves at most size recipients of the
// channel whose fate nobody knows (Config.UncertainBound).
//
// A chunk takes its part of the budget, or what its batch has left if
// less, so that a provider that takes many numbers a call gets them: a
// call and its record cost about the same whatever their size. A batch
// alone has the whole budget; when several send, a chunk's part is half
// of it, so that two chunks of many numbers are with the provider at
// once, the next one already with it while the last is recorded, however
// many batches send (a part of the budget over the batches sending, 12 of
// 100 for eight, made more calls for the same SMS; the README measures
// both). Chunks are served in the order they asked, those of urgent
// batches (officials of orange and red warnings) before the others; the
// first in line waits while less than its part (or what it wants, if
// less) is free, that is for chunks in flight to come back.
type budget struct {
	size int

	mu      sync.Mutex
	used    int
	active  int
	waiters []*budgetWaiter // urgent first, then in the order they asked
}

type budgetWaiter struct {
	want   int
	urgent bool
	got    int
	ready  chan struct{}
}

func newBudget(size int) *budget {
	return &budget{size: size}
}

// enter counts a batch that is about to send; leave, once it is done.
func (b *budget) enter() {
	b.mu.Lock()
	b.active++
	b.grant()
	b.mu.Unlock()
}

func (b *budget) leave() {
	b.mu.Lock()
	b.active--
	b.grant()
	b.mu.Unlock()
}

// take waits for the chunk's turn and for its part of the budget (part),
// want at most, to be free, and takes it. It returns how many it took, to
// be given back with give.
func (b *budget) take(ctx context.Context, want int, urgent bool) (int, error) {
	w := &budgetWaiter{want: max(1, want), urgent: urgent, ready: make(chan struct{})}
	b.mu.Lock()
	at := len(b.waiters)
	if urgent {
		at = 0
		for at < len(b.waiters) && b.waiters[at].urgent {
			at++
		}
	}
	b.waiters = slices.Insert(b.waiters, at, w)
	b.grant()
	b.mu.Unlock()
	select {
	case <-w.ready:
		return w.got, nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if w.got > 0 {
		b.used -= w.got
	} else {
		b.waiters = slices.DeleteFunc(b.waiters, func(x *budgetWaiter) bool { return x == w })
	}
	b.grant()
	return 0, fmt.Errorf("waiting for recipients in flight to come back from the provider: %w", context.Cause(ctx))
}

// give returns n taken with take.
func (b *budget) give(n int) {
	b.mu.Lock()
	b.used -= n
	b.grant()
	b.mu.Unlock()
}

// part is the most a chunk takes: the whole budget for a batch alone,
// half of it when several send. b.mu is held.
func (b *budget) part() int {
	if b.active > 1 {
		return max(1, b.size/2)
	}
	return b.size
}

// grant serves the waiters in order while the first one's part (or what
// it wants, if less) is free. b.mu is held.
func (b *budget) grant() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		n := min(w.want, b.part())
		if b.size-b.used < n {
			return
		}
		b.used += n
		w.got = n
		close(w.ready)
		b.waiters = b.waiters[1:]
	}
}

// budgets holds a channel's budget of size in a process, made on first use.
type budgets struct {
	size int

	mu sync.Mutex
	by map[warning.Channel]*budget
}

func (bs *budgets) of(ch warning.Channel) *budget {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.by == nil {
		bs.by = map[warning.Channel]*budget{}
	}
	b := bs.by[ch]
	if b == nil {
		b = newBudget(bs.size)
		bs.by[ch] = b
	}
	return b
}
