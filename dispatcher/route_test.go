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
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/ledger"
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

// blackhole accepts every message and never reports on any: an account
// whose carrier link is down behind a gateway that still says yes.
type blackhole struct {
	mu  sync.Mutex
	got map[string]int
}

func (h *blackhole) Notify(_ context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]channels.Receipt, len(b.Recipients))
	for i := range b.Recipients {
		h.got[b.Ref(i).String()]++
		out[i] = channels.Receipt{Index: i, State: warning.Sent}
	}
	return out, false, nil
}

func (h *blackhole) taken() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

// smsRoute sends SMS through a route and the other channels straight to the simulator.
type smsRoute struct {
	route *dispatcher.Route
	sim   *sim.Provider
}

func (s smsRoute) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Channel == warning.SMS {
		return s.route.Notify(ctx, b)
	}
	return s.sim.Notify(ctx, b)
}

// steppedClock is a clock that moves only when told.
type steppedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppedClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *steppedClock) step(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A provider that accepts messages and never reports on them is taken for
// failing once its batches stay unreported past the window: the next
// warning's SMS go through the backup, and what it accepted stays with it.
func TestRouteSkipsProviderWithoutReports(t *testing.T) {
	hole := &blackhole{got: map[string]int{}}
	clock := &steppedClock{t: time.Now()}
	var (
		mu     sync.Mutex
		opened []string
	)
	const window = 10 * time.Minute
	rdb := redistest.Client(t, redistest.DBDispatcher)
	reader := ledger.New(rdb, "wg", nil) // the rig's ledger, read through its own handle
	r := newRig(t, rigOptions{notifier: func(p *sim.Provider) channels.Notifier {
		route := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: "silent", Notifier: hole}, {Name: "backup", Notifier: p}},
			dispatcher.RouteConfig{OpenFor: time.Hour, Prefix: "wg", ReportWindow: window, Reported: reader.Reported,
				Opened: func(provider, reason string) {
					mu.Lock()
					opened = append(opened, provider+" "+reason)
					mu.Unlock()
				}},
			rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), clock.now)
		return smsRoute{route: route, sim: p}
	}})
	ctx := context.Background()
	submit := func(village string) string {
		w := redWarning()
		w.Areas = []string{village}
		w, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return w.ID
	}
	smsSent := func(id string) func() (bool, string) {
		return func() (bool, string) {
			p, err := r.l.Progress(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			c := p.Channels[warning.SMS]
			return !p.PlannedAt.IsZero() && c.Planned > 0 && c.Sent == c.Planned, fmt.Sprintf("%+v", c)
		}
	}

	// Three warnings, each at least one batch, all taken by the silent account.
	var early []string
	for _, v := range []string{"530102001001", "530102001002", "530102001003"} {
		id := submit(v)
		waitFor(t, 20*time.Second, "sms of "+id+" accepted", smsSent(id))
		early = append(early, id)
	}
	taken := hole.taken()
	// Within the window, silence is not yet failure.
	clock.step(window / 2)
	id := submit("530102001007")
	waitFor(t, 20*time.Second, "sms accepted within the window", smsSent(id))
	if hole.taken() == taken {
		t.Fatal("the silent account was skipped before its window had passed")
	}
	taken = hole.taken()

	clock.step(window/2 + time.Minute)
	id = submit("530102002001")
	waitFor(t, 20*time.Second, "the warning after the window delivered", func() (bool, string) {
		p, err := r.l.Progress(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c := p.Channels[warning.SMS]
		return !p.PlannedAt.IsZero() && c.Planned > 0 && c.Delivered+c.Failed == c.Planned, fmt.Sprintf("%+v", p.Channels)
	})
	if hole.taken() != taken {
		t.Fatalf("the silent account took %d more messages after its window", hole.taken()-taken)
	}
	mu.Lock()
	if len(opened) != 1 || opened[0] != "silent silent" {
		t.Errorf("circuits opened: %v, want the silent account's, once, for silence", opened)
	}
	mu.Unlock()
	// What the silent account accepted is not sent again through the backup.
	for _, wid := range early {
		p, _ := r.l.Progress(ctx, wid)
		if c := p.Channels[warning.SMS]; c.Delivered != 0 || c.Sent != c.Planned {
			t.Errorf("%s: sms %+v, want all sent through the silent account, none delivered", wid, c)
		}
		r.l.Deliveries(ctx, wid, warning.SMS, func(d ledger.Delivery) bool {
			if n := r.sim.Times(d.Ref); n != 0 {
				t.Errorf("%s sent again through the backup", d.Ref)
			}
			return true
		})
	}
}

// reportedRefs stands in for the ledger's Reported: the deliveries whose
// report came.
type reportedRefs struct {
	mu   sync.Mutex
	refs map[warning.Ref]bool
}

func (r *reportedRefs) add(ref warning.Ref) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refs == nil {
		r.refs = map[warning.Ref]bool{}
	}
	r.refs[ref] = true
}

func (r *reportedRefs) Reported(_ context.Context, refs []warning.Ref) ([]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]bool, len(refs))
	for i, ref := range refs {
		out[i] = r.refs[ref]
	}
	return out, nil
}

// One lost report is the carrier's: a provider whose later batches are
// reported keeps its traffic even though an older one never was.
func TestRouteForgivesALostReport(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("lr", time.Now().UnixNano())
	clock := &steppedClock{t: time.Now()}
	acct := &account{got: map[string]int{}}
	backup := &account{got: map[string]int{}}
	const window = 5 * time.Minute
	reported := &reportedRefs{}
	route := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix + "a", Notifier: acct}, {Name: prefix + "b", Notifier: backup}},
		dispatcher.RouteConfig{Prefix: prefix, ReportWindow: window, SilentBatches: 2, Reported: reported.Reported},
		rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), clock.now)
	send := func(n int) *channels.Batch {
		b := batchOf(3)
		b.Warning = &warning.Warning{ID: fmt.Sprint("w", n)}
		if _, _, err := route.Notify(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		clock.step(2 * time.Second)
		return b
	}
	// Batches 1 and 2 lose their reports, batch 3 is reported, 4 is not.
	send(1)
	send(2)
	b3 := send(3)
	send(4)
	reported.add(b3.Ref(0))
	clock.step(window)
	send(5)
	if backup.calls != 0 || acct.calls != 5 {
		t.Fatalf("after a reported batch: account called %d times, backup %d; want 5 and 0", acct.calls, backup.calls)
	}
	// Batches 4 and 5 then stay unreported past the window: two in a row.
	clock.step(window)
	send(6)
	if backup.calls != 1 || acct.calls != 5 {
		t.Fatalf("after two unreported batches: account called %d times, backup %d; want 5 and 1", acct.calls, backup.calls)
	}
}
