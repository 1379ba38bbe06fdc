package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/policy"
	"warngate/warning"
)

// ResendStates are the delivery states that may be sent again: those the
// provider refused or reported undelivered, and those a warning's end cut
// short. Sent and delivered ones never are.
var ResendStates = []warning.DeliveryState{warning.Failed, warning.Expired}

// resendBase spaces the batch numbers of resend rounds from the plan's
// (a plan never has a million batches on a channel): the ledger gives a
// round's re-opened deliveries to the round's batches by their numbers.
const resendBase = ledger.ResendBase

// ResendResult says how many deliveries each channel sends again.
type ResendResult struct {
	Channels map[warning.Channel]int `json:"channels"`
	Total    int                     `json:"total"`
}

// Resend sends a live warning again to those it has not reached: the
// deliveries of chans (all when empty) in states (failed and expired when
// empty), and any put back before whose batch was lost. They count as
// pending again and go out in new batches, through the channel's route as
// today; by is audited. A warning that is no longer live (cancelled,
// superseded, expired) is refused with ledger.ErrState.
func (d *Dispatcher) Resend(ctx context.Context, id string, by Actor, chans []warning.Channel, states []warning.DeliveryState) (*ResendResult, error) {
	w, err := d.ledger.Warning(ctx, id)
	if err != nil {
		return nil, err
	}
	if !w.Live(d.now()) {
		why := string(w.State)
		if w.Expired(d.now()) {
			why = "expired"
		}
		return nil, fmt.Errorf("warning %s is %s: nothing more is sent for it: %w", id, why, ledger.ErrState)
	}
	if len(states) == 0 {
		states = ResendStates
	}
	for _, st := range states {
		if !slices.Contains(ResendStates, st) {
			return nil, fmt.Errorf("dispatcher: resend: state %s: only failed or expired deliveries are sent again", st)
		}
	}
	if len(chans) == 0 {
		for _, ch := range warning.Channels {
			if d.notifiers[ch] != nil {
				chans = append(chans, ch)
			}
		}
	}
	res := &ResendResult{Channels: map[warning.Channel]int{}}
	again := map[warning.Channel]map[string]bool{}
	rounds := map[warning.Channel]int{}
	for _, ch := range chans {
		ids, round, err := d.reopen(ctx, w.ID, ch, states)
		if err != nil {
			return res, err
		}
		if len(ids) > 0 {
			again[ch] = ids
			rounds[ch] = round
			res.Channels[ch] = len(ids)
			res.Total += len(ids)
		}
	}
	if res.Total > 0 {
		if err := d.enqueueAgain(ctx, w, again, rounds); err != nil {
			return res, err
		}
	}
	var detail []string
	for _, ch := range chans {
		detail = append(detail, string(ch)+" "+strconv.Itoa(res.Channels[ch]))
	}
	names := make([]string, len(states))
	for i, st := range states {
		names[i] = st.String()
	}
	d.audit(ctx, ledger.AuditEntry{Who: by.String(), Action: "resend", WarningID: id, From: by.From,
		Detail: strings.Join(detail, ", ") + " (" + strings.Join(names, ", ") + ")"})
	d.log.Info("sending again to those not reached", "warning_id", id, "by", by.String(), "deliveries", res.Total)
	return res, nil
}

// reopen puts back a channel's deliveries in states, and those put back
// before and not sent since, for a new resend round, and returns who they
// are and the round. Only the round's batches send them: the batch one
// failed in may still be retrying, under its own lock, and must not send
// to it too.
func (d *Dispatcher) reopen(ctx context.Context, id string, ch warning.Channel, states []warning.DeliveryState) (map[string]bool, int, error) {
	var refs []warning.Ref
	err := d.ledger.Deliveries(ctx, id, ch, func(dv ledger.Delivery) bool {
		if dv.Reopened || slices.Contains(states, dv.State) {
			refs = append(refs, dv.Ref)
		}
		return true
	})
	if err != nil || len(refs) == 0 {
		return nil, 0, err
	}
	round, err := d.ledger.ResendRound(ctx, id, ch)
	if err != nil {
		return nil, 0, err
	}
	out := make(map[string]bool, len(refs))
	for part := range slices.Chunk(refs, 1000) {
		got, err := d.ledger.ReopenFor(ctx, id, ch, round, part, states)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range got {
			out[r.RecipientID] = true
		}
	}
	return out, round, nil
}

// enqueueAgain queues the put-back recipients in new batches of their
// channel's resend round (rounds, from reopen): the policy's expansion of
// the warning gives each its address, audience and division as the plan
// did, and only those put back are kept.
func (d *Dispatcher) enqueueAgain(ctx context.Context, w *warning.Warning, again map[warning.Channel]map[string]bool, rounds map[warning.Channel]int) error {
	rule := d.policy.Rule(w)
	counters := map[warning.Channel]int{}
	bufs := map[policy.Group][]warning.Recipient{}
	flush := func(ch warning.Channel, aud warning.Audience, rs []warning.Recipient) error {
		counters[ch]++
		h := deliverHeader{WarningID: w.ID, Channel: ch, Batch: rounds[ch]*resendBase + counters[ch], Audience: aud, Notice: channels.NoticeFull}
		if ch == warning.Broadcast && rule != nil {
			h.Repeat = rule.Repeat
		}
		payload, err := encodeDeliver(h, rs)
		if err != nil {
			return err
		}
		_, err = d.enqueueIn(ctx, w.ID, QueueName(ch, tierOf(w.Level, aud)), asynq.NewTask(TypeDeliver+string(ch), payload),
			asynq.TaskID(h.batchID()),
			asynq.MaxRetry(deliverMaxRetry), asynq.Timeout(d.deliverTimeout()))
		if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
			return fmt.Errorf("resend %s: enqueue %s: %w", w.ID, h.batchID(), err)
		}
		return nil
	}
	// The roster and buckets the plan expanded with, so that everyone put
	// back is found where their delivery is.
	roster := d.withDuty(ctx, d.rosterFor(ctx, w), w.Accepted)
	target, err := d.ledger.BucketTarget(ctx, w.ID)
	if err != nil {
		return err
	}
	_, err = d.policy.ExpandInBuckets(w, d.tree, roster, target, func(b policy.Batch) error {
		ids := again[b.Channel]
		if ids == nil {
			return nil
		}
		g := policy.Group{Channel: b.Channel, Audience: b.Audience}
		for _, r := range b.Recipients {
			if !ids[r.ID] {
				continue
			}
			delete(ids, r.ID) // once, though the policy names them twice
			bufs[g] = append(bufs[g], r)
			if len(bufs[g]) >= d.policy.Batch(b.Channel) {
				if err := flush(g.Channel, g.Audience, bufs[g]); err != nil {
					return err
				}
				bufs[g] = nil
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for g, rs := range bufs {
		if len(rs) > 0 {
			if err := flush(g.Channel, g.Audience, rs); err != nil {
				return err
			}
		}
	}
	return nil
}
