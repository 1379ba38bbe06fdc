package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/ledger"
	"warngate/warning"
)

// errHeld asks asynq to try a batch again later, without counting a
// failure: some of its recipients are with another worker, which may yet
// die, or were not taken this time.
var errHeld = errors.New("recipients held by another worker")

// UncertainBound is the default of Config.UncertainBound: how many
// recipients of a channel a worker process may have with a provider that
// cannot be asked what it accepted
// (channels.Askable): a process killed at any instant leaves at most this
// many per channel whose fate nobody knows, and the next attempt sends
// them again. Unless a chunk size is configured, the batches of such a
// channel sending at once share this bound (budget).
const UncertainBound = 100

// AskableChunk is the default chunk size of a channel whose provider can be
// asked what it accepted: nobody is sent twice however large the chunk, and
// every chunk costs Redis round trips, which the fan-out bench shows as
// throughput lost; so a chunk is a whole batch (the policy's largest is
// 1000).
const AskableChunk = 1000

// batchJob is one deliver task as its steps see it.
type batchJob struct {
	h       deliverHeader
	rs      []warning.Recipient
	entries []ledger.Entry
	w       *warning.Warning
	log     *slog.Logger
}

// urgent tells whether the job's batch is in the urgent tier (officials
// of orange and red warnings).
func (j *batchJob) urgent() bool { return tierOf(j.w.Level, j.h.Audience) == TierUrgent }

// key names one chunk of the job for the provider (channels.Batch.Key).
func (j *batchJob) key(gen string) string {
	return j.h.WarningID + "/" + string(j.h.Channel) + "/" + gen
}

// deliver runs one batch: claim it, send it in chunks (each recorded before
// the next is handed over, and what an earlier attempt left with the
// provider settled first), then tell asynq whether to run it again. It is
// one attempt; asynq owns the retries and their backoff, and they go on
// while the warning is live.
func (d *Dispatcher) deliver(ctx context.Context, t *asynq.Task) error {
	run := d.live.enter(ctx, t)
	defer run.leave()
	job, err := d.loadJob(ctx, t)
	if err != nil {
		return err
	}
	run.started()
	if !job.w.Live(d.now()) {
		return d.expireBatch(ctx, job)
	}
	notifier := d.notifiers[job.h.Channel]
	if notifier == nil {
		return fmt.Errorf("deliver %s: no provider configured for channel %s: %w", job.h.batchID(), job.h.Channel, asynq.SkipRetry)
	}
	hold, err := d.ledger.Lock(ctx, job.w.ID, job.h.Channel, job.h.Batch, run.token, d.lockLease())
	if errors.Is(err, ledger.ErrHeld) {
		d.metrics.Jobs.WithLabelValues(string(job.h.Channel), "retry").Inc()
		return errHeld
	}
	if err != nil {
		return err
	}
	// Released off the worker's path: only a retry of this batch waits for it.
	defer func() { go d.release(job, hold) }()
	res, err := d.sendInChunks(ctx, job, hold, notifier)
	if err == nil && res.sendErr == nil && res.ended {
		// Lifted or replaced while the batch was being handed over: the
		// chunks sent stay sent (their recipients get the lifted notice or
		// the update), the rest expire.
		return d.expireBatch(ctx, job)
	}
	return d.reschedule(job, res, err)
}

// stillLive looks again, between two chunks, whether the batch's warning
// is live: a warning lifted or replaced by an update while a batch of
// thousands is handed over in chunks sends no more chunks. A state that
// cannot be read counts as live: the next chunk's Begin meets Redis too.
func (d *Dispatcher) stillLive(ctx context.Context, job *batchJob) bool {
	st, err := d.ledger.State(ctx, job.w.ID)
	if err == nil && st != "" {
		job.w.State = st
	}
	return job.w.Live(d.now())
}

// lockLease is how long a batch's lock lasts without a new chunk: a chunk's
// provider call and its record fit in it.
func (d *Dispatcher) lockLease() time.Duration { return 2*d.cfg.ProviderTimeout + 30*time.Second }

