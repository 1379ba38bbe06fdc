package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// rig is a dispatcher on the test database with simulators for every channel.
type rig struct {
	reg     *prometheus.Registry
	d       *dispatcher.Dispatcher
	l       *ledger.Ledger
	sim     *sim.Provider
	rdb     *redis.Client
	roster  region.Roster
	metrics *dispatcher.Metrics
	now     func() time.Time // the dispatcher's clock
	stop    func()
	start   func()
}

type rigOptions struct {
	notifier    func(p *sim.Provider) channels.Notifier
	failureRate float64
	now         func() time.Time
	noWorkers   bool
	concurrency map[warning.Channel]int
	// policy replaces the built-in policy.
	policy *policy.Policy
	// override replaces the simulator on some channels.
	override map[warning.Channel]channels.Notifier
	// onDuty, when set, says who is on duty in counties and townships.
	onDuty dispatcher.OnDuty
	// rosters, when set, serve the roster's versions in place of a demo roster.
	rosters interface {
		dispatcher.Rosters
		Live() region.Roster
	}
	// shared joins the database of a rig already running, as a second
	// worker process would.
	shared bool
	// noQuery makes the simulator a provider that cannot be asked what it
	// accepted.
	noQuery bool
	// retryDelay replaces the backoff between a batch's attempts.
	retryDelay func(n int) time.Duration
	// reportDelay delays the simulator's delivery reports.
	reportDelay time.Duration
	// idleStop and idleSweep set the workers' idle stop and sweep.
	idleStop, idleSweep time.Duration
	// providerTimeout bounds a provider call (5s when 0).
	providerTimeout time.Duration
	// voice tunes the simulator's calls.
	voice sim.VoiceConfig
	// demo, when set, shapes the demo roster (default: 5 residents and 2
	// households a village).
	demo *region.DemoOptions
	// uncertainBound is Config.UncertainBound (the default when 0).
	uncertainBound int
}

