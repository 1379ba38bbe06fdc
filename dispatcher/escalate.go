package dispatcher

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// TypeEscalate is the task that checks a warning's officials on schedule:
// who has not confirmed is asked again on their next channel, and once the
// deadline has passed is put on the 未叫应 list and reported to a superior.
const TypeEscalate = "escalate:ack"

// timerPayload is the body of a check that runs at an instant: a warning's
// 叫应 check or its call-list deadline.
type timerPayload struct {
	WarningID string `json:"w"`
	// Due is the instant in Unix milliseconds, rounded up (timerAt); zero
	// runs at once, as did the checks queued before the instant was kept.
	Due int64 `json:"due,omitempty"`
}

// timerAt is the payload of a warning's check due at an instant, which it
// carries in Unix milliseconds, rounded up. A check handed out at that
// instant then never finds the instant it was queued for still a fraction
// of a millisecond ahead (an interval of a second over three tries, a
// warning accepted 0.6 ms into a millisecond), which would make it do
// nothing, or take itself for an early check.
func timerAt(warningID string, due time.Time) timerPayload {
	ms := due.UnixMilli()
	if time.UnixMilli(ms).Before(due) {
		ms++
	}
	return timerPayload{WarningID: warningID, Due: ms}
}

func (p timerPayload) due() time.Time {
	if p.Due == 0 {
		return time.Time{}
	}
	return time.UnixMilli(p.Due)
}

