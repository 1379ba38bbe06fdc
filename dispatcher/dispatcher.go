// Package dispatcher turns accepted warnings into delivered messages. It is
// the only package that imports asynq: a plan task expands a warning into
// batches through package policy, one deliver task per batch goes to the
// channel's queue at the warning's priority, and the deliver handler hands the
// batch to the channel's Notifier and records the outcome in the ledger.
//
// Delivery is at least once from asynq's side; the ledger makes it at most
// once per (warning, channel, recipient) from the recipient's side. A batch
// goes to the provider in chunks, each recorded before the next: a worker
// that dies leaves only the chunks it had with the provider uncertain, and
// the next attempt asks the provider about them where it can be asked
// (channels.Querier), so that only a provider that cannot be asked may get
// a chunk twice.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// Config tunes the dispatcher. Zero values take the defaults named.
type Config struct {
	// Concurrency is the number of batches each channel works on at once. Default 8.
	Concurrency map[warning.Channel]int
	// ChunkSize is how many recipients of a batch go to the provider in one
	// call, recorded before the next call. Default AskableChunk for a
	// provider that can be asked what it accepted, else a part of
	// Config.UncertainBound taken in turn: all of it for a batch sending
	// alone, half when several send (budget).
	ChunkSize map[warning.Channel]int
	// ProviderTimeout bounds one provider call. Default 30s.
	ProviderTimeout time.Duration
	// MaxRetry is how often a plan or another control task is tried again
	// after an error. Default 12 (about 20 minutes with the backoff).
	// Batches are tried again while their warning is live, whatever this
	// says: nobody is failed for an outage, however long.
	MaxRetry int
	// PollInterval is how long an idle worker waits before looking for new
	// jobs. Default 50ms, so a red warning is picked up within 100ms.
	PollInterval time.Duration
	// DelayedInterval is how often retries and scheduled jobs are moved to their queue. Default 250ms.
	DelayedInterval time.Duration
	// IdleSweep is how often a process whose workers stopped polling for
	// want of work looks in Redis for work. Default 1s.
	IdleSweep time.Duration
	// IdleStop is how long the workers poll without work before they stop
	// until the next enqueue or a task falls due. Default 10s; negative
	// never stops them.
	IdleStop time.Duration
	// AckURL, when set, builds an official's confirmation link.
	AckURL func(w *warning.Warning, ref warning.Ref) string
	// Prefix starts the dispatcher's own Redis keys (running tasks). Default "wg".
	Prefix string
	// RetryDelay is the wait before the n-th retry of a task. Default
	// RetryDelay: 1 s doubling to 1 min, with jitter.
	RetryDelay func(n int) time.Duration
	// ReportConcurrency bounds the report requests Record writes to Redis
	// at once; the others wait in the process. Default 2.
	ReportConcurrency int
	// UncertainBound is how many recipients of a channel the process may
	// have at once with a provider that cannot be asked what it accepted
	// (budget). Default UncertainBound.
	UncertainBound int
}

func (c *Config) setDefaults() {
	if c.ProviderTimeout <= 0 {
		c.ProviderTimeout = 30 * time.Second
	}
	if c.MaxRetry <= 0 {
		c.MaxRetry = 12
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 50 * time.Millisecond
	}
	if c.DelayedInterval <= 0 {
		c.DelayedInterval = 250 * time.Millisecond
	}
	if c.IdleSweep <= 0 {
		c.IdleSweep = time.Second
	}
	if c.IdleStop == 0 {
		c.IdleStop = 10 * time.Second
	}
	if c.Prefix == "" {
		c.Prefix = "wg"
	}
	if c.RetryDelay == nil {
		c.RetryDelay = RetryDelay
	}
	if c.ReportConcurrency <= 0 {
		c.ReportConcurrency = 2
	}
	if c.UncertainBound <= 0 {
		c.UncertainBound = UncertainBound
	}
}