func newRig(t testing.TB, o rigOptions) *rig {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBDispatcher)
	// asynq's keys are not prefixed: each test starts from an empty database.
	if !o.shared {
		if err := rdb.FlushDB(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	tree := region.Kunming()
	demo := region.DemoOptions{ResidentsPerVillage: 5, HouseholdsPerVillage: 2}
	if o.demo != nil {
		demo = *o.demo
	}
	var roster region.Roster = region.Demo(tree, demo)
	var rosters dispatcher.Rosters
	if o.rosters != nil {
		roster, rosters = o.rosters.Live(), o.rosters
	}
	l := ledger.New(rdb, "wg", o.now)
	reg := prometheus.NewRegistry()
	metrics := dispatcher.NewMetrics(reg)

	var d *dispatcher.Dispatcher
	recv := &sim.Receiver{Secret: "s3cret"}
	mux := http.NewServeMux()
	mux.HandleFunc("/callbacks/sim", func(w http.ResponseWriter, r *http.Request) {
		recv.ServeReports(w, r, d)
	})
	srv := httptest.NewServer(mux)
	if o.voice == (sim.VoiceConfig{}) {
		// Nobody answers, and quickly: tests that confirm by call say so.
		o.voice = sim.VoiceConfig{NoAnswer: 1, Ring: 10 * time.Millisecond}
	}
	p := sim.New(sim.Config{CallbackURL: srv.URL + "/callbacks/sim", Secret: "s3cret", FailureRate: o.failureRate, Track: true,
		Redis: rdb, NoQuery: o.noQuery, ReportDelay: o.reportDelay, Voice: o.voice}, srv.Client(), log)
	var n channels.Notifier = p
	if o.notifier != nil {
		n = o.notifier(p)
	}
	notifiers := map[warning.Channel]channels.Notifier{}
	for _, ch := range warning.Channels {
		notifiers[ch] = n
		if o.override[ch] != nil {
			notifiers[ch] = o.override[ch]
		}
	}
	pol := o.policy
	if pol == nil {
		pol = policy.Default()
	}
	if o.providerTimeout == 0 {
		o.providerTimeout = 5 * time.Second
	}
	d = dispatcher.New(dispatcher.Config{ProviderTimeout: o.providerTimeout, MaxRetry: 3, Concurrency: o.concurrency, RetryDelay: o.retryDelay,
		IdleStop: o.idleStop, IdleSweep: o.idleSweep, UncertainBound: o.uncertainBound}, dispatcher.Deps{
		Redis: rdb, Ledger: l, Policy: pol, Tree: tree, Roster: roster, Rosters: rosters,
		Notifiers: notifiers, Metrics: metrics, Log: log, Now: o.now, OnDuty: o.onDuty,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	r := &rig{reg: reg, d: d, l: l, sim: p, rdb: rdb, roster: roster, metrics: metrics, now: o.now}
	if r.now == nil {
		r.now = time.Now
	}
	started := false
	r.start = func() {
		started = true
		go func() { done <- d.Run(ctx) }()
	}
	if !o.noWorkers {
		r.start()
	}
	r.stop = sync.OnceFunc(func() {
		cancel()
		if started {
			<-done
		}
		p.Close()
		srv.Close()
	})
	t.Cleanup(r.stop)
	return r
}

// counter reads a counter of the rig's registry by name and label pairs.
func (r *rig) counter(name string, labels ...string) float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

type testWriter struct{ t testing.TB }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func waitFor(t testing.TB, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last state: %s", what, last)
}

func redWarning() *warning.Warning {
	return &warning.Warning{
		Hazard: warning.Rainstorm, Level: warning.Red, Areas: []string{"530102000000"},
		Headline: "五华区暴雨红色预警", Description: "预计未来3小时五华区将出现100毫米以上降雨。",
		Instruction: "停止户外活动，远离河道和低洼地带。", Expires: time.Now().Add(6 * time.Hour),
	}
}

func progressDone(t testing.TB, r *rig, id string) func() (bool, string) {
	return func() (bool, string) {
		p, err := r.l.Progress(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		tot := p.Total()
		return !p.PlannedAt.IsZero() && tot.Done(), fmt.Sprintf("%+v", tot)
	}
}

func TestRedWarningReachesEveryone(t *testing.T) {
	r := newRig(t, rigOptions{failureRate: 0.02})
	ctx := context.Background()
	w, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every delivery final", progressDone(t, r, w.ID))

	p, _ := r.l.Progress(ctx, w.ID)
	c := r.roster.Counts("530102000000")
	want := map[warning.Channel]int64{
		warning.WeCom:     int64(c.Officials),
		warning.Broadcast: int64(c.Loudspeakers),
		warning.Screen:    int64(c.Screens),
		warning.WeChat:    int64(c.WeChatFollowers),
		warning.CallList:  int64(c.Households),
	}
	for ch, n := range want {
		if got := p.Channels[ch].Planned; got != n {
			t.Errorf("%s planned %d, want %d", ch, got, n)
		}
	}
	// The officials above 五华区 (none: it is a county) and every person with a phone.
	if got := p.Channels[warning.SMS].Planned; got != int64(c.Officials+c.Residents) {
		t.Errorf("sms planned %d, want %d officials + residents", got, c.Officials+c.Residents)
	}
	tot := p.Total()
	if tot.Delivered+tot.Failed != tot.Planned || tot.Failed == 0 {
		t.Errorf("total %+v: want every planned delivery delivered or failed, some failed at 2%%", tot)
	}
	for ch, reasons := range p.Reasons {
		for reason, n := range reasons {
			if reason == "" || n == 0 {
				t.Errorf("%s: failure without a reason", ch)
			}
		}
	}
	if dup := r.sim.Duplicates(); len(dup) > 0 {
		t.Errorf("sent twice: %v", dup[:min(5, len(dup))])
	}
	// Every resident of the county has a delivery on SMS.
	var seen int
	r.l.Deliveries(ctx, w.ID, warning.SMS, func(d ledger.Delivery) bool {
		if d.State != warning.Delivered && d.State != warning.Failed {
			t.Errorf("%s is %s", d.Ref, d.State)
		}
		seen++
		return true
	})
	if int64(seen) != p.Channels[warning.SMS].Planned {
		t.Errorf("ledger holds %d sms deliveries, plan had %d", seen, p.Channels[warning.SMS].Planned)
	}
}

// On a channel that officials share with the public, officials' batches go
// first.
func TestOfficialsFirst(t *testing.T) {
	r := newRig(t, rigOptions{concurrency: map[warning.Channel]int{warning.SMS: 1}})
	// The officials' batches reach Redis late, as a plan's concurrent
	// enqueues can on a busy machine: the public's must still not go ahead.
	r.rdb.AddHook(slowCommands(enqueuesIn(dispatcher.QueueName(warning.SMS, dispatcher.TierUrgent))))
	var mu sync.Mutex
	var order []warning.Audience
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		mu.Lock()
		defer mu.Unlock()
		if b.Channel == warning.SMS {
			order = append(order, b.Recipients[0].Audience)
		}
	})
	w, _, err := r.d.Submit(context.Background(), redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out", progressDone(t, r, w.ID))
	seenPublic := false
	for i, a := range order {
		if !a.Official() {
			seenPublic = true
		} else if seenPublic {
			t.Fatalf("sms batch %d went to %s after the public had been served: %v", i, a, order)
		}
	}
	if len(order) == 0 || !order[0].Official() {
		t.Fatalf("sms batches went to %v, want officials first", order)
	}
}

func TestSubmitRefusesBadWarnings(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	tests := []struct {
		name  string
		edit  func(w *warning.Warning)
		field string
	}{
		{"past expiry", func(w *warning.Warning) { w.Expires = time.Now().Add(-time.Minute) }, "expires"},
		{"unknown area", func(w *warning.Warning) { w.Areas = []string{"530102999999"} }, "areas[0]"},
		{"malformed area", func(w *warning.Warning) { w.Areas = []string{"5301"} }, "areas[0]"},
		{"no level", func(w *warning.Warning) { w.Level = 0 }, "level"},
		{"no headline", func(w *warning.Warning) { w.Headline = " " }, "headline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := redWarning()
			tt.edit(w)
			_, _, err := r.d.Submit(context.Background(), w, dispatcher.SubmitOptions{})
			var fe *warning.FieldError
			if !errors.Is(err, dispatcher.ErrInvalid) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("err = %v, want an invalid-warning error on %s", err, tt.field)
			}
		})
	}
	ids, _ := r.l.Warnings(context.Background(), 0, 10)
	if len(ids) != 0 {
		t.Fatalf("refused warnings were stored: %v", ids)
	}
	n, _ := r.d.Backlog(context.Background())
	if n != 0 {
		t.Fatalf("refused warnings enqueued %d tasks", n)
	}
}

func TestIdempotentSubmit(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	first, again := redWarning(), redWarning()
	again.Expires = first.Expires // the same request again
	a, existed1, err1 := r.d.Submit(ctx, first, dispatcher.SubmitOptions{IdempotencyKey: "same-key"})
	b, existed2, err2 := r.d.Submit(ctx, again, dispatcher.SubmitOptions{IdempotencyKey: "same-key"})
	if err1 != nil || err2 != nil || existed1 || !existed2 || a.ID != b.ID {
		t.Fatalf("a=%s b=%s existed=%v,%v errs=%v,%v", a.ID, b.ID, existed1, existed2, err1, err2)
	}
	n, _ := r.d.Backlog(ctx)
	if n != 1 {
		t.Fatalf("backlog %d, want the one plan task", n)
	}
}

// flaky fails the first call of every batch with a retryable error; it
// counts the attempts at each batch (a chunk's key is "<attempt>.<k>").
type flaky struct {
	next     channels.Notifier
	mu       sync.Mutex
	tries    map[string]int
	attempts map[string]map[string]bool
}

func (f *flaky) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	f.mu.Lock()
	f.tries[b.ID]++
	n := f.tries[b.ID]
	if f.attempts[b.ID] == nil {
		f.attempts[b.ID] = map[string]bool{}
	}
	f.attempts[b.ID][b.Key[:strings.LastIndexByte(b.Key, '.')]] = true
	f.mu.Unlock()
	if n == 1 {
		return nil, true, errors.New("provider answered 503")
	}
	return f.next.Notify(ctx, b)
}

