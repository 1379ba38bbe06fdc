package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/warning"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newLedger(t *testing.T) (*ledger.Ledger, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)}
	prefix := "t" + fmt.Sprint(time.Now().UnixNano())
	return ledger.New(redistest.Client(t, redistest.DBLedger), prefix, c.now), c
}

func sampleWarning(id string, accepted time.Time) *warning.Warning {
	return &warning.Warning{
		ID: id, Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual,
		MsgType: warning.MsgAlert, Areas: []string{"530102000000"}, Headline: "五华区暴雨红色预警",
		Expires: accepted.Add(6 * time.Hour), Accepted: accepted,
	}
}

func TestCreateWarningIdempotent(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	w1, existed, err := l.CreateWarning(ctx, sampleWarning("w1", c.t), "key-1")
	if err != nil || existed {
		t.Fatalf("first create: existed=%v err=%v", existed, err)
	}
	got, existed, err := l.CreateWarning(ctx, sampleWarning("w2", c.t), "key-1")
	if err != nil || !existed || got.ID != w1.ID {
		t.Fatalf("second create with same key: got %v existed=%v err=%v; want w1", got, existed, err)
	}
	if _, err := l.Warning(ctx, "w2"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("w2 stored despite the repeated key: %v", err)
	}
	// The same key with a warning that says something else: refused,
	// naming the first, and nothing stored.
	other := sampleWarning("w3", c.t)
	other.Areas = []string{"530103000000"}
	got, existed, err = l.CreateWarning(ctx, other, "key-1")
	var kr *ledger.KeyReusedError
	if !errors.Is(err, ledger.ErrKeyReused) || !errors.As(err, &kr) || kr.Key != "key-1" || kr.FirstID != "w1" || !existed || got.ID != "w1" {
		t.Fatalf("same key, other areas: got %v existed=%v err=%v", got, existed, err)
	}
	if _, err := l.Warning(ctx, "w3"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("w3 stored under a reused key: %v", err)
	}
	ids, _ := l.Unplanned(ctx, c.t.Add(time.Second))
	if len(ids) != 1 || ids[0] != "w1" {
		t.Fatalf("unplanned = %v, want [w1]", ids)
	}
	if err := l.MarkPlanned(ctx, "w1", ledger.Planned{}); err != nil {
		t.Fatal(err)
	}
	ids, _ = l.Unplanned(ctx, c.t.Add(time.Second))
	w, _ := l.Warning(ctx, "w1")
	if len(ids) != 0 || w.State != warning.StateActive {
		t.Fatalf("after MarkPlanned: unplanned=%v state=%s", ids, w.State)
	}
}

