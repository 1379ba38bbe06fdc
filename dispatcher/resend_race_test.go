package dispatcher_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/warning"
)

// refuseFirstThenSlowResend is an SMS provider whose first call for the
// plan's first batch refuses its first recipient for good and fails (503)
// for the rest, so that the batch is retried; a resend batch's call takes
// 3.5 s, longer than the retry's wait. It counts how often each recipient
// is handed to the simulator, and forwards status queries.
type refuseFirstThenSlowResend struct {
	next    *sim.Provider
	mu      sync.Mutex
	calls   map[string]int
	refused string
	handed  map[string]int
}

func (p *refuseFirstThenSlowResend) Accepted(ctx context.Context, b *channels.Batch) ([]channels.Receipt, error) {
	return p.next.Accepted(ctx, b)
}

func (p *refuseFirstThenSlowResend) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Channel != warning.SMS {
		return p.next.Notify(ctx, b)
	}
	p.mu.Lock()
	p.calls[b.ID]++
	first := strings.HasSuffix(b.ID, "/sms/1") && p.calls[b.ID] == 1
	if first {
		p.refused = b.Recipients[0].ID
	}
	resend := strings.Contains(b.ID, "/sms/1000")
	p.mu.Unlock()
	if first {
		return []channels.Receipt{{Index: 0, State: warning.Failed, Reason: "基站故障"}}, true, errors.New("provider answered 503")
	}
	if resend {
		time.Sleep(3500 * time.Millisecond)
	}
	p.mu.Lock()
	for _, r := range b.Recipients {
		p.handed[r.ID]++
	}
	p.mu.Unlock()
	return p.next.Notify(ctx, b)
}

// A resend issued while the batch a recipient failed in still waits for
// its retry sends to that recipient once: the resend batch, which re-opened
// it, handles it; the original batch's retry neither takes it back nor
// takes the resend's chunk, still with the provider, for one a dead worker
// left behind. Sent never exceeds planned.
func TestResendWhileOriginalBatchRetriesSendsOnce(t *testing.T) {
	pt := &refuseFirstThenSlowResend{calls: map[string]int{}, handed: map[string]int{}}
	r := newRig(t, rigOptions{
		notifier:   func(p *sim.Provider) channels.Notifier { pt.next = p; return pt },
		retryDelay: func(int) time.Duration { return 2 * time.Second },
	})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var x string
	waitFor(t, 10*time.Second, "the first recipient refused", func() (bool, string) {
		pt.mu.Lock()
		x = pt.refused
		pt.mu.Unlock()
		if x == "" {
			return false, ""
		}
		d, _ := r.l.Delivery(ctx, plannedRef(t, r, got, warning.SMS, x))
		return d.State == warning.Failed, string(d.State)
	})
	// The duty officer sends again to those not reached while the batch
	// waits for its retry.
	res, err := r.d.Resend(ctx, got.ID, dispatcher.Actor{User: "duty"}, []warning.Channel{warning.SMS}, nil)
	if err != nil || res.Total != 1 {
		t.Fatalf("resend = %+v, %v; want the one refused", res, err)
	}
	waitFor(t, 30*time.Second, "everything settled", progressDone(t, r, got.ID))
	time.Sleep(4 * time.Second) // let a second sending, if any, finish
	pt.mu.Lock()
	n := pt.handed[x]
	pt.mu.Unlock()
	p, _ := r.l.Progress(ctx, got.ID)
	c := p.Channels[warning.SMS]
	if n != 1 {
		t.Errorf("recipient %s was handed to the provider %d times, want once", x, n)
	}
	if times := r.sim.Times(plannedRef(t, r, got, warning.SMS, x)); times != 1 {
		t.Errorf("the simulator got recipient %s %d times, want once", x, times)
	}
	if c.Sent > c.Planned {
		t.Errorf("SMS sent %d of %d planned: %+v", c.Sent, c.Planned, c)
	}
}
