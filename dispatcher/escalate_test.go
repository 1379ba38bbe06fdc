package dispatcher_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/calllist"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

type stepClock struct{ t atomic.Pointer[time.Time] }

func newStepClock(t time.Time) *stepClock {
	c := &stepClock{}
	c.t.Store(&t)
	return c
}
func (c *stepClock) now() time.Time { return *c.t.Load() }
func (c *stepClock) add(d time.Duration) {
	t := c.now().Add(d)
	c.t.Store(&t)
}

// A red warning for one village: officials who confirm stop being chased;
// the others are reminded twice, then put on the 未叫应 list and reported
// up the chain, each step recorded.
func TestAcknowledgementAndEscalation(t *testing.T) {
	// 10:00 China time, so reminders start on WeCom.
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now})
	var mu sync.Mutex
	notices := map[string][]channels.Notice{} // person → notices received
	escalations := map[string][]string{}      // person → escalations received
	reminderCalls := 0
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if b.Notice == channels.NoticeReminder && b.Channel != warning.Voice {
			reminderCalls++ // calls, one each, are TestVoiceLadder's
		}
		for _, rc := range b.Recipients {
			notices[rc.ID] = append(notices[rc.ID], b.Notice)
			if b.Notice == channels.NoticeEscalation {
				escalations[rc.ID] = append(escalations[rc.ID], b.Note)
			}
		}
	})
	ctx := context.Background()
	village := "530102001001"
	got := submitRed(t, r, village)
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))

	officials, err := r.l.Officials(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The village's officials, and the township's and county's above it.
	byRole := map[region.Role]string{}
	for _, o := range officials {
		p, _ := r.roster.Person(o.PersonID)
		byRole[p.Role] = p.ID
		if o.State != ledger.AckWaiting || o.Tries != 1 {
			t.Fatalf("%s starts %s after %d tries", o.PersonID, o.State, o.Tries)
		}
	}
	for _, role := range []region.Role{region.VillageOfficer, region.InfoOfficer, region.GridWorker, region.TownshipDuty, region.TownshipLeader, region.CountyDuty, region.CountyLeader} {
		if byRole[role] == "" {
			t.Fatalf("no %s asked to confirm; officials: %v", role, byRole)
		}
	}
	confirmedEarly := byRole[region.InfoOfficer]
	if first, err := r.d.Acknowledge(ctx, got.ID, confirmedEarly, "link", dispatcher.Actor{PersonID: confirmedEarly, From: "127.0.0.1"}); err != nil || !first {
		t.Fatalf("acknowledge: %v, %v", first, err)
	}
	if first, _ := r.d.Acknowledge(ctx, got.ID, confirmedEarly, "link", dispatcher.Actor{PersonID: confirmedEarly, From: "127.0.0.1"}); first {
		t.Fatal("a second confirmation counted as the first")
	}
	if _, err := r.d.Acknowledge(ctx, got.ID, "o-nobody", "api", dispatcher.Actor{User: "duty"}); err == nil {
		t.Fatal("someone never asked could confirm")
	}

	// Three tries within five minutes: at 100 s and 200 s a reminder.
	for try := 2; try <= 3; try++ {
		clock.add(100 * time.Second)
		next, err := r.d.Escalate(ctx, got.ID)
		if err != nil || !next.Equal(clock.now().Add(100*time.Second)) {
			t.Fatalf("check %d: next at %v, %v; want 100 s on", try, next, err)
		}
		mu.Lock()
		if reminderCalls != try-1 {
			t.Errorf("check %d: %d reminder calls to the provider so far, want one per check (a batch)", try, reminderCalls)
		}
		mu.Unlock()
	}
	// The village officer answers "1" by SMS before the deadline.
	vo, _ := r.roster.Person(byRole[region.VillageOfficer])
	if err := r.d.HandleReply(ctx, channels.Reply{From: vo.Phone, Text: " 1 "}); err != nil {
		t.Fatal(err)
	}
	if err := r.d.HandleReply(ctx, channels.Reply{From: "13000000000", Text: "1"}); err != nil {
		t.Fatal("a reply from an unknown number is an error:", err)
	}
	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}

	officials, _ = r.l.Officials(ctx, got.ID)
	state := map[string]ledger.Official{}
	for _, o := range officials {
		state[o.PersonID] = o
	}
	if o := state[confirmedEarly]; o.State != ledger.AckConfirmed || o.Tries != 1 || o.Method != "link" {
		t.Errorf("early confirmer: %+v; want confirmed after one try, no reminders", o)
	}
	if o := state[vo.ID]; o.State != ledger.AckConfirmed || o.Method != "sms" || o.Tries != 3 {
		t.Errorf("village officer: %+v; want confirmed by sms after 3 tries", o)
	}
	gw := byRole[region.GridWorker]
	if o := state[gw]; o.State != ledger.AckUnreached || o.Tries != 3 {
		t.Errorf("silent grid worker: %+v; want unreached after 3 tries", o)
	}
	// The workers' own checks run beside these (their timers fall due at
	// once on the test's clock): whichever check moved the grid worker
	// logs the step, perhaps just after this one returned.
	var steps []ledger.Step
	var gwSteps []string
	waitFor(t, 10*time.Second, "the grid worker's escalation logged", func() (bool, string) {
		steps, _ = r.l.Steps(ctx, got.ID)
		gwSteps = gwSteps[:0]
		for _, s := range steps {
			if s.PersonID == gw {
				gwSteps = append(gwSteps, s.Action+"@"+s.Channel)
			}
		}
		return len(gwSteps) >= 3, fmt.Sprintf("steps %v", gwSteps)
	})
	for _, s := range steps {
		if s.PersonID == confirmedEarly {
			t.Errorf("confirmed official was chased: %+v", s)
		}
	}
	if want := []string{"remind@wecom", "remind@sms", "escalate@wecom"}; len(gwSteps) != 3 || gwSteps[0] != want[0] || gwSteps[1] != want[1] || gwSteps[2] != want[2] {
		t.Errorf("grid worker's steps %v, want %v", gwSteps, want)
	}
	// The township duty officer was told, in one message, about the two
	// grid workers.
	mu.Lock()
	told := escalations[byRole[region.TownshipDuty]]
	reminded := len(notices[confirmedEarly])
	mu.Unlock()
	var silent []string
	for _, o := range officials {
		if p, _ := r.roster.Person(o.PersonID); o.State == ledger.AckUnreached && p.Division == village {
			silent = append(silent, p.Name)
		}
	}
	if len(told) != 1 || len(silent) != 2 || !strings.Contains(told[0], "以下2人") ||
		!strings.Contains(told[0], silent[0]) || !strings.Contains(told[0], silent[1]) {
		t.Errorf("the township duty officer was told %q; want one message naming %v", told, silent)
	}
	if reminded != 2 { // the warning on WeCom and SMS, nothing more
		t.Errorf("early confirmer got %d messages, want 2", reminded)
	}
	p, _ := r.l.Progress(ctx, got.ID)
	v := p.AckDivisions[village]
	if v.Expected != 4 || v.Confirmed != 2 || v.Unreached != 2 || v.Waiting != 0 {
		t.Errorf("village acknowledgement counts %+v", v)
	}
	if a := p.Acks[warning.VillageOfficials]; a.Unreached != 2 {
		t.Errorf("village officials unreached: %+v", a)
	}
}