func TestRetryAfterProviderError(t *testing.T) {
	var f *flaky
	r := newRig(t, rigOptions{notifier: func(p *sim.Provider) channels.Notifier {
		f = &flaky{next: p, tries: map[string]int{}, attempts: map[string]map[string]bool{}}
		return f
	}})
	w := redWarning()
	w.Level = warning.Blue
	w.Areas = []string{"530102001000"}
	got, _, err := r.d.Submit(context.Background(), w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "fan-out after retries", progressDone(t, r, got.ID))
	p, _ := r.l.Progress(context.Background(), got.ID)
	if tot := p.Total(); tot.Failed != 0 || tot.Delivered != tot.Planned {
		t.Fatalf("after retries: %+v", tot)
	}
	for id, a := range f.attempts {
		if len(a) != 2 {
			t.Errorf("batch %s tried %d times, want 2", id, len(a))
		}
	}
}

// outage fails the first calls of every batch, with retry as given, then
// hands the batch to the simulator, which is told that the numbers ending
// in 3 are not in service.
type outage struct {
	next  channels.Notifier
	calls int
	retry bool
	mu    sync.Mutex
	tries map[string]int
}

func (o *outage) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	o.mu.Lock()
	o.tries[b.ID]++
	n := o.tries[b.ID]
	o.mu.Unlock()
	if n <= o.calls {
		return nil, o.retry, errors.New("provider answered 403: signature does not match")
	}
	var rest []int
	var out []channels.Receipt
	for i, r := range b.Recipients {
		if strings.HasSuffix(r.ID, "3") {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "空号"})
		} else {
			rest = append(rest, i)
		}
	}
	sub := *b
	sub.Recipients = nil
	for _, i := range rest {
		sub.Recipients = append(sub.Recipients, b.Recipients[i])
	}
	got, retry, err := o.next.Notify(ctx, &sub)
	for _, rc := range got {
		rc.Index = rest[rc.Index]
		out = append(out, rc)
	}
	return out, retry, err
}

