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
	got := submitRed(t, r, "530102001001")
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
	// The confirmation is recorded first, then counted and audited.
	var log []ledger.AuditEntry
	waitFor(t, 30*time.Second, "the key presses audited", func() (bool, string) {
		var err error
		log, err = r.l.AuditLog(ctx, got.ID, 1000)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range log {
			if e.Action == "acknowledge" && slices.Contains(township, e.Target) {
				n++
			}
		}
		return n >= len(township), fmt.Sprintf("%d of %d audited", n, len(township))
	})
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
	late := plannedRef(t, r, got, warning.Voice, waiting)
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
	got := submitRed(t, r, "530102001001")
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

// callLog records the calls the simulator is handed: per person, the
// notices of their calls and when (on the test's clock) each was placed.
type callLog struct {
	mu    sync.Mutex
	clock func() time.Time
	calls map[string][]time.Time
	first map[string]channels.Notice
}

func newCallLog(r *rig, clock func() time.Time) *callLog {
	l := &callLog{clock: clock, calls: map[string][]time.Time{}, first: map[string]channels.Notice{}}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		if b.Channel != warning.Voice {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, rc := range b.Recipients {
			if len(l.calls[rc.ID]) == 0 {
				l.first[rc.ID] = b.Notice
			}
			l.calls[rc.ID] = append(l.calls[rc.ID], l.clock())
		}
	})
	return l
}

func (l *callLog) count(id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls[id])
}

func (l *callLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		n += len(c)
	}
	return n
}

