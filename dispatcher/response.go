package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// Actor is who does what the audit trail records: a bureau user (in the
// console, or through an API token), the bootstrap token, an official
// through their own link or phone, or the gateway itself.
type Actor struct {
	// User is the bureau user the action counts for, "admin" for the
	// bootstrap token; empty for an official and for the gateway.
	User string
	// Via says how the user acted when not in the console: "token:<name>".
	Via string
	// PersonID is the official acting for themselves; empty for the bureau.
	PersonID string
	From     string // IP address or masked phone number
}

// Bureau reports whether the actor is the bureau, not an official.
func (a Actor) Bureau() bool { return a.PersonID == "" }

// String is how the audit trail names the actor: "duty", "duty/token:feed",
// "admin", a person id, or "system".
func (a Actor) String() string {
	switch {
	case a.PersonID != "":
		return a.PersonID
	case a.User == "":
		return "system"
	case a.Via != "":
		return a.User + "/" + a.Via
	}
	return a.User
}

func (a Actor) who() string { return a.String() }

// ErrForbidden is returned when an official acts outside their division or
// on households that are not theirs.
var ErrForbidden = errors.New("not allowed")

// MarkHousehold records whether a household on a call list was reached.
// Its grid worker, the officials of its village, and the bureau may mark it;
// reached households count as delivered. A mark on a warning no longer in
// force records nothing and returns InForce's error, as a confirmation
// does: a *SupersededError naming the current version when an update
// replaced it (the household is on the current version's list, whose
// coverage a mark on the old one would never reach), or an error wrapping
// ErrNotLive when it was lifted or expired.
func (d *Dispatcher) MarkHousehold(ctx context.Context, w *warning.Warning, a Actor, householdID string, m ledger.Mark) error {
	if err := d.InForce(ctx, w); err != nil {
		return err
	}
	roster := d.rosterFor(ctx, w)
	fb, err := d.markTarget(ctx, w, roster, a, householdID)
	if err != nil {
		return err
	}
	if fb != nil {
		return d.markFallback(ctx, w, a, *fb, m)
	}
	m.By = a.who()
	if err := d.ledger.SetMark(ctx, w.ID, householdID, m); err != nil {
		return err
	}
	detail := "not reached"
	if m.Reached {
		detail = "reached by " + m.Method
		ref, err := d.deliveryRef(ctx, w, roster, warning.CallList, householdID)
		if err != nil {
			return err
		}
		rep := warning.Report{Ref: ref, State: warning.Delivered, At: m.At}
		if err := d.Record(ctx, []warning.Report{rep}); err != nil {
			return err
		}
	}
	if m.Note != "" {
		detail += ": " + m.Note
	}
	return d.ledger.Audit(ctx, ledger.AuditEntry{Who: a.who(), Action: "calllist", WarningID: w.ID, Target: householdID, Detail: detail, From: a.From})
}

// CheckMark says whether the actor may mark a household (or a resident on
// the fallback list) of a warning's call list, recording nothing: nil, or
// the error MarkHousehold would return for it (ledger.ErrNotFound for one
// not on the list, ErrForbidden for one that is not the actor's). It does
// not check that the warning is in force: InForce does, once for many.
func (d *Dispatcher) CheckMark(ctx context.Context, w *warning.Warning, a Actor, householdID string) error {
	_, err := d.markTarget(ctx, w, d.rosterFor(ctx, w), a, householdID)
	return err
}

// markTarget checks that the actor may mark a household or listed
// resident; for a resident it returns their fallback entry, for a
// household of the roster nil.
func (d *Dispatcher) markTarget(ctx context.Context, w *warning.Warning, roster region.Roster, a Actor, householdID string) (*ledger.FallbackEntry, error) {
	hh, ok := roster.Household(householdID)
	if !ok {
		e, ok, err := d.ledger.FallbackEntryOf(ctx, w.ID, householdID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("household %s: %w", householdID, ledger.ErrNotFound)
		}
		if !a.Bureau() {
			p, ok := roster.Person(a.PersonID)
			allowed := ok && (e.GridWorker == p.ID ||
				(p.Division == e.Village && (p.Role == region.VillageOfficer || p.Role == region.InfoOfficer)))
			if !allowed {
				return nil, fmt.Errorf("%w: resident %s is on the list of another grid worker or village", ErrForbidden, householdID)
			}
		}
		return &e, nil
	}
	if !a.Bureau() {
		p, ok := roster.Person(a.PersonID)
		allowed := ok && (hh.GridWorker == p.ID ||
			(p.Division == hh.Division && (p.Role == region.VillageOfficer || p.Role == region.InfoOfficer)))
		if !allowed {
			return nil, fmt.Errorf("%w: household %s is on the list of another grid worker or village", ErrForbidden, householdID)
		}
	}
	return nil, nil
}

// markFallback records a grid worker's mark of a resident put on the call
// list because no channel reached them: the visit has started, so a late
// delivery report leaves them on the list, and a resident reached counts
// for coverage as reached on the call list. A correction to not reached
// undoes the visit: unless a channel delivered to the resident, they no
// longer count as reached and are on the list to visit again.
func (d *Dispatcher) markFallback(ctx context.Context, w *warning.Warning, a Actor, e ledger.FallbackEntry, m ledger.Mark) error {
	personID := e.PersonID
	m.By = a.who()
	if m.At.IsZero() {
		m.At = d.now()
	}
	if _, err := d.ledger.StartVisit(ctx, w.ID, personID); err != nil {
		return err
	}
	if err := d.ledger.SetMark(ctx, w.ID, personID, m); err != nil {
		return err
	}
	detail := "not reached"
	if m.Reached {
		detail = "reached by " + m.Method
		err := d.ledger.Cover(ctx, w.ID, m.At, []ledger.Entry{{RecipientID: personID, Audience: warning.Residents, Division: e.Village}})
		if err != nil {
			return err
		}
	} else {
		undone, err := d.ledger.Uncover(ctx, w.ID, e)
		if err != nil {
			return err
		}
		if undone {
			detail += " (corrected: no longer counted as reached)"
		}
	}
	if m.Note != "" {
		detail += ": " + m.Note
	}
	return d.ledger.Audit(ctx, ledger.AuditEntry{Who: a.who(), Action: "calllist", WarningID: w.ID, Target: personID, Detail: "fallback: " + detail, From: a.From})
}

