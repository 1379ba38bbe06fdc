package dispatcher_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// failFirstEscalation is the simulator, except that the first escalation
// to one superior fails as at a provider that is down (HTTP 503).
type failFirstEscalation struct {
	*sim.Provider
	to     string
	failed atomic.Bool
}

func (f *failFirstEscalation) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Notice == channels.NoticeEscalation && b.Recipients[0].ID == f.to && f.failed.CompareAndSwap(false, true) {
		return nil, true, errors.New("503 service unavailable")
	}
	return f.Provider.Notify(ctx, b)
}

// escalationsTo records the escalations the simulator took, by superior:
// the channel of each.
type escalationsTo struct {
	mu sync.Mutex
	by map[string][]warning.Channel
}

func newEscalationsTo(r *rig) *escalationsTo {
	e := &escalationsTo{by: map[string][]warning.Channel{}}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		if b.Notice != channels.NoticeEscalation {
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, rc := range b.Recipients {
			e.by[rc.ID] = append(e.by[rc.ID], b.Channel)
		}
	})
	return e
}

func (e *escalationsTo) of(id string) []warning.Channel {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]warning.Channel(nil), e.by[id]...)
}

// escalateSteps are the escalate steps of the officials under a superior.
func escalateSteps(t *testing.T, r *rig, warningID, superior string) []ledger.Step {
	t.Helper()
	steps, err := r.l.Steps(context.Background(), warningID)
	if err != nil {
		t.Fatal(err)
	}
	var out []ledger.Step
	for _, s := range steps {
		if s.Action == "escalate" && s.Target == superior {
			out = append(out, s)
		}
	}
	return out
}