// Dispatcher plans and delivers warnings.
type Dispatcher struct {
	cfg        Config
	rdb        redis.UniversalClient
	client     *asynq.Client
	inspector  *asynq.Inspector
	live       *liveness
	waker      *waker
	lanes      *lanes
	stopMu     sync.Mutex
	stop       chan struct{} // closed when Run's context ends
	ledger     *ledger.Ledger
	policy     *policy.Policy
	tree       *region.Tree
	roster     region.Roster
	rosters    Rosters
	checklists *policy.Checklists
	notifiers  map[warning.Channel]channels.Notifier
	metrics    *Metrics
	log        *slog.Logger
	now        func() time.Time
	sleep      func(ctx context.Context, d time.Duration) error
	onDuty     OnDuty
	// fallbackSlots remembers, per warning, the last 30-second slot for
	// which a fallback check was queued after a failure (fallbackSoon).
	fallbackSlots sync.Map
	// budgets bound, per channel, the recipients this process has with a
	// provider that cannot be asked what it accepted.
	budgets budgets
	// reportSlots holds a token for each report request being recorded
	// (Config.ReportConcurrency).
	reportSlots chan struct{}
	// accepted remembers when warnings were accepted, for the delivery
	// latency of their reports, so that a report request need not read
	// its warning.
	accepted acceptedTimes
	// bucketTarget is the bucket target of new plans: warning.BucketTarget,
	// or in a test another version's.
	bucketTarget atomic.Int64
}

// Deps are what the dispatcher works with.
type Deps struct {
	Redis  redis.UniversalClient
	Ledger *ledger.Ledger
	Policy *policy.Policy
	Tree   *region.Tree
	// Roster answers lookups not tied to a warning (SMS replies, previews):
	// the newest roster.
	Roster region.Roster
	// Rosters serves the versions warnings are planned with; nil serves
	// Roster as the only version.
	Rosters Rosters
	// Checklists are the response checklist templates; nil attaches none.
	Checklists *policy.Checklists
	Notifiers  map[warning.Channel]channels.Notifier
	Metrics    *Metrics
	Log        *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep waits for d or until ctx ends, on the clock of Now: a check that
	// the queue hands out before its instant waits in it. Nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// OnDuty says who is on duty in a county or township; nil asks the
	// roster's role holders only.
	OnDuty OnDuty
}

// New returns a dispatcher. It can submit warnings at once; Run starts its workers.
func New(cfg Config, d Deps) *Dispatcher {
	cfg.setDefaults()
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Sleep == nil {
		d.Sleep = sleep
	}
	if d.Rosters == nil {
		d.Rosters = fixedRoster{d.Roster}
	}
	out := &Dispatcher{
		cfg: cfg, rdb: d.Redis, client: asynq.NewClientFromRedisClient(d.Redis), inspector: asynq.NewInspectorFromRedisClient(d.Redis),
		live: newLiveness(d.Redis, cfg.Prefix, d.Log), waker: newWaker(d.Redis, cfg.Prefix), lanes: newLanes(d.Redis, cfg.Prefix),
		ledger: d.Ledger, policy: d.Policy, tree: d.Tree, roster: d.Roster, rosters: d.Rosters, checklists: d.Checklists,
		notifiers: d.Notifiers, metrics: d.Metrics, log: d.Log, now: d.Now, sleep: d.Sleep, onDuty: d.OnDuty,
		reportSlots: make(chan struct{}, cfg.ReportConcurrency), budgets: budgets{size: cfg.UncertainBound},
	}
	out.bucketTarget.Store(warning.BucketTarget)
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// Resolve implements channels.ReportSink: it maps provider message ids back
// to deliveries through the ledger's provider index.
//
// A fast provider can report a message before the worker that sent it has
// indexed its id (the index is written when the provider's answer to the
// whole batch is in): ids not found yet are looked up again for up to
// ResolveWait before they count as unknown.
func (d *Dispatcher) Resolve(ctx context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	out, err := d.ledger.ResolveProviderIDs(ctx, provider, ids)
	if err != nil || len(out) == len(ids) {
		return out, err
	}
	deadline := time.Now().Add(ResolveWait)
	for len(out) < len(ids) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return out, nil
		case <-time.After(100 * time.Millisecond):
		}
		var missing []string
		for _, id := range ids {
			if _, ok := out[id]; !ok {
				missing = append(missing, id)
			}
		}
		more, err := d.ledger.ResolveProviderIDs(ctx, provider, missing)
		if err != nil {
			return out, err
		}
		for id, ref := range more {
			out[id] = ref
		}
	}
	return out, nil
}