func decodeTimer(t *asynq.Task) (timerPayload, error) {
	var p timerPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return p, fmt.Errorf("%s: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return p, nil
}

// enqueueTimer queues a check for the instant due. The queue keeps
// scheduled times in whole seconds and makes a task ready once its second
// has begun, up to a second early; then it takes up to DelayedInterval to
// move it and PollInterval to pick it up. Scheduled that much before its
// instant, a check is handed out before it, however the second falls, and
// the handler waits out the rest (awaitDue). A task id that is already
// queued is not an error.
func (d *Dispatcher) enqueueTimer(ctx context.Context, typ, id string, p timerPayload) error {
	payload, _ := json.Marshal(p)
	_, err := d.enqueueIn(ctx, p.WarningID, QueueTimers, asynq.NewTask(typ, payload),
		asynq.TaskID(id), asynq.ProcessAt(p.due().Add(-d.timerLead())), asynq.MaxRetry(d.cfg.MaxRetry))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}

// timerLead is how long before its instant a check is scheduled: the time
// the queue may take to move it and pick it up.
func (d *Dispatcher) timerLead() time.Duration { return d.cfg.DelayedInterval + d.cfg.PollInterval }

// maxEarly is the longest a check waits in its handler for its instant: a
// second and the lead early, and half a second more for hosts whose clocks
// differ by that much. A check earlier still goes back to the queue until
// its instant (errEarly).
func (d *Dispatcher) maxEarly() time.Duration {
	return time.Second + d.timerLead() + 500*time.Millisecond
}

// errEarly gives a check back to the queue, not counted as a failure, to
// come again at its instant (see retryDelay).
var errEarly = errors.New("check handed out before its instant")

// awaitDue waits until due on the dispatcher's clock.
func (d *Dispatcher) awaitDue(ctx context.Context, due time.Time) error {
	wait := due.Sub(d.now())
	switch {
	case due.IsZero() || wait <= 0:
		return nil
	case wait > d.maxEarly():
		return errEarly
	}
	return d.sleep(ctx, wait)
}

// untilDue is how long an early check waits in the queue before it is
// handed out again.
func untilDue(t *asynq.Task) time.Duration {
	var p timerPayload
	json.Unmarshal(t.Payload(), &p)
	return max(0, time.Until(p.due()))
}

// registerOfficials records the officials of a plan's official batches, who
// must confirm, starts the call schedules of those the rule calls (called:
// those called with the message), and schedules the check when their first
// reminder or call is due.
func (d *Dispatcher) registerOfficials(ctx context.Context, w *warning.Warning, rule *policy.Rule, officials []ledger.Official, called map[string]bool) error {
	if len(officials) == 0 || rule == nil || rule.AckDeadline <= 0 {
		return nil
	}
	now := d.now()
	for i := range officials {
		officials[i].LastTry = now
	}
	if _, err := d.ledger.RegisterOfficials(ctx, w.ID, officials); err != nil {
		return err
	}
	next := now.Add(d.tickInterval(rule))
	tracks := map[string]ledger.CallTrack{}
	for _, o := range officials {
		if !rule.Calls(o.Audience) {
			continue
		}
		t := ledger.CallTrack{At: now}
		if called[o.PersonID] {
			t.Calls = 1
		}
		tracks[o.PersonID] = t
		if due := d.callDue(rule, t); t.Calls < rule.CallTimes() && due.Before(next) {
			next = due
		}
	}
	if err := d.ledger.RegisterCalls(ctx, w.ID, tracks); err != nil {
		return err
	}
	return d.scheduleEscalation(ctx, w.ID, next)
}

// callDue is when an official's next call is due: call_after after the
// message for the first (none at night), an interval after the last for
// the others.
func (d *Dispatcher) callDue(rule *policy.Rule, t ledger.CallTrack) time.Time {
	if t.Calls == 0 {
		return t.At.Add(d.policy.CallAfter(rule, t.At))
	}
	return t.At.Add(rule.CallInterval())
}

// tickInterval is the time between tries: the deadline spread over them.
func (d *Dispatcher) tickInterval(rule *policy.Rule) time.Duration {
	return time.Duration(rule.AckDeadline) / time.Duration(rule.Tries())
}

// scheduleEscalation queues a warning's check for the instant due. The
// task id names the instant, so two checks that overlapped and agree on the
// next one queue it once.
func (d *Dispatcher) scheduleEscalation(ctx context.Context, id string, due time.Time) error {
	p := timerAt(id, due)
	return d.enqueueTimer(ctx, TypeEscalate, "esc/"+id+"/"+strconv.FormatInt(p.Due, 36), p)
}

func (d *Dispatcher) escalateTask(ctx context.Context, t *asynq.Task) error {
	p, err := decodeTimer(t)
	if err != nil {
		return err
	}
	if err := d.awaitDue(ctx, p.due()); err != nil {
		return err
	}
	next, err := d.Escalate(ctx, p.WarningID)
	if err != nil || next.IsZero() {
		return err
	}
	return d.scheduleEscalation(ctx, p.WarningID, next)
}

// Escalate runs one check of a warning's officials at the dispatcher's
// clock and returns when the next check is due: the earliest instant at
// which an official still waiting is due to be asked again or escalated,
// counting those this check asked and the superiors it registered (zero:
// nobody is waiting). Tests call it directly with an injected clock; in
// production the escalate:ack task calls it at that instant.
//
// It climbs the 叫应 ladder one rung for each official who is due: who is
// due, what they are owed (a reminder on their next channel, or the 未叫应
// list and their superior told), claimed in the ledger so that two checks
// never move an official twice, sent, recorded. Officials on a call
// schedule (policy call_after, call_tries) who have not confirmed are
// called when their next call is due, claimed the same way.
func (d *Dispatcher) Escalate(ctx context.Context, warningID string) (time.Time, error) {
	c, err := d.openCheck(ctx, warningID)
	if c == nil || err != nil {
		return time.Time{}, err
	}
	// What was claimed is sent and recorded even when a later claim failed:
	// the check that runs again will not find those officials due.
	due := d.dueMoves(c)
	moves, claimErr := d.claimMoves(ctx, c, due)
	moves = append(moves, d.handovers(c, moves)...)
	retries, retryNext, retryErr := d.unsentEscalations(ctx, c)
	moves = append(moves, retries...)
	registered, regErr := d.registerSuperiors(ctx, c, moves)
	calls, callNext, callErr := d.dueCalls(ctx, c, registered > 0)
	moves = append(moves, calls...)
	d.oneCallEach(moves)
	unsent := d.sendMoves(ctx, c, moves)
	for i := range moves {
		if m := &moves[i]; m.msg != nil {
			if err, ok := unsent[sentKey{m.msg.notice, m.msg.channel, m.msg.to.ID}]; ok {
				m.step.Outcome = outcomeNotSent + err
				// Tried again, on the superior's next channel, an
				// interval on (see unsentEscalations).
				if m.msg.notice == channels.NoticeEscalation {
					retryNext = earliest(retryNext, c.now.Add(c.interval))
				}
			} else if m.msg.notice == channels.NoticeEscalation {
				m.step.Outcome = outcomeSent
			}
		}
	}
	recErr := d.recordMoves(ctx, c, moves)
	if err := errors.Join(claimErr, retryErr, regErr, callErr, recErr); err != nil {
		return time.Time{}, err
	}
	next := c.nextDue(due, registered > 0)
	next = earliest(earliest(next, callNext), retryNext)
	return next, nil
}

// earliest is the earlier of two instants, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// dueCalls claims the calls that are due: every official on a call
// schedule who has not confirmed (waiting, or on the 未叫应 list) and whose
// next call is due is called again, once, each call a step of the log. It
// returns the calls claimed and when the next call is due (zero: none).
// After superiors were registered it reads the officials again, so that a
// superior the rule calls at once is called by this check.
func (d *Dispatcher) dueCalls(ctx context.Context, c *ackCheck, reload bool) ([]ackMove, time.Time, error) {
	tracks, err := d.ledger.CallTracks(ctx, c.w.ID)
	if err != nil || len(tracks) == 0 {
		return nil, time.Time{}, err
	}
	officials := c.officials
	if reload {
		if officials, err = d.ledger.Officials(ctx, c.w.ID); err != nil {
			return nil, time.Time{}, err
		}
	}
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	tries := c.rule.CallTimes()
	var claims []ledger.CallClaim
	var moves []ackMove
	for _, o := range officials {
		t, ok := tracks[o.PersonID]
		if !ok || o.State == ledger.AckConfirmed || t.Calls >= tries {
			continue
		}
		due := d.callDue(c.rule, t)
		if c.now.Before(due) {
			consider(due)
			continue
		}
		claim := ledger.CallClaim{PersonID: o.PersonID, Read: t, Next: ledger.CallTrack{Calls: t.Calls + 1, At: c.now}}
		m := ackMove{official: o, tries: o.Tries, step: ledger.Step{At: c.now, Due: due, PersonID: o.PersonID,
			Action: "call", Channel: string(warning.Voice), Try: t.Calls + 1}}
		if p, ok := c.person(o); ok && p.Phone != "" {
			m.msg = &ackMessage{notice: channels.NoticeReminder, channel: warning.Voice, to: p, aud: o.Audience}
		} else {
			claim.Next.Calls = tries
			m.step.Outcome = "no phone number"
		}
		claims = append(claims, claim)
		moves = append(moves, m)
	}
	if len(claims) == 0 {
		return nil, next, nil
	}
	made, err := d.ledger.ClaimCalls(ctx, c.w.ID, claims)
	var out []ackMove
	for i, ok := range made {
		if !ok {
			continue
		}
		moves[i].claimed = true
		out = append(out, moves[i])
		if claims[i].Next.Calls < tries {
			consider(c.now.Add(c.rule.CallInterval()))
		}
	}
	return out, next, err
}

// ackCheck is what one check of a warning's officials works on.
type ackCheck struct {
	w         *warning.Warning
	rule      *policy.Rule
	now       time.Time
	interval  time.Duration // between tries
	tries     int           // before the deadline, the first message included
	officials []ledger.Official
	log       *slog.Logger
	// base is the roster the warning was planned with; roster is it as the
	// duty schedule stands now (who is on duty at each county and township).
	base, roster region.Roster
	// sources names the officials taken from a shift, with the role each
	// stood in.
	sources map[string]string
}

// person is an official as the ladder sees them: from the warning's roster,
// in the role and division they were asked in when they stood in for it on
// a shift.
func (c *ackCheck) person(o ledger.Official) (region.Person, bool) {
	p, ok := c.base.Person(o.PersonID)
	if role, onShift := c.sources[o.PersonID]; ok && onShift {
		p.Role, p.Division = region.Role(role), o.Division
	}
	return p, ok
}

// due is when an official is next due: an interval after their last try.
func (c *ackCheck) due(o ledger.Official) time.Time { return o.LastTry.Add(c.interval) }

// openCheck loads a warning's officials; nil when nobody need confirm any
// more (the warning is gone, cancelled or expired, or its rule sets no
// deadline).
func (d *Dispatcher) openCheck(ctx context.Context, warningID string) (*ackCheck, error) {
	w, err := d.ledger.Warning(ctx, warningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := d.now()
	if !w.Live(now) {
		return nil, nil
	}
	rule := d.policy.Rule(w)
	if rule == nil || rule.AckDeadline <= 0 {
		return nil, nil
	}
	officials, err := d.ledger.Officials(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	sources, err := d.ledger.OfficialSources(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	base := d.rosterFor(ctx, w)
	return &ackCheck{w: w, rule: rule, now: now, interval: d.tickInterval(rule), tries: rule.Tries(),
		officials: officials, log: d.log.With("warning_id", w.ID),
		base: base, roster: d.withDuty(ctx, base, now), sources: sources}, nil
}

// ackMove is one rung of the 叫应 ladder for one official: what it does to
// their record, the message it sends and to whom, the superior it asks to
// confirm in turn, and the step it records.
type ackMove struct {
	official  ledger.Official
	tries     int  // the official's tries once moved
	unreached bool // onto the 未叫应 list
	msg       *ackMessage
	superior  *ledger.Official
	step      ledger.Step
	claimed   bool // made by this check, not by an overlapping one
}

// ackMessage is a reminder to an official, or an escalation to a superior
// about an official who did not confirm.
type ackMessage struct {
	notice  channels.Notice
	channel warning.Channel
	to      region.Person
	aud     warning.Audience
	about   region.Person // for an escalation
	note    string        // the escalation's text, written when it is sent
}

// dueMoves decides the move of every waiting official who is due.
func (d *Dispatcher) dueMoves(c *ackCheck) []ackMove {
	var moves []ackMove
	for _, o := range c.officials {
		if o.State != ledger.AckWaiting || c.now.Before(c.due(o)) {
			continue
		}
		person, ok := c.person(o)
		if !ok {
			c.log.Warn("official no longer in the roster", "person_id", o.PersonID)
			continue
		}
		moves = append(moves, d.nextRung(c, o, person))
	}
	return moves
}

// nextRung is what a due official is owed: a reminder on their next channel
// while tries remain; after the last, the 未叫应 list and, where the policy
// escalates, their superior told and asked to confirm.
func (d *Dispatcher) nextRung(c *ackCheck, o ledger.Official, person region.Person) ackMove {
	step := ledger.Step{At: c.now, Due: c.due(o), PersonID: o.PersonID}
	if chs := d.policy.ReminderChannels(c.rule, o.Audience, c.now); o.Tries < c.tries && len(chs) > 0 {
		ch := chs[(o.Tries-1)%len(chs)]
		step.Action, step.Channel, step.Try = "remind", string(ch), o.Tries+1
		return ackMove{official: o, tries: o.Tries + 1, step: step,
			msg: &ackMessage{notice: channels.NoticeReminder, channel: ch, to: person, aud: o.Audience}}
	}
	return d.escalation(c, o, person, step, 0)
}

// escalation puts an official on the 未叫应 list and, where the policy
// escalates, tells their superior and asks them to confirm in turn. The
// superior is told on the first of their channels that can reach them,
// starting attempt channels further on: a notice that a provider did not
// take goes on the superior's next channel when it is tried again.
func (d *Dispatcher) escalation(c *ackCheck, o ledger.Official, person region.Person, step ledger.Step, attempt int) ackMove {
	m := ackMove{official: o, tries: o.Tries, unreached: true}
	step.Action, step.Try = "unreached", o.Tries
	if c.rule.Escalate {
		if sup, ok := policy.Superior(d.tree, c.roster, person); ok {
			step.Action, step.Target = "escalate", sup.ID
			supAud := sup.Role.Audience()
			if chs := d.policy.ReminderChannels(c.rule, supAud, c.now); len(chs) > 0 {
				if ch, ok := d.reachingChannel(sup, chs, attempt); ok {
					step.Channel = string(ch)
					m.msg = &ackMessage{notice: channels.NoticeEscalation, channel: ch, to: sup, aud: supAud, about: person}
				} else {
					step.Outcome = outcomeNoChannel
				}
			}
			m.superior = &ledger.Official{PersonID: sup.ID, Audience: supAud, Division: sup.Division, LastTry: c.now}
		} else {
			step.Outcome = "no superior in the roster"
		}
	}
	m.step = step
	return m
}

// reachingChannel is the first of chs, from the attempt-th on and around,
// that the gateway sends on and the person has an address on.
func (d *Dispatcher) reachingChannel(p region.Person, chs []warning.Channel, attempt int) (warning.Channel, bool) {
	for i := range chs {
		ch := chs[(attempt+i)%len(chs)]
		if d.notifiers[ch] != nil && addressOn(p, ch) != "" {
			return ch, true
		}
	}
	return "", false
}

// Outcomes of escalation steps. An escalation is done once a provider took
// the superior's notice (outcomeSent), or when no notice can go (no
// superior, no channel reaches them). A notice no provider took is logged
// with outcomeNotSent and tried again (see unsentEscalations).
const (
	outcomeSent      = "sent"
	outcomeNotSent   = "not sent: "
	outcomeNoChannel = "no channel reaches the superior"
	outcomeOneCall   = "not called: called once already by this check"
)

// unsentEscalations tries again the escalations whose superior was never
// told: a provider did not take the notice, or the check that put the
// official on the 未叫应 list stopped before it sent it or logged the step.
// The official's state (unreached, kept with the move itself) and the
// escalation log are the record: an unreached official whose log has no
// escalation done is owed one. It is tried again an interval after the
// move or the last attempt, so that a check running at the same time as
// the one sending, which finds the official moved and the step not yet
// logged, does not send it twice; and of two checks that find it due at
// once, the one that claims the try in the ledger sends it. It returns the
// escalations due and when the next one is (zero: none).
func (d *Dispatcher) unsentEscalations(ctx context.Context, c *ackCheck) ([]ackMove, time.Time, error) {
	if !c.rule.Escalate {
		return nil, time.Time{}, nil
	}
	owed := map[string]*ledger.Official{}
	for i, o := range c.officials {
		if o.State == ledger.AckUnreached {
			owed[o.PersonID] = &c.officials[i]
		}
	}
	if len(owed) == 0 {
		return nil, time.Time{}, nil
	}
	steps, err := d.ledger.Steps(ctx, c.w.ID)
	if err != nil {
		return nil, time.Time{}, err
	}
	failed := map[string]int{}
	last := map[string]time.Time{}
	for _, s := range steps {
		if owed[s.PersonID] == nil {
			continue
		}
		switch {
		case s.Action == "escalate" && strings.HasPrefix(s.Outcome, outcomeNotSent):
			failed[s.PersonID]++
			last[s.PersonID] = s.At
		case s.Action == "escalate" || s.Action == "unreached":
			delete(owed, s.PersonID)
		}
	}
	var moves []ackMove
	var next time.Time
	for _, o := range c.officials {
		if owed[o.PersonID] == nil {
			continue
		}
		due := o.LastTry
		if last[o.PersonID].After(due) {
			due = last[o.PersonID]
		}
		due = due.Add(c.interval)
		if c.now.Before(due) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		person, ok := c.person(o)
		if !ok {
			c.log.Warn("official no longer in the roster", "person_id", o.PersonID)
			continue
		}
		// Two checks at once both find it owed: one tries.
		mine, err := d.ledger.ClaimEscalationRetry(ctx, c.w.ID, o.PersonID, failed[o.PersonID], c.now, c.interval)
		if err != nil {
			return moves, next, err
		}
		if !mine {
			// The other check's; back an interval on in case it stopped.
			if again := c.now.Add(c.interval); next.IsZero() || again.Before(next) {
				next = again
			}
			continue
		}
		m := d.escalation(c, o, person, ledger.Step{At: c.now, Due: due, PersonID: o.PersonID}, failed[o.PersonID])
		m.claimed = true
		moves = append(moves, m)
	}
	return moves, next, nil
}

// oneCallEach sees that a check calls a person once: a reminder or
// handover by call, or a scheduled call, to someone this check calls
// already (a voice-only official whose reminder and scheduled call fall
// due together, a superior told by call and due a call at once) is not
// placed. Its step says so; a scheduled call stays claimed, counted as
// placed by that one call. An escalation is always placed: it names the
// officials the superior is to chase.
func (d *Dispatcher) oneCallEach(moves []ackMove) {
	if d.notifiers[warning.Voice] == nil {
		return
	}
	called := map[string]bool{}
	for _, m := range moves {
		if m.msg != nil && m.msg.channel == warning.Voice && m.msg.notice == channels.NoticeEscalation && m.msg.to.Phone != "" {
			called[m.msg.to.ID] = true
		}
	}
	for i := range moves {
		m := &moves[i]
		if m.msg == nil || m.msg.channel != warning.Voice || m.msg.notice == channels.NoticeEscalation || m.msg.to.Phone == "" {
			continue
		}
		if called[m.msg.to.ID] {
			m.msg, m.step.Outcome = nil, outcomeOneCall
			continue
		}
		called[m.msg.to.ID] = true
	}
}

// escalationNote tells a superior whom to chase: the first ten by name,
// role, division and phone, and how many in all.
func (d *Dispatcher) escalationNote(c *ackCheck, about []region.Person) string {
	named := make([]string, 0, min(len(about), 10))
	for _, p := range about[:min(len(about), 10)] {
		div := p.Division
		if dv, ok := d.tree.Get(div); ok {
			div = dv.Name
		}
		named = append(named, fmt.Sprintf("%s（%s，%s，电话%s）", p.Name, p.Role.Chinese(), div, p.Phone))
	}
	deadline := time.Duration(c.rule.AckDeadline)
	if len(about) == 1 {
		return fmt.Sprintf("%s在%s内未确认收到此预警，请立即联系并督促落实。", named[0], deadline)
	}
	more := ""
	if len(about) > len(named) {
		more = fmt.Sprintf("等%d人", len(about))
	}
	return fmt.Sprintf("以下%d人在%s内未确认收到此预警，请立即联系并督促落实：%s%s。", len(about), deadline, strings.Join(named, "；"), more)
}

// perSuperior merges a check's escalations to the same superior into one
// message naming everyone under them who did not confirm: a township duty
// officer whose villages stay silent gets one message, not dozens, and a
// city-wide warning makes a few hundred provider calls, not thousands.
func (d *Dispatcher) perSuperior(c *ackCheck, msgs []*ackMessage) []*ackMessage {
	var out []*ackMessage
	about := map[string][]region.Person{}
	for _, m := range msgs {
		if _, ok := about[m.to.ID]; !ok {
			out = append(out, m)
		}
		about[m.to.ID] = append(about[m.to.ID], m.about)
	}
	for i, m := range out {
		merged := *m
		list := about[m.to.ID]
		slices.SortFunc(list, func(a, b region.Person) int { return strings.Compare(a.ID, b.ID) })
		merged.note = d.escalationNote(c, list)
		out[i] = &merged
	}
	return out
}

// claimMoves records each move in the ledger and returns those it made: an
// official who confirmed meanwhile, or whom an overlapping check moved
// first, is left alone.
func (d *Dispatcher) claimMoves(ctx context.Context, c *ackCheck, moves []ackMove) ([]ackMove, error) {
	tries := make([]ledger.Try, len(moves))
	for i, m := range moves {
		tries[i] = ledger.Try{Official: m.official, Tries: m.tries, Unreached: m.unreached}
	}
	moved, err := d.ledger.MarkTries(ctx, c.w.ID, c.now, tries)
	var claimed []ackMove
	for i, ok := range moved {
		if moves[i].claimed = ok; ok {
			claimed = append(claimed, moves[i])
		}
	}
	return claimed, err
}

// registerSuperiors asks the superiors told of an escalation, and those a
// shift handed over to, to confirm in turn, their first try counted now,
// remembering who of them stands in on a shift; it returns how many were
// not asked already.
func (d *Dispatcher) registerSuperiors(ctx context.Context, c *ackCheck, moves []ackMove) (int, error) {
	var sups []ledger.Official
	for _, m := range moves {
		if m.superior != nil {
			sups = append(sups, *m.superior)
		}
	}
	n, err := d.ledger.RegisterOfficials(ctx, c.w.ID, sups)
	if dr, ok := c.roster.(*dutyRoster); ok && err == nil {
		err = d.recordSources(ctx, c.w.ID, dr, sups)
	}
	tracks := map[string]ledger.CallTrack{}
	for _, s := range sups {
		if c.rule.Calls(s.Audience) {
			tracks[s.PersonID] = ledger.CallTrack{At: c.now}
		}
	}
	if err == nil {
		err = d.ledger.RegisterCalls(ctx, c.w.ID, tracks)
	}
	return n, err
}

// handovers hands over from officials who stood in on a shift and reach
// their deadline unconfirmed after that shift ended: whoever stands in
// their role now is sent the warning and asked to confirm in turn (besides
// their superior being told, as for anyone). The steps name both.
func (d *Dispatcher) handovers(c *ackCheck, moves []ackMove) []ackMove {
	asked := map[string]bool{}
	for _, o := range c.officials {
		asked[o.PersonID] = true
	}
	var out []ackMove
	for _, m := range moves {
		role, onShift := c.sources[m.official.PersonID]
		if !m.unreached || !onShift {
			continue
		}
		c.roster.People(m.official.Division, func(p region.Person) bool {
			if string(p.Role) != role || asked[p.ID] {
				return true
			}
			asked[p.ID] = true
			aud := p.Role.Audience()
			step := ledger.Step{At: c.now, PersonID: m.official.PersonID, Action: "handover", Target: p.ID, Try: m.official.Tries}
			h := ackMove{official: m.official, claimed: true,
				superior: &ledger.Official{PersonID: p.ID, Audience: aud, Division: p.Division, LastTry: c.now}}
			if chs := d.policy.ReminderChannels(c.rule, aud, c.now); len(chs) > 0 {
				step.Channel = string(chs[0])
				h.msg = &ackMessage{notice: channels.NoticeReminder, channel: chs[0], to: p, aud: aud}
			}
			h.step = step
			out = append(out, h)
			return true
		})
	}
	return out
}

// sentKey names one message of a check: a notice on a channel to a person.
type sentKey struct {
	notice  channels.Notice
	channel warning.Channel
	to      string
}

// sendMoves sends the moves' messages, reminders first. Messages with the
// same text go in one provider call (reminders share theirs; a superior's
// escalation names the officials under them), in batches the provider
// takes, a few calls at once. It returns why each message that no provider
// took was not sent.
func (d *Dispatcher) sendMoves(ctx context.Context, c *ackCheck, moves []ackMove) map[sentKey]string {
	var batches []*channels.Batch
	for _, notice := range []channels.Notice{channels.NoticeReminder, channels.NoticeEscalation} {
		byCh := map[warning.Channel][]*ackMessage{}
		var chs []warning.Channel
		for _, m := range moves {
			if m.msg != nil && m.msg.notice == notice && d.notifiers[m.msg.channel] != nil {
				if _, ok := byCh[m.msg.channel]; !ok {
					chs = append(chs, m.msg.channel)
				}
				byCh[m.msg.channel] = append(byCh[m.msg.channel], m.msg)
			}
		}
		for _, ch := range chs {
			msgs := byCh[ch]
			if notice == channels.NoticeEscalation {
				msgs = d.perSuperior(c, msgs)
			}
			batches = append(batches, d.ackBatches(c, notice, ch, msgs)...)
		}
	}
	work := make(chan *channels.Batch)
	var wg sync.WaitGroup
	var mu sync.Mutex
	unsent := map[sentKey]string{}
	for range min(ackSenders, len(batches)) {
		wg.Go(func() {
			for b := range work {
				cctx, cancel := context.WithTimeout(ctx, d.cfg.ProviderTimeout)
				accepted, _, err := d.notifiers[b.Channel].Notify(cctx, b)
				cancel()
				why := notTaken(b, accepted, err)
				if len(why) > 0 {
					c.log.Warn("escalation messages not sent", "recipients", len(why), "channel", string(b.Channel), "notice", string(b.Notice), "err", err)
				}
				mu.Lock()
				for id, reason := range why {
					unsent[sentKey{b.Notice, b.Channel, id}] = reason
				}
				mu.Unlock()
			}
		})
	}
	for _, b := range batches {
		work <- b
	}
	close(work)
	wg.Wait()
	return unsent
}

// notTaken says, by person id, why the provider took no message of a batch
// to them: it refused them, or did not take them on (the call's error).
func notTaken(b *channels.Batch, accepted []channels.Receipt, err error) map[string]string {
	took := make([]bool, len(b.Recipients))
	why := map[string]string{}
	for _, rc := range accepted {
		if rc.Index < 0 || rc.Index >= len(b.Recipients) {
			continue
		}
		if rc.State == warning.Failed {
			why[b.Recipients[rc.Index].ID] = cmp.Or(rc.Reason, "refused by the provider")
		} else {
			took[rc.Index] = true
		}
	}
	for i, r := range b.Recipients {
		if _, refused := why[r.ID]; !took[i] && !refused {
			why[r.ID] = "not taken by the provider"
			if err != nil {
				why[r.ID] = err.Error()
			}
		}
	}
	return why
}

// ackSenders is how many provider calls one check makes at once.
const ackSenders = 8

// ackBatches groups one channel's messages of a kind into provider calls:
// one text a call, in batches the provider takes.
func (d *Dispatcher) ackBatches(c *ackCheck, notice channels.Notice, ch warning.Channel, msgs []*ackMessage) []*channels.Batch {
	byNote := map[string][]warning.Recipient{}
	var notes []string
	for _, m := range msgs {
		addr := addressOn(m.to, ch)
		if addr == "" {
			continue
		}
		if _, ok := byNote[m.note]; !ok {
			notes = append(notes, m.note)
		}
		byNote[m.note] = append(byNote[m.note], warning.Recipient{ID: m.to.ID, Address: addr, Audience: m.aud, Division: m.to.Division, Name: m.to.Name})
	}
	w := c.w
	var out []*channels.Batch
	for _, note := range notes {
		rs := byNote[note]
		for i := 0; i < len(rs); i += d.policy.Batch(ch) {
			part := rs[i:min(i+d.policy.Batch(ch), len(rs))]
			b := &channels.Batch{ID: "esc/" + w.ID + "/" + string(notice) + "/" + part[0].ID, Channel: ch, Notice: notice, Warning: w, Note: note, Recipients: part}
			if d.cfg.AckURL != nil {
				b.AckURL = func(r warning.Recipient) string {
					return d.cfg.AckURL(w, warning.Ref{WarningID: w.ID, Channel: ch, RecipientID: r.ID})
				}
			}
			out = append(out, b)
		}
	}
	return out
}

// recordMoves writes the moves' steps to the warning's escalation log.
func (d *Dispatcher) recordMoves(ctx context.Context, c *ackCheck, moves []ackMove) error {
	if len(moves) == 0 {
		return nil
	}
	steps := make([]ledger.Step, len(moves))
	for i, m := range moves {
		steps[i] = m.step
	}
	return d.recordSteps(ctx, c.w.ID, steps)
}

// recordSteps logs escalation steps and counts them with their lateness.
func (d *Dispatcher) recordSteps(ctx context.Context, warningID string, steps []ledger.Step) error {
	if err := d.ledger.AddSteps(ctx, warningID, steps); err != nil {
		return err
	}
	d.metrics.Escalations.Add(float64(len(steps)))
	for _, s := range steps {
		if !s.Due.IsZero() {
			d.metrics.EscalationLateness.Observe(max(0, s.At.Sub(s.Due).Seconds()))
		}
	}
	return nil
}

// nextDue is when the next check is due: the earliest instant at which an
// official still waiting is due, counting those this check asked again and,
// when it registered any, the superiors asked to confirm in turn. Zero when
// nobody is waiting. An official an overlapping check moved first counts
// as asked again now: a check too many finds nobody due and names the next,
// a check too few would leave officials waiting for ever.
func (c *ackCheck) nextDue(due []ackMove, registered bool) time.Time {
	var next time.Time
	consider := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, o := range c.officials {
		if o.State == ledger.AckWaiting && c.now.Before(c.due(o)) {
			consider(c.due(o))
		}
	}
	for _, m := range due {
		if !m.claimed || !m.unreached {
			consider(c.now.Add(c.interval))
		}
	}
	if registered {
		consider(c.now.Add(c.interval))
	}
	return next
}

// addressOn is a person's address on a channel.
func addressOn(p region.Person, ch warning.Channel) string {
	switch ch {
	case warning.SMS, warning.Voice:
		return p.Phone
	case warning.WeChat:
		return p.WeChatOpenID
	case warning.WeCom:
		return p.WeComUserID
	}
	return ""
}
