package ledger_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// send hands entries over on a channel and records them sent.
func send(t *testing.T, l *ledger.Ledger, wid string, ch warning.Channel, entries []ledger.Entry) {
	t.Helper()
	ctx := context.Background()
	hold, err := l.Lock(ctx, wid, ch, 1, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := l.Begin(ctx, hold, entries, false)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([]ledger.Outcome, len(entries))
	for i, e := range entries {
		outs[i] = ledger.Outcome{Entry: e, State: warning.Sent}
	}
	if _, err := l.Record(ctx, wid, ch, chunk.Gen, outs); err != nil {
		t.Fatal(err)
	}
}

func TestCoverageCountsEachResidentOnce(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	const wid, v1, v2 = "w1", "530102001001", "530102001002"
	res := func(id, div string) ledger.Entry {
		return ledger.Entry{RecipientID: id, Audience: warning.Residents, Division: div}
	}
	smsTo := []ledger.Entry{res("r1", v1), res("r2", v1), res("r3", v2), {RecipientID: "o1", Audience: warning.VillageOfficials, Division: v1}}
	wechatTo := []ledger.Entry{res("r1", v1), res("r3", v2)}
	speakers := []ledger.Entry{{RecipientID: "ls1", Audience: warning.Loudspeakers, Division: v1}}
	send(t, l, wid, warning.SMS, smsTo)
	send(t, l, wid, warning.WeChat, wechatTo)
	send(t, l, wid, warning.Broadcast, speakers)

	rep := func(ch warning.Channel, id string, st warning.DeliveryState, at time.Time) warning.Report {
		return warning.Report{Ref: warning.Ref{WarningID: wid, Channel: ch, RecipientID: id}, State: st, At: at, Reason: "用户关机"}
	}
	t0 := c.t
	if _, err := l.ApplyReports(ctx, []warning.Report{
		rep(warning.SMS, "r1", warning.Delivered, t0.Add(time.Second)),
		rep(warning.SMS, "r2", warning.Failed, t0.Add(time.Second)),
		rep(warning.SMS, "r3", warning.Delivered, t0.Add(time.Second)),
		rep(warning.SMS, "o1", warning.Delivered, t0.Add(time.Second)),
		rep(warning.Broadcast, "ls1", warning.Delivered, t0.Add(time.Second)),
	}); err != nil {
		t.Fatal(err)
	}
	// r1 and r3 again on WeChat, and the same report twice: each resident still counts once.
	for range 2 {
		if _, err := l.ApplyReports(ctx, []warning.Report{
			rep(warning.WeChat, "r1", warning.Delivered, t0.Add(2*time.Second)),
			rep(warning.WeChat, "r3", warning.Delivered, t0.Add(2*time.Second)),
		}); err != nil {
			t.Fatal(err)
		}
	}
	cov, err := l.Coverage(ctx, wid)
	if err != nil {
		t.Fatal(err)
	}
	if cov[v1].Reached != 1 || cov[v2].Reached != 1 || cov[v1].Devices != 1 {
		t.Fatalf("coverage = %+v; want one resident reached in each village, one loudspeaker in %s", cov, v1)
	}
	reach, err := l.PersonReach(ctx, wid, ids("r1", "r2", "r3", "o1", "ls1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(reach[0]) != 2 || reach[0][0].Channel != warning.SMS || !reach[0][0].At.Equal(t0.Add(time.Second)) ||
		reach[0][1].Channel != warning.WeChat || !reach[0][1].At.Equal(t0.Add(2*time.Second)) {
		t.Errorf("r1 reached by %+v; want sms then wechat, with their times", reach[0])
	}
	if reach[1] != nil || reach[4] != nil {
		t.Errorf("r2 (failed) and a loudspeaker count as persons reached: %+v", reach)
	}

	// r2 goes on the fallback list; a visit marks them reached, once.
	n, err := l.AddFallback(ctx, wid, []ledger.FallbackEntry{
		{PersonID: "r2", Village: v1, Reasons: []string{"用户关机"}}, {PersonID: "r1", Village: v1},
	})
	if err != nil || n != 1 {
		t.Fatalf("fallback added %d, %v; want only r2 (r1 was reached)", n, err)
	}
	if err := l.Cover(ctx, wid, t0.Add(time.Minute), []ledger.Entry{res("r2", v1), res("r2", v1)}); err != nil {
		t.Fatal(err)
	}
	// A second visit, and a visit to one the SMS reached, count nothing more.
	if err := l.Cover(ctx, wid, t0.Add(2*time.Minute), []ledger.Entry{res("r2", v1), res("r1", v1)}); err != nil {
		t.Fatal(err)
	}
	cov, _ = l.Coverage(ctx, wid)
	if cov[v1].Reached != 2 {
		t.Fatalf("after a visit, %s reached %d; want 2", v1, cov[v1].Reached)
	}
	reach, _ = l.PersonReach(ctx, wid, ids("r2"))
	if len(reach[0]) != 1 || reach[0][0].Channel != warning.CallList || !reach[0][0].At.Equal(t0.Add(time.Minute)) {
		t.Errorf("r2 reached by %+v; want the first visit", reach[0])
	}
	if fb, _ := l.Fallback(ctx, wid); len(fb) != 0 {
		t.Errorf("r2 still on the fallback list after being reached: %+v", fb)
	}
}

func TestLateReportTakesAResidentOffTheFallbackListUnlessVisited(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	const wid, v = "w1", "530102001001"
	entries := []ledger.Entry{
		{RecipientID: "r1", Audience: warning.Residents, Division: v},
		{RecipientID: "r2", Audience: warning.Residents, Division: v},
	}
	send(t, l, wid, warning.SMS, entries)
	if n, err := l.AddFallback(ctx, wid, []ledger.FallbackEntry{{PersonID: "r1", Village: v}, {PersonID: "r2", Village: v}}); err != nil || n != 2 {
		t.Fatalf("added %d, %v", n, err)
	}
	if ok, err := l.StartVisit(ctx, wid, "r2"); err != nil || !ok {
		t.Fatalf("start visit: %v %v", ok, err)
	}
	rep := func(id string) warning.Report {
		return warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: id}, State: warning.Delivered}
	}
	if _, err := l.ApplyReports(ctx, []warning.Report{rep("r1"), rep("r2")}); err != nil {
		t.Fatal(err)
	}
	fb, err := l.Fallback(ctx, wid)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fb["r1"]; ok {
		t.Error("r1 stays on the list after a late delivery report")
	}
	if e, ok := fb["r2"]; !ok || !e.Visiting {
		t.Errorf("r2, whose visit started, left the list: %+v", fb)
	}
	if cov, _ := l.Coverage(ctx, wid); cov[v].Reached != 2 {
		t.Errorf("reached %d, want 2", cov[v].Reached)
	}
}

// ids are entries known by id alone, as in a plan made before buckets.
func ids(id ...string) []ledger.Entry {
	out := make([]ledger.Entry, len(id))
	for i, x := range id {
		out[i] = ledger.Entry{RecipientID: x}
	}
	return out
}

// refs name deliveries known by id alone, as in a plan made before buckets.
func refs(wid string, ch warning.Channel, id ...string) []warning.Ref {
	out := make([]warning.Ref, len(id))
	for i, x := range id {
		out[i] = warning.Ref{WarningID: wid, Channel: ch, RecipientID: x}
	}
	return out
}

// A check forgets the fallback candidates it read, not one named again
// after it read them: their last channel failing while it looked.
func TestCandidatesNamedAgainStay(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	if err := l.AddCandidates(ctx, "w1", []string{"r1", "r2"}); err != nil {
		t.Fatal(err)
	}
	ids, read, err := l.Candidates(ctx, "w1")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"r1", "r2"}) || read == 0 {
		t.Fatalf("candidates %v read at %d; want r1, r2", ids, read)
	}
	if err := l.AddCandidates(ctx, "w1", []string{"r2", "r3"}); err != nil {
		t.Fatal(err)
	}
	if err := l.DropCandidates(ctx, "w1", read); err != nil {
		t.Fatal(err)
	}
	ids, _, _ = l.Candidates(ctx, "w1")
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"r2", "r3"}) {
		t.Fatalf("after the check: %v; want r2 (named again) and r3", ids)
	}
	if err := l.DropCandidates(ctx, "w1", 0); err != nil {
		t.Fatal(err)
	}
	if ids, _, _ = l.Candidates(ctx, "w1"); len(ids) != 0 {
		t.Fatalf("after the deadline's check: %v; want none", ids)
	}
}
