package dispatcher_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// smsOutcomes answers SMS batches itself: residents in fail are refused for
// good (用户关机), those in hold are accepted and never reported, everyone
// else is delivered at once.
type smsOutcomes struct {
	mu         sync.Mutex
	fail, hold map[string]bool
}

func (n *smsOutcomes) Notify(_ context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]channels.Receipt, len(b.Recipients))
	for i, rc := range b.Recipients {
		out[i] = channels.Receipt{Index: i, State: warning.Delivered}
		switch {
		case rc.Audience != warning.Residents || b.Notice != channels.NoticeFull:
		case n.fail[rc.ID]:
			out[i] = channels.Receipt{Index: i, State: warning.Failed, Reason: "用户关机"}
		case n.hold[rc.ID]:
			out[i] = channels.Receipt{Index: i, State: warning.Sent}
		}
	}
	return out, false, nil
}

// scriptedSMSRig is a rig on a stepped clock whose SMS provider fails or
// holds the residents the test names (sms.fail, sms.hold), on a demo roster
// of perVillage residents a village, half on WeChat, with two grid workers.
func scriptedSMSRig(t testing.TB, perVillage int) (*rig, *stepClock, *smsOutcomes) {
	t.Helper()
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	sms := &smsOutcomes{fail: map[string]bool{}, hold: map[string]bool{}}
	r := newRig(t, rigOptions{now: clock.now, override: map[warning.Channel]channels.Notifier{warning.SMS: sms},
		demo: &region.DemoOptions{ResidentsPerVillage: perVillage, WeChatShare: 0.5, HouseholdsPerVillage: 2, GridWorkersPerVillage: 2}})
	return r, clock, sms
}