func TestApprovalByASecondPerson(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{By: dispatcher.Actor{User: "zhang"}, NeedsApproval: true})
	if err != nil || got.State != warning.StateAwaitingApproval {
		t.Fatalf("submit: %v, %v", got, err)
	}
	time.Sleep(300 * time.Millisecond) // long enough for workers to pick up anything wrongly queued
	if p, _ := r.l.Progress(ctx, got.ID); len(p.Channels) != 0 {
		t.Fatalf("a warning awaiting approval was sent: %v", p.Channels)
	}
	if _, err := r.d.Approve(ctx, got.ID, dispatcher.Actor{User: "zhang"}); err != dispatcher.ErrSelfApproval {
		t.Fatalf("issuer approved their own warning: %v", err)
	}
	ok, err := r.d.Approve(ctx, got.ID, dispatcher.Actor{User: "li"})
	if err != nil || ok.ApprovedBy != "li" {
		t.Fatalf("approve: %+v, %v", ok, err)
	}
	if _, err := r.d.Approve(ctx, got.ID, dispatcher.Actor{User: "wang"}); err == nil {
		t.Fatal("approved twice")
	}
	waitFor(t, 30*time.Second, "fan-out after approval", progressDone(t, r, got.ID))
	stored, _ := r.l.Warning(ctx, got.ID)
	if stored.IssuedBy != "zhang" || stored.ApprovedBy != "li" {
		t.Fatalf("stored issuer %q approver %q", stored.IssuedBy, stored.ApprovedBy)
	}
}