// A provider outage longer than the batches' retries fails nobody: while
// the warning is live the batches are tried again, and when the provider
// comes back everyone is sent; only the provider's reason about a
// recipient fails that recipient. A provider that refuses whole batches
// (an account problem, retry false) is waited for the same way.
func TestOutageLongerThanRetriesFailsNobody(t *testing.T) {
	for _, retry := range []bool{true, false} {
		t.Run(fmt.Sprintf("retry=%v", retry), func(t *testing.T) {
			o := &outage{calls: 6, retry: retry, tries: map[string]int{}}
			r := newRig(t, rigOptions{
				notifier:   func(p *sim.Provider) channels.Notifier { o.next = p; return o },
				retryDelay: func(int) time.Duration { return 10 * time.Millisecond }, // the rig allows 3 retries
			})
			w := redWarning()
			w.Level = warning.Blue
			w.Areas = []string{"530102001000"}
			got, _, err := r.d.Submit(context.Background(), w, dispatcher.SubmitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "fan-out after the outage", progressDone(t, r, got.ID))
			p, _ := r.l.Progress(context.Background(), got.ID)
			tot := p.Total()
			refused := p.Reasons[warning.WeCom]["空号"] + p.Reasons[warning.SMS]["空号"] + p.Reasons[warning.WeChat]["空号"]
			if tot.Failed == 0 || tot.Failed != refused || tot.Delivered+tot.Failed != tot.Planned {
				t.Fatalf("after the outage: %+v, reasons %v; want only the numbers out of service failed", tot, p.Reasons)
			}
			for id, n := range o.tries {
				if n <= o.calls {
					t.Errorf("batch %s tried %d times, fewer than the outage's %d calls", id, n, o.calls)
				}
			}
		})
	}
}

