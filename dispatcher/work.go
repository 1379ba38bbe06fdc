package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/policy"
	"warngate/warning"
)

// NewID returns a warning id: the acceptance time in base 36, for order, and
// four random characters.
func NewID(now time.Time) string {
	var b [3]byte
	rand.Read(b[:])
	r := strconv.FormatUint(uint64(b[0])<<16|uint64(b[1])<<8|uint64(b[2]), 36)
	return strconv.FormatInt(now.UnixMilli(), 36) + strings.Repeat("0", 5-len(r)) + r
}

// plan expands a warning and enqueues its batches. Run again (a retry, a
// reconcile), it produces the same task ids, which the queue refuses while
// they exist, and the ledger skips recipients already handled.
func (d *Dispatcher) plan(ctx context.Context, t *asynq.Task) error {
	var p planPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("plan: %v: %w", err, asynq.SkipRetry)
	}
	w, err := d.ledger.Warning(ctx, p.WarningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("plan %s: %w: %w", p.WarningID, err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	start := time.Now()
	log := d.log.With("warning_id", w.ID)
	rule := d.policy.Rule(w)
	roster, err := d.planRoster(ctx, w)
	if err != nil {
		return err
	}
	// The officials of counties and townships are whoever is on duty when
	// the warning arrives.
	roster = d.withDuty(ctx, roster, w.Accepted)
	// Expansion runs ahead while a few goroutines enqueue: one enqueue is a
	// Redis round trip, and a city-wide warning has a thousand batches.
	type job struct {
		task *asynq.Task
		opts []asynq.Option
		id   string
	}
	jobs := make(chan job, 64)
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range planEnqueuers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ectx.Err() != nil {
					continue
				}
				_, err := d.client.EnqueueContext(ectx, j.task, j.opts...)
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					cancel(fmt.Errorf("plan %s: enqueue %s: %w", w.ID, j.id, err))
				}
			}
		}()
	}
	counters := map[warning.Channel]int{}
	var officials []ledger.Official
	seenOfficial := map[string]bool{}
	enqueue := func(b policy.Batch) error {
		if err := context.Cause(ectx); err != nil {
			return err
		}
		if b.Audience.Official() {
			for _, r := range b.Recipients {
				if !seenOfficial[r.ID] {
					seenOfficial[r.ID] = true
					officials = append(officials, ledger.Official{PersonID: r.ID, Audience: r.Audience, Division: r.Division})
				}
			}
		}
		change, full, err := d.splitByReached(ectx, w, b.Channel, b.Recipients)
		if err != nil {
			return err
		}
		for _, part := range []struct {
			notice channels.Notice
			rs     []warning.Recipient
		}{{channels.NoticeChange, change}, {channels.NoticeFull, full}} {
			if len(part.rs) == 0 {
				continue
			}
			counters[b.Channel]++
			h := deliverHeader{WarningID: w.ID, Channel: b.Channel, Batch: counters[b.Channel], Audience: b.Audience, Notice: part.notice}
			if b.Channel == warning.Broadcast && rule != nil {
				h.Repeat = rule.Repeat
			}
			payload, err := encodeDeliver(h, part.rs)
			if err != nil {
				return fmt.Errorf("plan %s: %w", w.ID, err)
			}
			jobs <- job{
				task: asynq.NewTask(TypeDeliver+string(b.Channel), payload),
				opts: []asynq.Option{
					asynq.Queue(QueueName(b.Channel, tierOf(w.Level, b.Audience))),
					asynq.TaskID(h.batchID()),
					asynq.MaxRetry(d.cfg.MaxRetry),
					asynq.Timeout(2*d.cfg.ProviderTimeout + 30*time.Second),
				},
				id: h.batchID(),
			}
		}
		return nil
	}
	sum, err := d.policy.Expand(w, d.tree, roster, enqueue)
	close(jobs)
	wg.Wait()
	if err == nil {
		err = context.Cause(ectx)
	}
	if err != nil {
		if errors.Is(err, policy.ErrNoRule) {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		return err
	}
	if err := d.registerOfficials(ctx, w, rule, officials); err != nil {
		return err
	}
	if err := d.recordDuty(ctx, w, roster, officials); err != nil {
		return err
	}
	for g := range sum.Planned {
		if g.Channel == warning.CallList {
			if err := d.scheduleCallListCheck(ctx, w); err != nil {
				return err
			}
			break
		}
	}
	planned := make(ledger.Planned, len(sum.Planned))
	for g, n := range sum.Planned {
		planned[ledger.Group{Channel: g.Channel, Audience: g.Audience, Division: g.Division}] = n
	}
	if err := d.ledger.MarkPlanned(ctx, w.ID, planned); err != nil {
		return err
	}
	d.metrics.PlanSeconds.Observe(time.Since(start).Seconds())
	log.Info("warning planned", "rule", sum.Rule, "deliveries", sum.Total(), "batches", sum.Batches, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// planEnqueuers is how many goroutines enqueue one plan's batches.
const planEnqueuers = 6

// errHeld asks asynq to try a batch again later: some of its recipients are
// claimed by another worker that may yet die.
var errHeld = errors.New("recipients held by another worker")

// deliver runs one batch: claim, send, record. It makes one provider
// attempt; asynq owns the retries and their backoff.
func (d *Dispatcher) deliver(ctx context.Context, t *asynq.Task) error {
	h, rs, err := decodeDeliver(t.Payload())
	if err != nil {
		return fmt.Errorf("deliver: %w: %w", err, asynq.SkipRetry)
	}
	log := d.log.With("warning_id", h.WarningID, "channel", string(h.Channel), "batch", h.Batch)
	w, err := d.ledger.Warning(ctx, h.WarningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("deliver %s: %w: %w", h.batchID(), err, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	entries := make([]ledger.Entry, len(rs))
	for i, r := range rs {
		entries[i] = ledger.Entry{RecipientID: r.ID, Audience: r.Audience, Division: r.Division}
	}
	now := d.now()
	if !w.Live(now) {
		reason := "warning " + string(w.State)
		if w.Expired(now) {
			reason = "warning expired before sending"
		}
		outs := make([]ledger.Outcome, len(entries))
		for i, e := range entries {
			outs[i] = ledger.Outcome{Entry: e, State: warning.Expired, Extra: reason}
		}
		n, err := d.ledger.Record(ctx, w.ID, h.Channel, "", outs)
		if err != nil {
			return err
		}
		d.metrics.Jobs.WithLabelValues(string(h.Channel), "expired").Inc()
		d.metrics.Recipients.WithLabelValues(string(h.Channel), "expired").Add(float64(n))
		return nil
	}

	notifier := d.notifiers[h.Channel]
	if notifier == nil {
		return fmt.Errorf("deliver %s: no provider configured for channel %s: %w", h.batchID(), h.Channel, asynq.SkipRetry)
	}
	lease := 2*d.cfg.ProviderTimeout + 30*time.Second
	claim, err := d.ledger.Claim(ctx, w.ID, h.Channel, h.Batch, entries, lease)
	if err != nil {
		return err
	}
	claimed, held := claim.Indexes, claim.Held
	d.metrics.Recipients.WithLabelValues(string(h.Channel), "skipped").Add(float64(len(entries) - len(claimed) - held))
	if len(claimed) == 0 {
		if held > 0 {
			return errHeld
		}
		if _, err := d.ledger.Record(ctx, w.ID, h.Channel, claim.Gen, nil); err != nil { // release the batch
			return err
		}
		d.metrics.Jobs.WithLabelValues(string(h.Channel), "ok").Inc()
		return nil
	}

	b := &channels.Batch{ID: h.batchID(), Channel: h.Channel, Notice: h.Notice, Warning: w, Repeat: h.Repeat, Recipients: make([]warning.Recipient, len(claimed))}
	for i, idx := range claimed {
		b.Recipients[i] = rs[idx]
	}
	if d.cfg.AckURL != nil && h.Audience.Official() {
		b.AckURL = func(r warning.Recipient) string {
			return d.cfg.AckURL(w, warning.Ref{WarningID: w.ID, Channel: h.Channel, RecipientID: r.ID})
		}
	}
	cctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ProviderTimeout, fmt.Errorf("%s provider did not answer within %s", h.Channel, d.cfg.ProviderTimeout))
	start := time.Now()
	receipts, retry, sendErr := notifier.Notify(cctx, b)
	cancel()
	d.metrics.ProviderSeconds.WithLabelValues(string(h.Channel)).Observe(time.Since(start).Seconds())

	final := !retry
	if n, ok := asynq.GetRetryCount(ctx); ok && n >= d.cfg.MaxRetry {
		final = true
	}
	outs := make([]ledger.Outcome, 0, len(b.Recipients))
	answered := make([]bool, len(b.Recipients))
	var sent, failed int
	segments := map[string]int{} // account → billed parts
	for _, rc := range receipts {
		if rc.Index < 0 || rc.Index >= len(b.Recipients) || answered[rc.Index] {
			continue
		}
		answered[rc.Index] = true
		e := entries[claimed[rc.Index]]
		switch rc.State {
		case warning.Sent, warning.Delivered:
			outs = append(outs, ledger.Outcome{Entry: e, State: rc.State, Account: rc.Account, Segments: rc.Segments})
			sent++
			if rc.Segments > 0 {
				acct := rc.Account
				if acct == "" {
					acct = ledger.DefaultAccount
				}
				segments[acct] += rc.Segments
			}
		case warning.Failed:
			outs = append(outs, ledger.Outcome{Entry: e, State: warning.Failed, Extra: rc.Reason})
			failed++
		}
	}
	// Recipients the provider did not take: released for the next attempt,
	// or failed with the provider's reason when there is none.
	var released int
	for i, ok := range answered {
		if ok {
			continue
		}
		e := entries[claimed[i]]
		if sendErr != nil && final {
			outs = append(outs, ledger.Outcome{Entry: e, State: warning.Failed, Extra: sendErr.Error()})
			failed++
		} else {
			outs = append(outs, ledger.Outcome{Entry: e, State: warning.Queued})
			released++
		}
	}
	// Recording must not be cut short by the task's own context ending.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if _, ok := notifier.(channels.Canceller); ok {
		var ids []string
		for _, rc := range receipts {
			if rc.ProviderID != "" {
				ids = append(ids, rc.ProviderID)
			}
		}
		if err := d.ledger.AddProviderIDs(rctx, w.ID, h.Channel, ids); err != nil {
			return err
		}
	}
	// Index provider ids for reports that carry only them, before the send
	// is recorded, so that no report can outrun its index.
	defaultIndex := ""
	if ix, ok := notifier.(channels.Indexed); ok {
		defaultIndex = ix.Provider()
	}
	byIndex := map[string]map[string]warning.Ref{}
	for _, rc := range receipts {
		name := rc.IndexName
		if name == "" {
			name = defaultIndex
		}
		if name == "" || rc.ProviderID == "" || rc.Index < 0 || rc.Index >= len(b.Recipients) {
			continue
		}
		if byIndex[name] == nil {
			byIndex[name] = map[string]warning.Ref{}
		}
		byIndex[name][rc.ProviderID] = b.Ref(rc.Index)
	}
	for name, ids := range byIndex {
		if err := d.ledger.IndexProviderIDs(rctx, name, ids); err != nil {
			return err
		}
	}
	if _, err := d.ledger.Record(rctx, w.ID, h.Channel, claim.Gen, outs); err != nil {
		return err
	}
	since := d.now().Sub(w.Accepted).Seconds()
	lat := d.metrics.Latency.WithLabelValues(string(h.Channel), "sent")
	for range sent {
		lat.Observe(since)
	}
	d.metrics.Recipients.WithLabelValues(string(h.Channel), "sent").Add(float64(sent))
	d.metrics.Recipients.WithLabelValues(string(h.Channel), "failed").Add(float64(failed))
	for acct, n := range segments {
		d.metrics.Segments.WithLabelValues(string(h.Channel), acct).Add(float64(n))
	}

	switch {
	case sendErr != nil && final:
		d.metrics.Jobs.WithLabelValues(string(h.Channel), "failed").Inc()
		log.Error("batch failed for good", "err", sendErr, "recipients", failed)
		return fmt.Errorf("deliver %s: %w: %w", b.ID, sendErr, asynq.SkipRetry)
	case sendErr != nil:
		d.metrics.Jobs.WithLabelValues(string(h.Channel), "retry").Inc()
		log.Warn("batch will be retried", "err", sendErr, "released", released)
		return fmt.Errorf("deliver %s: %w", b.ID, sendErr)
	case released > 0 || held > 0:
		d.metrics.Jobs.WithLabelValues(string(h.Channel), "retry").Inc()
		return fmt.Errorf("deliver %s: %d recipients not taken by the provider, %d held: %w", b.ID, released, held, errHeld)
	}
	d.metrics.Jobs.WithLabelValues(string(h.Channel), "ok").Inc()
	return nil
}
