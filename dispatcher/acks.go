package dispatcher

import (
	"context"
	"errors"
	"fmt"
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
// the person was asked to confirm and has not. A reply from a number the
// roster does not know is logged and ignored.
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
	for _, id := range ids {
		if _, err := d.Acknowledge(ctx, id, person.ID, "sms", Actor{PersonID: person.ID, From: channels.MaskPhone(r.From)}); err != nil && !errors.Is(err, ledger.ErrNotAddressed) {
			return err
		}
	}
	d.metrics.Replies.WithLabelValues("confirmed").Inc()
	return nil
}