// frozen hands every batch to the provider, which accepts it, and then
// never comes back, as a worker stopped in the middle of a provider call.
type frozen struct {
	next    channels.Notifier
	calls   atomic.Int32
	release chan struct{}
}

func (f *frozen) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts, retry, err := f.next.Notify(ctx, b)
	f.calls.Add(1)
	<-f.release
	return receipts, retry, err
}

// A worker that stops in the middle of a fan-out, its batches with the
// provider and its tasks still running as far as asynq knows, has them
// resumed by another worker within seconds, not when asynq's lease and
// recoverer give them back. With a provider that can be asked, nobody gets
// the message twice; with one that cannot, at most the chunks that were
// with the provider, and they are counted as uncertain.
func TestStoppedWorkerResumedByJanitor(t *testing.T) {
	for _, askable := range []bool{true, false} {
		t.Run(fmt.Sprintf("askable=%v", askable), func(t *testing.T) {
			one := map[warning.Channel]int{}
			for _, ch := range warning.Channels {
				one[ch] = 1
			}
			f := &frozen{release: make(chan struct{})}
			// The stopped worker's delivery reports come late: the
			// resumed batches find its chunks uncertain, not delivered.
			a := newRig(t, rigOptions{concurrency: one, noQuery: !askable, reportDelay: 8 * time.Second,
				notifier: func(p *sim.Provider) channels.Notifier { f.next = p; return f }})
			t.Cleanup(func() { close(f.release) })
			var mu sync.Mutex
			times := map[warning.Ref]int{}
			count := func(b *channels.Batch, _ time.Time) {
				mu.Lock()
				defer mu.Unlock()
				for i := range b.Recipients {
					times[b.Ref(i)]++
				}
			}
			a.sim.OnAccept(count)
			ctx := context.Background()
			w, _, err := a.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 30*time.Second, "the first worker to hold batches", func() (bool, string) {
				return f.calls.Load() >= 4, fmt.Sprint(f.calls.Load(), " batches held")
			})
			a.d.Freeze()

			b := newRig(t, rigOptions{shared: true, noQuery: !askable})
			b.sim.OnAccept(count)
			waitFor(t, 30*time.Second, "every delivery final", progressDone(t, b, w.ID))

			insp := asynq.NewInspectorFromRedisClient(b.rdb)
			resumed, stuck := 0, 0
			for _, ch := range warning.Channels {
				for q := range dispatcher.ChannelQueues(ch) {
					active, _ := insp.ListActiveTasks(q)
					stuck += len(active)
					done, _ := insp.ListCompletedTasks(q)
					for _, ti := range done {
						if strings.Contains(ti.ID, "~") {
							resumed++
						}
					}
				}
			}
			// The stopped worker's own tasks are still running in asynq's
			// eyes: their batches were finished by the resumed copies.
			if stuck == 0 || resumed < stuck {
				t.Fatalf("%d tasks of the stopped worker still active, %d resumed copies done; want each resumed", stuck, resumed)
			}
			mu.Lock()
			twice := map[warning.Channel]int{}
			for ref, n := range times {
				if n > 1 {
					twice[ref.Channel]++
				}
			}
			mu.Unlock()
			uncertain := b.counter("warngate_recipients_total", "channel", "sms", "state", "uncertain")
			if askable {
				if len(twice) > 0 || uncertain != 0 {
					t.Fatalf("sent twice per channel: %v (uncertain %v); want nobody", twice, uncertain)
				}
				return
			}
			if twice[warning.SMS] == 0 || float64(twice[warning.SMS]) != uncertain {
				t.Fatalf("sms sent twice to %d, counted uncertain %v; want the chunk that was with the provider, counted", twice[warning.SMS], uncertain)
			}
			for ch, n := range twice {
				if n > dispatcher.UncertainBound {
					t.Errorf("%s: %d sent twice, over the bound of %d", ch, n, dispatcher.UncertainBound)
				}
			}
		})
	}
}