// onTimePolicy is the built-in policy with deadlines short enough to watch
// in real time. Red: officials confirm within 4 s, asked twice (on warning
// and 2 s later), then escalated; call lists are due in 3 s. Orange: the
// same, but only village officials are warned, so their township duty
// officer is first registered when they are escalated, half-way through.
func onTimePolicy() *policy.Policy {
	p := policy.Default()
	for i := range p.Rules {
		r := &p.Rules[i]
		switch {
		case slices.Contains(r.Levels, warning.Red):
			r.Send = map[warning.Audience][]warning.Channel{
				warning.CountyOfficials:   {warning.WeCom, warning.SMS},
				warning.TownshipOfficials: {warning.WeCom, warning.SMS},
				warning.VillageOfficials:  {warning.WeCom, warning.SMS},
				warning.Households:        {warning.CallList},
			}
			r.CallListDeadline = policy.Duration(3 * time.Second)
		case slices.Contains(r.Levels, warning.Orange):
			r.Send = map[warning.Audience][]warning.Channel{warning.VillageOfficials: {warning.WeCom, warning.SMS}}
			r.CallListDeadline = 0
		default:
			continue
		}
		r.AckDeadline, r.AckTries, r.Escalate = policy.Duration(4*time.Second), 2, true
	}
	return p
}

