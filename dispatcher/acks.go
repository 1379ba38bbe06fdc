package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"warngate/channels"
	"warngate/ledger"
	"warngate/warning"
)

// The dispatcher takes what voice adapters' calls come to: reports through
// Record, and key presses "1" through Confirm.
var _ channels.CallSink = (*Dispatcher)(nil)

// Confirm implements channels.Confirmer: a key press "1" on a call confirms
// receipt as the official's link does, through Acknowledge, so it is
// audited the same way (the official as the actor, method and from as
// given) and ends their escalation the same way. A key press for a warning
// that is no longer live (lifted, superseded, expired, unknown), or from a
// person who was not asked to confirm it, changes nothing and returns an
// error wrapping channels.ErrNotConfirmable.
func (d *Dispatcher) Confirm(ctx context.Context, ref warning.Ref, method, from string) error {
	w, err := d.ledger.Warning(ctx, ref.WarningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("dispatcher: confirm %s: no such warning: %w", ref, channels.ErrNotConfirmable)
	}
	if err != nil {
		return fmt.Errorf("dispatcher: confirm %s: %w", ref, err)
	}
	if now := d.now(); !w.Live(now) {
		state := string(w.State)
		if w.Expired(now) {
			state = "expired"
		}
		return fmt.Errorf("dispatcher: confirm %s: the warning is %s, no longer live: %w", ref, state, channels.ErrNotConfirmable)
	}
	_, err = d.Acknowledge(ctx, ref.WarningID, ref.RecipientID, method, Actor{PersonID: ref.RecipientID, From: from})
	if errors.Is(err, ledger.ErrNotAddressed) {
		return fmt.Errorf("dispatcher: confirm %s: %w: %w", ref, err, channels.ErrNotConfirmable)
	}
	return err
}

// ErrNotLive is returned when an official confirms a warning that is no
// longer in force: lifted, expired, or replaced by an update (then as a
// *SupersededError). Nothing is recorded. It wraps ledger.ErrState.
var ErrNotLive = fmt.Errorf("the warning is no longer in force: %w", ledger.ErrState)

// SupersededError says that an update replaced a warning: an official is
// to read and confirm the version now in force, not the one they opened.
type SupersededError struct {
	WarningID string
	// Current is the last version of the chain of updates that followed:
	// in force, or itself lifted, expired or awaiting approval. Nil when
	// the update could not be found.
	Current *warning.Warning
}

func (e *SupersededError) Error() string {
	if e.Current == nil {
		return fmt.Sprintf("warning %s was replaced by an update", e.WarningID)
	}
	return fmt.Sprintf("warning %s was replaced by an update: the current version is %s (%s)", e.WarningID, e.Current.ID, e.Current.State)
}

func (e *SupersededError) Unwrap() error { return ErrNotLive }

// InForce says whether an official may confirm a warning now: nil while it
// is live; a *SupersededError naming the current version when an update
// replaced it; otherwise an error wrapping ErrNotLive that says whether it
// was lifted or expired.
func (d *Dispatcher) InForce(ctx context.Context, w *warning.Warning) error {
	now := d.now()
	switch {
	case w.Live(now):
		return nil
	case w.State == warning.StateSuperseded:
		cur, err := d.Current(ctx, w)
		if err != nil {
			d.log.Warn("the update that replaced a warning not found", "warning_id", w.ID, "err", err)
			cur = nil
		}
		return &SupersededError{WarningID: w.ID, Current: cur}
	case w.State == warning.StateAccepted || w.State == warning.StateActive:
		return fmt.Errorf("warning %s expired: %w", w.ID, ErrNotLive)
	}
	return fmt.Errorf("warning %s is %s: %w", w.ID, w.State, ErrNotLive)
}

// maxUpdates bounds a chain of updates followed; maxScan the warnings
// looked through for the update that replaced one.
const (
	maxUpdates = 50
	maxScan    = 2000
)

// Current follows a superseded warning's updates to its newest version:
// the update that replaced it, the one that replaced that, and so on. A
// warning no update replaced is its own current version.
func (d *Dispatcher) Current(ctx context.Context, w *warning.Warning) (*warning.Warning, error) {
	for hops := 0; w.State == warning.StateSuperseded; hops++ {
		if hops == maxUpdates {
			return nil, fmt.Errorf("dispatcher: warning %s: more than %d updates", w.ID, maxUpdates)
		}
		next, err := d.replacement(ctx, w)
		if err != nil {
			return nil, err
		}
		w = next
	}
	return w, nil
}