// A plan that asynq has as running while no worker's heartbeat says so (a
// Redis restart lost the heartbeat, or the plan's worker died before its
// first) is planned again within seconds, under a new task id.
func TestStalledPlanReplanned(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	w, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A worker of another kind takes the plan task and never finishes it:
	// asynq keeps its lease, and no heartbeat of ours names it.
	release := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc(dispatcher.TypePlan, func(context.Context, *asynq.Task) error { <-release; return nil })
	stuck := asynq.NewServerFromRedisClient(r.rdb, asynq.Config{Concurrency: 1, Queues: map[string]int{dispatcher.QueueControl: 1},
		TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel})
	if err := stuck.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(release); stuck.Shutdown() })
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	waitFor(t, 10*time.Second, "the plan to be taken", func() (bool, string) {
		ti, err := insp.GetTaskInfo(dispatcher.QueueControl, "plan/"+w.ID)
		return err == nil && ti.State == asynq.TaskStateActive, fmt.Sprint(ti, err)
	})
	r.start()
	waitFor(t, 30*time.Second, "the warning planned and sent", progressDone(t, r, w.ID))
	orig, err := insp.GetTaskInfo(dispatcher.QueueControl, "plan/"+w.ID)
	if err != nil || orig.State != asynq.TaskStateActive {
		t.Fatalf("original plan task %v, %v; want it still held", orig, err)
	}
	if ti, err := insp.GetTaskInfo(dispatcher.QueueControl, "plan/"+w.ID+"~stalled"); err != nil || ti.State != asynq.TaskStateCompleted {
		t.Fatalf("re-plan task %v, %v; want it completed", ti, err)
	}
}

