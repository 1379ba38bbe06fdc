package dispatcher_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/duty"
	"warngate/region"
	"warngate/warning"
)

// On a small township's night shift one person is both the 带班领导 and the
// only 值班员. The shift is accepted; the person is sent the warning once;
// the silence of the villages below is escalated to them, as the one on
// duty, and their own silence goes up to the county as a leader's does.
func TestLeaderWhoIsAlsoTheOnlyDutyOfficerTakesTheVillagesEscalations(t *testing.T) {
	const county, township, village = "530102000000", "530102001000", "530102001001"
	clock, roster, store := dutySetup(t)
	r := newRig(t, rigOptions{now: clock.now, onDuty: store.OnDutyIn})
	ctx := context.Background()
	const both = "o9c" // a village officer of 530102001003, on the township's shift in both roles
	// The rig empties its database: the shift goes in after.
	if _, errs, err := store.SetOverride(ctx, duty.Override{Division: township, Start: clock.now().Add(-time.Hour), End: clock.now().Add(10 * time.Hour),
		LeaderID: both, DutyIDs: []string{both}, By: "test"}, func(string) bool { return true }); err != nil || len(errs) > 0 {
		t.Fatalf("a shift with one person in both roles refused: %v %v", err, errs)
	}
	var mu sync.Mutex
	sent := map[warning.Channel]int{} // warnings sent to the person in both roles, by channel
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			if rc.ID == both && b.Notice == channels.NoticeFull {
				sent[b.Channel]++
			}
		}
	})
	w := redWarning()
	w.Areas, w.Expires = []string{village}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	mu.Lock()
	for ch, n := range sent {
		if n != 1 {
			t.Errorf("the person in both roles was sent the warning %d times by %s; want once", n, ch)
		}
	}
	if len(sent) == 0 {
		t.Error("the person in both roles was not sent the warning")
	}
	mu.Unlock()
	for range 3 {
		clock.add(100 * time.Second)
		r.d.Escalate(ctx, got.ID)
	}
	steps, err := r.l.Steps(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	countyDuty := ""
	roster.People(county, func(p region.Person) bool {
		if p.Role == region.CountyDuty {
			countyDuty = p.ID
			return false
		}
		return true
	})
	villagers, own := 0, false
	for _, s := range steps {
		if s.Action != "escalate" && s.Action != "unreached" {
			continue
		}
		if s.PersonID == both {
			own = true
			if s.Target != countyDuty {
				t.Errorf("the shift's own silence: %s to %q (%s); want escalated to the county's duty officer %s", s.Action, s.Target, s.Outcome, countyDuty)
			}
			continue
		}
		if p, _ := roster.Person(s.PersonID); p.Division == village {
			villagers++
			if s.Target != both {
				t.Errorf("%s silent: %s to %q (%s); want escalated to %s, on duty", s.PersonID, s.Action, s.Target, s.Outcome, both)
			}
		}
	}
	if villagers == 0 || !own {
		t.Fatalf("no escalation of the village's officials (%d) or of the shift (%v): %+v", villagers, own, steps)
	}
}
