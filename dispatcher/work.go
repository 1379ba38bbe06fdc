package dispatcher

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
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
	run := d.live.enter(ctx, t)
	defer run.leave()
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
	run.started()
	if w.State == warning.StateAwaitingApproval {
		// Queued by an approval that stopped before it was written: the
		// approval, when it is made, queues the plan again.
		d.log.Warn("plan: warning awaits approval; not planned", "warning_id", w.ID)
		return d.ledger.Planned(ctx, w.ID)
	}
	// An update supersedes what it replaces here too: Update does it once
	// the update is stored, and a process that stopped in between would
	// leave the old version live, reminding and escalating beside the new.
	if w.MsgType == warning.MsgUpdate && w.Live(d.now()) {
		for _, ref := range w.References {
			old, err := d.ledger.Warning(ctx, ref)
			if err != nil || (old.State != warning.StateAccepted && old.State != warning.StateActive) {
				continue // not a warning of ours, or ended already
			}
			if err := d.ledger.Supersede(ctx, ref, w.ID); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	log := d.log.With("warning_id", w.ID)
	rule := d.policy.Rule(w)
	// The officials of counties and townships are whoever is on duty when
	// the warning arrives: their shifts are read, all at once, while the
	// roster is pinned.
	shifts := d.dutyAt(ctx, w.Accepted)
	prefetched := make(chan struct{})
	go func() {
		defer close(prefetched)
		if shifts != nil {
			shifts.prefetch(dutyDivisions(d.tree, w.Areas))
		}
	}()
	roster, target, err := d.planRoster(ctx, w)
	<-prefetched
	if err != nil {
		return err
	}
	if shifts != nil {
		shifts.Roster = roster
		roster = shifts
	}
	// Expansion runs ahead while a few goroutines enqueue: one enqueue is a
	// Redis round trip, and a city-wide warning has a thousand batches.
	type job struct {
		task     *asynq.Task
		queue    string
		opts     []asynq.Option
		id       string
		official bool
	}
	jobs := make(chan job, 64)
	// Officials' batches are queued ahead of the public's: a public batch
	// goes to the enqueuers once every official batch before it is in
	// Redis, or an idle worker could take it first and hold the channel.
	var officialsQueued sync.WaitGroup
	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range planEnqueuers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if ectx.Err() == nil {
					err := d.enqueueBatch(ectx, w.ID, j.queue, j.id, j.task, j.opts)
					if err != nil {
						cancel(fmt.Errorf("plan %s: enqueue %s: %w", w.ID, j.id, err))
					}
				}
				if j.official {
					officialsQueued.Done()
				}
			}
		}()
	}
	counters := map[warning.Channel]int{}
	var officials []ledger.Official
	seenOfficial := map[string]bool{}
	called := map[string]bool{} // officials called with the message
	enqueue := func(b policy.Batch) error {
		if err := context.Cause(ectx); err != nil {
			return err
		}
		if b.Channel == warning.Voice {
			for _, r := range b.Recipients {
				called[r.ID] = true
			}
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
			if b.Audience.Official() {
				officialsQueued.Add(1)
			} else {
				officialsQueued.Wait()
			}
			jobs <- job{
				task:  asynq.NewTask(TypeDeliver+string(b.Channel), payload),
				queue: QueueName(b.Channel, tierOf(w.Level, b.Audience)),
				opts: []asynq.Option{
					asynq.TaskID(h.batchID()),
					asynq.MaxRetry(deliverMaxRetry),
					asynq.Timeout(d.deliverTimeout()),
				},
				id:       h.batchID(),
				official: b.Audience.Official(),
			}
		}
		return nil
	}
	sum, err := d.policy.ExpandInBuckets(w, d.tree, roster, target, enqueue)
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
	// Whoever looks a delivery up by recipient (a visit, a household's
	// mark, an update asking whom this version reached) finds its bucket
	// here; the batches carry theirs.
	if err := d.ledger.SetBuckets(ctx, w.ID, sum.Buckets); err != nil {
		return err
	}
	// Who stood in for a role on a shift is recorded before the officials
	// are: a 叫应 view read in between would show an official on duty as
	// the roster's holder of their own role.
	if err := d.recordDuty(ctx, w, roster, officials); err != nil {
		return err
	}
	if err := d.registerOfficials(ctx, w, rule, officials, called); err != nil {
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
	if err := d.scheduleFallback(ctx, w); err != nil {
		return err
	}
	// Residents with no address on any channel need not wait for the
	// deadline. Those with none on one channel only are left to it, or to
	// a failure on their others: a check walks the warning's every
	// village, and in most rosters someone has no WeChat in each.
	if sum.Unreachable[warning.Residents] > 0 {
		d.fallbackSoon(ctx, w)
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

// enqueueBatch queues one batch of a plan under its stable id, so that a
// plan run again after a crash is refused what the first run queued. The
// two runs can cut a group differently, though: who the older version of
// an updated warning reached (a short change notice) and who it did not
// (the full text) moves while its last batches are out. A batch whose id
// is taken by a task of other recipients then goes under an id of its
// own, with the same batch number: the two share the batch's lock and its
// record in the ledger, so whoever is in both is sent to once, and nobody
// in this one is left out. A task of the id that already ran is gone, and
// the id free again.
func (d *Dispatcher) enqueueBatch(ctx context.Context, warningID, base, id string, t *asynq.Task, opts []asynq.Option) error {
	_, err := d.enqueueIn(ctx, warningID, base, t, opts...)
	if !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	queue, err := d.lanes.queue(ctx, warningID, base)
	if err != nil {
		return err
	}
	if info, err := d.inspector.GetTaskInfo(queue, id); err == nil && bytes.Equal(info.Payload, t.Payload()) {
		return nil // the same batch: queued by the first run
	}
	sum := sha256.Sum256(t.Payload())
	_, err = d.enqueueIn(ctx, warningID, base, t, append(opts, asynq.TaskID(id+"~"+hex.EncodeToString(sum[:6])))...)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // this very batch, queued by an earlier run again
	}
	return err
}

// planEnqueuers is how many goroutines enqueue one plan's batches. Each
// enqueue writes a batch of a few hundred recipients to Redis, and a
// city-wide plan's enqueues, six at once, held up the commands of the
// small warnings accepted meanwhile: in the bench, eight pairs of runs,
// their first official's p99 was 188 – 319 ms with six against 130 – 226
// with two. With two, the bench's city-wide plan queued its million
// deliveries in 3.2 – 4.8 s, about 600 – 700 batches still waiting for the
// workers when it ended.
const planEnqueuers = 2

// deliverMaxRetry lets a batch be tried again as long as its warning is
// live: with the one-minute cap of the backoff, over a year. The handler,
// not asynq, ends it when the warning expires or is cancelled.
const deliverMaxRetry = 1 << 20

// deliverTimeout bounds one attempt at a batch: every chunk's provider
// call, with room for a rate limit.
func (d *Dispatcher) deliverTimeout() time.Duration {
	return max(10*time.Minute, 2*d.cfg.ProviderTimeout+30*time.Second)
}