// byRole finds a warning's officials by role.
func byRole(t *testing.T, r *rig, id string) map[region.Role]string {
	t.Helper()
	os, err := r.l.Officials(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[region.Role]string{}
	for _, o := range os {
		p, _ := r.roster.Person(o.PersonID)
		out[p.Role] = p.ID
	}
	return out
}

// The shipped policy's voice ladder, on an injected clock. Red calls the
// township's leader and duty officer with the message and again at 100 s
// and 200 s (three calls within five minutes) until they confirm: the duty
// officer who answers "1" by SMS is called no more, the leader is called
// three times and no fourth. Orange calls nobody with the message and, ten
// minutes on, those who have not confirmed: once, not whoever confirmed by
// the link. At night orange calls with the message.
func TestVoiceLadder(t *testing.T) {
	ctx := context.Background()
	step := func(t *testing.T, r *rig, clock *stepClock, id string, d time.Duration) {
		t.Helper()
		clock.add(d)
		if _, err := r.d.Escalate(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	submit := func(t *testing.T, r *rig, clock *stepClock, level warning.Level) string {
		t.Helper()
		w := redWarning()
		w.Level, w.Areas, w.Expires = level, []string{"530102001001"}, clock.now().Add(6*time.Hour)
		got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
		return got.ID
	}

	t.Run("red", func(t *testing.T) {
		clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC)) // 10:00 China time
		r := newRig(t, rigOptions{now: clock.now})
		calls := newCallLog(r, clock.now)
		id := submit(t, r, clock, warning.Red)
		roles := byRole(t, r, id)
		leader, duty := roles[region.TownshipLeader], roles[region.TownshipDuty]
		if calls.count(leader) != 1 || calls.count(duty) != 1 || calls.total() != 2 {
			t.Fatalf("with the message: %v; want the township's leader and duty officer called once each, nobody else", calls.calls)
		}
		if calls.first[leader] != channels.NoticeFull {
			t.Errorf("the first call says %q, want the warning", calls.first[leader])
		}
		step(t, r, clock, id, 100*time.Second)
		if calls.count(leader) != 2 || calls.count(duty) != 2 {
			t.Fatalf("at 100 s: leader called %d times, duty officer %d; want 2 each", calls.count(leader), calls.count(duty))
		}
		p, _ := r.roster.Person(duty)
		if err := r.d.HandleReply(ctx, channels.Reply{From: p.Phone, Text: "1"}); err != nil {
			t.Fatal(err)
		}
		step(t, r, clock, id, 100*time.Second)
		if calls.count(leader) != 3 || calls.count(duty) != 2 {
			t.Fatalf("at 200 s: leader called %d times, duty officer (confirmed by SMS) %d; want 3 and 2", calls.count(leader), calls.count(duty))
		}
		step(t, r, clock, id, 100*time.Second)
		step(t, r, clock, id, 100*time.Second)
		if calls.count(leader) != 3 || calls.total() != 5 {
			t.Errorf("after 5 minutes: %v; want no call after the third", calls.calls)
		}
		steps, err := r.l.Steps(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		escalated := false
		for _, s := range steps {
			escalated = escalated || (s.Action == "escalate" && s.PersonID == leader && s.Target == roles[region.CountyDuty] && s.Due.Equal(clock.now().Add(-100*time.Second)))
			if s.Action == "call" {
				got = append(got, fmt.Sprintf("%s#%d@%s", s.PersonID, s.Try, s.Due.Sub(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))))
			}
		}
		slices.Sort(got)
		want := []string{duty + "#2@1m40s", leader + "#2@1m40s", leader + "#3@3m20s"}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("call steps %v, want %v", got, want)
		}
		if !escalated {
			t.Errorf("the leader, unconfirmed after three calls, was not escalated to the county duty officer at 5 minutes: %+v", steps)
		}
	})

	t.Run("orange", func(t *testing.T) {
		clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
		r := newRig(t, rigOptions{now: clock.now})
		calls := newCallLog(r, clock.now)
		id := submit(t, r, clock, warning.Orange)
		roles := byRole(t, r, id)
		leader, duty := roles[region.TownshipLeader], roles[region.TownshipDuty]
		if calls.total() != 0 {
			t.Fatalf("orange called with the message: %v", calls.calls)
		}
		step(t, r, clock, id, 200*time.Second)
		if _, err := r.d.Acknowledge(ctx, id, duty, "link", dispatcher.Actor{PersonID: duty}); err != nil {
			t.Fatal(err)
		}
		step(t, r, clock, id, 200*time.Second)
		step(t, r, clock, id, 199*time.Second)
		if calls.total() != 0 {
			t.Fatalf("called before 10 minutes: %v", calls.calls)
		}
		step(t, r, clock, id, time.Second)
		if calls.count(leader) != 1 || calls.count(duty) != 0 || calls.total() != 1 {
			t.Fatalf("at 10 minutes: %v; want the leader called, not the duty officer who confirmed by the link", calls.calls)
		}
		if calls.first[leader] != channels.NoticeReminder {
			t.Errorf("the call says %q, want a reminder with the key menu", calls.first[leader])
		}
		for range 5 {
			step(t, r, clock, id, 200*time.Second)
		}
		if calls.total() != 1 {
			t.Errorf("orange calls once; calls: %v", calls.calls)
		}
	})

	t.Run("orange at night", func(t *testing.T) {
		clock := newStepClock(time.Date(2026, 7, 1, 15, 0, 0, 0, time.UTC)) // 23:00 China time
		r := newRig(t, rigOptions{now: clock.now})
		calls := newCallLog(r, clock.now)
		w := redWarning()
		w.Level, w.Areas, w.Expires = warning.Orange, []string{"530102001001"}, clock.now().Add(6*time.Hour)
		w.Accepted = clock.now()
		pv, err := r.d.Preview(w)
		if err != nil {
			t.Fatal(err)
		}
		if pv.Calls == nil || pv.Calls.After != 0 || pv.Calls.Officials[warning.TownshipOfficials] != 2 {
			t.Errorf("night preview's calls: %+v; want the township's two officials called with the message", pv.Calls)
		}
		id := submit(t, r, clock, warning.Orange)
		roles := byRole(t, r, id)
		if calls.count(roles[region.TownshipLeader]) != 1 || calls.count(roles[region.TownshipDuty]) != 1 {
			t.Errorf("at night orange calls with the message; calls: %v", calls.calls)
		}
	})

	t.Run("preview", func(t *testing.T) {
		clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
		r := newRig(t, rigOptions{now: clock.now, noWorkers: true})
		for _, c := range []struct {
			level warning.Level
			want  policy.CallPlan
		}{
			{warning.Red, policy.CallPlan{Tries: 3, Interval: 100 * time.Second}},
			{warning.Orange, policy.CallPlan{After: 10 * time.Minute, Tries: 1, Interval: 10 * time.Minute}},
		} {
			w := redWarning()
			w.Level, w.Areas, w.Expires = c.level, []string{"530102001001"}, clock.now().Add(6*time.Hour)
			pv, err := r.d.Preview(w)
			if err != nil {
				t.Fatal(err)
			}
			got := pv.Calls
			if got == nil || got.After != c.want.After || got.Tries != c.want.Tries || got.Interval != c.want.Interval || got.Officials[warning.TownshipOfficials] != 2 {
				t.Errorf("%s preview's calls: %+v, want %+v and 2 township officials", c.level, got, c.want)
			}
			voice := int64(0)
			for g, n := range pv.Planned {
				if g.Channel == warning.Voice {
					voice += n
				}
			}
			if want := map[warning.Level]int64{warning.Red: 2, warning.Orange: 0}[c.level]; voice != want {
				t.Errorf("%s preview plans %d calls with the message, want %d", c.level, voice, want)
			}
		}
	})
}

