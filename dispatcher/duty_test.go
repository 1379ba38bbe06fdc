package dispatcher_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"warngate/channels"
	"warngate/duty"
	"warngate/internal/redistest"
	"warngate/region"
)

// 叫应 follows the 值班表: a red warning for a village of 华山街道 asks the
// township's people on duty when it arrives instead of the roster's duty
// officer and leader; 五华区, which keeps no 值班表, falls back to its role
// holders and says so. When the deadline passes after the shift changed,
// the village's silence is escalated to the new shift's duty officer, and
// the old shift's silent officer hands over to them.
func TestAcknowledgementFollowsTheDutySchedule(t *testing.T) {
	const (
		county   = "530102000000"
		township = "530102001000"
		village  = "530102001001"
		other    = "530102001002" // the village the township's shifts are staffed from
		third    = "530102001003"
	)
	clock, roster, store := dutySetup(t)
	byRole := func(code string, role region.Role) region.Person {
		var p region.Person
		roster.People(code, func(x region.Person) bool {
			if x.Role == role {
				p = x
				return false
			}
			return true
		})
		if p.ID == "" {
			t.Fatalf("no %s in %s", role, code)
		}
		return p
	}
	leaderA, dutyA := byRole(other, region.VillageOfficer), byRole(other, region.InfoOfficer)
	leaderB, dutyB := byRole(third, region.VillageOfficer), byRole(third, region.InfoOfficer)
	rosterDuty, rosterLeader := byRole(township, region.TownshipDuty), byRole(township, region.TownshipLeader)
	ctx := context.Background()
	r := newRig(t, rigOptions{now: clock.now, onDuty: store.OnDutyIn})
	// The rig empties its database: the shifts go in after.
	at := clock.now()
	putShift(t, store, township, at.Add(-2*time.Hour), at.Add(4*time.Minute), leaderA, dutyA) // ends before the deadline
	putShift(t, store, township, at.Add(4*time.Minute), at.Add(10*time.Hour), leaderB, dutyB)
	var mu sync.Mutex
	got := map[string][]channels.Notice{} // person → notices
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		for _, rc := range b.Recipients {
			got[rc.ID] = append(got[rc.ID], b.Notice)
		}
	})
	sent := submitRed(t, r, village)
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, sent.ID))

	officials, _ := r.l.Officials(ctx, sent.ID)
	asked := map[string]bool{}
	for _, o := range officials {
		asked[o.PersonID] = true
	}
	for _, p := range []region.Person{leaderA, dutyA} {
		if !asked[p.ID] {
			t.Errorf("%s, on duty at the township, was not asked to confirm", p.ID)
		}
	}
	for _, p := range []region.Person{rosterDuty, rosterLeader} {
		if asked[p.ID] {
			t.Errorf("%s (%s by the roster) was asked although the 值班表 has someone else on duty", p.ID, p.Role)
		}
	}
	if !asked[byRole(county, region.CountyDuty).ID] {
		t.Error("五华区 keeps no 值班表: its duty officer by the roster was not asked")
	}
	sources, _ := r.l.OfficialSources(ctx, sent.ID)
	if sources[dutyA.ID] != string(region.TownshipDuty) || sources[leaderA.ID] != string(region.TownshipLeader) || len(sources) != 2 {
		t.Errorf("sources %v: want the shift's two, in the roles they stood in", sources)
	}
	p, _ := r.l.Progress(ctx, sent.ID)
	if !slices.Equal(p.DutyFallback, []string{county}) {
		t.Errorf("duty fallback %v, want [%s]", p.DutyFallback, county)
	}
	if n := testutil.ToFloat64(r.metrics.DutyFallback.WithLabelValues("county")); n != 1 {
		t.Errorf("duty fallback metric %v, want 1", n)
	}

	// Two reminders, then the deadline at 10:05, after shift B began at 10:04.
	for range 3 {
		clock.add(100 * time.Second)
		if _, err := r.d.Escalate(ctx, sent.ID); err != nil {
			t.Fatal(err)
		}
	}
	vo := byRole(village, region.VillageOfficer)
	// The deadline's check the workers run may claim the moves first: it
	// records them a moment later.
	escalatedTo := map[string]string{} // person → whom their silence went to
	handedTo := map[string]string{}
	waitFor(t, 10*time.Second, "the deadline's steps recorded", func() (bool, string) {
		steps, _ := r.l.Steps(ctx, sent.ID)
		clear(escalatedTo)
		clear(handedTo)
		for _, s := range steps {
			switch s.Action {
			case "escalate":
				escalatedTo[s.PersonID] = s.Target
			case "handover":
				handedTo[s.PersonID] = s.Target
			}
		}
		return escalatedTo[vo.ID] != "" && escalatedTo[dutyA.ID] != "" && handedTo[dutyA.ID] != "", fmt.Sprintf("%d steps", len(steps))
	})
	if escalatedTo[vo.ID] != dutyB.ID {
		t.Errorf("the village officer's silence went to %q, want %s, the duty officer of the shift on at the deadline", escalatedTo[vo.ID], dutyB.ID)
	}
	if escalatedTo[dutyA.ID] != leaderB.ID {
		t.Errorf("shift A's duty officer's silence went to %q, want %s, shift B's leader", escalatedTo[dutyA.ID], leaderB.ID)
	}
	if handedTo[dutyA.ID] != dutyB.ID {
		t.Errorf("shift A's duty officer handed over to %q, want %s, who stands in the role now", handedTo[dutyA.ID], dutyB.ID)
	}
	officials, _ = r.l.Officials(ctx, sent.ID)
	asked = map[string]bool{}
	for _, o := range officials {
		asked[o.PersonID] = true
	}
	if !asked[dutyB.ID] || !asked[leaderB.ID] {
		t.Errorf("shift B's people are not asked to confirm: %v", asked)
	}
	sources, _ = r.l.OfficialSources(ctx, sent.ID)
	if sources[dutyB.ID] != string(region.TownshipDuty) || sources[leaderB.ID] != string(region.TownshipLeader) {
		t.Errorf("sources %v: shift B's people are not marked as on duty", sources)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got[dutyB.ID]) == 0 || len(got[leaderB.ID]) == 0 {
		t.Errorf("shift B's people were sent nothing: %v %v", got[dutyB.ID], got[leaderB.ID])
	}
	if len(got[rosterDuty.ID]) != 0 {
		t.Errorf("the roster's duty officer, not on duty, was sent %v", got[rosterDuty.ID])
	}
}