func TestDeliveryLifecycle(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	const wid = "w1"
	entries := []ledger.Entry{
		{RecipientID: "o1", Audience: warning.TownshipOfficials, Division: "530102001000"},
		{RecipientID: "r1", Audience: warning.Residents, Division: "530102001001"},
		{RecipientID: "r2", Audience: warning.Residents, Division: "530102001001"},
	}
	planned := ledger.Planned{}
	for _, e := range entries {
		planned[ledger.Group{Channel: warning.SMS, Audience: e.Audience, Division: e.Division}]++
	}
	if err := l.MarkPlanned(ctx, wid, planned); err != nil {
		t.Fatal(err)
	}

	hold, err := l.Lock(ctx, wid, warning.SMS, 1, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := l.Begin(ctx, hold, entries, false)
	if err != nil || len(chunk.Taken) != 3 {
		t.Fatalf("begin = %+v, %v; want all three", chunk, err)
	}
	if _, err := l.Lock(ctx, wid, warning.SMS, 1, "b", time.Minute); !errors.Is(err, ledger.ErrHeld) {
		t.Fatalf("second lock within the lease: %v; want ErrHeld", err)
	}

	outs := []ledger.Outcome{
		{Entry: entries[0], State: warning.Sent, Account: "aliyun-main", Segments: 2},
		{Entry: entries[1], State: warning.Sent, Account: "aliyun-main", Segments: 3},
		{Entry: entries[2], State: warning.Failed, Extra: "invalid number"},
	}
	if n, err := l.Record(ctx, wid, warning.SMS, chunk.Gen, outs); err != nil || n != 3 {
		t.Fatalf("record = %d, %v", n, err)
	}
	if n, _ := l.Record(ctx, wid, warning.SMS, chunk.Gen, outs); n != 0 {
		t.Fatalf("recording the same outcomes again moved %d deliveries", n)
	}
	if d, _ := l.Delivery(ctx, warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: "r1"}); d.State != warning.Sent {
		t.Fatalf("r1 is %s after its batch was sent", d.State)
	}
	ref := func(id string) warning.Ref { return warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: id} }
	if got, err := l.Reported(ctx, []warning.Ref{ref("o1"), ref("r1")}); err != nil || got[0] || got[1] {
		t.Fatalf("reported before any report = %v, %v; want none", got, err)
	}
	// A batch run again, even long after, takes nobody: all were handled.
	c.t = c.t.Add(time.Hour)
	again, err := l.Lock(ctx, wid, warning.SMS, 1, "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Begin(ctx, again, entries, false); len(got.Taken) != 0 || len(got.Uncertain) != 0 || got.Skipped != 3 {
		t.Fatalf("begin after send: %+v; want all skipped", got)
	}

	rep := func(id string, st warning.DeliveryState) warning.Report {
		return warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: id}, State: st, At: c.t, Reason: "x"}
	}
	res, err := l.ApplyReports(ctx, []warning.Report{rep("o1", warning.Delivered), rep("r1", warning.Delivered), rep("r1", warning.Delivered), rep("nobody", warning.Delivered)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Applied != 2 || len(res.Duplicates) != 1 || len(res.Unknown) != 1 || res.Unknown[0].RecipientID != "nobody" {
		t.Fatalf("reports: %+v", res)
	}
	if got, _ := l.Reported(ctx, []warning.Ref{ref("o1"), ref("r1"), ref("nobody"), {WarningID: "w0", Channel: warning.SMS, RecipientID: "o1"}}); !got[0] || !got[1] || got[2] || got[3] {
		t.Fatalf("reported after reports for o1 and r1 = %v", got)
	}
	// A late failure report after delivery is a duplicate, not a change.
	res, _ = l.ApplyReports(ctx, []warning.Report{rep("o1", warning.Failed)})
	if len(res.Duplicates) != 1 {
		t.Fatalf("conflicting report applied: %+v", res)
	}

	p, err := l.Progress(ctx, wid)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Counts{Planned: 3, Sent: 2, Delivered: 2, Failed: 1, Pending: 0}
	if got := p.Channels[warning.SMS]; got != want {
		t.Fatalf("sms counts = %+v, want %+v", got, want)
	}
	if got := p.Audiences[warning.SMS][warning.Residents]; got.Delivered != 1 || got.Failed != 1 || got.Planned != 2 {
		t.Fatalf("resident counts = %+v", got)
	}
	if got := p.Divisions["530102001001"]; got.Planned != 2 || got.Delivered != 1 {
		t.Fatalf("village counts = %+v", got)
	}
	// Billed once, though the outcomes were recorded twice.
	if got := p.Billing[warning.SMS]["aliyun-main"]; got != (ledger.Bill{Messages: 2, Segments: 5}) {
		t.Fatalf("billing = %+v, want 2 messages in 5 parts", p.Billing)
	}
	if got := p.Reasons[warning.SMS]["invalid number"]; got != 1 {
		t.Fatalf("reasons = %v", p.Reasons)
	}
	d, err := l.Delivery(ctx, warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: "r2"})
	if err != nil || d.State != warning.Failed || d.Extra != "invalid number" || d.Division != "530102001001" || d.Audience != warning.Residents {
		t.Fatalf("delivery r2 = %+v, %v", d, err)
	}
}

