package dispatcher_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

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
	// calls and sent count the calls and the recipients in them; batches
	// holds each batch's calls' sizes, in order.
	calls, sent int
	batches     map[string][]int
	// gauge reads the process's uncertain recipients metric; short counts
	// the calls during which it showed fewer than the call's recipients.
	gauge func() float64
	short int
}

func (f *inFlight) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Channel != warning.SMS {
		return f.next.Notify(ctx, b)
	}
	f.mu.Lock()
	f.now += len(b.Recipients)
	f.most = max(f.most, f.now)
	f.chunk = max(f.chunk, len(b.Recipients))
	f.calls++
	f.sent += len(b.Recipients)
	if f.batches == nil {
		f.batches = map[string][]int{}
	}
	f.batches[b.ID] = append(f.batches[b.ID], len(b.Recipients))
	if f.gauge != nil && f.gauge() < float64(len(b.Recipients)) {
		f.short++
	}
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
// concurrency. Everyone gets the message once. The process's metrics show
// what is with the provider while it is, and how many each call carried.
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
	uncertain := r.metrics.InFlight.WithLabelValues("sms")
	f.mu.Lock()
	f.gauge = func() float64 { return testutil.ToFloat64(uncertain) }
	f.mu.Unlock()
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
	most, chunk, calls, sent, short := f.most, f.chunk, f.calls, f.sent, f.short
	f.mu.Unlock()
	if short > 0 {
		t.Errorf("during %d of %d SMS calls, warngate_provider_uncertain_recipients showed fewer than the call's recipients", short, calls)
	}
	if n := testutil.ToFloat64(uncertain); n != 0 {
		t.Errorf("warngate_provider_uncertain_recipients{channel=sms} = %v once every answer is recorded; want 0", n)
	}
	var m dto.Metric
	if err := r.metrics.CallRecipients.WithLabelValues("sms").(prometheus.Histogram).Write(&m); err != nil {
		t.Fatal(err)
	}
	if h := m.GetHistogram(); h.GetSampleCount() != uint64(calls) || h.GetSampleSum() != float64(sent) {
		t.Errorf("warngate_provider_call_recipients{channel=sms}: %d calls, %v recipients; want %d, %d", h.GetSampleCount(), h.GetSampleSum(), calls, sent)
	}
	t.Logf("%d SMS; at most %d with the provider at once; largest call %d; %d calls, %.1f recipients a call", sms.Planned, most, chunk, calls, float64(sent)/float64(calls))
	if most > bound {
		t.Errorf("%d SMS recipients with the provider at once; want at most %d", most, bound)
	}
	if chunk <= bound/8 {
		t.Errorf("largest SMS call %d recipients; want more than the bound over the concurrency (%d): a batch alone takes the whole budget", chunk, bound/8)
	}
	// However many batches send at once, a chunk carries half the bound
	// (or all of it, for a batch alone), rather than its batch's fair
	// part of it: only a batch's last chunk may carry fewer.
	f.mu.Lock()
	for id, sizes := range f.batches {
		for i, n := range sizes[:len(sizes)-1] {
			if n < bound/2 {
				t.Errorf("batch %s: chunk %d of %d carried %d recipients; want at least half the bound, %d (calls %v)", id, i+1, len(sizes), n, bound/2, sizes)
				break
			}
		}
	}
	f.mu.Unlock()
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
