package dispatcher_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/region"
	"warngate/warning"
)

// inFlight counts the SMS recipients with a provider that cannot be asked
// what it accepted, while its calls last.
type inFlight struct {
	next channels.Notifier
	mu   sync.Mutex
	now  int
	most int
	// chunk is the largest call.
	chunk int
}

func (f *inFlight) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Channel != warning.SMS {
		return f.next.Notify(ctx, b)
	}
	f.mu.Lock()
	f.now += len(b.Recipients)
	f.most = max(f.most, f.now)
	f.chunk = max(f.chunk, len(b.Recipients))
	f.mu.Unlock()
	// A provider call takes a while: chunks of batches sent at once overlap.
	time.Sleep(5 * time.Millisecond)
	receipts, retry, err := f.next.Notify(ctx, b)
	f.mu.Lock()
	f.now -= len(b.Recipients)
	f.mu.Unlock()
	return receipts, retry, err
}

// With a provider that cannot be asked what it accepted, the SMS batches a
// worker sends at once share its uncertain bound (UncertainBound unless
// configured): what is with the provider at any instant (all a killed
// worker would leave uncertain) never exceeds it, while a batch alone hands
// over chunks of many recipients, not the bound over the channel's
// concurrency. Everyone gets the message once.
func TestUncertainBudgetBoundsWhatIsWithTheProvider(t *testing.T) {
	for _, bound := range []int{0, 30} {
		t.Run(fmt.Sprint("bound=", bound), func(t *testing.T) { uncertainBudget(t, bound) })
	}
}

func uncertainBudget(t *testing.T, configured int) {
	bound := configured
	if bound == 0 {
		bound = dispatcher.UncertainBound
	}
	f := &inFlight{}
	r := newRig(t, rigOptions{noQuery: true, notifier: func(p *sim.Provider) channels.Notifier { f.next = p; return f },
		demo: &region.DemoOptions{ResidentsPerVillage: 30, HouseholdsPerVillage: 1}, uncertainBound: configured})
	var mu sync.Mutex
	times := map[warning.Ref]int{}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for i := range b.Recipients {
			times[b.Ref(i)]++
		}
	})
	ctx := context.Background()
	w, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "every delivery final", progressDone(t, r, w.ID))
	p, err := r.l.Progress(ctx, w.ID)
	if err != nil {
		t.Fatal(err)
	}
	sms := p.Channels[warning.SMS]
	f.mu.Lock()
	most, chunk := f.most, f.chunk
	f.mu.Unlock()
	t.Logf("%d SMS; at most %d with the provider at once; largest call %d", sms.Planned, most, chunk)
	if most > bound {
		t.Errorf("%d SMS recipients with the provider at once; want at most %d", most, bound)
	}
	if chunk <= bound/8 {
		t.Errorf("largest SMS call %d recipients; want more than the bound over the concurrency (%d): a batch alone takes the whole budget", chunk, bound/8)
	}
	if sms.Delivered != sms.Planned || sms.Planned < 4*dispatcher.UncertainBound {
		t.Fatalf("sms %+v; want several hundred, all delivered", sms)
	}
	mu.Lock()
	defer mu.Unlock()
	for ref, n := range times {
		if n != 1 {
			t.Fatalf("%s sent %d times", fmt.Sprint(ref), n)
		}
	}
}