// ResolveWait is how long a report's unknown provider ids are looked up
// again; providers such as WeChat give a callback five seconds.
const ResolveWait = 3 * time.Second

// Validation failures that Submit returns before anything is stored.
var (
	// ErrInvalid wraps every *warning.FieldError of a refused warning.
	ErrInvalid = errors.New("invalid warning")
)

// SubmitOptions say who issues a warning and whether it waits for approval.
type SubmitOptions struct {
	// IdempotencyKey: a repeated submission with the same key returns the
	// first warning and schedules nothing new.
	IdempotencyKey string
	// By is who issues it; By.User is recorded as the issuer, whom the
	// second person must differ from.
	By Actor
	// NeedsApproval holds the warning until a second person approves it.
	NeedsApproval bool
}

// Check validates a warning as submitted, with the gateway's division tree
// and policy, filling defaults; a warning it accepts it normalizes
// (warning.Normalize: line breaks, areas named twice). It stores nothing.
func (d *Dispatcher) Check(w *warning.Warning) error {
	now := d.now()
	if w.MsgType == "" {
		w.MsgType = warning.MsgAlert
	}
	if w.Status == "" {
		w.Status = warning.StatusActual
	}
	if w.Issued.IsZero() {
		w.Issued = now
	}
	verr := w.Validate(now)
	if verr == nil {
		verr = policy.CheckAreas(d.tree, w.Areas)
	}
	if verr == nil && w.Status == warning.StatusTest && len(d.policy.TestRecipients) == 0 {
		verr = &warning.FieldError{Field: "status", Message: "a test warning reaches only the policy's test_recipients, and none are configured"}
	}
	if verr == nil && d.policy.Rule(w) == nil {
		verr = &warning.FieldError{Field: "level", Message: fmt.Sprintf("no policy rule covers %s %s warnings; add one to the policy", w.Level, w.Hazard)}
	}
	if verr != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, verr)
	}
	// After the checks, so that positions in their messages are those of
	// the text and areas as sent.
	w.Normalize()
	return nil
}

// size is about how many people and devices a warning's areas hold, and
// how many officials of them.
func (d *Dispatcher) size(w *warning.Warning) (size, officials int) {
	for _, a := range w.Areas {
		c := d.roster.Counts(a)
		size += c.Officials + c.Residents + c.Loudspeakers + c.Screens + c.Households
		officials += c.Officials
	}
	return max(1, size), officials
}

// storeTimeout bounds the storing of a new warning on a Redis Cluster: a
// shard that does not answer gets the operator a "not accepted, send it
// again" in seconds rather than a request that hangs; sent again, a
// warning gets a new id and most likely another shard. On one Redis (or
// the master Sentinels name) there is no other place to go: a warning
// stored during a failover waits for the new master as long as the
// request does, rather than be refused.
const storeTimeout = 10 * time.Second