// loadJob decodes a deliver task and loads its warning.
func (d *Dispatcher) loadJob(ctx context.Context, t *asynq.Task) (*batchJob, error) {
	h, rs, err := decodeDeliver(t.Payload())
	if err != nil {
		return nil, fmt.Errorf("deliver: %w: %w", err, asynq.SkipRetry)
	}
	w, err := d.ledger.Warning(ctx, h.WarningID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("deliver %s: %w: %w", h.batchID(), err, asynq.SkipRetry)
	}
	if err != nil {
		return nil, err
	}
	entries := make([]ledger.Entry, len(rs))
	for i, r := range rs {
		entries[i] = ledger.EntryOf(r)
	}
	log := d.log.With("warning_id", h.WarningID, "channel", string(h.Channel), "batch", h.Batch)
	return &batchJob{h: h, rs: rs, entries: entries, w: w, log: log}, nil
}

// expireBatch records what a warning that expired or was cancelled will
// not send: every recipient not yet handed over is expired.
func (d *Dispatcher) expireBatch(ctx context.Context, job *batchJob) error {
	reason := "warning " + string(job.w.State)
	if job.w.Expired(d.now()) {
		reason = "warning expired before sending"
	}
	outs := make([]ledger.Outcome, len(job.entries))
	for i, e := range job.entries {
		outs[i] = ledger.Outcome{Entry: e, State: warning.Expired, Extra: reason}
	}
	n, err := d.ledger.Record(ctx, job.w.ID, job.h.Channel, "", outs)
	if err != nil {
		return err
	}
	d.metrics.Jobs.WithLabelValues(string(job.h.Channel), "expired").Inc()
	d.metrics.Recipients.WithLabelValues(string(job.h.Channel), "expired").Add(float64(n))
	return nil
}

// release gives the batch's lock back, even when the task's context ended.
func (d *Dispatcher) release(job *batchJob, hold *ledger.Hold) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.ledger.Unlock(ctx, hold.WarningID, hold.Channel, hold.Batch, hold.Gen); err != nil {
		job.log.Warn("batch lock not released; it lapses with its lease", "err", err)
	}
}

// sendResult sums what the chunks of one attempt did.
type sendResult struct {
	sent, failed, skipped int
	// released were not taken by the provider (or not asked about): the
	// batch runs again for them.
	released int
	// uncertain were handed over again without knowing whether the
	// provider had them from an attempt that died.
	uncertain int
	// sendErr is the provider's last error; the batch runs again later.
	sendErr error
	// ended says the warning stopped being live (lifted, replaced by an
	// update, expired) while the batch was being handed over: the chunks
	// not begun are not sent.
	ended bool
}

// chunking says how a channel's batches are cut into chunks: in chunks of
// size, or, for a provider that cannot be asked what it accepted and no
// chunk size configured, in parts of the process's budget for the
// channel taken in turn (budget.part): size (Config.UncertainBound) at
// most, half of it when several batches send. Without a chunk size
// configured, a rate-limited account's route caps chunks (chunkLimit).
func (d *Dispatcher) chunking(ch warning.Channel) (int, *budget) {
	if n := d.cfg.ChunkSize[ch]; n > 0 {
		return n, nil
	}
	size, bud := AskableChunk, (*budget)(nil)
	if !channels.Askable(d.notifiers[ch]) {
		bud = d.budgets.of(ch)
		size = bud.size
	}
	if r, ok := d.notifiers[ch].(*Route); ok {
		if lim := r.chunkLimit(); lim > 0 {
			size = min(size, lim)
		}
	}
	return size, bud
}

// sendInChunks hands the batch over chunk by chunk, each recorded before
// the next begins, so that a crash leaves only the chunk with the provider
// uncertain. It stops at the first provider error (the next chunks would
// meet it too), when the lock is lost, or when the process is stopping.
func (d *Dispatcher) sendInChunks(ctx context.Context, job *batchJob, hold *ledger.Hold, notifier channels.Notifier) (sendResult, error) {
	var res sendResult
	size, bud := d.chunking(job.h.Channel)
	held := 0 // of bud, by the chunk being handed over
	if bud != nil {
		bud.enter()
		defer func() {
			if held > 0 {
				bud.give(held)
			}
			bud.leave()
		}()
	}
	for start := 0; start < len(job.entries); {
		if d.stopping(ctx) {
			res.released += len(job.entries) - start
			break
		}
		if start > 0 && !d.stillLive(ctx, job) {
			res.ended = true
			break
		}
		n := size
		if bud != nil {
			var err error
			if n, err = bud.take(ctx, min(size, len(job.entries)-start), job.urgent()); err != nil {
				job.log.Info("batch stopped before its next chunk", "err", err)
				res.released += len(job.entries) - start
				break
			}
			held = n
		}
		end := min(start+n, len(job.entries))
		chunk, err := d.ledger.Begin(ctx, hold, job.entries[start:end], false)
		if err != nil {
			return res, err
		}
		res.skipped += chunk.Skipped
		if len(chunk.Taken) > 0 {
			if err := d.handOver(ctx, job, chunk.Gen, offset(chunk.Taken, start), notifier, &res); err != nil {
				return res, err
			}
		}
		if held > 0 {
			bud.give(held)
			held = 0
		}
		if len(chunk.Uncertain) > 0 && res.sendErr == nil {
			if err := d.settle(ctx, job, hold, start, chunk.Uncertain, notifier, bud, &res); err != nil {
				return res, err
			}
		}
		if res.sendErr != nil {
			break
		}
		start = end
	}
	return res, nil
}