// Every reminder and escalation fires within a second after it is due —
// never before — in real time, on real Redis, through the workers: the
// queue keeps scheduled times in whole seconds, and a check that came early
// used to find nobody due and wait a whole interval more. A reminder is due
// an interval after the official's registration, an escalation an interval
// after the last reminder; a superior registered by an escalation is due an
// interval after it. The messages reach the provider within the same second,
// and the call-list check runs within a second after its deadline — while
// lifted notices that hang at the provider hold every worker of plans and
// lifted notices.
func TestAckStepsOnTheSecond(t *testing.T) {
	const interval = 2 * time.Second
	// Households are assigned to grid workers and stay unreached.
	hold := &holdLifted{release: make(chan struct{})}
	r := newRig(t, rigOptions{
		policy:   onTimePolicy(),
		notifier: func(p *sim.Provider) channels.Notifier { hold.Provider = p; return hold },
		override: map[warning.Channel]channels.Notifier{warning.CallList: calllist.Assigner{}},
	})
	t.Cleanup(func() { close(hold.release) })
	type key struct {
		warning, person string
		notice          channels.Notice
	}
	var mu sync.Mutex
	accepted := map[key][]time.Time{}
	r.sim.OnAccept(func(b *channels.Batch, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			k := key{b.Warning.ID, rc.ID, b.Notice}
			accepted[k] = append(accepted[k], at)
		}
	})
	ctx := context.Background()
	submit := func(level warning.Level, village string) *warning.Warning {
		w := redWarning()
		w.Level, w.Areas = level, []string{village}
		got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	red := submit(warning.Red, "530102001001")
	orange := submit(warning.Orange, "530103001001") // another county
	var cancelled []*warning.Warning
	for _, village := range []string{"530102001002", "530102001003", "530102001006", "530102001007"} {
		cancelled = append(cancelled, submit(warning.Red, village))
	}

	// Registration times: each official's first try.
	registered := func(id string, n int) map[string]time.Time {
		var reg map[string]time.Time
		waitFor(t, 5*time.Second, "officials registered", func() (bool, string) {
			os, err := r.l.Officials(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			reg = map[string]time.Time{}
			for _, o := range os {
				if o.Tries == 1 {
					reg[o.PersonID] = o.LastTry
				}
			}
			return len(os) == n, fmt.Sprintf("%d officials", len(os))
		})
		return reg
	}
	redReg := registered(red.ID, 8) // 4 village, 2 township, 2 county
	var confirmed string
	for id := range redReg {
		if p, _ := r.roster.Person(id); p.Role == region.InfoOfficer {
			confirmed = id
		}
	}
	if _, err := r.d.Acknowledge(ctx, red.ID, confirmed, "link", dispatcher.Actor{PersonID: confirmed}); err != nil {
		t.Fatal(err)
	}
	orangeReg := registered(orange.ID, 4)
	if len(redReg) != 8 || len(orangeReg) != 4 {
		t.Fatalf("a check ran before the first was due: %d and %d officials at their first try", len(redReg), len(orangeReg))
	}
	// Four warnings cancelled, whose lifted notices hang at the provider,
	// hold every worker of plans and lifted notices while the reminders
	// and escalations fall due.
	for _, w := range cancelled {
		waitFor(t, 5*time.Second, "every message sent", func() (bool, string) {
			p, _ := r.l.Progress(ctx, w.ID)
			tot := p.Total()
			return !p.PlannedAt.IsZero() && tot.Sent == tot.Planned, fmt.Sprintf("%+v", tot)
		})
		if _, err := r.d.Cancel(ctx, w.ID, dispatcher.Actor{User: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "lifted notices held", func() (bool, string) {
		n := hold.held.Load()
		return n >= 4, fmt.Sprintf("%d held", n)
	})
	firstDue := slices.MinFunc(slices.Collect(maps.Values(redReg)), time.Time.Compare).Add(interval)
	if held := time.Now(); held.After(firstDue) {
		t.Fatalf("the lifted notices were held only at %s, after the first reminder was due at %s: the machine is too busy for this test",
			held.Format("15:04:05.000"), firstDue.Format("15:04:05.000"))
	}

	// The orange warning's township duty officer, registered at 4 s, is
	// escalated at 6 s (no channel is set for township officials, so it goes
	// straight up): by then every step to check is due. Steps that have not
	// fired a second later are missing below.
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		steps, _ := r.l.Steps(ctx, orange.ID)
		if slices.ContainsFunc(steps, func(s ledger.Step) bool {
			p, _ := r.roster.Person(s.PersonID)
			return p.Role == region.TownshipDuty
		}) {
			break
		}
	}

	check := func(w *warning.Warning, reg map[string]time.Time) (remind, escalate int) {
		steps, err := r.l.Steps(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		last := maps.Clone(reg)
		mu.Lock()
		defer mu.Unlock()
		for _, s := range steps {
			if s.PersonID == "" {
				continue // a call-list step, checked below
			}
			prev, ok := last[s.PersonID]
			if !ok {
				t.Errorf("%s: step %+v for an official never registered", w.Level, s)
				continue
			}
			due := prev.Add(interval)
			if late := s.At.Sub(due); late < 0 || late > time.Second {
				t.Errorf("%s: %s of %s (try %d) at %s, due %s: %v late",
					w.Level, s.Action, s.PersonID, s.Try, s.At.Format("15:04:05.000"), due.Format("15:04:05.000"), late)
			}
			// The message reaches the provider in the same second.
			var k key
			switch s.Action {
			case "remind":
				remind++
				last[s.PersonID] = s.At
				k = key{w.ID, s.PersonID, channels.NoticeReminder}
			case "escalate", "unreached":
				escalate++
				if _, ok := last[s.Target]; s.Target != "" && !ok {
					last[s.Target] = s.At // registered by this escalation
				}
				k = key{w.ID, s.Target, channels.NoticeEscalation}
			}
			if s.Channel == "" {
				continue
			}
			sent := false
			for _, at := range accepted[k] {
				sent = sent || (!at.Before(due) && at.Sub(due) <= time.Second)
			}
			if !sent {
				t.Errorf("%s: %s of %s due %s: no message at the provider within the second after (got %v)",
					w.Level, s.Action, s.PersonID, due.Format("15:04:05.000"), accepted[k])
			}
		}
		return remind, escalate
	}
	// Red: seven officials who never confirm are reminded at 2 s and
	// escalated at 4 s; the one who confirmed is never chased.
	if rem, esc := check(red, redReg); rem != 7 || esc != 7 {
		t.Errorf("red: %d reminders and %d escalations, want 7 and 7", rem, esc)
	}
	// Orange: four village officials reminded and escalated, then their
	// township duty officer escalated in turn.
	if rem, esc := check(orange, orangeReg); rem != 4 || esc != 5 {
		t.Errorf("orange: %d reminders and %d escalations, want 4 and 5", rem, esc)
	}

	steps, _ := r.l.Steps(ctx, red.ID)
	due := red.Accepted.Add(3 * time.Second).Truncate(time.Millisecond) // steps keep milliseconds
	n := 0
	for _, s := range steps {
		if s.Action == "calllist_escalate" {
			n++
			if late := s.At.Sub(due); late < 0 || late > time.Second {
				t.Errorf("call list checked at %s, due %s: %v late", s.At.Format("15:04:05.000"), due.Format("15:04:05.000"), late)
			}
		}
	}
	if n != 1 {
		t.Errorf("%d call-list steps, want 1 for the one village", n)
	}
}

// A check that comes before anyone is due — the queue keeps scheduled times
// in whole seconds, so one comes up to a second early — asks to run again
// when the first official is due, not a whole interval later.
func TestEarlyCheckComesBackWhenDue(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now})
	ctx := context.Background()
	got := submitRed(t, r, "530102001001")
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	clock.add(99500 * time.Millisecond)
	next, err := r.d.Escalate(ctx, got.ID)
	if want := clock.now().Add(500 * time.Millisecond); err != nil || !next.Equal(want) {
		t.Fatalf("early check: next at %v, %v; want %v, when the first reminder is due", next, err, want)
	}
}

// holdLifted is the simulator, except that lifted notices hang until the
// call times out or the test ends, as at a provider that stopped answering.
type holdLifted struct {
	*sim.Provider
	release chan struct{}
	held    atomic.Int32
}

func (h *holdLifted) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Notice != channels.NoticeLifted {
		return h.Provider.Notify(ctx, b)
	}
	h.held.Add(1)
	select {
	case <-ctx.Done():
		return nil, true, ctx.Err()
	case <-h.release:
		return h.Provider.Notify(ctx, b)
	}
}