// Submit checks a warning, stores it and schedules its fan-out; one that
// needs approval is stored and waits. With an idempotency key a repeated
// submission returns the first warning and existed true.
func (d *Dispatcher) Submit(ctx context.Context, w *warning.Warning, opt SubmitOptions) (stored *warning.Warning, existed bool, err error) {
	if err := d.Check(w); err != nil {
		return nil, false, err
	}
	now := d.now()
	size, officials := d.size(w)
	w.ID = d.newID(ctx, now, size, officials)
	w.Accepted = now
	w.IssuedBy = opt.By.User
	if opt.NeedsApproval {
		w.State = warning.StateAwaitingApproval
	}
	sctx, cancel := ctx, context.CancelFunc(func() {})
	if d.lanes.cc != nil {
		sctx, cancel = context.WithTimeout(ctx, storeTimeout)
	}
	stored, existed, err = d.ledger.CreateWarning(sctx, w, opt.IdempotencyKey)
	cancel()
	if errors.Is(err, ledger.ErrNotReplicated) {
		// Stored on the master: sending now beats refusing a warning
		// because its copy lags. Operators are told (metric, log).
		d.log.Error("warning accepted without a replica's copy: a Redis failover now could lose it", "warning_id", stored.ID, "err", err)
		d.metrics.Unreplicated.Inc()
		err = nil
	}
	if err != nil || existed {
		return stored, existed, err
	}
	// The audit is written while the plan is queued: the fan-out does not
	// wait for it, the answer to the issuer does.
	audited := make(chan struct{})
	go func() {
		defer close(audited)
		d.audit(ctx, ledger.AuditEntry{Who: opt.By.String(), Action: "issue", WarningID: stored.ID, Detail: string(stored.State) + " " + stored.Headline, From: opt.By.From})
	}()
	defer func() { <-audited }()
	if stored.State == warning.StateAwaitingApproval {
		return stored, false, nil
	}
	d.metrics.Warnings.WithLabelValues(w.Level.String(), string(w.Status)).Inc()
	// If this enqueue is lost (a crash, Redis gone), the warning stays in the
	// ledger's unplanned set and Reconcile plans it.
	if _, err := d.enqueuePlan(ctx, stored.ID); err != nil {
		d.log.Error("plan not enqueued; reconcile will retry", "warning_id", stored.ID, "err", err)
	}
	return stored, false, nil
}

// ErrSelfApproval is returned when the issuer of a warning tries to approve it.
var ErrSelfApproval = errors.New("the person who issued a warning cannot approve it: a second person must")

// Approve releases a warning awaiting approval: the approver must not be
// the user who issued it, whether in person or through a token. The
// fan-out starts at once, measured from now.
func (d *Dispatcher) Approve(ctx context.Context, id string, by Actor) (*warning.Warning, error) {
	approver := by.User
	w, err := d.ledger.Warning(ctx, id)
	if err != nil {
		return nil, err
	}
	if w.State != warning.StateAwaitingApproval {
		return nil, fmt.Errorf("warning %s is %s, not awaiting approval: %w", id, w.State, ledger.ErrState)
	}
	if approver == "" || approver == w.IssuedBy {
		return nil, ErrSelfApproval
	}
	now := d.now()
	if w.Expired(now) {
		return nil, fmt.Errorf("warning %s expired at %s before it was approved: %w", id, w.Expires.Format(time.RFC3339), ledger.ErrState)
	}
	w.ApprovedBy = approver
	w.Accepted = now
	if err := d.ledger.Approve(ctx, w); errors.Is(err, ledger.ErrNotReplicated) {
		d.log.Error("approval recorded without a replica's copy: a Redis failover now could lose it", "warning_id", id, "err", err)
		d.metrics.Unreplicated.Inc()
	} else if err != nil {
		return nil, err
	}
	d.audit(ctx, ledger.AuditEntry{Who: by.String(), Action: "approve", WarningID: id, Detail: w.Headline, From: by.From})
	d.metrics.Warnings.WithLabelValues(w.Level.String(), string(w.Status)).Inc()
	if _, err := d.enqueuePlan(ctx, id); err != nil {
		d.log.Error("plan not enqueued; reconcile will retry", "warning_id", id, "err", err)
	}
	return w, nil
}

// Preview is what a warning would reach and what its SMS would say.
type Preview struct {
	*policy.Summary
	SMS SMSFigures
}

// SMSFigures are a warning's SMS as its provider would send and bill them.
type SMSFigures struct {
	// Resident and Official are the message of the first resident and the
	// first official the plan texts; nil when it texts none.
	Resident, Official *SMSSample
	// Messages is how many SMS the plan sends, Parts the parts billed for
	// them, each message counted by its own text.
	Messages, Parts int64
	// OfficialParts are the fewest and the most parts an official's
	// message takes: their links differ in length.
	OfficialParts [2]int
}

// SMSSample is one SMS: the text the phone shows, with the link of an
// official's masked (it would be a working credential), its characters and
// the parts it is billed as.
type SMSSample struct {
	Text  string `json:"text"`
	Chars int    `json:"chars"`
	Parts int    `json:"parts"`
}