// offset turns positions within a chunk into positions in the batch.
func offset(idx []int, start int) []int {
	out := make([]int, len(idx))
	for i, v := range idx {
		out[i] = v + start
	}
	return out
}

// settle deals with recipients an earlier attempt left with the provider,
// chunk by chunk: a provider that can be asked says which it has, and those
// are recorded as sent without sending; the others are sent. A provider
// that cannot be asked gets them all again, in chunks that take their turn
// in bud when it is set, as the batch's own chunks do. When asking fails,
// they are left for the next attempt rather than sent blind.
func (d *Dispatcher) settle(ctx context.Context, job *batchJob, hold *ledger.Hold, start int, uncertain []ledger.Uncertain, notifier channels.Notifier, bud *budget, res *sendResult) error {
	byGen := map[string][]int{}
	var gens []string
	for _, u := range uncertain {
		if byGen[u.Gen] == nil {
			gens = append(gens, u.Gen)
		}
		byGen[u.Gen] = append(byGen[u.Gen], u.Index+start)
	}
	q, askable := notifier.(channels.Querier)
	askable = askable && channels.Askable(notifier)
	for _, gen := range gens {
		idx := byGen[gen]
		if !askable {
			d.metrics.Recipients.WithLabelValues(string(job.h.Channel), "uncertain").Add(float64(len(idx)))
			res.uncertain += len(idx)
			job.log.Warn("sending again to recipients a stopped worker left with a provider that cannot be asked", "chunk", gen, "recipients", len(idx))
			if err := d.sendAgain(ctx, job, hold, idx, notifier, bud, res); err != nil {
				return err
			}
			continue
		}
		b := d.batchOf(job, job.key(gen), idx)
		cctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ProviderTimeout, fmt.Errorf("%s provider did not answer the status query within %s", job.h.Channel, d.cfg.ProviderTimeout))
		receipts, err := q.Accepted(cctx, b)
		cancel()
		if err != nil {
			job.log.Warn("provider not asked what it has of a stopped worker's chunk; trying later", "chunk", gen, "err", err)
			res.released += len(idx)
			continue
		}
		had := make([]bool, len(idx))
		var accepted []int
		var found []channels.Receipt
		for _, rc := range receipts {
			if rc.Index < 0 || rc.Index >= len(idx) || had[rc.Index] || (rc.State != warning.Sent && rc.State != warning.Delivered) {
				continue
			}
			had[rc.Index] = true
			accepted = append(accepted, idx[rc.Index])
			rc.Index = len(found)
			found = append(found, rc)
		}
		var missing []int
		for i, ok := range had {
			if !ok {
				missing = append(missing, idx[i])
			}
		}
		job.log.Info("settled a stopped worker's chunk with the provider", "chunk", gen, "had", len(accepted), "sending", len(missing))
		if len(accepted) > 0 {
			if err := d.retake(ctx, job, hold, accepted, notifier, found, res); err != nil {
				return err
			}
		}
		if len(missing) > 0 {
			if err := d.retake(ctx, job, hold, missing, notifier, nil, res); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendAgain sends uncertain recipients again, each chunk taking its turn
// in bud when it is set.
func (d *Dispatcher) sendAgain(ctx context.Context, job *batchJob, hold *ledger.Hold, idx []int, notifier channels.Notifier, bud *budget, res *sendResult) error {
	for len(idx) > 0 && res.sendErr == nil {
		n := len(idx)
		if bud != nil {
			var err error
			if n, err = bud.take(ctx, len(idx), job.urgent()); err != nil {
				job.log.Info("uncertain recipients left for the next attempt", "recipients", len(idx), "err", err)
				res.released += len(idx)
				return nil
			}
		}
		err := d.retake(ctx, job, hold, idx[:n], notifier, nil, res)
		if bud != nil {
			bud.give(n)
		}
		if err != nil {
			return err
		}
		idx = idx[n:]
	}
	return nil
}

// retake takes uncertain recipients into a chunk of this attempt: with
// found (the provider's receipts, one per recipient in order), it records
// them as sent; without, it sends them.
func (d *Dispatcher) retake(ctx context.Context, job *batchJob, hold *ledger.Hold, idx []int, notifier channels.Notifier, found []channels.Receipt, res *sendResult) error {
	entries := make([]ledger.Entry, len(idx))
	for i, at := range idx {
		entries[i] = job.entries[at]
	}
	chunk, err := d.ledger.Begin(ctx, hold, entries, true)
	if err != nil {
		return err
	}
	res.skipped += chunk.Skipped
	taken := make([]int, len(chunk.Taken))
	for i, at := range chunk.Taken {
		taken[i] = idx[at]
	}
	if found == nil {
		return d.handOver(ctx, job, chunk.Gen, taken, notifier, res)
	}
	// A report may have settled some meanwhile: keep the receipts of those taken.
	receipts := make([]channels.Receipt, len(chunk.Taken))
	for i, at := range chunk.Taken {
		receipts[i] = found[at]
		receipts[i].Index = i
	}
	return d.recordChunk(ctx, job, chunk.Gen, d.batchOf(job, job.key(chunk.Gen), taken), taken, notifier, receipts, nil, res)
}

// batchOf builds the provider's batch of the job's recipients at idx.
func (d *Dispatcher) batchOf(job *batchJob, key string, idx []int) *channels.Batch {
	b := &channels.Batch{ID: job.h.batchID(), Key: key, Channel: job.h.Channel, Notice: job.h.Notice, Warning: job.w, Repeat: job.h.Repeat, Recipients: make([]warning.Recipient, len(idx))}
	for i, at := range idx {
		b.Recipients[i] = job.rs[at]
	}
	if d.cfg.AckURL != nil && job.h.Audience.Official() {
		w := job.w
		b.AckURL = func(r warning.Recipient) string {
			return d.cfg.AckURL(w, warning.Ref{WarningID: w.ID, Channel: job.h.Channel, RecipientID: r.ID})
		}
	}
	return b
}

// handOver sends one chunk (recipients at idx, begun under gen) and
// records what the provider said.
func (d *Dispatcher) handOver(ctx context.Context, job *batchJob, gen string, idx []int, notifier channels.Notifier, res *sendResult) error {
	b := d.batchOf(job, job.key(gen), idx)
	ch := string(job.h.Channel)
	if !channels.Askable(notifier) {
		// Until the answer is recorded, a crash would leave them uncertain.
		inFlight := d.metrics.InFlight.WithLabelValues(ch)
		inFlight.Add(float64(len(idx)))
		defer inFlight.Sub(float64(len(idx)))
	}
	d.metrics.CallRecipients.WithLabelValues(ch).Observe(float64(len(idx)))
	cctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ProviderTimeout, fmt.Errorf("%s provider did not answer within %s", job.h.Channel, d.cfg.ProviderTimeout))
	start := time.Now()
	receipts, _, sendErr := notifier.Notify(cctx, b)
	cancel()
	d.metrics.ProviderSeconds.WithLabelValues(ch).Observe(time.Since(start).Seconds())
	return d.recordChunk(ctx, job, gen, b, idx, notifier, receipts, sendErr, res)
}

// recordChunk records a chunk's receipts: accepted recipients as sent,
// those the provider refused with a reason of theirs as failed for good,
// and the rest released for the next attempt. A provider error fails
// nobody: the recipients wait for the provider, or the route's next one.
func (d *Dispatcher) recordChunk(ctx context.Context, job *batchJob, gen string, b *channels.Batch, idx []int, notifier channels.Notifier, receipts []channels.Receipt, sendErr error, res *sendResult) error {
	outs := make([]ledger.Outcome, 0, len(idx))
	answered := make([]bool, len(idx))
	var sent, failed, released int
	segments := map[string]int{} // account → billed parts
	for _, rc := range receipts {
		if rc.Index < 0 || rc.Index >= len(idx) || answered[rc.Index] {
			continue
		}
		answered[rc.Index] = true
		e := job.entries[idx[rc.Index]]
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
		default:
			answered[rc.Index] = false
		}
	}
	for i, ok := range answered {
		if !ok {
			outs = append(outs, ledger.Outcome{Entry: job.entries[idx[i]], State: warning.Queued})
			released++
		}
	}
	// Recording must not be cut short by the task's own context ending,
	// nor given up at the first Redis error: what the provider accepted
	// and goes unrecorded would be sent again.
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer rcancel()
	if err := retryRedis(rctx, func() error { return d.indexReceipts(rctx, job, b, notifier, receipts) }); err != nil {
		return err
	}
	var lost error
	if err := retryRedis(rctx, func() error {
		_, err := d.ledger.Record(rctx, job.w.ID, job.h.Channel, gen, outs)
		if errors.Is(err, ledger.ErrLockLost) {
			lost, err = err, nil
		}
		return err
	}); err != nil {
		return err
	}
	if job.h.Audience == warning.Residents {
		var failed []string
		for _, o := range outs {
			if o.State == warning.Failed {
				failed = append(failed, o.RecipientID)
			}
		}
		if len(failed) > 0 {
			d.fallbackSoon(ctx, job.w, failed...)
		}
	}
	since := d.now().Sub(job.w.Accepted).Seconds()
	lat := d.metrics.Latency.WithLabelValues(string(job.h.Channel), "sent")
	for range sent {
		lat.Observe(since)
	}
	d.metrics.Recipients.WithLabelValues(string(job.h.Channel), "sent").Add(float64(sent))
	d.metrics.Recipients.WithLabelValues(string(job.h.Channel), "failed").Add(float64(failed))
	for acct, n := range segments {
		d.metrics.Segments.WithLabelValues(string(job.h.Channel), acct).Add(float64(n))
	}
	res.sent += sent
	res.failed += failed
	res.released += released
	if sendErr != nil {
		res.sendErr = sendErr
	}
	return lost
}