// Checks that overlap — a check given back by a worker that lost its lease
// and run again, or two chains of checks after a plan ran twice — remind
// each official once, and agree on the next check, which is then queued once.
func TestOverlappingChecksRemindOnce(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now})
	var mu sync.Mutex
	reminders := map[string]int{}
	calls := map[string]int{} // the township's officials are called again
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			if b.Notice == channels.NoticeReminder && b.Channel != warning.Voice {
				reminders[rc.ID]++
			} else if b.Notice == channels.NoticeReminder {
				calls[rc.ID]++
			}
		}
	})
	ctx := context.Background()
	got := submitRed(t, r, "530102001001")
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	clock.add(100 * time.Second)
	const checks = 4
	nexts := make([]time.Time, checks)
	var wg sync.WaitGroup
	for i := range checks {
		wg.Go(func() {
			var err error
			if nexts[i], err = r.d.Escalate(ctx, got.ID); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	officials, _ := r.l.Officials(ctx, got.ID)
	mu.Lock()
	defer mu.Unlock()
	for _, o := range officials {
		if n := reminders[o.PersonID]; n != 1 || o.Tries != 2 {
			t.Errorf("%s: %d reminders, %d tries; want 1 reminder, 2 tries", o.PersonID, n, o.Tries)
		}
	}
	for i, next := range nexts {
		if want := clock.now().Add(100 * time.Second); !next.Equal(want) {
			t.Errorf("check %d: next at %v, want %v", i, next, want)
		}
	}
	steps, _ := r.l.Steps(ctx, got.ID)
	callSteps := 0
	for _, s := range steps {
		if s.Action == "call" {
			callSteps++
		}
	}
	if len(steps)-callSteps != len(officials) {
		t.Errorf("%d reminder steps for %d officials", len(steps)-callSteps, len(officials))
	}
	if callSteps != 2 || len(calls) != 2 {
		t.Errorf("%d call steps, calls %v; want the township's two officials called again once each", callSteps, calls)
	}
	for id, n := range calls {
		if n != 1 {
			t.Errorf("%s called again %d times by overlapping checks", id, n)
		}
	}
}