// A county-wide warning's plan asks the duty store once for the county and
// every township of it, not once per division: each ask is a Redis round
// trip on the way to the first official's message. The shifts it reads
// are used as one by one: a township with a shift has its people asked,
// the others fall back to their role holders.
func TestPlanReadsEveryShiftOfItsAreasAtOnce(t *testing.T) {
	const (
		county   = "530102000000"
		township = "530102001000"
		staffed  = "530102001003" // the village the shift is staffed from
	)
	clock, roster, store := dutySetup(t)
	var mu sync.Mutex
	var asks [][]string
	r := newRig(t, rigOptions{now: clock.now, onDuty: func(ctx context.Context, divisions []string, at time.Time) (map[string]duty.Standing, error) {
		mu.Lock()
		asks = append(asks, slices.Clone(divisions))
		mu.Unlock()
		return store.OnDutyIn(ctx, divisions, at)
	}})
	leader, officer := shiftStaff(roster, staffed)
	ctx := context.Background()
	putShift(t, store, township, clock.now().Add(-time.Hour), clock.now().Add(10*time.Hour), leader, officer)

	sent := submitRed(t, r, county)
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, sent.ID))

	var want []string
	region.Kunming().Walk(county, func(d *region.Division) bool {
		if d.Level == region.County || d.Level == region.Township {
			want = append(want, d.Code)
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(asks) != 1 {
		t.Fatalf("the plan asked the duty store %d times (%v), want once for all %d divisions", len(asks), asks, len(want))
	}
	slices.Sort(want)
	got := slices.Sorted(slices.Values(asks[0]))
	if !slices.Equal(got, want) {
		t.Errorf("divisions asked %v, want the county and its townships %v", got, want)
	}
	officials, _ := r.l.Officials(ctx, sent.ID)
	asked := map[string]bool{}
	for _, o := range officials {
		asked[o.PersonID] = true
	}
	if !asked[leader.ID] || !asked[officer.ID] {
		t.Errorf("the township's shift (%s, %s) was not asked to confirm", leader.ID, officer.ID)
	}
	p, _ := r.l.Progress(ctx, sent.ID)
	if len(p.DutyFallback) != len(want)-1 || slices.Contains(p.DutyFallback, township) {
		t.Errorf("duty fallback %v: want every division but %s, which has a shift", p.DutyFallback, township)
	}
}

// dutySetup is what the duty tests start from: a stepped clock at 10:00
// China time, a demo roster of five residents a village, and a store of
// 值班表 on it, in the dispatcher tests' database.
func dutySetup(t *testing.T) (*stepClock, region.Roster, *duty.Store) {
	t.Helper()
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 5, HouseholdsPerVillage: 2})
	store := duty.New(redistest.Client(t, redistest.DBDispatcher), duty.Options{Prefix: "dutytest", Tree: tree, Now: clock.now,
		Roster: func(context.Context) (region.Roster, error) { return roster, nil }})
	return clock, roster, store
}

// shiftStaff is a village's officer and information officer, who staff a
// township's shift in these tests as its leader and its duty officer.
func shiftStaff(roster region.Roster, village string) (leader, officer region.Person) {
	roster.People(village, func(p region.Person) bool {
		switch p.Role {
		case region.VillageOfficer:
			leader = p
		case region.InfoOfficer:
			officer = p
		}
		return true
	})
	return leader, officer
}

// putShift stores a shift of a division from start to end.
func putShift(t *testing.T, store *duty.Store, division string, start, end time.Time, leader, officer region.Person) {
	t.Helper()
	_, errs, err := store.SetOverride(context.Background(), duty.Override{Division: division, Start: start, End: end,
		LeaderID: leader.ID, DutyIDs: []string{officer.ID}, By: "test"}, func(string) bool { return true })
	if err != nil || len(errs) > 0 {
		t.Fatalf("shift: %v %v", err, errs)
	}
}