// A superior's escalation that the provider did not take is not lost: the
// step says it was not sent, the check asks for the next check an interval
// on, and that check tells the superior, on their next channel, and logs
// it sent.
func TestEscalationRetriedAfterProviderFailure(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	ff := &failFirstEscalation{}
	r := newRig(t, rigOptions{now: clock.now, notifier: func(p *sim.Provider) channels.Notifier { ff.Provider = p; return ff }})
	told := newEscalationsTo(r)
	ctx := context.Background()
	w := redWarning()
	w.Areas, w.Expires = []string{"530102001001"}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	duty := byRole(t, r, got.ID)[region.TownshipDuty]
	ff.to = duty

	// Red: five minutes, three tries; the village officials are escalated
	// to the township duty officer at 300 s, and the provider fails.
	var next time.Time
	for range 3 {
		clock.add(100 * time.Second)
		if next, err = r.d.Escalate(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
	}
	if !ff.failed.Load() {
		t.Fatal("no escalation to the township duty officer at 300 s")
	}
	if n := len(told.of(duty)); n != 0 {
		t.Fatalf("township duty officer told %d times, want none yet", n)
	}
	failed := escalateSteps(t, r, got.ID, duty)
	if len(failed) == 0 {
		t.Fatal("no escalate steps to the township duty officer")
	}
	for _, s := range failed {
		if !strings.HasPrefix(s.Outcome, "not sent: ") || !strings.Contains(s.Outcome, "503") {
			t.Errorf("escalation of %s: outcome %q, want it not sent, with the provider's error", s.PersonID, s.Outcome)
		}
	}
	if want := clock.now().Add(100 * time.Second); next.IsZero() || next.After(want) {
		t.Errorf("next check at %v, want by %v, to try the escalation again", next, want)
	}

	// The next check tells them, once, on their other channel.
	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	chs := told.of(duty)
	if len(chs) != 1 {
		t.Fatalf("township duty officer told %d times by the check after the failure, want once", len(chs))
	}
	if string(chs[0]) == failed[0].Channel {
		t.Errorf("escalation tried again on %s, the channel that failed; want the superior's next channel", chs[0])
	}
	steps := escalateSteps(t, r, got.ID, duty)
	sent := 0
	for _, s := range steps[len(failed):] {
		if s.Outcome != "sent" || s.Channel != string(chs[0]) {
			t.Errorf("escalation of %s tried again: outcome %q on %s, want sent on %s", s.PersonID, s.Outcome, s.Channel, chs[0])
		}
		sent++
	}
	if sent != len(failed) {
		t.Errorf("%d escalations sent on the second try, want the %d that failed", sent, len(failed))
	}

	// Sent once, it is not sent again.
	for range 3 {
		clock.add(100 * time.Second)
		if _, err := r.d.Escalate(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(told.of(duty)); n != 1 {
		t.Errorf("township duty officer told %d times in all, want once", n)
	}
}

// A check that stops after putting an official on the 未叫应 list and
// before telling their superior (the process crashed) leaves the official
// unreached and no step logged. A check at the same instant — one running
// alongside, which may be sending it still — leaves it alone; the check an
// interval on tells the superior.
func TestEscalationSentAfterCheckStopped(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now})
	told := newEscalationsTo(r)
	ctx := context.Background()
	w := redWarning()
	w.Areas, w.Expires = []string{"530102001001"}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	roles := byRole(t, r, got.ID)
	officer, duty := roles[region.VillageOfficer], roles[region.TownshipDuty]

	// The move a stopped check made, and nothing after it.
	clock.add(100 * time.Second)
	o, err := r.l.OfficialState(ctx, got.ID, officer)
	if err != nil {
		t.Fatal(err)
	}
	if moved, err := r.l.MarkTry(ctx, got.ID, o, clock.now(), o.Tries, true); err != nil || !moved {
		t.Fatalf("moving the village officer: %v, %v", moved, err)
	}
	next, err := r.d.Escalate(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(told.of(duty)); n != 0 {
		t.Errorf("a check at the instant of the move told the superior %d times, want none: the check that moved may be sending", n)
	}
	if want := clock.now().Add(100 * time.Second); next.IsZero() || next.After(want) {
		t.Errorf("next check at %v, want by %v", next, want)
	}

	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(told.of(duty)); n != 1 {
		t.Fatalf("township duty officer told %d times, want once", n)
	}
	steps := escalateSteps(t, r, got.ID, duty)
	if len(steps) != 1 || steps[0].PersonID != officer || steps[0].Outcome != "sent" {
		t.Errorf("escalate steps %+v, want the village officer's, sent", steps)
	}
	if _, err := r.l.OfficialState(ctx, got.ID, duty); err != nil {
		t.Errorf("township duty officer not asked to confirm in turn: %v", err)
	}
}

// holdRetry is failFirstEscalation whose second escalation to the superior
// (the try again) waits at the provider until let go.
type holdRetry struct {
	failFirstEscalation
	tries   atomic.Int32
	holding chan struct{}
	release chan struct{}
}

func (h *holdRetry) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Notice == channels.NoticeEscalation && b.Recipients[0].ID == h.to && h.failed.Load() && h.tries.Add(1) == 1 {
		close(h.holding)
		<-h.release
	}
	return h.failFirstEscalation.Notify(ctx, b)
}

// Two checks that find the same failed escalation due at once (the timer's
// and one queued before it, or two workers') try it once: the one that
// claims the try sends it, while the other, finding it neither logged nor
// its own, leaves it.
func TestEscalationRetriedOnceByChecksAtOnce(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	h := &holdRetry{holding: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOptions{now: clock.now, noWorkers: true,
		notifier: func(p *sim.Provider) channels.Notifier { h.Provider = p; return h }})
	told := newEscalationsTo(r)
	ctx := context.Background()
	w := redWarning()
	w.Areas, w.Expires = []string{"530102001001"}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r.start()
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	h.to = byRole(t, r, got.ID)[region.TownshipDuty]
	for range 3 {
		clock.add(100 * time.Second)
		if _, err := r.d.Escalate(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
	}
	if !h.failed.Load() {
		t.Fatal("no failed escalation to the township duty officer at 300 s")
	}

	// An interval on, one check tries it again and waits at the provider;
	// a second check runs meanwhile.
	clock.add(100 * time.Second)
	first := make(chan error, 1)
	go func() { _, err := r.d.Escalate(ctx, got.ID); first <- err }()
	select {
	case <-h.holding:
	case <-time.After(30 * time.Second):
		t.Fatal("the first check never tried the escalation again")
	}
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	close(h.release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := len(told.of(h.to)); n != 1 {
		t.Fatalf("township duty officer told %d times by two checks at once, want once", n)
	}
}