func TestExpiredWarningSendsNothing(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	clock := func() time.Time { return *now.Load() }
	r := newRig(t, rigOptions{now: clock, noWorkers: true})
	w := redWarning()
	w.Expires = start.Add(time.Minute)
	got, _, err := r.d.Submit(context.Background(), w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	later := start.Add(2 * time.Minute)
	now.Store(&later)
	r.start()
	waitFor(t, 30*time.Second, "expiry recorded", progressDone(t, r, got.ID))
	p, _ := r.l.Progress(context.Background(), got.ID)
	if tot := p.Total(); tot.Expired != tot.Planned || tot.Sent != 0 {
		t.Fatalf("expired warning: %+v", tot)
	}
	if n := len(r.sim.Duplicates()); n != 0 || r.sim.Times(plannedRef(t, r, got, warning.WeCom, "o0")) != 0 {
		t.Fatal("an expired warning reached a provider")
	}
}

func TestReconcilePlansLostWarning(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	w, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The plan task is lost, as if Redis had dropped it.
	if err := r.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.l.CreateWarning(ctx, w, ""); err != nil {
		t.Fatal(err)
	}
	if n, err := r.d.Reconcile(ctx, -time.Second); err != nil || n != 1 {
		t.Fatalf("reconcile = %d, %v; want 1", n, err)
	}
	// asynq registers a queue name once per process, so after the flush the
	// inspector no longer lists the queue: look at the list itself.
	if n, _ := r.rdb.LLen(ctx, "asynq:{control}:pending").Result(); n != 1 {
		t.Fatalf("%d plan tasks pending after reconcile, want 1", n)
	}
}

// While Redis cannot be read the queue series cannot be exported; the
// collector says so rather than falling silent.
func TestQueueCollectorSaysWhenQueuesUnreadable(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	if _, _, err := r.d.Submit(context.Background(), redWarning(), dispatcher.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	got := queueSeries(t, r.d)
	tasks := 0.0
	for k, v := range got {
		if strings.HasPrefix(k, "warngate_queue_tasks|") {
			tasks += v
		}
	}
	if got["warngate_queue_stats_up"] != 1 || tasks != 1 {
		t.Fatalf("with Redis: %v; want up and the plan task", got)
	}
	gone := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer gone.Close()
	d := dispatcher.New(dispatcher.Config{}, dispatcher.Deps{Redis: gone, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	got = queueSeries(t, d)
	if v, ok := got["warngate_queue_stats_up"]; !ok || v != 0 {
		t.Fatalf("without Redis: %v; want warngate_queue_stats_up 0", got)
	}
}

// plannedRef names a planned delivery as its batch did, bucket and all.
func plannedRef(t testing.TB, r *rig, w *warning.Warning, ch warning.Channel, id string) warning.Ref {
	t.Helper()
	ref, err := r.d.DeliveryRef(context.Background(), w, ch, id)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// The bench waits for Due to reach zero before it measures memory: a check
// scheduled for later must not hold it (it held the bench for its whole
// 30 s cap after every fan-out), and a task pending must.
func TestDueLeavesOutChecksScheduledForLater(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(r.rdb)
	if _, err := client.Enqueue(asynq.NewTask(dispatcher.TypeEscalate, []byte(`{}`)), asynq.Queue(dispatcher.QueueTimers), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	due, err1 := r.d.Due(ctx)
	backlog, err2 := r.d.Backlog(ctx)
	if err1 != nil || err2 != nil || due != 0 || backlog != 1 {
		t.Fatalf("a check an hour ahead: due %d (%v), backlog %d (%v); want 0 and 1", due, err1, backlog, err2)
	}
	if _, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	due, err1 = r.d.Due(ctx)
	backlog, err2 = r.d.Backlog(ctx)
	if err1 != nil || err2 != nil || due != 1 || backlog != 2 {
		t.Fatalf("and a plan pending: due %d (%v), backlog %d (%v); want 1 and 2", due, err1, backlog, err2)
	}
}

// beatChecker sees, at every provider call, whether the batch's task has
// its heartbeat in the running set: written before the batch lock, which
// comes before any hand-over, or a janitor could never find the attempt.
type beatChecker struct {
	next    channels.Notifier
	rdb     *redis.Client
	mu      sync.Mutex
	calls   int
	missing []string
}

func (c *beatChecker) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if b.Tracked() {
		members, err := c.rdb.ZRange(ctx, "wg:running", 0, -1).Result()
		found := false
		for _, m := range members {
			found = found || strings.Contains(m, "|"+b.ID+"|")
		}
		c.mu.Lock()
		c.calls++
		if err != nil || !found {
			c.missing = append(c.missing, b.ID)
		}
		c.mu.Unlock()
	}
	return c.next.Notify(ctx, b)
}

// The first heartbeat is written while a task reads its warning: it is
// there before the batch is handed over, and gone once the task is done.
func TestHeartbeatBeforeHandOverAndGoneAfter(t *testing.T) {
	c := &beatChecker{}
	r := newRig(t, rigOptions{notifier: func(p *sim.Provider) channels.Notifier { c.next = p; return c }})
	c.rdb = r.rdb
	// A first heartbeat slower than the warning's read: the hand-over
	// waits for it.
	r.rdb.AddHook(slowCommands(heartbeats))
	ctx := context.Background()
	w, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every delivery final", progressDone(t, r, w.ID))
	c.mu.Lock()
	calls, missing := c.calls, c.missing
	c.mu.Unlock()
	if calls == 0 || len(missing) > 0 {
		t.Fatalf("%d provider calls; batches handed over without a heartbeat: %v", calls, missing)
	}
	waitFor(t, 10*time.Second, "no heartbeat left once the tasks are done", func() (bool, string) {
		members, err := r.rdb.ZRange(ctx, "wg:running", 0, -1).Result()
		return err == nil && len(members) == 0, fmt.Sprint(members, err)
	})
}

// slowCommands delays by 100 ms every command it matches.
func slowCommands(match func(cmd redis.Cmder) bool) *commandWatch {
	return &commandWatch{match: match, delay: 100 * time.Millisecond}
}

// commandWatch is a Redis hook that delays every command it matches, and
// counts them: in all, and the most in flight at once.
type commandWatch struct {
	match func(cmd redis.Cmder) bool
	delay time.Duration

	mu              sync.Mutex
	now, most, seen int
}

func (*commandWatch) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*commandWatch) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (w *commandWatch) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !w.match(cmd) {
			return next(ctx, cmd)
		}
		w.mu.Lock()
		w.now++
		w.seen++
		w.most = max(w.most, w.now)
		w.mu.Unlock()
		defer func() {
			w.mu.Lock()
			w.now--
			w.mu.Unlock()
		}()
		time.Sleep(w.delay)
		return next(ctx, cmd)
	}
}

// counts returns the commands matched in all and the most in flight at once.
func (w *commandWatch) counts() (seen, most int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen, w.most
}

// scriptKeys returns the keys of a script's call, nil for another command.
func scriptKeys(cmd redis.Cmder) []string {
	a := cmd.Args()
	if (cmd.Name() != "evalsha" && cmd.Name() != "eval") || len(a) < 3 {
		return nil
	}
	n, _ := strconv.Atoi(fmt.Sprint(a[2]))
	var keys []string
	for i := 3; i < len(a) && i < 3+n; i++ {
		keys = append(keys, fmt.Sprint(a[i]))
	}
	return keys
}

// heartbeats matches the first heartbeat of a task: the script on the
// running set that names one task ("<queue>|<id>|<owner>|<token>").
func heartbeats(cmd redis.Cmder) bool {
	k, a := scriptKeys(cmd), cmd.Args()
	return len(k) == 1 && k[0] == "wg:running" && len(a) == 6 && strings.Count(fmt.Sprint(a[5]), "|") == 3
}

// enqueuesIn matches asynq's enqueue of a task in queue q: the script on
// the task's hash and the queue's pending list.
func enqueuesIn(q string) func(redis.Cmder) bool {
	return func(cmd redis.Cmder) bool {
		k := scriptKeys(cmd)
		return len(k) >= 2 && strings.HasPrefix(k[0], "asynq:{"+q+"}:t:") && k[1] == "asynq:{"+q+"}:pending"
	}
}

// The queue series count each queue's tasks by state and age its oldest
// pending task, as the alerts on urgent queues (latency above 60 s) read
// them.
func TestQueueCollectorCountsAndAges(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(r.rdb)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask(dispatcher.TypeEscalate, []byte(`{}`)), asynq.Queue(dispatcher.QueueTimers), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	first, _, err := r.d.Submit(ctx, redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w2 := redWarning()
	w2.Headline = "另一预警"
	if _, _, err := r.d.Submit(ctx, w2, dispatcher.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	// The first plan waited 90 s, as behind a stalled server.
	if err := r.rdb.HSet(ctx, "asynq:{control}:t:plan/"+first.ID, "pending_since", time.Now().Add(-90*time.Second).UnixNano()).Err(); err != nil {
		t.Fatal(err)
	}
	got := queueSeries(t, r.d)
	want := map[string]float64{
		"warngate_queue_tasks|control|pending":   2,
		"warngate_queue_tasks|control|scheduled": 0,
		"warngate_queue_tasks|timers|scheduled":  1,
		"warngate_queue_tasks|timers|pending":    0,
		"warngate_queue_latency_seconds|timers":  0,
		"warngate_queue_stats_up":                1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (exported %v), want %v", k, g, ok, v)
		}
	}
	if l := got["warngate_queue_latency_seconds|control"]; l < 89 || l > 120 {
		t.Errorf("control latency %v s, want the oldest plan's 90 s", l)
	}
}

// queueSeries gathers the queue collector's series, by name and labels
// ("warngate_queue_tasks|control|pending").
func queueSeries(t *testing.T, d *dispatcher.Dispatcher) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(d.NewQueueCollector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "|" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue()
		}
	}
	return got
}
