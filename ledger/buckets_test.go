package ledger_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/warning"
)

// bucketed plans n residents of each village the way the policy does:
// their buckets from the village's size, the directory recorded.
func bucketed(t *testing.T, l *ledger.Ledger, wid string, n int, villages ...string) []ledger.Entry {
	t.Helper()
	dir := map[string]int{}
	var out []ledger.Entry
	for _, v := range villages {
		g := warning.BucketGroup(warning.Residents, v)
		dir[g] = warning.BucketsFor(n, warning.BucketTarget)
		for i := range n {
			id := fmt.Sprintf("r%s-%04d", v[9:], i)
			out = append(out, ledger.Entry{RecipientID: id, Audience: warning.Residents, Division: v, Bucket: warning.Bucket(g, id, dir[g])})
		}
	}
	if err := l.SetBuckets(context.Background(), wid, dir); err != nil {
		t.Fatal(err)
	}
	return out
}

// sendChunks hands entries over in chunks of 500 under one batch and
// records them sent.
func sendChunks(t *testing.T, l *ledger.Ledger, wid string, ch warning.Channel, entries []ledger.Entry) {
	t.Helper()
	ctx := context.Background()
	hold, err := l.Lock(ctx, wid, ch, 1, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for part := range slices.Chunk(entries, 500) {
		c, err := l.Begin(ctx, hold, part, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Taken) != len(part) {
			t.Fatalf("chunk took %d of %d", len(c.Taken), len(part))
		}
		outs := make([]ledger.Outcome, len(part))
		for i, e := range part {
			outs[i] = ledger.Outcome{Entry: e, State: warning.Sent}
		}
		if _, err := l.Record(ctx, wid, ch, c.Gen, outs); err != nil {
			t.Fatal(err)
		}
	}
}

func refOf(wid string, ch warning.Channel, e ledger.Entry) warning.Ref {
	return warning.RefTo(wid, ch, warning.Recipient{ID: e.RecipientID, Bucket: e.Bucket})
}

// A plan's deliveries live in small packed hashes, a few bytes over each
// delivery's id and value, and every way of reaching a delivery finds it
// there: reports by ref, lookups by recipient, scans, coverage across
// channels, visits and re-opening.
func TestBucketsKeepDeliveriesPackedAndFound(t *testing.T) {
	c := &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	rdb := redistest.Client(t, redistest.DBLedger)
	prefix := "tb" + fmt.Sprint(time.Now().UnixNano())
	l := ledger.New(rdb, prefix, c.now)
	ctx := context.Background()
	const wid, v1, v2 = "wb", "530102001001", "530102001002"
	entries := bucketed(t, l, wid, 1000, v1, v2)
	sendChunks(t, l, wid, warning.SMS, entries)

	// Reports come back through the ref's string form, as providers echo it.
	var reps []warning.Report
	for i, e := range entries {
		ref, err := warning.ParseRef(refOf(wid, warning.SMS, e).String())
		if err != nil || ref.Bucket != e.Bucket {
			t.Fatalf("ref %s parsed as %+v, %v", refOf(wid, warning.SMS, e), ref, err)
		}
		st := warning.Delivered
		if i%10 == 0 {
			st = warning.Failed
		}
		reps = append(reps, warning.Report{Ref: ref, State: st, At: c.t, Reason: "空号"})
	}
	res, err := l.ApplyReports(ctx, reps)
	if err != nil || res.Applied != len(entries) || len(res.Unknown) != 0 {
		t.Fatalf("reports: %+v, %v", res, err)
	}
	// The same reports again are duplicates, named by their refs.
	res, err = l.ApplyReports(ctx, reps[:3])
	if err != nil || len(res.Duplicates) != 3 || res.Duplicates[1] != reps[1].Ref {
		t.Fatalf("repeated reports: %+v, %v", res, err)
	}
	// A ref without its bucket names no delivery of a bucketed plan.
	res, _ = l.ApplyReports(ctx, []warning.Report{{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: entries[5].RecipientID}, State: warning.Delivered}})
	if len(res.Unknown) != 1 {
		t.Fatalf("a bucketless ref of a bucketed plan: %+v; want unknown", res)
	}

	// Packed: every bucket a listpack, nothing in the one hash.
	base := prefix + ":{" + wid + "}:d:sms"
	keys, _ := rdb.Keys(ctx, base+":*").Result()
	if want := 2 * warning.BucketsFor(1000, warning.BucketTarget); len(keys) != want {
		t.Fatalf("%d buckets; want %d", len(keys), want)
	}
	if n, _ := rdb.Exists(ctx, base).Result(); n != 0 {
		t.Fatal("deliveries written to the one hash of an unbucketed plan")
	}
	var bytes int64
	for _, k := range keys {
		if enc, _ := rdb.ObjectEncoding(ctx, k).Result(); enc != "listpack" {
			t.Errorf("bucket %s is a %s; want a listpack", k, enc)
		}
		n, _ := rdb.MemoryUsage(ctx, k, 0).Result()
		bytes += n
	}
	t.Logf("%d bytes of Redis per delivery in %d buckets", bytes/int64(len(entries)), len(keys))
	if per := bytes / int64(len(entries)); per > 56 {
		t.Errorf("%d bytes of Redis per delivery; want at most 56", per)
	}

	// Lookups by recipient find the bucket in the plan's directory.
	bare := make([]ledger.Entry, len(entries))
	for i, e := range entries {
		bare[i] = e
		bare[i].Bucket = ""
	}
	dvs, err := l.DeliveriesOf(ctx, wid, warning.SMS, bare)
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range dvs {
		want := warning.Delivered
		if i%10 == 0 {
			want = warning.Failed
		}
		if d.State != want || d.Division != entries[i].Division {
			t.Fatalf("delivery %d by recipient: %+v; want %s in %s", i, d, want, entries[i].Division)
		}
	}
	ref, err := l.RefFor(ctx, wid, warning.SMS, bare[7])
	if err != nil || ref != refOf(wid, warning.SMS, entries[7]) {
		t.Fatalf("RefFor = %+v, %v; want %+v", ref, err, refOf(wid, warning.SMS, entries[7]))
	}
	if d, _ := l.Delivery(ctx, ref); d.State != warning.Delivered {
		t.Fatalf("Delivery(%s) = %s", ref, d.State)
	}
	rs := []warning.Recipient{{ID: entries[1].RecipientID, Audience: warning.Residents, Division: v1}, {ID: entries[0].RecipientID, Audience: warning.Residents, Division: v1}}
	if reached, _ := l.Reached(ctx, wid, warning.SMS, rs); !reached[0] || reached[1] {
		t.Fatalf("Reached = %v; want the delivered one only", reached)
	}

	// Coverage: a resident delivered on WeChat too still counts once, and
	// one whose SMS failed counts when WeChat reaches them.
	sendChunks(t, l, wid, warning.WeChat, entries[:20])
	var wreps []warning.Report
	for _, e := range entries[:20] {
		wreps = append(wreps, warning.Report{Ref: refOf(wid, warning.WeChat, e), State: warning.Delivered, At: c.t})
	}
	if _, err := l.ApplyReports(ctx, wreps); err != nil {
		t.Fatal(err)
	}
	cov, _ := l.Coverage(ctx, wid)
	if cov[v1].Reached != 902 || cov[v2].Reached != 900 {
		t.Fatalf("coverage %+v; want 900 per village by SMS, and two in %s whose SMS failed reached by WeChat", cov, v1)
	}
	reach, _ := l.PersonReach(ctx, wid, bare[:2])
	if len(reach[0]) != 1 || reach[0][0].Channel != warning.WeChat || len(reach[1]) != 2 {
		t.Fatalf("PersonReach = %+v", reach)
	}

	// A visit to one no channel reached counts; undoing it takes it back.
	fb := ledger.FallbackEntry{PersonID: entries[30].RecipientID, Village: v1}
	if n, err := l.AddFallback(ctx, wid, []ledger.FallbackEntry{fb, {PersonID: entries[31].RecipientID, Village: v1}}); err != nil || n != 1 {
		t.Fatalf("fallback added %d, %v; want the one whose SMS failed", n, err)
	}
	if err := l.Cover(ctx, wid, c.t, bare[30:31]); err != nil {
		t.Fatal(err)
	}
	if cov, _ := l.Coverage(ctx, wid); cov[v1].Reached != 903 {
		t.Fatalf("after a visit %d reached; want 903", cov[v1].Reached)
	}
	if gone, err := l.Uncover(ctx, wid, fb); err != nil || !gone {
		t.Fatalf("uncover = %v, %v", gone, err)
	}
	// A visit to one the SMS reached is undone without uncounting them.
	if err := l.Cover(ctx, wid, c.t, bare[31:32]); err != nil {
		t.Fatal(err)
	}
	if gone, _ := l.Uncover(ctx, wid, ledger.FallbackEntry{PersonID: entries[31].RecipientID, Village: v1}); gone {
		t.Fatal("a visit undone uncounted a resident the SMS reached")
	}

	// The scan reads every bucket; re-opening finds the failed there.
	var failed []warning.Ref
	seen := 0
	if err := l.Deliveries(ctx, wid, warning.SMS, func(d ledger.Delivery) bool {
		seen++
		if d.State == warning.Failed {
			failed = append(failed, d.Ref)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if seen != len(entries) || len(failed) != len(entries)/10 {
		t.Fatalf("scan saw %d deliveries, %d failed; want %d, %d", seen, len(failed), len(entries), len(entries)/10)
	}
	again, err := l.ReopenFor(ctx, wid, warning.SMS, 1, failed, []warning.DeliveryState{warning.Failed})
	if err != nil || len(again) != len(failed) {
		t.Fatalf("reopened %d, %v; want %d", len(again), err, len(failed))
	}
	if d, _ := l.Delivery(ctx, again[0]); !d.Reopened {
		t.Fatalf("re-opened delivery reads %+v", d)
	}
}

// Reports of one call come back grouped by bucket: each report's answer
// (applied, unknown, duplicate) must still name its own ref, however the
// buckets interleave, and a hash of a plan made before buckets takes more
// reports at once than one command carries.
func TestReportsGroupedByBucketAnswerForEachRef(t *testing.T) {
	c := &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	rdb := redistest.Client(t, redistest.DBLedger)
	l := ledger.New(rdb, "tg"+fmt.Sprint(time.Now().UnixNano()), c.now)
	ctx := context.Background()
	const wid = "wg"
	entries := bucketed(t, l, wid, 300, "530102001001", "530102001002")
	sendChunks(t, l, wid, warning.SMS, entries[:500])
	// Settle every third of the first 500: their next report is a duplicate.
	var first []warning.Report
	for i := 0; i < 500; i += 3 {
		first = append(first, warning.Report{Ref: refOf(wid, warning.SMS, entries[i]), State: warning.Delivered, At: c.t})
	}
	if res, err := l.ApplyReports(ctx, first); err != nil || res.Applied != len(first) {
		t.Fatalf("first reports: %+v, %v", res, err)
	}
	// One call, in the order the provider sent them: the 600 residents
	// from last to first, so that buckets interleave; the last 100 were
	// never handed over.
	var reps []warning.Report
	want := map[warning.Ref]string{}
	for i := len(entries) - 1; i >= 0; i-- {
		ref := refOf(wid, warning.SMS, entries[i])
		st := warning.Delivered
		if i%7 == 0 {
			st = warning.Failed
		}
		reps = append(reps, warning.Report{Ref: ref, State: st, At: c.t.Add(time.Minute), Reason: "关机"})
		switch {
		case i >= 500:
			want[ref] = "unknown"
		case i%3 == 0:
			want[ref] = "duplicate"
		default:
			want[ref] = string(rune(st))
		}
	}
	res, err := l.ApplyReports(ctx, reps)
	if err != nil {
		t.Fatal(err)
	}
	got := map[warning.Ref]string{}
	for _, r := range res.Unknown {
		got[r] = "unknown"
	}
	for _, r := range res.Duplicates {
		got[r] = "duplicate"
	}
	applied := 0
	for ref, w := range want {
		if w == "unknown" || w == "duplicate" {
			if got[ref] != w {
				t.Errorf("%s answered %q; want %s", ref, got[ref], w)
			}
			continue
		}
		applied++
		d, err := l.Delivery(ctx, ref)
		if err != nil || string(rune(d.State)) != w || got[ref] != "" {
			t.Errorf("%s: %+v (answered %q), %v; want state %s", ref, d, got[ref], err, w)
		}
		if d.State == warning.Failed && d.Extra != "关机" {
			t.Errorf("%s failed for %q; want 关机", ref, d.Extra)
		}
	}
	if res.Applied != applied || len(res.Unknown) != 100 || len(got) != len(want)-applied {
		t.Fatalf("applied %d, %d unknown, %d answered; want %d applied, 100 unknown", res.Applied, len(res.Unknown), len(got), applied)
	}

	// 2,500 reports for one hash of a plan made before buckets, in one call.
	legacy := make([]ledger.Entry, 2500)
	for i := range legacy {
		legacy[i] = ledger.Entry{RecipientID: fmt.Sprintf("o%04d", i), Audience: warning.Residents, Division: "530102001001"}
	}
	sendChunks(t, l, "wold", warning.SMS, legacy)
	var old []warning.Report
	for _, e := range legacy {
		old = append(old, warning.Report{Ref: refOf("wold", warning.SMS, e), State: warning.Delivered, At: c.t})
	}
	if res, err := l.ApplyReports(ctx, old); err != nil || res.Applied != len(old) {
		t.Fatalf("2,500 reports to one hash: %+v, %v", res, err)
	}
	if d, _ := l.Delivery(ctx, old[2499].Ref); d.State != warning.Delivered {
		t.Fatalf("the last of 2,500 reports to one hash: %+v", d)
	}
}

// A plan records its roster version and bucket target once: a run again
// gets the first run's, whatever it asks for, and a warning whose version
// an older gateway recorded, with no target, has the target of that time.
func TestPlanPinsItsBucketTarget(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBLedger)
	prefix := redistest.Prefix(t, "pin")
	l := ledger.New(rdb, prefix, nil)
	ctx := context.Background()
	w := &warning.Warning{ID: "wpin"}
	if n, err := l.BucketTarget(ctx, w.ID); err != nil || n != warning.LegacyBucketTarget {
		t.Fatalf("before any plan: target %d, %v; want %d", n, err, warning.LegacyBucketTarget)
	}
	got, err := l.PinPlan(ctx, w.ID, 7, 40)
	if err != nil || got != (ledger.PlanPin{Roster: 7, BucketTarget: 40}) {
		t.Fatalf("first pin = %+v, %v", got, err)
	}
	if got, err := l.PinPlan(ctx, w.ID, 9, 25); err != nil || got != (ledger.PlanPin{Roster: 7, BucketTarget: 40}) {
		t.Fatalf("pin run again = %+v, %v; want the first run's", got, err)
	}
	if n, err := l.BucketTarget(ctx, w.ID); err != nil || n != 40 {
		t.Fatalf("target = %d, %v; want 40", n, err)
	}

	old := &warning.Warning{ID: "wold"}
	// What an older gateway's plan recorded in the warning's hash: the
	// roster version alone.
	if err := rdb.HSet(ctx, prefix+":{wold}:w", "roster", 3).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := l.PinPlan(ctx, old.ID, 9, 40); err != nil || got != (ledger.PlanPin{Roster: 3, BucketTarget: warning.LegacyBucketTarget}) {
		t.Fatalf("pin of an older plan = %+v, %v; want roster 3 and the legacy target", got, err)
	}
}
