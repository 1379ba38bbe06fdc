package dispatcher_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// When voice is an official's only channel, the ladder's reminders call
// (there is nothing else to remind on) and the rule calls on its own
// schedule too. A check where both fall due calls each person once; the
// scheduled call it left out counts as placed, so the schedule moves on.
func TestVoiceOnlyOfficialsCalledOncePerCheck(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	pol := policy.Default()
	for i := range pol.Rules {
		if r := &pol.Rules[i]; slices.Contains(r.Levels, warning.Red) {
			v := []warning.Channel{warning.Voice}
			r.Send = map[warning.Audience][]warning.Channel{warning.CountyOfficials: v, warning.TownshipOfficials: v, warning.VillageOfficials: v}
			// Reminders and calls both every 100 s.
			r.AckDeadline, r.AckTries, r.CallTries, r.CallWithin = policy.Duration(200*time.Second), 2, 2, policy.Duration(200*time.Second)
		}
	}
	r := newRig(t, rigOptions{now: clock.now, policy: pol})
	ctx := context.Background()
	w := redWarning()
	w.Areas, w.Expires = []string{"530102001001"}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	roles := byRole(t, r, got.ID)
	var mu sync.Mutex
	calls := map[string]int{} // by person, in the check under way
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			if b.Channel == warning.Voice {
				calls[rc.ID]++
			}
		}
	})
	check := func() map[string]int {
		mu.Lock()
		clear(calls)
		mu.Unlock()
		clock.add(100 * time.Second)
		if _, err := r.d.Escalate(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		for id, n := range calls {
			if n > 1 {
				t.Errorf("at %s: %s called %d times by one check, want once", clock.now().Format("15:04:05"), id, n)
			}
		}
		return maps.Clone(calls)
	}

	// 100 s: the village officer's reminder and second scheduled call.
	officer := roles[region.VillageOfficer]
	if n := check()[officer]; n != 1 {
		t.Errorf("village officer called %d times at 100 s, want once", n)
	}
	steps, _ := r.l.Steps(ctx, got.ID)
	var remind, call bool
	for _, s := range steps {
		if s.PersonID != officer {
			continue
		}
		remind = remind || (s.Action == "remind" && s.Channel == "voice" && s.Outcome == "")
		call = call || (s.Action == "call" && s.Try == 2 && s.Outcome != "")
	}
	if !remind || !call {
		t.Errorf("village officer's steps %+v: want the reminder called and the scheduled call logged as not placed", steps)
	}
	tracks, _ := r.l.CallTracks(ctx, got.ID)
	if tr := tracks[officer]; tr.Calls != 2 || !tr.At.Equal(clock.now()) {
		t.Errorf("village officer's call schedule %+v, want 2 calls, the last now", tr)
	}

	// 200 s and on: escalations by call, each superior called once.
	county := roles[region.CountyDuty]
	if n := check()[county]; n != 1 {
		t.Errorf("county duty officer called %d times at 200 s, want once (the escalation)", n)
	}
	check() // 300 s
}