func TestLockTakeoverAndRelease(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	e := []ledger.Entry{{RecipientID: "r1", Audience: warning.Residents, Division: "530102001001"}}
	if _, err := l.Lock(ctx, "w", warning.WeChat, 1, "a", time.Minute); err != nil {
		t.Fatal("first lock failed")
	}
	c.t = c.t.Add(30 * time.Second)
	if _, err := l.Lock(ctx, "w", warning.WeChat, 1, "b", time.Minute); !errors.Is(err, ledger.ErrHeld) {
		t.Fatalf("lock of a live worker taken over: %v", err)
	}
	c.t = c.t.Add(31 * time.Second)
	h, err := l.Lock(ctx, "w", warning.WeChat, 1, "c", time.Minute)
	if err != nil {
		t.Fatal("lock of a dead worker not taken over after the lease")
	}
	got, _ := l.Begin(ctx, h, e, false)
	// Releasing a recipient and the lock lets the next run take it at once.
	if _, err := l.Record(ctx, "w", warning.WeChat, got.Gen, []ledger.Outcome{{Entry: e[0], State: warning.Queued}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx, "w", warning.WeChat, 1, h.Gen); err != nil {
		t.Fatal(err)
	}
	h, err = l.Lock(ctx, "w", warning.WeChat, 1, "d", time.Minute)
	if err != nil {
		t.Fatal("released lock not free")
	}
	if got, _ := l.Begin(ctx, h, e, false); len(got.Taken) != 1 {
		t.Fatalf("released recipient not taken: %+v", got)
	}
	d, _ := l.Delivery(ctx, warning.Ref{WarningID: "w", Channel: warning.WeChat, RecipientID: "r1"})
	if d.State != warning.Queued {
		t.Fatalf("a delivery being handed over shows as %s, want queued", d.State)
	}
}

// A worker that dies while a chunk is with the provider leaves exactly that
// chunk uncertain: the next attempt skips the chunks recorded, takes those
// never handed over, and is told who was in the chunk in flight.
func TestCrashLeavesOnlyTheChunkInFlightUncertain(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	var e []ledger.Entry
	for i := range 6 {
		e = append(e, ledger.Entry{RecipientID: fmt.Sprint("r", i), Audience: warning.Residents, Division: "530102001001"})
	}
	l.MarkPlanned(ctx, "w", ledger.Planned{{Channel: warning.SMS, Audience: warning.Residents, Division: "530102001001"}: 6})
	h, _ := l.Lock(ctx, "w", warning.SMS, 3, "dead", time.Minute)
	first, _ := l.Begin(ctx, h, e[:2], false)
	l.Record(ctx, "w", warning.SMS, first.Gen, []ledger.Outcome{{Entry: e[0], State: warning.Sent}, {Entry: e[1], State: warning.Sent}})
	inFlight, _ := l.Begin(ctx, h, e[2:4], false)
	// The worker dies here; another breaks its lock.
	if err := l.Unlock(ctx, "w", warning.SMS, 3, h.Gen); err != nil {
		t.Fatal(err)
	}
	h2, err := l.Lock(ctx, "w", warning.SMS, 3, "next", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Begin(ctx, h2, e, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Uncertain{{Index: 2, Gen: inFlight.Gen}, {Index: 3, Gen: inFlight.Gen}}
	if got.Skipped != 2 || fmt.Sprint(got.Taken) != "[4 5]" || fmt.Sprint(got.Uncertain) != fmt.Sprint(want) {
		t.Fatalf("begin after the crash = %+v; want r0, r1 skipped, r4, r5 taken, r2, r3 uncertain in %s", got, inFlight.Gen)
	}
	// The provider says it had r2: recorded as sent; r3 is sent again.
	again, err := l.Begin(ctx, h2, e[2:4], true)
	if err != nil || len(again.Taken) != 2 {
		t.Fatalf("retake = %+v, %v", again, err)
	}
	if _, err := l.Record(ctx, "w", warning.SMS, again.Gen, []ledger.Outcome{{Entry: e[2], State: warning.Sent}, {Entry: e[3], State: warning.Sent}}); err != nil {
		t.Fatal(err)
	}
	// A late chunk record of the dead attempt changes nothing.
	if n, err := l.Record(ctx, "w", warning.SMS, inFlight.Gen, []ledger.Outcome{{Entry: e[2], State: warning.Sent}}); n != 0 || !errors.Is(err, ledger.ErrLockLost) {
		t.Fatalf("dead attempt's record = %d, %v; want 0 and ErrLockLost", n, err)
	}
	if _, err := l.Begin(ctx, h, e[4:], false); !errors.Is(err, ledger.ErrLockLost) {
		t.Fatalf("dead attempt began a chunk after losing its lock: %v", err)
	}
	p, _ := l.Progress(ctx, "w")
	if got := p.Channels[warning.SMS]; got.Sent != 4 {
		t.Fatalf("sms counts %+v; want 4 sent, each once", got)
	}
}

// A worker that lost its lock while its chunk was with the provider records
// the recipients still its own, one by one, and leaves the others to the
// new holder, counting each once.
func TestRecordAfterLockLost(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	a := ledger.Entry{RecipientID: "a", Audience: warning.Residents, Division: "530102001001"}
	b := ledger.Entry{RecipientID: "b", Audience: warning.Residents, Division: "530102001001"}
	old, _ := l.Lock(ctx, "w", warning.SMS, 1, "old", time.Minute)
	chunk, _ := l.Begin(ctx, old, []ledger.Entry{a, b}, false)
	l.Unlock(ctx, "w", warning.SMS, 1, old.Gen)
	cur, _ := l.Lock(ctx, "w", warning.SMS, 1, "new", time.Minute)
	took, _ := l.Begin(ctx, cur, []ledger.Entry{b}, true)
	l.Record(ctx, "w", warning.SMS, took.Gen, []ledger.Outcome{{Entry: b, State: warning.Sent}})
	n, err := l.Record(ctx, "w", warning.SMS, chunk.Gen, []ledger.Outcome{{Entry: a, State: warning.Sent, Segments: 1}, {Entry: b, State: warning.Sent, Segments: 1}})
	if n != 1 || !errors.Is(err, ledger.ErrLockLost) {
		t.Fatalf("record after the lock was lost = %d, %v; want a alone, and ErrLockLost", n, err)
	}
	for _, id := range []string{"a", "b"} {
		if d, _ := l.Delivery(ctx, warning.Ref{WarningID: "w", Channel: warning.SMS, RecipientID: id}); d.State != warning.Sent {
			t.Errorf("%s is %s, want sent", id, d.State)
		}
	}
	p, _ := l.Progress(ctx, "w")
	if got := p.Channels[warning.SMS].Sent; got != 2 {
		t.Fatalf("%d sent, want 2", got)
	}
}

// Failed and expired deliveries re-opened count as pending again and are
// taken by the next batch that names them; a late report settles them.
func TestReopen(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	var e []ledger.Entry
	for i := range 4 {
		e = append(e, ledger.Entry{RecipientID: fmt.Sprint("r", i), Audience: warning.Residents, Division: "530102001001"})
	}
	l.MarkPlanned(ctx, "w", ledger.Planned{{Channel: warning.SMS, Audience: warning.Residents, Division: "530102001001"}: 4})
	h, _ := l.Lock(ctx, "w", warning.SMS, 1, "a", time.Minute)
	c1, _ := l.Begin(ctx, h, e, false)
	l.Record(ctx, "w", warning.SMS, c1.Gen, []ledger.Outcome{
		{Entry: e[0], State: warning.Sent}, {Entry: e[1], State: warning.Failed, Extra: "网络超时"},
		{Entry: e[2], State: warning.Failed, Extra: "网络超时"}, {Entry: e[3], State: warning.Sent},
	})
	l.Unlock(ctx, "w", warning.SMS, 1, h.Gen)
	l.ApplyReports(ctx, []warning.Report{{Ref: warning.Ref{WarningID: "w", Channel: warning.SMS, RecipientID: "r3"}, State: warning.Failed, Reason: "用户关机"}})

	// A plan made before buckets: the scan names its deliveries as their
	// refs did, without a bucket, as a resend re-opens them.
	var scanned []warning.Ref
	if err := l.Deliveries(ctx, "w", warning.SMS, func(d ledger.Delivery) bool {
		if d.State == warning.Failed {
			scanned = append(scanned, d.Ref)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(scanned, func(a, b warning.Ref) int { return strings.Compare(a.RecipientID, b.RecipientID) })
	if !slices.Equal(scanned, refs("w", warning.SMS, "r1", "r2", "r3")) {
		t.Fatalf("scan found the failed as %+v", scanned)
	}
	got, err := l.Reopen(ctx, "w", warning.SMS, refs("w", warning.SMS, "r0", "r1", "r2", "r3", "nobody"), []warning.DeliveryState{warning.Failed})
	if err != nil || !slices.Equal(got, refs("w", warning.SMS, "r1", "r2", "r3")) {
		t.Fatalf("reopen = %v, %v; want the three failed", got, err)
	}
	p, _ := l.Progress(ctx, "w")
	if c := p.Channels[warning.SMS]; c.Failed != 0 || c.Pending != 4 || len(p.Reasons[warning.SMS]) != 0 {
		t.Fatalf("after reopening: %+v, reasons %v", c, p.Reasons[warning.SMS])
	}
	if d, _ := l.Delivery(ctx, warning.Ref{WarningID: "w", Channel: warning.SMS, RecipientID: "r1"}); d.State != warning.Queued {
		t.Fatalf("re-opened delivery is %s, want queued", d.State)
	}
	// Asked again before they were sent: the same ones, counted once.
	if again, _ := l.Reopen(ctx, "w", warning.SMS, refs("w", warning.SMS, "r1", "r2", "r3"), []warning.DeliveryState{warning.Failed}); len(again) != 3 {
		t.Fatalf("reopen again = %v", again)
	}
	l.ApplyReports(ctx, []warning.Report{{Ref: warning.Ref{WarningID: "w", Channel: warning.SMS, RecipientID: "r3"}, State: warning.Delivered}})
	h, _ = l.Lock(ctx, "w", warning.SMS, 1000001, "b", time.Minute)
	if c2, _ := l.Begin(ctx, h, e, false); fmt.Sprint(c2.Taken) != "[1 2]" {
		t.Fatalf("resend batch took %v, want r1 and r2 (r3 delivered late)", c2.Taken)
	}
	p, _ = l.Progress(ctx, "w")
	if c := p.Channels[warning.SMS]; c.Failed != 0 || c.Delivered != 1 || c.Pending != 3 {
		t.Fatalf("after the late report: %+v", c)
	}
}

func TestReportBeforeSendRecorded(t *testing.T) {
	// A fast provider may report delivery before the worker records the send.
	l, _ := newLedger(t)
	ctx := context.Background()
	e := ledger.Entry{RecipientID: "o1", Audience: warning.VillageOfficials, Division: "530102001001"}
	e2 := ledger.Entry{RecipientID: "o2", Audience: warning.VillageOfficials, Division: "530102001002"}
	l.MarkPlanned(ctx, "w", ledger.Planned{{Channel: warning.WeCom, Audience: e.Audience, Division: e.Division}: 2})
	h, _ := l.Lock(ctx, "w", warning.WeCom, 7, "a", time.Minute)
	chunk, _ := l.Begin(ctx, h, []ledger.Entry{e, e2}, false)
	res, _ := l.ApplyReports(ctx, []warning.Report{{Ref: warning.Ref{WarningID: "w", Channel: warning.WeCom, RecipientID: "o1"}, State: warning.Delivered}})
	if res.Applied != 1 {
		t.Fatalf("early report not applied: %+v", res)
	}
	if _, err := l.Record(ctx, "w", warning.WeCom, chunk.Gen, []ledger.Outcome{{Entry: e, State: warning.Sent}, {Entry: e2, State: warning.Sent}}); err != nil {
		t.Fatal(err)
	}
	if d, _ := l.Delivery(ctx, warning.Ref{WarningID: "w", Channel: warning.WeCom, RecipientID: "o1"}); d.State != warning.Delivered {
		t.Fatalf("late send record changed a delivered state to %s", d.State)
	}
	p, _ := l.Progress(ctx, "w")
	if got := p.Channels[warning.WeCom]; got.Sent != 2 || got.Delivered != 1 || got.Pending != 1 {
		t.Fatalf("counts = %+v; want 2 sent (one counted by its early report), 1 delivered", got)
	}
	if got := p.Audiences[warning.WeCom][warning.VillageOfficials]; got.Sent != 2 || got.Delivered != 1 {
		t.Fatalf("audience counts = %+v", got)
	}
	if got := p.Divisions["530102001001"]; got.Sent != 1 || got.Delivered != 1 {
		t.Fatalf("division counts = %+v", got)
	}
}

func TestExpiredOnlyTouchesUnsent(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	a := ledger.Entry{RecipientID: "s1", Audience: warning.Screens, Division: "530102001001"}
	b := ledger.Entry{RecipientID: "s2", Audience: warning.Screens, Division: "530102001002"}
	h, _ := l.Lock(ctx, "w", warning.Screen, 1, "a", time.Minute)
	chunk, _ := l.Begin(ctx, h, []ledger.Entry{a}, false)
	l.Record(ctx, "w", warning.Screen, chunk.Gen, []ledger.Outcome{{Entry: a, State: warning.Sent}})
	n, _ := l.Record(ctx, "w", warning.Screen, "", []ledger.Outcome{{Entry: a, State: warning.Expired, Extra: "expired"}, {Entry: b, State: warning.Expired, Extra: "expired"}})
	if n != 1 {
		t.Fatalf("expired %d deliveries, want only the unsent one", n)
	}
}

func TestProviderIndex(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	ref := warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: "r7"}
	if err := l.IndexProviderIDs(ctx, "tencent", map[string]warning.Ref{"sid-1": ref}); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(26 * time.Hour) // a report the next day still resolves
	got, err := l.ResolveProviderIDs(ctx, "tencent", []string{"sid-1", "sid-unknown"})
	if err != nil || got["sid-1"] != ref || len(got) != 1 {
		t.Fatalf("resolve = %v, %v", got, err)
	}
	c.t = c.t.Add(5 * 24 * time.Hour)
	if got, _ := l.ResolveProviderIDs(ctx, "tencent", []string{"sid-1"}); len(got) != 0 {
		t.Fatalf("index kept past %d days: %v", ledger.ProviderIndexDays, got)
	}
}

// A warning is written in steps (its idempotency key, the warning, the
// indexes), each on one Redis Cluster slot. A request that stopped between
// two steps was never accepted; sent again, it finishes them.
func TestCreateWarningFinishesAnInterruptedRequest(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()

	// Stopped after claiming its key: the retry stores the warning under
	// the id the key names, and queues it for planning.
	first := sampleWarning("w1", c.t)
	if err := l.ClaimIdempotencyKey(ctx, "key-1", "w1", first.Fingerprint()); err != nil {
		t.Fatal(err)
	}
	got, existed, err := l.CreateWarning(ctx, sampleWarning("w1-retry", c.t), "key-1")
	if err != nil || existed || got.ID != "w1" {
		t.Fatalf("retry after the key was claimed: %v existed=%v %v; want w1 stored now", got, existed, err)
	}
	if _, err := l.Warning(ctx, "w1"); err != nil {
		t.Fatalf("w1 not stored: %v", err)
	}
	if ids, _ := l.Unplanned(ctx, c.t.Add(time.Second)); len(ids) != 1 || ids[0] != "w1" {
		t.Fatalf("unplanned = %v, want [w1]", ids)
	}

	// Stopped after storing, before indexing: the retry indexes it.
	if _, _, err := l.CreateWarning(ctx, sampleWarning("w2", c.t.Add(time.Millisecond)), "key-2"); err != nil {
		t.Fatal(err)
	}
	if err := l.Unindex(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	got, existed, err = l.CreateWarning(ctx, sampleWarning("w2-retry", c.t), "key-2")
	if err != nil || !existed || got.ID != "w2" {
		t.Fatalf("retry after the warning was stored: %v existed=%v %v", got, existed, err)
	}
	if ids, _ := l.Unplanned(ctx, c.t.Add(time.Second)); len(ids) != 2 {
		t.Fatalf("unplanned = %v, want w1 and w2", ids)
	}
	if list, _ := l.Warnings(ctx, 0, 10); len(list) != 2 {
		t.Fatalf("listed %d warnings, want 2", len(list))
	}
}
