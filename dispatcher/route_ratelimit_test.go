package dispatcher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/warning"
)

// Chunks larger than the account's burst, several at once, each given less
// time than all of them need together: the limiter must let whole chunks
// through one after another. Tokens collected a burst at a time and held
// until a chunk's count is there are shared out among the waiters, every
// call times out first, and nothing is ever sent though the tokens are
// spent. (Scaled down from 8 chunks of 12 at 2/s, burst 2, 7 s a call.)
func TestRouteRateLimitSendsWholeChunksUnderContention(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("rll", time.Now().UnixNano())
	acct := &account{got: map[string]int{}}
	r := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix, Notifier: acct, Rate: 20, Burst: 2}},
		dispatcher.RouteConfig{Prefix: prefix}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A chunk of 12 needs 0.5 s beyond the burst; the call has 0.7 s.
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			defer cancel()
			r.Notify(ctx, batchOf(12))
		}()
	}
	wg.Wait()
	acct.mu.Lock()
	defer acct.mu.Unlock()
	// 0.7 s at 20/s plus a burst of 2 is 16 tokens: one chunk of 12 fits.
	if acct.calls < 1 {
		t.Fatalf("%d of 8 chunks of 12 sent in 0.7 s through a 20/s account: tokens taken and wasted", acct.calls)
	}
}

// A chunk that stops waiting for its turn (its call ended) gives back what
// it took: the next batch goes at once instead of paying for messages that
// were never sent. A chunk that cannot go within its call's time does not
// take anything at all.
func TestRouteRateLimitGivesBackUnsentTokens(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("rlg", time.Now().UnixNano())
	acct := &account{got: map[string]int{}}
	r := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix, Notifier: acct, Rate: 10, Burst: 2}},
		dispatcher.RouteConfig{Prefix: prefix}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	notify := func(ctx context.Context, n int) error {
		_, _, err := r.Notify(ctx, batchOf(n))
		return err
	}
	// 12 at 10/s with a burst of 2 waits 1 s; the call is abandoned first.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if err := notify(ctx, 12); err == nil {
		t.Fatal("abandoned chunk sent")
	}
	// The burst is still there for the next: it goes at once. Had the
	// twelve not been given back, the bucket would owe ten, and the half
	// second the call has would bring back five at 10/s, not the two it
	// needs; the half second leaves room for a loaded machine's Redis.
	ctx, cancel = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := notify(ctx, 2); err != nil {
		t.Fatalf("burst of 2 after an abandoned chunk: %v", err)
	}
	if acct.calls != 1 {
		t.Fatalf("account called %d times, want 1", acct.calls)
	}
}

// A chunk larger than the account's rate lets go within one call (30 at
// 10/s in a call of 0.3 s) goes at once, and its debt holds the next
// chunks back: refused, it would be refused on every attempt, and its
// recipients never sent.
func TestRouteRateLimitSendsAChunkTooLargeForOneCall(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("rlb", time.Now().UnixNano())
	acct := &account{got: map[string]int{}}
	r := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix, Notifier: acct, Rate: 10, Burst: 2}},
		dispatcher.RouteConfig{Prefix: prefix}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	notify := func(n int) error {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, _, err := r.Notify(ctx, batchOf(n))
		return err
	}
	if err := notify(30); err != nil {
		t.Fatalf("a chunk of 30 at 10/s: %v", err)
	}
	// Refused at once, saying why: not after waiting out its call.
	if err := notify(2); err == nil || !strings.Contains(err.Error(), "cannot go within the call's time") {
		t.Errorf("the next chunk, while the 30's debt (2.8 s) is not paid: %v; want it refused at once", err)
	}
	if acct.calls != 1 {
		t.Errorf("account called %d times, want 1", acct.calls)
	}
}
