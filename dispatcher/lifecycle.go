package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// TypeLift is the task that tells everyone a cancelled warning reached that
// it is lifted, and stops loudspeakers and screens at their providers.
const TypeLift = "notify:lifted"

// Cancel lifts (解除) a warning. Batches not yet sent become no-ops: their
// recipients are recorded as expired with the reason "warning cancelled";
// escalation stops; everyone already reached gets a lifted notice.
func (d *Dispatcher) Cancel(ctx context.Context, id string, by Actor) (*warning.Warning, error) {
	w, err := d.ledger.Warning(ctx, id)
	if err != nil {
		return nil, err
	}
	switch w.State {
	case warning.StateAccepted, warning.StateActive, warning.StateAwaitingApproval:
	default:
		return nil, fmt.Errorf("warning %s is %s: %w", id, w.State, ledger.ErrState)
	}
	wasSent := w.State != warning.StateAwaitingApproval
	at := d.now()
	if err := d.ledger.Cancel(ctx, id, at, !wasSent); err != nil {
		return nil, err
	}
	w.State, w.Cancelled, w.Withdrawn = warning.StateCancelled, at, !wasSent
	d.audit(ctx, ledger.AuditEntry{Who: by.String(), Action: "cancel", WarningID: id, Detail: w.Headline, From: by.From})
	if wasSent {
		payload, _ := json.Marshal(planPayload{WarningID: id})
		_, err := d.enqueueIn(ctx, id, QueueControl, asynq.NewTask(TypeLift, payload),
			asynq.TaskID("lift/"+id), asynq.MaxRetry(d.cfg.MaxRetry))
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return w, fmt.Errorf("dispatcher: lifted notices of %s not queued: %w", id, err)
		}
	}
	return w, nil
}

func (d *Dispatcher) liftTask(ctx context.Context, t *asynq.Task) error {
	var p planPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("lift: %v: %w", err, asynq.SkipRetry)
	}
	w, err := d.ledger.Warning(ctx, p.WarningID)
	if err != nil {
		return err
	}
	return d.Lift(ctx, w)
}

// Lift sends the lifted notice to every person a cancelled warning reached,
// on the channel that reached them, and cancels what keeps playing.
func (d *Dispatcher) Lift(ctx context.Context, w *warning.Warning) error {
	roster := d.rosterFor(ctx, w)
	var steps []ledger.Step
	for _, ch := range warning.Channels {
		notifier := d.notifiers[ch]
		if notifier == nil {
			continue
		}
		if c, ok := notifier.(channels.Canceller); ok {
			ids, err := d.ledger.ProviderIDs(ctx, w.ID, ch)
			if err != nil {
				return err
			}
			outcome := "cancelled at the provider"
			if len(ids) > 0 {
				if err := c.Cancel(ctx, ids); err != nil {
					return fmt.Errorf("lift %s: cancel at the %s provider: %w", w.ID, ch, err)
				}
			}
			steps = append(steps, ledger.Step{At: d.now(), Action: "lifted", Channel: string(ch), Try: len(ids), Outcome: outcome})
			continue
		}
		if ch == warning.CallList {
			continue // grid workers see the warning lifted on their page
		}
		var batch []warning.Recipient
		sent := 0
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			b := &channels.Batch{ID: "lift/" + w.ID + "/" + string(ch) + "/" + strconv.Itoa(sent), Channel: ch, Notice: channels.NoticeLifted, Warning: w, Recipients: batch}
			cctx, cancel := context.WithTimeout(ctx, d.cfg.ProviderTimeout)
			_, _, err := notifier.Notify(cctx, b)
			cancel()
			if err != nil {
				return fmt.Errorf("lift %s: %s: %w", w.ID, ch, err)
			}
			sent += len(batch)
			batch = nil
			return nil
		}
		var ferr error
		err := d.ledger.Deliveries(ctx, w.ID, ch, func(dv ledger.Delivery) bool {
			if dv.State != warning.Sent && dv.State != warning.Delivered {
				return true
			}
			addr, name := address(roster, dv.Ref.RecipientID, ch)
			if addr == "" {
				return true
			}
			batch = append(batch, warning.Recipient{ID: dv.Ref.RecipientID, Address: addr, Audience: dv.Audience, Division: dv.Division, Name: name, Bucket: dv.Ref.Bucket})
			if len(batch) >= d.policy.Batch(ch) {
				ferr = flush()
			}
			return ferr == nil
		})
		if err == nil {
			err = ferr
		}
		if err == nil {
			err = flush()
		}
		if err != nil {
			return err
		}
		steps = append(steps, ledger.Step{At: d.now(), Action: "lifted", Channel: string(ch), Try: sent, Outcome: "lifted notice sent"})
	}
	return d.ledger.AddSteps(ctx, w.ID, steps)
}

// address finds a recipient's address on a channel from the roster.
func address(roster region.Roster, id string, ch warning.Channel) (string, string) {
	if p, ok := roster.Person(id); ok {
		return addressOn(p, ch), p.Name
	}
	if h, ok := roster.Household(id); ok && ch == warning.SMS {
		return h.Phone, h.Head
	}
	return "", ""
}

// Update replaces a live warning by a new version: a new level, new text,
// areas added or removed. The new warning references the old, which is
// superseded: its unsent batches become no-ops and its escalation stops.
// Recipients the old one reached get a short change notice; newly covered
// ones the full warning; deadlines and checklists follow the new level.
func (d *Dispatcher) Update(ctx context.Context, oldID string, nw *warning.Warning, opt SubmitOptions) (*warning.Warning, error) {
	old, err := d.ledger.Warning(ctx, oldID)
	if err != nil {
		return nil, err
	}
	if !old.Live(d.now()) {
		return nil, fmt.Errorf("warning %s is %s: only a live warning can be updated: %w", oldID, old.State, ledger.ErrState)
	}
	nw.MsgType = warning.MsgUpdate
	nw.References = []string{oldID}
	if nw.Status == "" {
		nw.Status = old.Status
	}
	if err := d.Check(nw); err != nil {
		return nil, err
	}
	stored, _, err := d.Submit(ctx, nw, opt)
	if err != nil {
		return nil, err
	}
	// The plan of the update supersedes it too, should this process stop
	// here: an update accepted never leaves its old version live.
	if err := d.ledger.Supersede(ctx, oldID, stored.ID); err != nil {
		return stored, err
	}
	d.audit(ctx, ledger.AuditEntry{Who: opt.By.String(), From: opt.By.From, Action: "update", WarningID: oldID, Target: stored.ID, Detail: old.Level.String() + "→" + stored.Level.String()})
	return stored, nil
}

// splitByReached divides an update's batch into those the warning it
// replaces reached (a change notice) and the rest (the full warning).
func (d *Dispatcher) splitByReached(ctx context.Context, w *warning.Warning, ch warning.Channel, rs []warning.Recipient) (change, full []warning.Recipient, err error) {
	if w.MsgType != warning.MsgUpdate || len(w.References) == 0 {
		return nil, rs, nil
	}
	reached, err := d.ledger.Reached(ctx, w.References[0], ch, rs)
	if err != nil {
		return nil, nil, err
	}
	for i, r := range rs {
		if reached[i] {
			change = append(change, r)
		} else {
			full = append(full, r)
		}
	}
	return change, full, nil
}
