package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Run starts the workers: one asynq server per channel, so that a slow
// loudspeaker platform never holds the workers that send SMS, one for plan
// tasks, and one for the checks due at an instant. It also re-plans
// warnings whose plan was lost. The servers stop polling after IdleStop
// without work, and each starts again when a task is enqueued in its
// queues or falls due there (see idle.go). Run returns when ctx ends,
// after the servers have finished or handed back their jobs.
func (d *Dispatcher) Run(ctx context.Context) error {
	w := &workers{d: d}
	w.build = func() ([]server, error) {
		tags, err := d.lanes.tags(ctx)
		if err != nil {
			return nil, err
		}
		return d.servers(tags, w.track), nil
	}
	// All of them at first: each recoverer gives back the tasks of a
	// process that died.
	if _, err := w.start(nil); err != nil {
		w.stop(nil)
		return err
	}
	d.log.Info("workers started", "servers", len(w.running), "poll_interval", d.cfg.PollInterval,
		"idle_stop", d.cfg.IdleStop, "idle_sweep", d.cfg.IdleSweep)

	stop := make(chan struct{})
	d.stopMu.Lock()
	d.stop = stop
	d.stopMu.Unlock()
	// Heartbeats outlive the servers' shutdown, which lets running batches
	// finish: a batch still running must not look dead.
	bctx, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		d.live.beatLoop(bctx)
	}()
	go func() {
		defer wg.Done()
		d.janitorLoop(ctx)
	}()
	w.loop(ctx)
	d.stopMu.Lock()
	close(stop)
	d.stopMu.Unlock()
	w.stop(nil)
	stopBeats()
	wg.Wait()
	return nil
}

// servers describes the workers' asynq servers, every handler wrapped in
// track, a group for each lane (one on a single Redis); workers.start
// makes them.
func (d *Dispatcher) servers(lanes []string, track asynq.MiddlewareFunc) []server {
	var servers []server
	for _, tag := range lanes {
		servers = append(servers, d.laneServers(tag, track)...)
	}
	return servers
}

// laneServers describes the servers of one lane.
func (d *Dispatcher) laneServers(tag string, track asynq.MiddlewareFunc) []server {
	var servers []server
	newServer := func(name string, queues map[string]int, concurrency int, poll time.Duration) *asynq.ServeMux {
		if tag != "" {
			name += "@" + tag
			inLane := make(map[string]int, len(queues))
			for q, p := range queues {
				inLane[laneQueue(tag, q)] = p
			}
			queues = inLane
		}
		cfg := asynq.Config{
			Concurrency:              concurrency,
			Queues:                   queues,
			StrictPriority:           true,
			TaskCheckInterval:        poll,
			DelayedTaskCheckInterval: d.cfg.DelayedInterval,
			RetryDelayFunc:           d.retryDelay,
			IsFailure:                func(err error) bool { return !errors.Is(err, errHeld) && !errors.Is(err, errEarly) },
			ShutdownTimeout:          d.cfg.ProviderTimeout + 5*time.Second,
			Logger:                   asynqLogger{d.log.With("server", name)},
			LogLevel:                 asynq.WarnLevel,
		}
		mux := asynq.NewServeMux()
		mux.Use(track)
		names := make([]string, 0, len(queues))
		for q := range queues {
			names = append(names, q)
		}
		servers = append(servers, server{name: name, cfg: cfg, mux: mux, queues: names})
		return mux
	}
	control := newServer("control", map[string]int{QueueControl: 1}, controlWorkers, d.planPoll())
	control.HandleFunc(TypePlan, d.plan)
	// Checks queued here before they had a queue of their own.
	control.HandleFunc(TypeEscalate, d.escalateTask)
	control.HandleFunc(TypeCallListCheck, d.callListTask)
	control.HandleFunc(TypeLift, d.liftTask)
	// Checks due at an instant have workers of their own, enough to wait
	// out the second before many instants at once (awaitDue).
	timers := newServer("timers", map[string]int{QueueTimers: 1}, timerWorkers, d.cfg.PollInterval)
	timers.HandleFunc(TypeEscalate, d.escalateTask)
	timers.HandleFunc(TypeCallListCheck, d.callListTask)
	timers.HandleFunc(TypeFallback, d.fallbackTask)
	for _, ch := range d.workerChannels() {
		mux := newServer(string(ch), ChannelQueues(ch), concurrency(d.cfg.Concurrency, ch), d.cfg.PollInterval)
		mux.HandleFunc(TypeDeliver+string(ch), d.deliver)
	}
	return servers
}

// planPoll is how long the plan server waits, its queue empty, before
// looking again: a fifth of PollInterval, 10 ms by default, where the
// other servers wait PollInterval. Every warning's first message waits for
// its plan to be picked up, and the plan server has one queue to look at,
// where a channel's server has five tiers, one Redis call each.
func (d *Dispatcher) planPoll() time.Duration {
	return max(d.cfg.PollInterval/5, min(d.cfg.PollInterval, 10*time.Millisecond))
}

// workerChannels are the channels this process sends on.
func (d *Dispatcher) workerChannels() []warning.Channel {
	var chs []warning.Channel
	for _, ch := range warning.Channels {
		if d.notifiers[ch] != nil {
			chs = append(chs, ch)
		}
	}
	return chs
}