// TypeCallListCheck is the task that, once a call list's deadline passes,
// tells each village officer which households are still not reached.
const TypeCallListCheck = "escalate:calllist"

func (d *Dispatcher) scheduleCallListCheck(ctx context.Context, w *warning.Warning) error {
	rule := d.policy.Rule(w)
	if rule == nil || rule.CallListDeadline <= 0 {
		return nil
	}
	return d.enqueueTimer(ctx, TypeCallListCheck, "calllist/"+w.ID,
		timerAt(w.ID, w.Accepted.Add(rule.CallListDeadline.Std())))
}

func (d *Dispatcher) callListTask(ctx context.Context, t *asynq.Task) error {
	p, err := decodeTimer(t)
	if err != nil {
		return err
	}
	if err := d.awaitDue(ctx, p.due()); err != nil {
		return err
	}
	_, err = d.CheckCallList(ctx, p.WarningID)
	return err
}

// CheckCallList tells the officer of each village with households not yet
// reached who they are, records the step, and returns how many households
// are left.
func (d *Dispatcher) CheckCallList(ctx context.Context, warningID string) (int, error) {
	w, err := d.ledger.Warning(ctx, warningID)
	if err != nil {
		return 0, err
	}
	now := d.now()
	if !w.Live(now) {
		return 0, nil
	}
	var due time.Time
	if rule := d.policy.Rule(w); rule != nil && rule.CallListDeadline > 0 {
		due = w.Accepted.Add(rule.CallListDeadline.Std())
	}
	roster := d.rosterFor(ctx, w)
	left := map[string][]string{} // village → household heads
	err = d.ledger.Deliveries(ctx, w.ID, warning.CallList, func(dv ledger.Delivery) bool {
		if dv.State == warning.Delivered || dv.State == warning.Expired {
			return true
		}
		name := dv.Ref.RecipientID
		if hh, ok := roster.Household(dv.Ref.RecipientID); ok {
			name = hh.Head
		}
		left[dv.Division] = append(left[dv.Division], name)
		return true
	})
	if err != nil {
		return 0, err
	}
	total := 0
	var steps []ledger.Step
	notifier := d.notifiers[warning.SMS]
	for village, heads := range left {
		total += len(heads)
		var officer region.Person
		roster.People(village, func(p region.Person) bool {
			if p.Role == region.VillageOfficer {
				officer = p
				return false
			}
			return true
		})
		step := ledger.Step{At: now, Due: due, Action: "calllist_escalate", Target: officer.ID, Try: len(heads)}
		if officer.ID == "" {
			step.Outcome = "no village officer in the roster for " + village
			steps = append(steps, step)
			continue
		}
		shown := heads
		if len(shown) > 10 {
			shown = shown[:10]
		}
		note := fmt.Sprintf("本村仍有%d户未传递到位（户主：%s%s），请立即组织人员上门传递。", len(heads), strings.Join(shown, "、"), map[bool]string{true: "等", false: ""}[len(heads) > 10])
		if notifier != nil && officer.Phone != "" {
			b := &channels.Batch{ID: "calllist/" + w.ID + "/" + village, Channel: warning.SMS, Notice: channels.NoticeEscalation, Warning: w, Note: note,
				Recipients: []warning.Recipient{{ID: officer.ID, Address: officer.Phone, Audience: warning.VillageOfficials, Division: officer.Division, Name: officer.Name}}}
			cctx, cancel := context.WithTimeout(ctx, d.cfg.ProviderTimeout)
			_, _, err := notifier.Notify(cctx, b)
			cancel()
			step.Channel = string(warning.SMS)
			if err != nil {
				step.Outcome = "not sent: " + err.Error()
			}
		}
		steps = append(steps, step)
	}
	if len(steps) > 0 {
		if err := d.recordSteps(ctx, w.ID, steps); err != nil {
			return total, err
		}
	}
	return total, nil
}

// DeliveryRef names the delivery of warning w on a channel to a person or
// household of the roster the warning was planned with, as the plan's
// batch named it (with its bucket; see ledger.Locate).
func (d *Dispatcher) DeliveryRef(ctx context.Context, w *warning.Warning, ch warning.Channel, recipientID string) (warning.Ref, error) {
	return d.deliveryRef(ctx, w, d.rosterFor(ctx, w), ch, recipientID)
}

func (d *Dispatcher) deliveryRef(ctx context.Context, w *warning.Warning, roster region.Roster, ch warning.Channel, id string) (warning.Ref, error) {
	e := ledger.Entry{RecipientID: id}
	if p, ok := roster.Person(id); ok {
		e.Audience, e.Division = p.Role.Audience(), p.Division
	} else if h, ok := roster.Household(id); ok {
		e.Audience, e.Division = warning.Households, h.Division
	}
	return d.ledger.RefFor(ctx, w.ID, ch, e)
}
