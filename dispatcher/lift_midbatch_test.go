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

// gatedResidents holds the first chunk of residents' SMS at the provider
// until released, and counts the residents' chunks handed over.
type gatedResidents struct {
	next     channels.Notifier
	entered  chan struct{}
	release  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	chunks   int
	notified int
}

func (g *gatedResidents) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Channel == warning.SMS && b.Tracked() && b.Recipients[0].Audience == warning.Residents {
		g.mu.Lock()
		g.chunks++
		g.notified += len(b.Recipients)
		g.mu.Unlock()
		g.once.Do(func() { close(g.entered); <-g.release })
	}
	return g.next.Notify(ctx, b)
}

// A warning lifted while a batch is being handed over, chunk by chunk,
// sends no more of it: the chunk with the provider at the lift completes
// (its recipients get the lifted notice), the rest of the batch expires.
// Before, every batch that had started handed all its chunks over after
// the lift, to people who would then hear of a warning already lifted.
func TestLiftStopsABatchBetweenChunks(t *testing.T) {
	g := &gatedResidents{entered: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOptions{noQuery: true, concurrency: map[warning.Channel]int{warning.SMS: 10}, // chunks of 10
		demo:     &region.DemoOptions{ResidentsPerVillage: 40, HouseholdsPerVillage: 1},
		notifier: func(p *sim.Provider) channels.Notifier { g.next = p; return g }})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"} // one village: one batch of 40 residents
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("no residents' SMS reached the provider")
	}
	if _, err := r.d.Cancel(ctx, got.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	close(g.release)
	waitFor(t, 30*time.Second, "the residents' SMS settled", func() (bool, string) {
		p, err := r.l.Progress(ctx, got.ID)
		if err != nil {
			return false, err.Error()
		}
		c := p.Channels[warning.SMS]
		return c.Planned > 0 && c.Pending == 0, fmt.Sprintf("%+v", c)
	})
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.chunks != 1 {
		t.Errorf("%d chunks of residents' SMS (%d residents) handed over, want only the one with the provider at the lift", g.chunks, g.notified)
	}
	p, _ := r.l.Progress(ctx, got.ID)
	if c := p.Channels[warning.SMS]; c.Expired < 40-int64(g.notified) {
		t.Errorf("SMS after the lift: %+v, want the %d residents not handed over expired", c, 40-g.notified)
	}
}