// queues are the queues this process's workers take tasks from, by lane.
func (d *Dispatcher) queues(ctx context.Context) ([][]string, error) {
	tags, err := d.lanes.tags(ctx)
	if err != nil {
		return nil, err
	}
	var lanes [][]string
	for _, tag := range tags {
		qs := []string{laneQueue(tag, QueueControl), laneQueue(tag, QueueTimers)}
		for _, ch := range d.workerChannels() {
			for _, t := range Tiers {
				qs = append(qs, laneQueue(tag, QueueName(ch, t)))
			}
		}
		lanes = append(lanes, qs)
	}
	return lanes, nil
}

// RegisterQueues lists this process's queues, every lane's, in asynq's set
// of known queues, as a first enqueue on each would: what the queue
// metrics read.
func (d *Dispatcher) RegisterQueues(ctx context.Context) error {
	lanes, err := d.queues(ctx)
	if err != nil {
		return err
	}
	var names []any
	for _, qs := range lanes {
		for _, q := range qs {
			names = append(names, q)
		}
	}
	return d.rdb.SAdd(ctx, asynqQueues, names...).Err()
}

// controlWorkers is how many plans (and older checks) run at once.
const controlWorkers = 4

// concurrency is how many batches of a channel run at once: as configured,
// or DefaultConcurrency.
func concurrency(conf map[warning.Channel]int, ch warning.Channel) int {
	if n := conf[ch]; n > 0 {
		return n
	}
	return DefaultConcurrency
}

// DefaultConcurrency is a channel's batches at once per process when
// Config.Concurrency does not name it.
const DefaultConcurrency = 8

// TaskWorkers is how many tasks a worker process may run at once, each
// with a Redis command of its own in flight: plans, checks due at an
// instant, and every channel's batches (concurrency per channel, as
// Config.Concurrency takes it; a channel without a provider counted too).
// The Redis client's connection pool should hold that many besides what
// the HTTP side needs, or a new warning's commands wait for a connection
// behind a fan-out's.
func TaskWorkers(conf map[warning.Channel]int) int {
	n := controlWorkers + timerWorkers
	for _, ch := range warning.Channels {
		n += concurrency(conf, ch)
	}
	return n
}

// timerWorkers is how many checks due at an instant run at once; each
// may wait up to maxEarly for its instant.
const timerWorkers = 32

// stopping reports whether a running batch should stop between chunks: its
// task's context ended, or the workers are shutting down (the batch is
// given back to the queue for another process).
func (d *Dispatcher) stopping(ctx context.Context) bool {
	d.stopMu.Lock()
	stop := d.stop
	d.stopMu.Unlock()
	select {
	case <-stop:
		return true
	case <-ctx.Done():
		return true
	default:
		return false
	}
}

// retryDelay waits 5 s for a batch held by another worker, until its
// instant for a check handed out early, else backs off.
func (d *Dispatcher) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	switch {
	case errors.Is(err, errHeld):
		return 5 * time.Second
	case errors.Is(err, errEarly):
		return untilDue(t)
	}
	return d.cfg.RetryDelay(n)
}

// RetryDelay backs off from one second to a minute, with jitter so that a
// provider coming back is not hit by every batch at once. The minute's cap
// keeps an outage's end from waiting long: batches are retried for as long
// as their warning is live.
func RetryDelay(n int) time.Duration {
	d := time.Second << min(n, 6)
	if d > time.Minute {
		d = time.Minute
	}
	return d/2 + rand.N(d/2+1)
}

// asynqLogger sends asynq's own logs to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)) }

// QueueCollector exports queue depth and latency, and whether it could
// read them: while Redis is out the queue series vanish, and alerts on
// them go quiet, so warngate_queue_stats_up says so.
type QueueCollector struct {
	rdb     redis.UniversalClient
	size    *prometheus.Desc
	latency *prometheus.Desc
	up      *prometheus.Desc
}

// NewQueueCollector returns a collector over the dispatcher's queues.
func (d *Dispatcher) NewQueueCollector() *QueueCollector {
	return &QueueCollector{
		rdb: d.rdb,
		size: prometheus.NewDesc("warngate_queue_tasks", "Tasks in a queue by state (pending, active, scheduled, retry, archived).",
			[]string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("warngate_queue_latency_seconds", "Age of the oldest pending task in a queue.",
			[]string{"queue"}, nil),
		up: prometheus.NewDesc("warngate_queue_stats_up", "Whether the queue figures could be read from Redis at this scrape (1) or not (0).",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.latency
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	queues, stats, err := readQueues(ctx, c.rdb, true)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	for i, q := range queues {
		s := stats[i]
		for _, v := range []struct {
			state string
			n     int64
		}{{"pending", s.pending}, {"active", s.active}, {"scheduled", s.scheduled}, {"retry", s.retry}, {"archived", s.archived}} {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(v.n), q, v.state)
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, s.latency.Seconds(), q)
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
}

// Backlog returns the number of tasks pending, active, scheduled or retrying
// in all queues: zero when nothing is queued at all.
func (d *Dispatcher) Backlog(ctx context.Context) (int, error) {
	return d.countTasks(ctx, true)
}

// Due returns the number of tasks pending, active or retrying in all
// queues: work due now or under way. Checks scheduled for later (a 叫应
// deadline, a fallback) are left out: a warning's plan schedules them for
// minutes ahead, and the bench waits for Due, not Backlog, to reach zero.
func (d *Dispatcher) Due(ctx context.Context) (int, error) {
	return d.countTasks(ctx, false)
}

func (d *Dispatcher) countTasks(ctx context.Context, scheduled bool) (int, error) {
	_, stats, err := readQueues(ctx, d.rdb, false)
	if err != nil {
		return 0, err
	}
	total := int64(0)
	for _, s := range stats {
		total += s.pending + s.active + s.retry
		if scheduled {
			total += s.scheduled
		}
	}
	return int(total), nil
}
