package ledger_test

import (
	"context"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// A visit undone (a grid worker's mark corrected to not reached) takes a
// resident whom only the visit reached off the village's count, and puts
// them back on the call list as being visited, even had the entry gone;
// one SMS delivered to stays counted. Undoing twice, or undoing a visit
// that never was, changes nothing; a visit made again counts once.
func TestUncoverUndoesOnlyAVisitThatCounted(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	const wid, v = "w1", "530102001001"
	entries := []ledger.Entry{
		{RecipientID: "r1", Audience: warning.Residents, Division: v},
		{RecipientID: "r2", Audience: warning.Residents, Division: v},
		{RecipientID: "r3", Audience: warning.Residents, Division: v},
	}
	send(t, l, wid, warning.SMS, entries)
	listed := []ledger.FallbackEntry{{PersonID: "r1", Village: v, GridWorker: "g1"}, {PersonID: "r2", Village: v, GridWorker: "g1"}, {PersonID: "r3", Village: v}}
	if n, err := l.AddFallback(ctx, wid, listed); err != nil || n != 3 {
		t.Fatalf("added %d, %v", n, err)
	}
	for _, id := range []string{"r1", "r2"} {
		if _, err := l.StartVisit(ctx, wid, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Cover(ctx, wid, c.t, entries[:2]); err != nil {
		t.Fatal(err)
	}
	// SMS reaches r2 after the visit.
	rep := warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: "r2"}, State: warning.Delivered, At: c.t.Add(time.Minute)}
	if _, err := l.ApplyReports(ctx, []warning.Report{rep}); err != nil {
		t.Fatal(err)
	}
	reached := func() int64 {
		t.Helper()
		cov, err := l.Coverage(ctx, wid)
		if err != nil {
			t.Fatal(err)
		}
		return cov[v].Reached
	}
	if n := reached(); n != 2 {
		t.Fatalf("reached %d before any correction, want 2", n)
	}

	for i := range 2 {
		if undone, err := l.Uncover(ctx, wid, listed[0]); err != nil || undone != (i == 0) {
			t.Fatalf("undo %d of r1's visit: %v %v; want true the first time only", i+1, undone, err)
		}
		if undone, err := l.Uncover(ctx, wid, listed[1]); err != nil || undone {
			t.Fatalf("undo %d of r2's visit: %v %v; want false: SMS reached them", i+1, undone, err)
		}
		if undone, err := l.Uncover(ctx, wid, listed[2]); err != nil || undone {
			t.Fatalf("undo %d of r3's visit that never was: %v %v", i+1, undone, err)
		}
		if n := reached(); n != 1 {
			t.Errorf("undo %d: reached %d, want 1 (r2 by SMS)", i+1, n)
		}
	}
	reach, _ := l.PersonReach(ctx, wid, ids("r1", "r2"))
	if len(reach[0]) != 0 || len(reach[1]) != 1 || reach[1][0].Channel != warning.SMS {
		t.Errorf("reach after undoing the visits: r1 %+v, r2 %+v; want nothing, SMS", reach[0], reach[1])
	}
	if e, ok, _ := l.FallbackEntryOf(ctx, wid, "r1"); !ok || !e.Visiting || e.GridWorker != "g1" {
		t.Errorf("r1's call-list entry after the undo: %+v (listed %v); want it listed, being visited by g1", e, ok)
	}

	// The entry is put back should it have gone.
	if err := l.Cover(ctx, wid, c.t, entries[:1]); err != nil {
		t.Fatal(err)
	}
	if n := reached(); n != 2 {
		t.Errorf("reached %d after visiting r1 again, want 2", n)
	}
	if err := l.DropFallbackEntry(ctx, wid, "r1"); err != nil {
		t.Fatal(err)
	}
	if undone, err := l.Uncover(ctx, wid, listed[0]); err != nil || !undone {
		t.Fatalf("undo of r1's second visit: %v %v", undone, err)
	}
	if e, ok, _ := l.FallbackEntryOf(ctx, wid, "r1"); !ok || !e.Visiting || e.GridWorker != "g1" {
		t.Errorf("r1's call-list entry put back: %+v (listed %v)", e, ok)
	}
	if n := reached(); n != 1 {
		t.Errorf("reached %d after the second undo, want 1", n)
	}
}