// Preview expands a warning without storing or sending anything: how many
// deliveries on which channel, to which audience, in which county, and
// what its SMS say and cost, counted as the SMS provider will bill them.
func (d *Dispatcher) Preview(w *warning.Warning) (*Preview, error) {
	if err := d.Check(w); err != nil {
		return nil, err
	}
	w = d.sampleOf(w)
	var sms SMSFigures
	sum, err := d.policy.Expand(w, d.tree, d.roster, func(pb policy.Batch) error {
		if pb.Channel == warning.SMS {
			d.countSMS(&sms, w, pb)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &Preview{Summary: sum, SMS: sms}, nil
}

// sampleOf is w as it would be sent: a warning not yet stored gets an id of
// the length a stored one has, for its links.
func (d *Dispatcher) sampleOf(w *warning.Warning) *warning.Warning {
	if w.ID != "" {
		return w
	}
	c := *w
	c.ID = NewID(d.now())
	return &c
}

// countSMS adds a planned batch's messages to f. A resident's text is the
// same for all of a batch; an official's holds their own link.
func (d *Dispatcher) countSMS(f *SMSFigures, w *warning.Warning, pb policy.Batch) {
	if len(pb.Recipients) == 0 {
		return
	}
	b := d.smsBatch(w, pb.Audience.Official())
	f.Messages += int64(len(pb.Recipients))
	if b.AckURL == nil {
		s := d.smsSample(b, pb.Recipients[0])
		f.Parts += int64(s.Parts * len(pb.Recipients))
		if f.Resident == nil && !pb.Audience.Official() {
			f.Resident = &s
		}
		return
	}
	for _, r := range pb.Recipients {
		n := channels.SMSSegments(d.SMSText(b, r))
		f.Parts += int64(n)
		if f.Official == nil {
			s := d.smsSample(b, r)
			f.Official, f.OfficialParts = &s, [2]int{n, n}
		}
		f.OfficialParts = [2]int{min(f.OfficialParts[0], n), max(f.OfficialParts[1], n)}
	}
}

// SMSSample is the SMS a warning would send to a first official of its
// first area (or of the city), with the link masked: what the issue form
// shows while the text is written.
func (d *Dispatcher) SMSSample(w *warning.Warning, official bool) SMSSample {
	w = d.sampleOf(w)
	r := warning.Recipient{ID: "o0", Audience: warning.Residents}
	if official {
		r.Audience = warning.VillageOfficials
		areas := w.Areas
		if len(areas) == 0 {
			areas = []string{d.tree.Root().Code}
		}
		d.tree.Walk(areas[0], func(dv *region.Division) bool {
			d.roster.People(dv.Code, func(p region.Person) bool {
				if p.Role.Audience().Official() {
					r.ID, r.Audience = p.ID, p.Role.Audience()
					return false
				}
				return true
			})
			return r.ID == "o0"
		})
	}
	return d.smsSample(d.smsBatch(w, official), r)
}

// smsBatch is a batch of w's first message on SMS, with links for officials.
func (d *Dispatcher) smsBatch(w *warning.Warning, official bool) *channels.Batch {
	b := &channels.Batch{ID: w.ID + "/sms/preview", Channel: warning.SMS, Notice: channels.NoticeFull, Warning: w}
	if official && d.cfg.AckURL != nil {
		b.AckURL = func(r warning.Recipient) string {
			return d.cfg.AckURL(w, warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: r.ID})
		}
	}
	return b
}

// smsSample is r's message of b, the link's token masked.
func (d *Dispatcher) smsSample(b *channels.Batch, r warning.Recipient) SMSSample {
	text := d.SMSText(b, r)
	s := SMSSample{Text: text, Chars: utf8.RuneCountInString(text), Parts: channels.SMSSegments(text)}
	if b.AckURL != nil {
		link := b.AckURL(r)
		if i := strings.LastIndex(link, "/"); i >= 0 {
			s.Text = strings.Replace(text, link, link[:i+1]+strings.Repeat("*", utf8.RuneCountInString(link[i+1:])), 1)
		}
	}
	return s
}

// SMSText is the text the SMS to r of b shows, as the SMS provider sends
// and bills it; without a provider that says, the composed message under
// the simulator's signature.
func (d *Dispatcher) SMSText(b *channels.Batch, r warning.Recipient) string {
	if t, ok := d.notifiers[warning.SMS].(channels.SMSTexter); ok {
		if s := t.SMSText(b, r); s != "" {
			return s
		}
	}
	return channels.SMSText(channels.DefaultSignature, b, r)
}

func (d *Dispatcher) audit(ctx context.Context, e ledger.AuditEntry) {
	if err := d.ledger.Audit(ctx, e); err != nil {
		d.log.Warn("audit not written", "err", err)
	}
}

// enqueuePlan queues a warning's plan; queued is false when its task was
// there already.
func (d *Dispatcher) enqueuePlan(ctx context.Context, id string) (queued bool, err error) {
	payload := []byte(`{"w":"` + id + `"}`)
	_, err = d.enqueueIn(ctx, id, QueueControl, asynq.NewTask(TypePlan, payload),
		asynq.TaskID("plan/"+id), asynq.MaxRetry(d.cfg.MaxRetry), asynq.Timeout(10*time.Minute))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	return err == nil, err
}

// Reconcile schedules the plan of every warning accepted before grace ago
// whose plan is missing, as after a crash between storing and enqueueing,
// or stalled: asynq has it running but no worker's heartbeat says so, as
// after a Redis restart lost the heartbeat. It returns how many it queued.
// A plan task waiting in the queue, or running with a heartbeat, is left to
// run.
func (d *Dispatcher) Reconcile(ctx context.Context, grace time.Duration) (int, error) {
	ids, err := d.ledger.Unplanned(ctx, d.now().Add(-grace))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		queued, err := d.enqueuePlan(ctx, id)
		if err != nil {
			return n, fmt.Errorf("dispatcher: re-plan %s: %w", id, err)
		}
		if !queued {
			queued, err = d.replanStalled(ctx, id)
			if err != nil {
				return n, fmt.Errorf("dispatcher: re-plan %s: %w", id, err)
			}
		}
		if queued {
			n++
		}
	}
	return n, nil
}

// replanStalled queues a warning's plan again under "plan/<id>~stalled"
// when its plan task is active in asynq and no heartbeat says a worker runs
// it (nor a copy of it).
func (d *Dispatcher) replanStalled(ctx context.Context, id string) (bool, error) {
	queue, err := d.lanes.queue(ctx, id, QueueControl)
	if err != nil {
		return false, err
	}
	info, err := d.inspector.GetTaskInfo(queue, "plan/"+id)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, nil
	}
	if err != nil || info.State != asynq.TaskStateActive {
		return false, err
	}
	if running, err := d.runningNow(ctx, queue, "plan/"+id); err != nil || running {
		return false, err
	}
	_, err = d.enqueue(ctx, asynq.NewTask(TypePlan, info.Payload), asynq.Queue(queue), asynq.TaskID("plan/"+id+"~stalled"),
		asynq.MaxRetry(d.cfg.MaxRetry), asynq.Timeout(10*time.Minute), asynq.Retention(resumedRetention))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	d.metrics.Resumed.WithLabelValues(TypePlan).Inc()
	d.log.Warn("janitor: re-planned a warning whose plan stalled", "warning_id", id)
	return true, nil
}

