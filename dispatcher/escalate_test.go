package dispatcher_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/ledger"
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
	reminderCalls := 0
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if b.Notice == channels.NoticeReminder {
			reminderCalls++
		}
		for _, rc := range b.Recipients {
			notices[rc.ID] = append(notices[rc.ID], b.Notice)
		}
	})
	ctx := context.Background()
	village := "530102001001"
	w := redWarning()
	w.Areas = []string{village}
	w.Expires = clock.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
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
		if err != nil || next != 100*time.Second {
			t.Fatalf("check %d: next %v, %v", try, next, err)
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
	steps, _ := r.l.Steps(ctx, got.ID)
	var gwSteps []string
	for _, s := range steps {
		if s.PersonID == confirmedEarly {
			t.Errorf("confirmed official was chased: %+v", s)
		}
		if s.PersonID == gw {
			gwSteps = append(gwSteps, s.Action+"@"+s.Channel)
		}
	}
	if want := []string{"remind@wecom", "remind@sms", "escalate@wecom"}; len(gwSteps) != 3 || gwSteps[0] != want[0] || gwSteps[1] != want[1] || gwSteps[2] != want[2] {
		t.Errorf("grid worker's steps %v, want %v", gwSteps, want)
	}
	// The township duty officer was told about the grid worker.
	mu.Lock()
	sawEscalation := false
	for _, n := range notices[byRole[region.TownshipDuty]] {
		sawEscalation = sawEscalation || n == channels.NoticeEscalation
	}
	reminded := len(notices[confirmedEarly])
	mu.Unlock()
	if !sawEscalation {
		t.Error("the township duty officer was not told of the unreached grid worker")
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
