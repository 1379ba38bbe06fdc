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
// A chunk takes as much as is free, up to what its batch has left, so
// that a provider that takes many numbers a call gets them: a call and
// its record cost about the same whatever their size. Chunks are served in
// the order they asked, those of urgent batches (officials of orange and
// red warnings) before the others; the first in line waits while less
// than its fair part (the budget over the batches sending) is free, that
// is for chunks in flight to come back.
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

// take waits for the chunk's turn and takes what is free of the budget,
// want at most. It returns how many it took, to be given back with give.
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

// grant serves the waiters in order while the first one's fair part is
// free. b.mu is held.
func (b *budget) grant() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		n := min(w.want, b.size-b.used)
		if n < min(w.want, max(1, b.size/max(1, b.active))) {
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
