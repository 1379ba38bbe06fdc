package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/warning"
)

// account is a provider account stand-in that records what it accepted.
type account struct {
	mu       sync.Mutex
	got      map[string]int
	fail     error // every call fails with this, retryably
	partial  int   // accept only the first n recipients, then fail retryably
	calls    int
	calledAt []time.Time
}

func (a *account) Notify(_ context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	a.calledAt = append(a.calledAt, time.Now())
	if a.fail != nil {
		return nil, true, a.fail
	}
	n := len(b.Recipients)
	if a.partial > 0 && a.partial < n {
		n = a.partial
	}
	var out []channels.Receipt
	for i := 0; i < n; i++ {
		a.got[b.Recipients[i].ID]++
		out = append(out, channels.Receipt{Index: i, State: warning.Sent})
	}
	if n < len(b.Recipients) {
		return out, true, errors.New("connection reset mid-batch")
	}
	return out, false, nil
}

func batchOf(n int) *channels.Batch {
	b := &channels.Batch{ID: "w/sms/1", Channel: warning.SMS, Warning: &warning.Warning{ID: "w"}}
	for i := range n {
		b.Recipients = append(b.Recipients, warning.Recipient{ID: fmt.Sprint("r", i), Address: "13800000000"})
	}
	return b
}

func TestRouteFailsOverWithoutSendingTwice(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("rt", time.Now().UnixNano())
	primary := &account{got: map[string]int{}, partial: 3}
	backup := &account{got: map[string]int{}}
	r := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix + "a", Notifier: primary}, {Name: prefix + "b", Notifier: backup}},
		dispatcher.RouteConfig{Failures: 2, OpenFor: time.Minute, Prefix: prefix}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	receipts, _, err := r.Notify(context.Background(), batchOf(10))
	if err != nil || len(receipts) != 10 {
		t.Fatalf("receipts %d, err %v", len(receipts), err)
	}
	for id, n := range primary.got {
		if backup.got[id] > 0 || n != 1 {
			t.Errorf("%s sent through both providers", id)
		}
	}
	if len(primary.got) != 3 || len(backup.got) != 7 {
		t.Fatalf("primary took %d, backup %d; want 3 and 7", len(primary.got), len(backup.got))
	}
	seen := map[int]bool{}
	for _, rc := range receipts {
		seen[rc.Index] = true
	}
	if len(seen) != 10 {
		t.Fatalf("receipt positions %v", seen)
	}
	// A second failure opens the primary's circuit: the next batch goes
	// straight to the backup.
	r.Notify(context.Background(), batchOf(10))
	calls := primary.calls
	r.Notify(context.Background(), batchOf(5))
	if primary.calls != calls {
		t.Fatalf("open circuit still called")
	}
}

func TestRouteRateLimitIsShared(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("rl", time.Now().UnixNano())
	acct := &account{got: map[string]int{}}
	p := []dispatcher.Provider{{Name: prefix, Notifier: acct, Rate: 20, Burst: 10}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Two routes stand for two worker processes sharing one account.
	r1 := dispatcher.NewRoute(warning.SMS, p, dispatcher.RouteConfig{Prefix: prefix}, rdb, log, nil)
	r2 := dispatcher.NewRoute(warning.SMS, p, dispatcher.RouteConfig{Prefix: prefix}, rdb, log, nil)
	start := time.Now()
	var wg sync.WaitGroup
	for _, r := range []*dispatcher.Route{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2 {
				if _, _, err := r.Notify(context.Background(), batchOf(10)); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// 40 messages at 20/s with a burst of 10: at least 1.5 s, whichever
	// process sends. (A bound from the limit's arithmetic, not a timing
	// target: the limiter must have made the callers wait.)
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Fatalf("40 messages went out in %s through a 20/s account", el)
	}
}
