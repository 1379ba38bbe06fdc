package dispatcher

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// takeAsync takes in the background; the result comes on the channel.
func takeAsync(b *budget, want int, urgent bool) chan int {
	got := make(chan int, 1)
	go func() {
		n, _ := b.take(context.Background(), want, urgent)
		got <- n
	}()
	return got
}

// waiting is how many chunks wait for their turn.
func waiting(b *budget) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.waiters)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// A batch alone takes the whole budget a chunk; when several send, a
// chunk's part is half of it. Chunks wait their turn in order, urgent ones
// first, each while less than its part (or what it wants, if less) is
// free; a wait ends with its context and leaves nothing taken.
func TestBudgetTurns(t *testing.T) {
	ctx := context.Background()
	b := newBudget(100)
	b.enter()
	if n, err := b.take(ctx, 1000, false); err != nil || n != 100 {
		t.Fatalf("a batch alone took %d (%v); want the whole budget, 100", n, err)
	}
	b.give(100)
	if n, _ := b.take(ctx, 7, false); n != 7 {
		t.Fatalf("a batch of 7 alone took %d; want 7", n)
	}
	b.give(7)

	// Three batches sending: A and B take half the budget each, so that
	// two chunks are with the provider at once. C, then an official's
	// chunk O, wait. When A's chunk comes back O goes first; C waits
	// while 49 are free (its fair part, 33, would have gone) and goes
	// once its part is.
	b.enter()
	b.enter()
	a := receive(t, takeAsync(b, 1000, false), "A")
	bb := receive(t, takeAsync(b, 1000, false), "B")
	if a != 50 || bb != 50 {
		t.Fatalf("with three batches sending, chunks took %d and %d; want half the budget each, 50", a, bb)
	}
	gotC := takeAsync(b, 1000, false)
	waitUntil(t, "C to wait", func() bool { return waiting(b) == 1 })
	gotO := takeAsync(b, 1, true)
	waitUntil(t, "O to wait", func() bool { return waiting(b) == 2 })
	b.give(a)
	if n := receive(t, gotO, "the official's chunk"); n != 1 {
		t.Fatalf("the official's chunk took %d; want 1", n)
	}
	select {
	case n := <-gotC:
		t.Fatalf("C took %d with 49 free; want it to wait for its part, 50", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.give(1)
	if n := receive(t, gotC, "C"); n != 50 {
		t.Fatalf("C took %d; want its part, 50", n)
	}

	// B and C end: A, alone again, waits for the whole budget.
	b.leave()
	b.leave()
	gotA := takeAsync(b, 1000, false)
	waitUntil(t, "A to wait", func() bool { return waiting(b) == 1 })
	b.give(bb)
	select {
	case n := <-gotA:
		t.Fatalf("A alone took %d with 50 free; want it to wait for the whole budget", n)
	case <-time.After(20 * time.Millisecond):
	}
	b.give(50) // C
	if n := receive(t, gotA, "A alone"); n != 100 {
		t.Fatalf("A alone took %d; want the whole budget, 100", n)
	}

	// The budget is spent: a wait ends with its context, and what comes
	// back later is free for others, not kept for the one that left.
	cctx, cancel := context.WithCancelCause(ctx)
	stop := errors.New("worker stopping")
	time.AfterFunc(20*time.Millisecond, func() { cancel(stop) })
	if n, err := b.take(cctx, 10, false); !errors.Is(err, stop) {
		t.Fatalf("take on a spent budget: %d, %v; want the context's cause", n, err)
	}
	if waiting(b) != 0 {
		t.Fatal("a chunk that stopped waiting is still in line")
	}
	b.give(100) // A
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used != 0 {
		t.Fatalf("%d used with every chunk given back; want 0", b.used)
	}
}

// receive waits for what a chunk took.
func receive(t *testing.T, got chan int, who string) int {
	t.Helper()
	select {
	case n := <-got:
		return n
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still waits", who)
		return 0
	}
}

// However many batches take and give at once, what they hold together never
// exceeds the budget, and every batch gets its chunks.
func TestBudgetNeverExceeded(t *testing.T) {
	ctx := context.Background()
	b := newBudget(100)
	var held, most atomic.Int64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b.enter()
			defer b.leave()
			for left := 300 + 37*i; left > 0; {
				n, err := b.take(ctx, left, i%5 == 0)
				if err != nil {
					t.Error(err)
					return
				}
				h := held.Add(int64(n))
				for m := most.Load(); h > m && !most.CompareAndSwap(m, h); m = most.Load() {
				}
				time.Sleep(time.Millisecond)
				held.Add(-int64(n))
				b.give(n)
				left -= n
			}
		}()
	}
	wg.Wait()
	if m := most.Load(); m > 100 {
		t.Fatalf("%d held at once; want at most the budget, 100", m)
	}
	if b.used != 0 || b.active != 0 {
		t.Fatalf("budget left with %d used by %d batches; want none", b.used, b.active)
	}
}

// plainNotifier is a provider that cannot be asked what it accepted.
type plainNotifier struct{}

func (plainNotifier) Notify(context.Context, *channels.Batch) ([]channels.Receipt, bool, error) {
	return nil, false, nil
}

// A rate-limited account caps the chunks of the channels it serves at five
// seconds of its rate (its burst at least): a larger chunk's debt would
// hold an official's chunk back longer. A configured chunk size stands.
func TestChunkingCappedByRate(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	route := func(ps ...Provider) *Route { return NewRoute(warning.SMS, ps, RouteConfig{}, nil, log, nil) }
	for _, c := range []struct {
		route *Route
		size  int
	}{
		{route(Provider{Name: "a", Notifier: plainNotifier{}}), UncertainBound},
		{route(Provider{Name: "a", Notifier: plainNotifier{}, Rate: 2, Burst: 2}, Provider{Name: "b", Notifier: plainNotifier{}}), 10},
		{route(Provider{Name: "a", Notifier: plainNotifier{}, Rate: 0.5}), 3},
		{route(Provider{Name: "a", Notifier: plainNotifier{}, Rate: 2, Burst: 40}), 40},
		{route(Provider{Name: "a", Notifier: plainNotifier{}, Rate: 50}), UncertainBound},
	} {
		d := &Dispatcher{budgets: budgets{size: UncertainBound},
			notifiers: map[warning.Channel]channels.Notifier{warning.SMS: c.route}}
		if size, bud := d.chunking(warning.SMS); size != c.size || bud == nil {
			t.Errorf("route %+v: chunks of %d (budget %v); want %d in the budget", c.route.providers, size, bud != nil, c.size)
		}
		d.cfg.ChunkSize = map[warning.Channel]int{warning.SMS: 300}
		if size, bud := d.chunking(warning.SMS); size != 300 || bud != nil {
			t.Errorf("route %+v with chunk_size 300: chunks of %d (budget %v); want 300, no budget", c.route.providers, size, bud != nil)
		}
	}
}
