package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// voicePolicy is the built-in policy with township officials of red
// warnings called as well.
func voicePolicy() *policy.Policy {
	p := policy.Default()
	for i := range p.Rules {
		r := &p.Rules[i]
		if slices.Contains(r.Levels, warning.Red) && !slices.Contains(r.Send[warning.TownshipOfficials], warning.Voice) {
			r.Send[warning.TownshipOfficials] = append(slices.Clone(r.Send[warning.TownshipOfficials]), warning.Voice)
		}
	}
	return p
}

// A key press "1" on a call, reported by the provider through its callback,
// confirms the official as the link does: the same record, the audit trail
// naming the official and the voice call, and no more reminders. A key
// press for a warning that was lifted, or from someone never asked,
// changes nothing.
func TestConfirmByKeyPress(t *testing.T) {
	// 10:00 China time: day hours.
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now, policy: voicePolicy(), voice: sim.VoiceConfig{KeyDelay: 20 * time.Millisecond, NoAnswer: -1}})
	var mu sync.Mutex
	notices := map[string][]channels.Notice{}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			notices[rc.ID] = append(notices[rc.ID], b.Notice)
		}
	})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	w.Expires = clock.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var township []string
	waitFor(t, 30*time.Second, "township officials confirmed by their calls", func() (bool, string) {
		os, err := r.l.Officials(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		township = township[:0]
		var state []string
		done := true
		for _, o := range os {
			if o.Audience != warning.TownshipOfficials {
				continue
			}
			township = append(township, o.PersonID)
			state = append(state, fmt.Sprintf("%s %s by %q", o.PersonID, o.State, o.Method))
			done = done && o.State == ledger.AckConfirmed && o.Method == channels.ConfirmMethod
		}
		return done && len(township) == 2, strings.Join(state, "; ")
	})
	log, err := r.l.AuditLog(ctx, got.ID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range township {
		found := false
		for _, e := range log {
			if e.Action == "acknowledge" && e.Target == id {
				found = true
				if e.Who != id || e.Detail != "confirmed by voice" || !strings.HasPrefix(e.From, "sim ") {
					t.Errorf("audit of %s's key press: who %q, detail %q, from %q; want the official, by voice, the call", id, e.Who, e.Detail, e.From)
				}
			}
		}
		if !found {
			t.Errorf("no audit entry for %s's key press", id)
		}
	}
	if n := r.counter("warngate_acknowledgements_total", "method", "voice"); n != 2 {
		t.Errorf("warngate_acknowledgements_total{method=voice} = %v, want 2", n)
	}

	// The next check reminds the others, not those who pressed 1.
	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	reminded := 0
	for id, ns := range notices {
		if slices.Contains(ns, channels.NoticeReminder) {
			reminded++
			if slices.Contains(township, id) {
				t.Errorf("%s confirmed by key press and was reminded", id)
			}
		}
	}
	mu.Unlock()
	if reminded == 0 {
		t.Error("nobody reminded: the check did not run")
	}

	// Someone never asked presses 1 on a live warning.
	nobody := warning.Ref{WarningID: got.ID, Channel: warning.Voice, RecipientID: "o-nobody"}
	if err := r.d.Confirm(ctx, nobody, channels.ConfirmMethod, "x"); !errors.Is(err, channels.ErrNotConfirmable) {
		t.Errorf("a key press from someone never asked: %v, want ErrNotConfirmable", err)
	}
	// The warning is lifted; a late key press of a waiting official changes nothing.
	var waiting string
	os, _ := r.l.Officials(ctx, got.ID)
	for _, o := range os {
		if p, _ := r.roster.Person(o.PersonID); o.State == ledger.AckWaiting && p.Role == region.VillageOfficer {
			waiting = o.PersonID
		}
	}
	if waiting == "" {
		t.Fatal("no village officer waiting")
	}
	if _, err := r.d.Cancel(ctx, got.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	late := warning.Ref{WarningID: got.ID, Channel: warning.Voice, RecipientID: waiting}
	if err := r.d.Confirm(ctx, late, channels.ConfirmMethod, "x"); !errors.Is(err, channels.ErrNotConfirmable) {
		t.Errorf("a key press after the lift: %v, want ErrNotConfirmable", err)
	}
	os, _ = r.l.Officials(ctx, got.ID)
	for _, o := range os {
		if o.PersonID == waiting && o.State != ledger.AckWaiting {
			t.Errorf("a key press after the lift moved %s to %s", waiting, o.State)
		}
	}
}

// Reminders and escalations on the voice channel are calls: an official
// whose only channel is the phone is called again, and their superior is
// called about them. (They were dropped: the ladder knew no address on
// the voice channel.)
func TestRemindersAndEscalationsCall(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	pol := policy.Default()
	for i := range pol.Rules {
		r := &pol.Rules[i]
		if slices.Contains(r.Levels, warning.Red) {
			r.Send = map[warning.Audience][]warning.Channel{
				warning.CountyOfficials:   {warning.Voice},
				warning.TownshipOfficials: {warning.Voice},
				warning.VillageOfficials:  {warning.Voice},
			}
			r.AckDeadline, r.AckTries, r.Escalate = policy.Duration(200*time.Second), 2, true
		}
	}
	// Nobody answers.
	r := newRig(t, rigOptions{now: clock.now, policy: pol, voice: sim.VoiceConfig{NoAnswer: 1, Ring: 10 * time.Millisecond}})
	var mu sync.Mutex
	calls := map[channels.Notice][]string{}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			if b.Channel == warning.Voice {
				calls[b.Notice] = append(calls[b.Notice], rc.ID)
			}
		}
	})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	w.Expires = clock.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	var officer, duty string
	os, _ := r.l.Officials(ctx, got.ID)
	for _, o := range os {
		p, _ := r.roster.Person(o.PersonID)
		switch p.Role {
		case region.VillageOfficer:
			officer = p.ID
		case region.TownshipDuty:
			duty = p.ID
		}
	}
	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	clock.add(100 * time.Second)
	if _, err := r.d.Escalate(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(calls[channels.NoticeReminder], officer) {
		t.Errorf("the village officer was not called again; reminder calls: %v", calls[channels.NoticeReminder])
	}
	if !slices.Contains(calls[channels.NoticeEscalation], duty) {
		t.Errorf("the township duty officer was not called about the village; escalation calls: %v", calls[channels.NoticeEscalation])
	}
}