// Every call's outcome is kept, once, with its keys, ring and talk time and
// billed minutes: in the warning's calls (an official called three times
// has three, 无人接听×3), in its progress per outcome and per provider
// account, and in the metrics.
func TestCallOutcomesRecorded(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	r := newRig(t, rigOptions{now: clock.now}) // nobody answers
	ctx := context.Background()
	w := redWarning()
	w.Areas, w.Expires = []string{"530102001001"}, clock.now().Add(6*time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, got.ID))
	for range 3 {
		clock.add(100 * time.Second)
		if _, err := r.d.Escalate(ctx, got.ID); err != nil {
			t.Fatal(err)
		}
	}
	roles := byRole(t, r, got.ID)
	leader := roles[region.TownshipLeader]
	var calls map[string][]ledger.CallRecord
	waitFor(t, 10*time.Second, "six calls reported", func() (bool, string) {
		calls, err = r.l.Calls(ctx, got.ID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, cs := range calls {
			n += len(cs)
		}
		return n == 6, fmt.Sprint(calls)
	})
	if s := ledger.CallSummary(calls[leader]); s != "无人接听×3" {
		t.Errorf("the leader's calls: %q, want 无人接听×3", s)
	}
	for _, c := range calls[leader] {
		if c.Outcome != warning.CallNoAnswer || c.Ring != 10*time.Millisecond || c.Account != "sim" || c.CallID == "" {
			t.Errorf("call %+v: want no answer after 10 ms of ringing, on account sim", c)
		}
	}

	// An answered call pushed twice is kept and billed once.
	rep := warning.Call{Outcome: warning.CallAnswered, Keys: "21", Ring: 4 * time.Second, Talk: 65 * time.Second, Billed: 2, Account: "county-trunk"}.
		Report(plannedRef(t, r, got, warning.Voice, leader), "c-42", clock.now(), "")
	for range 2 {
		if err := r.d.Record(ctx, []warning.Report{rep}); err != nil {
			t.Fatal(err)
		}
	}
	p, err := r.l.Progress(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Calls.Outcomes[warning.CallNoAnswer] != 6 || p.Calls.Outcomes[warning.CallAnswered] != 1 {
		t.Errorf("progress's calls by outcome: %v; want 6 no answer, 1 answered", p.Calls.Outcomes)
	}
	if b := p.Calls.Billing["county-trunk"]; b.Calls != 1 || b.Minutes != 2 {
		t.Errorf("county-trunk billed %+v, want 1 call, 2 minutes", b)
	}
	if b := p.Calls.Billing["sim"]; b.Calls != 6 || b.Minutes != 0 {
		t.Errorf("sim billed %+v, want 6 calls, 0 minutes", b)
	}
	if n := r.counter("warngate_voice_calls_total", "provider", "sim", "outcome", "no_answer"); n != 6 {
		t.Errorf("warngate_voice_calls_total{sim,no_answer} = %v, want 6", n)
	}
	if n := r.counter("warngate_voice_billed_minutes_total", "provider", "county-trunk"); n != 2 {
		t.Errorf("warngate_voice_billed_minutes_total{county-trunk} = %v, want 2", n)
	}
	calls, _ = r.l.Calls(ctx, got.ID)
	if s := ledger.CallSummary(calls[leader]); s != "无人接听×3，已接听并按键确认×1" {
		t.Errorf("the leader's calls: %q", s)
	}
}