// indexReceipts keeps the provider ids of a chunk's receipts: those of
// messages that keep playing, to cancel them on lift, and for reports that
// carry only the provider's id, before the send is recorded, so that no
// report can outrun its index.
func (d *Dispatcher) indexReceipts(ctx context.Context, job *batchJob, b *channels.Batch, notifier channels.Notifier, receipts []channels.Receipt) error {
	if _, ok := notifier.(channels.Canceller); ok {
		var ids []string
		for _, rc := range receipts {
			if rc.ProviderID != "" {
				ids = append(ids, rc.ProviderID)
			}
		}
		if err := d.ledger.AddProviderIDs(ctx, job.w.ID, job.h.Channel, ids); err != nil {
			return err
		}
	}
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
		if err := d.ledger.IndexProviderIDs(ctx, name, ids); err != nil {
			return err
		}
	}
	return nil
}

// retryRedis runs fn until it succeeds or ctx ends, backing off from 100 ms
// to 2 s: a Redis restart or failover takes seconds.
func retryRedis(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// reschedule turns an attempt's result into asynq's answer: done, or run
// again, after backoff (a provider error) or soon (recipients held or not
// taken). Nobody fails for good here: only the provider's reason about a
// recipient does that, or the warning ending.
func (d *Dispatcher) reschedule(job *batchJob, res sendResult, err error) error {
	ch := string(job.h.Channel)
	d.metrics.Recipients.WithLabelValues(ch, "skipped").Add(float64(res.skipped))
	switch {
	case errors.Is(err, ledger.ErrLockLost):
		d.metrics.Jobs.WithLabelValues(ch, "retry").Inc()
		job.log.Warn("batch taken over by another worker; this attempt stops", "sent", res.sent)
		return errHeld
	case err != nil:
		d.metrics.Jobs.WithLabelValues(ch, "retry").Inc()
		return err
	case res.sendErr != nil:
		d.metrics.Jobs.WithLabelValues(ch, "retry").Inc()
		job.log.Warn("batch will be retried while the warning is live", "err", res.sendErr, "released", res.released)
		return fmt.Errorf("deliver %s: %w", job.h.batchID(), res.sendErr)
	case res.released > 0:
		d.metrics.Jobs.WithLabelValues(ch, "retry").Inc()
		return fmt.Errorf("deliver %s: %d recipients not taken: %w", job.h.batchID(), res.released, errHeld)
	}
	d.metrics.Jobs.WithLabelValues(ch, "ok").Inc()
	return nil
}