// A red warning for a village where three residents without WeChat are not
// reached by SMS — two phones switched off, one whose report has not come —
// puts exactly those three on the village's call list once fallback_after
// (10 minutes) has passed, not before, each assigned to one of the village's
// grid workers in turn, with the reasons; a late delivery report takes one
// off, a visit started keeps another on, and a visit counts them reached.
func TestFallbackVisitsForTheUnreached(t *testing.T) {
	r, clock, sms := scriptedSMSRig(t, 10)
	ctx := context.Background()
	const village = "530102001001"
	var noWeChat []region.Person
	var workers []string
	r.roster.People(village, func(p region.Person) bool {
		if p.Role == region.Resident && p.WeChatOpenID == "" {
			noWeChat = append(noWeChat, p)
		}
		if p.Role == region.GridWorker {
			workers = append(workers, p.ID)
		}
		return true
	})
	if len(noWeChat) < 3 || len(workers) != 2 {
		t.Fatalf("want 3 residents without WeChat and 2 grid workers in %s, have %d and %d", village, len(noWeChat), len(workers))
	}
	off1, off2, late := noWeChat[0], noWeChat[1], noWeChat[2]
	sms.fail[off1.ID], sms.fail[off2.ID], sms.hold[late.ID] = true, true, true

	got := submitRed(t, r, village)
	waitFor(t, 30*time.Second, "every resident but the late one final", func() (bool, string) {
		p, _ := r.l.Progress(ctx, got.ID)
		c := p.Channels[warning.SMS]
		wc := p.Channels[warning.WeChat]
		return !p.PlannedAt.IsZero() && c.Failed == 2 && c.Delivered == c.Planned-3 && wc.Planned > 0 && wc.Pending == 0,
			fmt.Sprintf("sms %+v wechat %+v", c, wc)
	})

	listed := func() []string {
		fb, err := r.l.Fallback(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		return keys(fb)
	}
	sorted := func(ids ...string) []string { slices.Sort(ids); return ids }
	// Before the deadline only those whom every channel failed for good:
	// the two switched off without WeChat (a check queued by the failures
	// may have listed them already).
	clock.add(9 * time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if got, want := listed(), sorted(off1.ID, off2.ID); !slices.Equal(got, want) {
		t.Fatalf("before the deadline listed %v; want %v, whom every channel failed", got, want)
	}
	clock.add(time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if n, _ := r.d.CheckFallback(ctx, got.ID); n != 0 {
		t.Fatalf("a second check listed %d again", n)
	}
	if n := r.counter("warngate_fallback_visits_total", "level", "red"); n != 3 {
		t.Errorf("warngate_fallback_visits_total{level=red} = %v, want 3", n)
	}
	fb, err := r.l.Fallback(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	gridWorkers := map[string]int{}
	for id, e := range fb {
		ids = append(ids, id)
		gridWorkers[e.GridWorker]++
		if e.Village != village || !slices.Contains(workers, e.GridWorker) {
			t.Errorf("%s listed in %s for %q; want %s and one of its grid workers %v", id, e.Village, e.GridWorker, village, workers)
		}
	}
	slices.Sort(ids)
	want := []string{off1.ID, off2.ID, late.ID}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("listed %v, want exactly %v", ids, want)
	}
	if len(gridWorkers) != 2 || fb[off1.ID].GridWorker == fb[off2.ID].GridWorker {
		t.Errorf("grid workers %v: want the village's two in turn", gridWorkers)
	}
	if e := fb[off1.ID]; !slices.Equal(e.Reasons, []string{"用户关机", "无微信"}) || e.Phone != off1.Phone || e.Name != off1.Name {
		t.Errorf("%s: %+v; want reasons 用户关机, 无微信 and the phone", off1.ID, e)
	}
	if e := fb[late.ID]; !slices.Equal(e.Reasons, []string{"短信未送达", "无微信"}) {
		t.Errorf("%s: reasons %v; want 短信未送达, 无微信", late.ID, e.Reasons)
	}

	// A grid worker starts visiting off2; then reports arrive for the late
	// one: it leaves the list, off2 (a visit started) stays.
	gw := dispatcher.Actor{PersonID: fb[off2.ID].GridWorker}
	if err := r.d.MarkHousehold(ctx, got, gw, off2.ID, ledger.Mark{Reached: false, Note: "家中无人"}); err != nil {
		t.Fatal(err)
	}
	other := workers[0]
	if other == fb[off1.ID].GridWorker {
		other = workers[1]
	}
	if err := r.d.MarkHousehold(ctx, got, dispatcher.Actor{PersonID: other}, off1.ID, ledger.Mark{Reached: true, Method: "visit"}); err == nil {
		t.Error("a grid worker marked a resident assigned to another")
	}
	clock.add(time.Minute)
	rep := warning.Report{Ref: plannedRef(t, r, got, warning.SMS, late.ID), State: warning.Delivered, At: clock.now()}
	if err := r.d.Record(ctx, []warning.Report{rep}); err != nil {
		t.Fatal(err)
	}
	fb, _ = r.l.Fallback(ctx, got.ID)
	if _, ok := fb[late.ID]; ok || len(fb) != 2 {
		t.Fatalf("after a late report: %v listed; want %s off and the other two on", keys(fb), late.ID)
	}
	cov, _ := r.l.Coverage(ctx, got.ID)
	residents := int64(r.roster.Counts(village).Residents)
	if cov[village].Reached != residents-2 {
		t.Fatalf("reached %d of %d, want all but the two switched off", cov[village].Reached, residents)
	}
	// A visit counts as reaching.
	if err := r.d.MarkHousehold(ctx, got, dispatcher.Actor{PersonID: fb[off1.ID].GridWorker}, off1.ID, ledger.Mark{Reached: true, Method: "visit"}); err != nil {
		t.Fatal(err)
	}
	cov, _ = r.l.Coverage(ctx, got.ID)
	if cov[village].Reached != residents-1 {
		t.Fatalf("after a visit reached %d of %d, want all but one", cov[village].Reached, residents)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A red warning's fallback check is scheduled at plan time on the timers
// queue, with a stable id, for when fallback_after (10 minutes) has passed,
// and a check 30 seconds after a resident's SMS failed, for those whom every
// channel failed; a yellow warning, whose rule has no fallback_after,
// schedules none.
func TestFallbackScheduledOnTheTimersQueue(t *testing.T) {
	sms := &smsOutcomes{fail: map[string]bool{}, hold: map[string]bool{}}
	r := newRig(t, rigOptions{override: map[warning.Channel]channels.Notifier{warning.SMS: sms}})
	r.roster.People("530102001001", func(p region.Person) bool {
		if p.Role == region.Resident {
			sms.fail[p.ID] = true
			return false
		}
		return true
	})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	y := redWarning()
	y.Level = warning.Yellow
	y.Areas = []string{"530102001002"}
	yellow, _, err := r.d.Submit(ctx, y, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "both planned", func() (bool, string) {
		a, _ := r.l.Progress(ctx, got.ID)
		b, _ := r.l.Progress(ctx, yellow.ID)
		return !a.PlannedAt.IsZero() && !b.PlannedAt.IsZero(), ""
	})
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	info, err := insp.GetTaskInfo(dispatcher.QueueTimers, "fallback/"+got.ID)
	if err != nil {
		t.Fatalf("no fallback check on the timers queue: %v", err)
	}
	due := got.Accepted.Add(10 * time.Minute)
	if info.Type != dispatcher.TypeFallback || info.State != asynq.TaskStateScheduled ||
		info.NextProcessAt.After(due) || info.NextProcessAt.Before(due.Add(-5*time.Second)) {
		t.Errorf("fallback check %s %s at %v; want scheduled just before %v", info.Type, info.State, info.NextProcessAt, due)
	}
	waitFor(t, 10*time.Second, "a check soon after the failure", func() (bool, string) {
		tasks, err := insp.ListScheduledTasks(dispatcher.QueueTimers)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ti := range tasks {
			ids = append(ids, ti.ID)
			if strings.HasPrefix(ti.ID, "fallback/"+got.ID+"/soon/") && ti.NextProcessAt.Before(got.Accepted.Add(time.Minute)) {
				return true, ""
			}
		}
		return false, strings.Join(ids, " ")
	})
	if _, err := insp.GetTaskInfo(dispatcher.QueueTimers, "fallback/"+yellow.ID); err == nil {
		t.Error("a yellow warning, whose rule has no fallback_after, scheduled a fallback check")
	}
}

// The deadline's check runs at the instant its task carries, which is kept
// to the millisecond. A warning accepted 0.6 ms into a millisecond still has
// the deadline's check then: every resident not reached is listed, not only
// those whom every channel failed, as an early check would.
func TestFallbackAtTheMillisecondItsTaskCarries(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 600_000, time.UTC))
	sms := &smsOutcomes{fail: map[string]bool{}, hold: map[string]bool{}}
	r := newRig(t, rigOptions{now: clock.now, override: map[warning.Channel]channels.Notifier{warning.SMS: sms},
		demo: &region.DemoOptions{ResidentsPerVillage: 10, WeChatShare: 0.5, HouseholdsPerVillage: 2, GridWorkersPerVillage: 2}})
	ctx := context.Background()
	const village = "530102001001"
	var unreached []string
	r.roster.People(village, func(p region.Person) bool {
		if p.Role == region.Resident && p.WeChatOpenID == "" {
			sms.hold[p.ID] = true // accepted, never reported
			unreached = append(unreached, p.ID)
		}
		return true
	})
	slices.Sort(unreached)
	got := submitRed(t, r, village)
	waitFor(t, 30*time.Second, "every resident on WeChat reached", func() (bool, string) {
		p, _ := r.l.Progress(ctx, got.ID)
		c, wc := p.Channels[warning.SMS], p.Channels[warning.WeChat]
		return !p.PlannedAt.IsZero() && c.Pending == int64(len(unreached)) && wc.Planned > 0 && wc.Pending == 0,
			fmt.Sprintf("sms %+v wechat %+v", c, wc)
	})
	info, err := asynq.NewInspectorFromRedisClient(r.rdb).GetTaskInfo(dispatcher.QueueTimers, "fallback/"+got.ID)
	if err != nil {
		t.Fatalf("no fallback check queued: %v", err)
	}
	atItsInstant(t, clock, info, r.d.RunFallback)
	fb, err := r.l.Fallback(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if listed := keys(fb); !slices.Equal(listed, unreached) {
		t.Errorf("the deadline's check at %s listed %v; want every resident not reached, %v", clock.now().Format(time.RFC3339Nano), listed, unreached)
	}
}

// An early fallback check looks only at the residents a channel failed
// since the last one, not at every resident of the warning: a resident
// whose failure was recorded without naming them (behind the dispatcher's
// back here) waits for the deadline's check, which looks at everyone.
func TestEarlyCheckLooksAtTheResidentsThatFailed(t *testing.T) {
	r, clock, sms := scriptedSMSRig(t, 10)
	ctx := context.Background()
	const a, b = "530102001001", "530102001002"
	noWeChat := func(village string) region.Person {
		var out region.Person
		r.roster.People(village, func(p region.Person) bool {
			if p.Role == region.Resident && p.WeChatOpenID == "" {
				out = p
				return false
			}
			return true
		})
		if out.ID == "" {
			t.Fatalf("no resident without WeChat in %s", village)
		}
		return out
	}
	x, y := noWeChat(a), noWeChat(b)
	sms.fail[x.ID], sms.hold[y.ID] = true, true
	w := redWarning()
	w.Areas = []string{a, b}
	w.Expires = clock.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every resident but y final", func() (bool, string) {
		p, _ := r.l.Progress(ctx, got.ID)
		c, wc := p.Channels[warning.SMS], p.Channels[warning.WeChat]
		return !p.PlannedAt.IsZero() && c.Failed == 1 && c.Delivered == c.Planned-2 && wc.Planned > 0 && wc.Pending == 0,
			fmt.Sprintf("sms %+v wechat %+v", c, wc)
	})
	// y's SMS fails, recorded straight in the ledger: nobody names y.
	entry := []ledger.Entry{{RecipientID: y.ID, Audience: warning.Residents, Division: y.Division}}
	if err := r.l.Locate(ctx, got.ID, entry); err != nil {
		t.Fatal(err)
	}
	ref := warning.Ref{WarningID: got.ID, Channel: warning.SMS, RecipientID: y.ID, Bucket: entry[0].Bucket}
	if res, err := r.l.ApplyReports(ctx, []warning.Report{{Ref: ref, State: warning.Failed, Reason: "用户关机", At: clock.now()}}); err != nil || res.Applied != 1 {
		t.Fatalf("y's report: %+v, %v", res, err)
	}
	listed := func() []string {
		fb, err := r.l.Fallback(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		return keys(fb)
	}
	clock.add(time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if got := listed(); !slices.Equal(got, []string{x.ID}) {
		t.Fatalf("the early check listed %v; want only %s, whose failure named them", got, x.ID)
	}
	// Given to a grid worker of x's own village.
	fb, _ := r.l.Fallback(ctx, got.ID)
	gw, _ := r.roster.Person(fb[x.ID].GridWorker)
	if gw.Role != region.GridWorker || gw.Division != a {
		t.Errorf("%s given to %q (%s, %s); want a grid worker of %s", x.ID, fb[x.ID].GridWorker, gw.Role, gw.Division, a)
	}
	if c, _, _ := r.l.Candidates(ctx, got.ID); len(c) != 0 {
		t.Errorf("candidates left after the check: %v", c)
	}
	// The deadline's check reads residents a few thousand at a time; one
	// at a time here, so that each village is read alone.
	dispatcher.ReadAtOnce(t, 1)
	clock.add(10 * time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	want := []string{x.ID, y.ID}
	slices.Sort(want)
	if got := listed(); !slices.Equal(got, want) {
		t.Fatalf("the deadline's check listed %v; want %v", got, want)
	}
	fb, _ = r.l.Fallback(ctx, got.ID)
	if gw, _ := r.roster.Person(fb[y.ID].GridWorker); gw.Role != region.GridWorker || gw.Division != b {
		t.Errorf("%s given to %q; want a grid worker of %s", y.ID, fb[y.ID].GridWorker, b)
	}
	// Residents named for a check of a warning lifted meanwhile are
	// forgotten by it.
	if err := r.l.AddCandidates(ctx, got.ID, []string{x.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Cancel(ctx, got.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.d.CheckFallback(ctx, got.ID); err != nil || n != 0 {
		t.Fatalf("check of a lifted warning: %d listed, %v", n, err)
	}
	if c, _, _ := r.l.Candidates(ctx, got.ID); len(c) != 0 {
		t.Errorf("candidates left after the check of a lifted warning: %v", c)
	}
}

// submitRed issues a red warning for one division, in force for six hours
// of the rig's clock.
func submitRed(t *testing.T, r *rig, area string) *warning.Warning {
	t.Helper()
	w := redWarning()
	w.Areas = []string{area}
	w.Expires = r.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(context.Background(), w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Residents without WeChat still have their phones: the plan queues no
// early check for them, which would read every resident of the warning's
// villages to find nobody; their SMS failing would.
func TestNoEarlyCheckForResidentsReachableOnAnotherChannel(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	const village = "530102001001"
	if c := r.roster.Counts(village); c.WeChatFollowers >= c.Residents {
		t.Fatalf("demo village: %d of %d residents follow on WeChat; the test needs some who do not", c.WeChatFollowers, c.Residents)
	}
	got := submitRed(t, r, village)
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	// The plan is marked planned after the early check would have been
	// queued.
	waitFor(t, 10*time.Second, "planned", func() (bool, string) {
		p, err := r.l.Progress(ctx, got.ID)
		return err == nil && !p.PlannedAt.IsZero(), fmt.Sprint(err)
	})
	if _, err := insp.GetTaskInfo(dispatcher.QueueTimers, "fallback/"+got.ID); err != nil {
		t.Fatalf("the deadline's check: %v", err)
	}
	// A check a failure queues looks at that resident only; none is asked
	// to look at everyone.
	cands, _, err := r.l.Candidates(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(cands, ledger.AllResidents) {
		t.Errorf("the plan asked an early check to look at every resident, though every resident has a phone")
	}
}

// Residents a rule sends on WeCom only, which residents of the demo roster
// do not have, have no channel at all: a check is queued at plan time, and
// lists every one of them before the deadline, as having no WeCom account.
func TestResidentsWithNoChannelListedBeforeTheDeadline(t *testing.T) {
	pol := policy.Default()
	for i := range pol.Rules {
		if slices.Contains(pol.Rules[i].Levels, warning.Red) {
			pol.Rules[i].Send[warning.Residents] = []warning.Channel{warning.WeCom}
		}
	}
	r := newRig(t, rigOptions{policy: pol})
	ctx := context.Background()
	const village = "530102001001"
	got := submitRed(t, r, village)
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	waitFor(t, 10*time.Second, "a check soon after the plan", func() (bool, string) {
		tasks, _ := insp.ListScheduledTasks(dispatcher.QueueTimers)
		for _, ti := range tasks {
			if strings.HasPrefix(ti.ID, "fallback/"+got.ID+"/soon/") {
				return true, ""
			}
		}
		return false, ""
	})
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	fb, err := r.l.Fallback(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n := r.roster.Counts(village).Residents; len(fb) != n {
		t.Fatalf("%d of %d residents listed before the deadline", len(fb), n)
	}
	for id, e := range fb {
		if !slices.Equal(e.Reasons, []string{"无企业微信"}) {
			t.Errorf("%s: reasons %v, want 无企业微信", id, e.Reasons)
		}
	}
}

// Grid workers take the residents of their village in turn across checks:
// one listed before the deadline goes to the first grid worker, the next,
// listed at the deadline, to the second.
func TestFallbackSharesVisitsAcrossChecks(t *testing.T) {
	r, clock, sms := scriptedSMSRig(t, 10)
	ctx := context.Background()
	const village = "530102001001"
	var noWeChat []region.Person
	r.roster.People(village, func(p region.Person) bool {
		if p.Role == region.Resident && p.WeChatOpenID == "" {
			noWeChat = append(noWeChat, p)
		}
		return true
	})
	off, held := noWeChat[0], noWeChat[1]
	sms.fail[off.ID], sms.hold[held.ID] = true, true
	got := submitRed(t, r, village)
	waitFor(t, 30*time.Second, "the SMS", func() (bool, string) {
		p, _ := r.l.Progress(ctx, got.ID)
		c := p.Channels[warning.SMS]
		return !p.PlannedAt.IsZero() && c.Failed == 1 && c.Delivered == c.Planned-2, fmt.Sprintf("%+v", c)
	})
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	clock.add(10 * time.Minute)
	if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	fb, _ := r.l.Fallback(ctx, got.ID)
	if len(fb) != 2 || fb[off.ID].GridWorker == "" || fb[off.ID].GridWorker == fb[held.ID].GridWorker {
		t.Errorf("listed %+v; want %s and %s, each with one of the village's two grid workers", fb, off.ID, held.ID)
	}
}