// replacement finds the update that references a warning, among those
// stored after it or in the same millisecond (listed before it or beside
// it, newest first).
func (d *Dispatcher) replacement(ctx context.Context, old *warning.Warning) (*warning.Warning, error) {
	if id, err := d.ledger.SupersededBy(ctx, old.ID); err != nil {
		return nil, err
	} else if id != "" {
		return d.ledger.Warning(ctx, id)
	}
	// Replaced before updates were named on the warning they replace.
	const page = 100
	since := old.Accepted.UnixMilli()
	for off := 0; off < maxScan; off += page {
		ids, err := d.ledger.Warnings(ctx, off, page)
		if err != nil {
			return nil, err
		}
		for _, x := range ids {
			if x == old.ID {
				continue
			}
			w, err := d.ledger.Warning(ctx, x)
			if errors.Is(err, ledger.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if w.Accepted.UnixMilli() < since {
				return nil, fmt.Errorf("warning %s: no update replaced it: %w", old.ID, ledger.ErrNotFound)
			}
			if w.MsgType == warning.MsgUpdate && slices.Contains(w.References, old.ID) {
				return w, nil
			}
		}
		if len(ids) < page {
			break
		}
	}
	return nil, fmt.Errorf("warning %s: no update replaced it: %w", old.ID, ledger.ErrNotFound)
}

// AcknowledgeOwn records an official's own confirmation of receipt, by
// their link or a reply, through Acknowledge, of a warning still in force.
// For one no longer in force it records nothing and returns InForce's
// error: a *SupersededError when an update replaced it, for the official
// to confirm the current version after reading it (confirming for them a
// text they have not seen would end their reminders and escalation on a
// false record), or an error wrapping ErrNotLive when it was lifted or
// expired.
func (d *Dispatcher) AcknowledgeOwn(ctx context.Context, warningID, personID, method string, by Actor) (first bool, err error) {
	w, err := d.ledger.Warning(ctx, warningID)
	if err != nil {
		return false, fmt.Errorf("dispatcher: acknowledge %s: %w", warningID, err)
	}
	if err := d.InForce(ctx, w); err != nil {
		return false, err
	}
	return d.Acknowledge(ctx, warningID, personID, method, by)
}

// Acknowledge records an official's confirmation of receipt and audits it,
// naming who confirmed: the official, or the bureau user who confirmed on
// their behalf (by phone to the duty room, say), and then both. Confirming
// twice is harmless; first reports whether this call confirmed.
func (d *Dispatcher) Acknowledge(ctx context.Context, warningID, personID, method string, by Actor) (first bool, err error) {
	first, err = d.ledger.Acknowledge(ctx, warningID, personID, method)
	if errors.Is(err, ledger.ErrNotReplicated) {
		// Recorded on the master: the official is not asked to try again.
		d.log.Error("acknowledgement recorded without a replica's copy", "warning_id", warningID, "err", err)
		d.metrics.Unreplicated.Inc()
		err = nil
	}
	if err != nil {
		return false, err
	}
	if first {
		d.metrics.Acks.WithLabelValues(method).Inc()
	}
	detail := "confirmed"
	if !first {
		detail = "confirmed again"
	}
	detail += " by " + method
	if by.PersonID != personID {
		detail += " on behalf of " + personID
	}
	if err := d.ledger.Audit(ctx, ledger.AuditEntry{Who: by.String(), Action: "acknowledge", WarningID: warningID, Target: personID, Detail: detail, From: by.From}); err != nil {
		d.log.Warn("audit not written", "err", err)
	}
	return first, nil
}

// confirmWords are replies that mean "received".
var confirmWords = []string{"1", "收到", "确认", "已收到", "好", "ok", "yes", "y"}

// HandleReply takes a reply from a phone: "1" (or 收到) confirms every warning
// still in force that the person was asked to confirm and has not (not one
// lifted, expired or replaced by an update, whose current version they are
// asked to confirm in its own right). A reply from a number the roster does
// not know is logged and ignored.
func (d *Dispatcher) HandleReply(ctx context.Context, r channels.Reply) error {
	text := strings.ToLower(strings.TrimSpace(r.Text))
	person, ok := d.roster.ByPhone(r.From)
	if !ok {
		d.metrics.Replies.WithLabelValues("unknown_number").Inc()
		d.log.Info("reply from an unknown number ignored", "from", channels.MaskPhone(r.From))
		return nil
	}
	understood := false
	for _, w := range confirmWords {
		if text == w {
			understood = true
		}
	}
	if !understood {
		d.metrics.Replies.WithLabelValues("not_understood").Inc()
		d.ledger.Audit(ctx, ledger.AuditEntry{Who: person.ID, Action: "reply", Detail: "not understood: " + r.Text, From: channels.MaskPhone(r.From)})
		return nil
	}
	ids, err := d.ledger.AwaitingFrom(ctx, person.ID)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		d.metrics.Replies.WithLabelValues("nothing_pending").Inc()
		return nil
	}
	confirmed := false
	for _, id := range ids {
		_, err := d.AcknowledgeOwn(ctx, id, person.ID, "sms", Actor{PersonID: person.ID, From: channels.MaskPhone(r.From)})
		switch {
		case err == nil:
			confirmed = true
		case errors.Is(err, ErrNotLive), errors.Is(err, ledger.ErrNotAddressed), errors.Is(err, ledger.ErrNotFound):
		default:
			return err
		}
	}
	if !confirmed {
		d.metrics.Replies.WithLabelValues("nothing_pending").Inc()
		return nil
	}
	d.metrics.Replies.WithLabelValues("confirmed").Inc()
	return nil
}