// Record records provider reports and counts them. It is the one path every
// provider callback takes into the ledger; it implements channels.ReportSink.
func (d *Dispatcher) Record(ctx context.Context, reports []warning.Report) error {
	if len(reports) == 0 {
		return nil
	}
	// A fan-out's reports come in many requests at once, each a script of
	// milliseconds in Redis. Redis runs one command at a time: recorded
	// all at once, they would queue there ahead of a new warning's plan
	// and first batches. A few at a time, the rest wait here.
	select {
	case d.reportSlots <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("reports not recorded, waiting for their turn: %w", ctx.Err())
	}
	defer func() { <-d.reportSlots }()
	calls, err := d.ledger.RecordCalls(ctx, reports)
	if err != nil {
		return err
	}
	for _, r := range calls {
		d.metrics.VoiceCalls.WithLabelValues(r.Call.Account, string(r.Call.Outcome)).Inc()
		d.metrics.VoiceMinutes.WithLabelValues(r.Call.Account).Add(float64(r.Call.Billed))
	}
	res, err := d.ledger.ApplyReports(ctx, reports)
	if err != nil {
		return err
	}
	// A call placed by the 叫应 checks (a re-call, a call after call_after)
	// is no delivery of its own: its report is kept as a call above.
	isCall := make(map[warning.Ref]bool)
	for _, r := range reports {
		if r.Call != nil {
			isCall[r.Ref] = true
		}
	}
	skip := make(map[warning.Ref]bool, len(res.Unknown)+len(res.Duplicates))
	for _, u := range res.Unknown {
		skip[u] = true
		if isCall[u] {
			d.metrics.Reports.WithLabelValues(string(u.Channel), "call").Inc()
			continue
		}
		d.metrics.Reports.WithLabelValues(string(u.Channel), "unknown").Inc()
		d.log.Warn("report for an unknown delivery", "ref", u.String())
	}
	for _, u := range res.Duplicates {
		skip[u] = true
		d.metrics.Reports.WithLabelValues(string(u.Channel), "duplicate").Inc()
	}
	accepted := map[string]time.Time{}
	warnings := map[string]*warning.Warning{}
	failed := map[string][]string{} // warning → recipients failed
	// A request's reports are of a channel or two: their counters and
	// histograms are looked up once each, their counts added once.
	type outcome struct {
		ch    warning.Channel
		state warning.DeliveryState
	}
	counts := map[outcome]int{}
	latency := map[warning.Channel]prometheus.Observer{}
	for _, r := range reports {
		if skip[r.Ref] {
			continue
		}
		at, ok := accepted[r.Ref.WarningID]
		if !ok {
			if at, ok = d.accepted.get(r.Ref.WarningID); !ok {
				if w, err := d.ledger.Warning(ctx, r.Ref.WarningID); err == nil {
					at = w.Accepted
					warnings[w.ID] = w
					d.accepted.put(w.ID, at)
				}
			}
			accepted[r.Ref.WarningID] = at
		}
		if r.State == warning.Failed && d.mayBeResident(r.Ref.RecipientID) {
			w, loaded := warnings[r.Ref.WarningID]
			if !loaded {
				w, _ = d.ledger.Warning(ctx, r.Ref.WarningID) // nil when it cannot be read
				warnings[r.Ref.WarningID] = w
			}
			if w != nil {
				failed[r.Ref.WarningID] = append(failed[r.Ref.WarningID], r.Ref.RecipientID)
			}
		}
		if !at.IsZero() && r.State == warning.Delivered {
			when := r.At
			if when.IsZero() {
				when = d.now()
			}
			o := latency[r.Ref.Channel]
			if o == nil {
				o = d.metrics.Latency.WithLabelValues(string(r.Ref.Channel), "delivered")
				latency[r.Ref.Channel] = o
			}
			o.Observe(when.Sub(at).Seconds())
		}
		counts[outcome{r.Ref.Channel, r.State}]++
	}
	for o, n := range counts {
		d.metrics.Reports.WithLabelValues(string(o.ch), o.state.String()).Add(float64(n))
	}
	for id, ids := range failed {
		d.fallbackSoon(ctx, warnings[id], ids...)
	}
	return nil
}

// acceptedTimes remembers when warnings were accepted, which never
// changes. It holds the last few thousand warnings reported on, forgetting
// them all when full: a report request of a forgotten one reads it again.
type acceptedTimes struct {
	mu sync.Mutex
	m  map[string]time.Time
}

const acceptedKept = 4096

func (a *acceptedTimes) get(id string) (time.Time, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.m[id]
	return t, ok
}

func (a *acceptedTimes) put(id string, t time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil || len(a.m) >= acceptedKept {
		a.m = make(map[string]time.Time)
	}
	a.m[id] = t
}
