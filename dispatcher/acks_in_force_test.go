package dispatcher_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
)

// An official's own confirmation counts only for a warning in force. A
// reply "1" after an update confirms the current version, not the one it
// replaced; after a lift it confirms nothing. A confirmation of the
// replaced version names the current one, for the official to read and
// confirm; a bureau user confirming on an official's behalf is unchanged.
func TestOfficialsConfirmOnlyWarningsInForce(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now})
	ctx := context.Background()
	const village = "530102001001"
	var officer region.Person
	r.roster.People(village, func(p region.Person) bool {
		if p.Role == region.VillageOfficer {
			officer = p
		}
		return officer.ID == ""
	})
	state := func(id string) ledger.AckState {
		t.Helper()
		o, err := r.l.OfficialState(ctx, id, officer.ID)
		if err != nil {
			t.Fatal(err)
		}
		return o.State
	}
	w := redWarning()
	w.Areas, w.Expires = []string{village}, clock.now().Add(6*time.Hour)
	old, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, old.ID))
	nw := redWarning()
	nw.Areas, nw.Expires = []string{village}, clock.now().Add(6*time.Hour)
	cur, err := r.d.Update(ctx, old.ID, nw, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out of the update", progressDone(t, r, cur.ID))

	_, err = r.d.AcknowledgeOwn(ctx, old.ID, officer.ID, "link", dispatcher.Actor{PersonID: officer.ID})
	var sup *dispatcher.SupersededError
	if !errors.As(err, &sup) || sup.Current == nil || sup.Current.ID != cur.ID || !errors.Is(err, ledger.ErrState) {
		t.Fatalf("confirming the replaced version: %v; want it superseded by %s", err, cur.ID)
	}
	if s := state(cur.ID); s == ledger.AckConfirmed {
		t.Fatal("confirming the replaced version confirmed the current one")
	}
	if err := r.d.HandleReply(ctx, channels.Reply{From: officer.Phone, Text: "1"}); err != nil {
		t.Fatal(err)
	}
	if s := state(cur.ID); s != ledger.AckConfirmed {
		t.Errorf("current version after a reply: %s", s)
	}
	if s := state(old.ID); s == ledger.AckConfirmed {
		t.Error("a reply confirmed the replaced version")
	}

	third := redWarning()
	third.Areas, third.Expires = []string{village}, clock.now().Add(6*time.Hour)
	lifted, _, err := r.d.Submit(ctx, third, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out of the third", progressDone(t, r, lifted.ID))
	if _, err := r.d.Cancel(ctx, lifted.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	if err := r.d.HandleReply(ctx, channels.Reply{From: officer.Phone, Text: "1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.AcknowledgeOwn(ctx, lifted.ID, officer.ID, "link", dispatcher.Actor{PersonID: officer.ID}); !errors.Is(err, dispatcher.ErrNotLive) {
		t.Errorf("confirming a lifted warning: %v; want ErrNotLive", err)
	}
	if s := state(lifted.ID); s == ledger.AckConfirmed {
		t.Error("a reply or a link confirmed the lifted warning")
	}
	if _, err := r.d.Acknowledge(ctx, lifted.ID, officer.ID, "api", dispatcher.Actor{User: "duty"}); err != nil {
		t.Errorf("a bureau user's confirmation on the official's behalf: %v", err)
	}
}
