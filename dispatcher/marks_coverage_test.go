package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// markVillage is the village the call-list mark tests work in.
const markVillage = "530102001001"

// fallbackRig issues a red warning to markVillage in which SMS fails for a
// resident without WeChat, runs the fallback check ten minutes later, and
// returns the rig, its clock, the warning, that resident (now on the
// village's call list) and the grid worker given them. With held the SMS
// is sent but its report has not come, instead of failing.
func fallbackRig(t *testing.T, held bool) (*rig, *stepClock, *warning.Warning, region.Person, string) {
	t.Helper()
	r, clock, sms := scriptedSMSRig(t, 10)
	ctx := context.Background()
	var off region.Person
	r.roster.People(markVillage, func(p region.Person) bool {
		if p.Role == region.Resident && p.WeChatOpenID == "" && off.ID == "" {
			off = p
		}
		return true
	})
	if held {
		sms.hold[off.ID] = true
	} else {
		sms.fail[off.ID] = true
	}
	got := submitRed(t, r, markVillage)
	waitFor(t, 30*time.Second, "fan-out", func() (bool, string) {
		p, err := r.l.Progress(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		tot := p.Total()
		done := tot.Done()
		if held { // all but the held SMS final
			done = tot.Pending == 1 && tot.Delivered+tot.Failed+tot.Expired+1 == tot.Planned
		}
		return !p.PlannedAt.IsZero() && done, fmt.Sprintf("%+v", tot)
	})
	clock.add(10 * time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	e, ok, err := r.l.FallbackEntryOf(ctx, got.ID, off.ID)
	if err != nil || !ok {
		t.Fatalf("resident %s not on the call list: %v", off.ID, err)
	}
	return r, clock, got, off, e.GridWorker
}

// onUnreachedList reports whether a resident is on the village's list of
// residents no channel reached.
func onUnreachedList(t *testing.T, r *rig, w *warning.Warning, id string) bool {
	t.Helper()
	un, err := r.d.Unreached(context.Background(), w, r.roster, markVillage)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range un {
		if e.PersonID == id {
			return true
		}
	}
	return false
}

// A grid worker marks a resident reached by mistake and corrects it to not
// reached: the visit is undone, the village's reached count goes back to
// what it was and the resident is on the unreached list again, to be
// visited. Correcting twice changes nothing more; marking reached again
// counts them once.
func TestCorrectionToNotReachedUndoesTheVisit(t *testing.T) {
	r, _, w, off, gw := fallbackRig(t, false)
	ctx := context.Background()
	before, _ := r.l.Coverage(ctx, w.ID)
	if !onUnreachedList(t, r, w, off.ID) {
		t.Fatal("resident not on the unreached list before any mark")
	}
	mark := func(reached bool, note string) {
		t.Helper()
		m := ledger.Mark{Reached: reached, Note: note}
		if reached {
			m.Method = "visit"
		}
		if err := r.d.MarkHousehold(ctx, w, dispatcher.Actor{PersonID: gw}, off.ID, m); err != nil {
			t.Fatal(err)
		}
	}
	reachedNow := func() int64 {
		t.Helper()
		cov, err := r.l.Coverage(ctx, w.ID)
		if err != nil {
			t.Fatal(err)
		}
		return cov[markVillage].Reached
	}

	mark(true, "")
	if got := reachedNow(); got != before[markVillage].Reached+1 {
		t.Fatalf("reached after the visit: %d, want %d", got, before[markVillage].Reached+1)
	}
	if onUnreachedList(t, r, w, off.ID) {
		t.Fatal("resident marked reached is still on the unreached list")
	}

	for i := range 2 { // a repeated correction is harmless
		mark(false, "搞错了，家中无人")
		marks, _ := r.l.Marks(ctx, w.ID)
		if marks[off.ID].Reached {
			t.Fatalf("correction %d: mark still says reached", i+1)
		}
		if got := reachedNow(); got != before[markVillage].Reached {
			t.Errorf("correction %d: reached %d; want %d as before the visit", i+1, got, before[markVillage].Reached)
		}
		if reach, _ := r.l.PersonReach(ctx, w.ID, []ledger.Entry{{RecipientID: off.ID, Audience: warning.Residents, Division: off.Division}}); len(reach[0]) != 0 {
			t.Errorf("correction %d: resident still reached by %+v", i+1, reach[0])
		}
		if !onUnreachedList(t, r, w, off.ID) {
			t.Errorf("correction %d: resident not back on the unreached list", i+1)
		}
		if e, ok, _ := r.l.FallbackEntryOf(ctx, w.ID, off.ID); !ok || e.GridWorker != gw {
			t.Errorf("correction %d: call-list entry %+v (listed %v); want it kept for %s", i+1, e, ok, gw)
		}
	}

	mark(true, "第二次上门已告知")
	if got := reachedNow(); got != before[markVillage].Reached+1 {
		t.Errorf("reached after visiting again: %d, want %d", got, before[markVillage].Reached+1)
	}
}

// A resident whose SMS report comes late, once on the call list, stays
// reached when the grid worker's visit is corrected to not reached: the
// count is theirs from the SMS.
func TestCorrectionKeepsAResidentAChannelDelivered(t *testing.T) {
	r, clock, w, off, gw := fallbackRig(t, true)
	ctx := context.Background()
	if err := r.d.MarkHousehold(ctx, w, dispatcher.Actor{PersonID: gw}, off.ID, ledger.Mark{Reached: true, Method: "visit"}); err != nil {
		t.Fatal(err)
	}
	clock.add(time.Minute)
	rep := warning.Report{Ref: plannedRef(t, r, w, warning.SMS, off.ID), State: warning.Delivered, At: clock.now()}
	if err := r.d.Record(ctx, []warning.Report{rep}); err != nil {
		t.Fatal(err)
	}
	withSMS, _ := r.l.Coverage(ctx, w.ID)
	if err := r.d.MarkHousehold(ctx, w, dispatcher.Actor{PersonID: gw}, off.ID, ledger.Mark{Reached: false, Note: "上门未见到人"}); err != nil {
		t.Fatal(err)
	}
	cov, _ := r.l.Coverage(ctx, w.ID)
	if cov[markVillage].Reached != withSMS[markVillage].Reached {
		t.Errorf("reached %d after the correction; want %d: SMS delivered to the resident", cov[markVillage].Reached, withSMS[markVillage].Reached)
	}
	reach, _ := r.l.PersonReach(ctx, w.ID, []ledger.Entry{{RecipientID: off.ID, Audience: warning.Residents, Division: off.Division}})
	if len(reach[0]) != 1 || reach[0][0].Channel != warning.SMS {
		t.Errorf("resident's reach after the correction %+v; want SMS only", reach[0])
	}
	if onUnreachedList(t, r, w, off.ID) {
		t.Error("resident SMS reached is on the unreached list")
	}
}

// After an update replaced the warning, a grid worker's mark through the
// old version's link records nothing: the error names the current version,
// whose own call list has the resident to mark.
func TestMarkOnASupersededVersionRecordsNothing(t *testing.T) {
	r, clock, old, off, gw := fallbackRig(t, false)
	ctx := context.Background()
	nw := redWarning()
	nw.Areas, nw.Expires = []string{markVillage}, clock.now().Add(6*time.Hour)
	cur, err := r.d.Update(ctx, old.ID, nw, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out of the update", progressDone(t, r, cur.ID))
	old, _ = r.l.Warning(ctx, old.ID)
	covOld, _ := r.l.Coverage(ctx, old.ID)

	err = r.d.MarkHousehold(ctx, old, dispatcher.Actor{PersonID: gw}, off.ID, ledger.Mark{Reached: true, Method: "visit"})
	var sup *dispatcher.SupersededError
	if !errors.As(err, &sup) || sup.Current == nil || sup.Current.ID != cur.ID || !errors.Is(err, dispatcher.ErrNotLive) {
		t.Fatalf("mark on superseded %s: %v; want a *SupersededError naming %s", old.ID, err, cur.ID)
	}
	if marks, _ := r.l.Marks(ctx, old.ID); len(marks) != 0 {
		t.Errorf("marks recorded on the superseded version: %+v", marks)
	}
	if cov, _ := r.l.Coverage(ctx, old.ID); cov[markVillage] != covOld[markVillage] {
		t.Errorf("superseded version's coverage changed: %+v -> %+v", covOld[markVillage], cov[markVillage])
	}
	if reach, _ := r.l.PersonReach(ctx, old.ID, []ledger.Entry{{RecipientID: off.ID, Audience: warning.Residents, Division: off.Division}}); len(reach[0]) != 0 {
		t.Errorf("visit recorded on the superseded version: %+v", reach[0])
	}
}

// A mark on a lifted warning, or one that expired, records nothing and
// says it is no longer in force.
func TestMarkOnALiftedOrExpiredWarningRecordsNothing(t *testing.T) {
	r, clock, w, off, gw := fallbackRig(t, false)
	ctx := context.Background()
	clock.add(7 * time.Hour)
	err := r.d.MarkHousehold(ctx, w, dispatcher.Actor{PersonID: gw}, off.ID, ledger.Mark{Reached: true, Method: "visit"})
	if !errors.Is(err, dispatcher.ErrNotLive) || !errors.Is(err, ledger.ErrState) {
		t.Errorf("mark on an expired warning: %v; want ErrNotLive", err)
	}
	clock.add(-7 * time.Hour)
	if _, err := r.d.Cancel(ctx, w.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	w, _ = r.l.Warning(ctx, w.ID)
	err = r.d.MarkHousehold(ctx, w, dispatcher.Actor{User: "duty"}, off.ID, ledger.Mark{Reached: true, Method: "phone"})
	var sup *dispatcher.SupersededError
	if !errors.Is(err, dispatcher.ErrNotLive) || errors.As(err, &sup) {
		t.Errorf("mark on a lifted warning: %v; want ErrNotLive", err)
	}
	if marks, _ := r.l.Marks(ctx, w.ID); len(marks) != 0 {
		t.Errorf("marks recorded on a warning no longer in force: %+v", marks)
	}
	if reach, _ := r.l.PersonReach(ctx, w.ID, []ledger.Entry{{RecipientID: off.ID, Audience: warning.Residents, Division: off.Division}}); len(reach[0]) != 0 {
		t.Errorf("visit recorded on a warning no longer in force: %+v", reach[0])
	}
}
