package dispatcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
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

type escalatePayload struct {
	WarningID string `json:"w"`
	Tick      int    `json:"t"`
}

// registerOfficials records the officials of a plan's official batches, who
// must confirm, and schedules the first check.
func (d *Dispatcher) registerOfficials(ctx context.Context, w *warning.Warning, rule *policy.Rule, officials []ledger.Official) error {
	if len(officials) == 0 || rule == nil || rule.AckDeadline <= 0 {
		return nil
	}
	if _, err := d.ledger.RegisterOfficials(ctx, w.ID, officials); err != nil {
		return err
	}
	return d.scheduleEscalation(ctx, w.ID, 1, d.tickInterval(rule))
}

// tickInterval is the time between checks: the deadline spread over the tries.
func (d *Dispatcher) tickInterval(rule *policy.Rule) time.Duration {
	return time.Duration(rule.AckDeadline) / time.Duration(rule.Tries())
}

func (d *Dispatcher) scheduleEscalation(ctx context.Context, id string, tick int, in time.Duration) error {
	payload, _ := json.Marshal(escalatePayload{WarningID: id, Tick: tick})
	_, err := d.client.EnqueueContext(ctx, asynq.NewTask(TypeEscalate, payload),
		asynq.Queue(QueueControl), asynq.TaskID("esc/"+id+"/"+strconv.Itoa(tick)),
		asynq.ProcessIn(in), asynq.MaxRetry(d.cfg.MaxRetry))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil
	}
	return err
}

func (d *Dispatcher) escalateTask(ctx context.Context, t *asynq.Task) error {
	var p escalatePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("escalate: %v: %w", err, asynq.SkipRetry)
	}
	next, err := d.Escalate(ctx, p.WarningID)
	if err != nil {
		return err
	}
	if next > 0 {
		return d.scheduleEscalation(ctx, p.WarningID, p.Tick+1, next)
	}
	return nil
}

// Escalate runs one check of a warning's officials at the dispatcher's
// clock and returns when the next check is due (zero: none is needed).
// Tests call it directly with an injected clock; in production the
// escalate:ack task calls it.
func (d *Dispatcher) Escalate(ctx context.Context, warningID string) (time.Duration, error) {
	w, err := d.ledger.Warning(ctx, warningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := d.now()
	if !w.Live(now) {
		return 0, nil // cancelled or expired: nobody need confirm any more
	}
	rule := d.policy.Rule(w)
	if rule == nil || rule.AckDeadline <= 0 {
		return 0, nil
	}
	interval := d.tickInterval(rule)
	tries := rule.Tries()
	officials, err := d.ledger.Officials(ctx, w.ID)
	if err != nil {
		return 0, err
	}
	log := d.log.With("warning_id", w.ID)

	type send struct {
		person region.Person
		aud    warning.Audience
		note   string
	}
	reminders := map[warning.Channel][]send{}
	escalations := map[warning.Channel][]send{}
	var steps []ledger.Step
	var newOfficials []ledger.Official
	waiting := 0
	for _, o := range officials {
		if o.State != ledger.AckWaiting {
			continue
		}
		due := o.LastTry.Add(interval)
		if now.Before(due) {
			waiting++
			continue
		}
		person, ok := d.roster.Person(o.PersonID)
		if !ok {
			log.Warn("official no longer in the roster", "person_id", o.PersonID)
			continue
		}
		chs := d.policy.ReminderChannels(rule, o.Audience, now)
		if o.Tries < tries && len(chs) > 0 {
			ch := chs[(o.Tries-1)%len(chs)]
			if moved, err := d.ledger.MarkTry(ctx, w.ID, o, now, o.Tries+1, false); err != nil {
				return 0, err
			} else if moved {
				reminders[ch] = append(reminders[ch], send{person: person, aud: o.Audience})
				steps = append(steps, ledger.Step{At: now, PersonID: o.PersonID, Action: "remind", Channel: string(ch), Try: o.Tries + 1})
				waiting++
			}
			continue
		}
		// Deadline passed after every try: 未叫应.
		if moved, err := d.ledger.MarkTry(ctx, w.ID, o, now, o.Tries, true); err != nil {
			return 0, err
		} else if !moved {
			continue
		}
		step := ledger.Step{At: now, PersonID: o.PersonID, Action: "unreached", Try: o.Tries}
		if rule.Escalate {
			if sup, ok := policy.Superior(d.tree, d.roster, person); ok {
				step.Action, step.Target = "escalate", sup.ID
				div := person.Division
				if dv, ok := d.tree.Get(div); ok {
					div = dv.Name
				}
				note := fmt.Sprintf("%s（%s，%s，电话%s）在%s内未确认收到此预警，请立即联系并督促落实。",
					person.Name, person.Role.Chinese(), div, person.Phone, time.Duration(rule.AckDeadline))
				supAud := sup.Role.Audience()
				supChs := d.policy.ReminderChannels(rule, supAud, now)
				if len(supChs) > 0 {
					escalations[supChs[0]] = append(escalations[supChs[0]], send{person: sup, aud: supAud, note: note})
					step.Channel = string(supChs[0])
				}
				newOfficials = append(newOfficials, ledger.Official{PersonID: sup.ID, Audience: supAud, Division: sup.Division})
			} else {
				step.Outcome = "no superior in the roster"
			}
		}
		steps = append(steps, step)
	}
	if len(newOfficials) > 0 {
		n, err := d.ledger.RegisterOfficials(ctx, w.ID, newOfficials)
		if err != nil {
			return 0, err
		}
		waiting += n
	}

	// Messages with the same text go in one provider call (reminders share
	// theirs; each escalation names its own person), in batches the
	// provider takes.
	sendAll := func(notice channels.Notice, byCh map[warning.Channel][]send) {
		for ch, list := range byCh {
			notifier := d.notifiers[ch]
			if notifier == nil {
				continue
			}
			byNote := map[string][]warning.Recipient{}
			var notes []string
			for _, s := range list {
				addr := addressOn(s.person, ch)
				if addr == "" {
					continue
				}
				if _, ok := byNote[s.note]; !ok {
					notes = append(notes, s.note)
				}
				byNote[s.note] = append(byNote[s.note], warning.Recipient{ID: s.person.ID, Address: addr, Audience: s.aud, Division: s.person.Division, Name: s.person.Name})
			}
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
					cctx, cancel := context.WithTimeout(ctx, d.cfg.ProviderTimeout)
					_, _, err := notifier.Notify(cctx, b)
					cancel()
					if err != nil {
						log.Warn("escalation messages not sent", "recipients", len(part), "channel", string(ch), "notice", string(notice), "err", err)
					}
				}
			}
		}
	}
	sendAll(channels.NoticeReminder, reminders)
	sendAll(channels.NoticeEscalation, escalations)
	if len(steps) > 0 {
		if err := d.ledger.AddSteps(ctx, w.ID, steps); err != nil {
			return 0, err
		}
		d.metrics.Escalations.Add(float64(len(steps)))
	}
	if waiting == 0 {
		return 0, nil
	}
	return interval, nil
}

// addressOn is a person's address on a channel.
func addressOn(p region.Person, ch warning.Channel) string {
	switch ch {
	case warning.SMS:
		return p.Phone
	case warning.WeChat:
		return p.WeChatOpenID
	case warning.WeCom:
		return p.WeComUserID
	}
	return ""
}
