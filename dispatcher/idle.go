package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// A started asynq server polls Redis whether or not there is work: its
// processor looks at its queues every PollInterval, its forwarder moves
// scheduled and retried tasks every DelayedInterval, and a heartbeat,
// health check, janitor and recoverer run beside them. With a server per
// channel that is a couple of thousand commands a second for nothing.
//
// So the workers stop their servers when they have had no work for
// IdleStop (an asynq.Server cannot start again once shut down: new ones are
// made), and start them again on demand:
//
//   - every enqueue goes through Dispatcher.enqueue, which publishes a
//     wake-up on "<prefix>:wake" (at most one every wakeEvery, the last one
//     never dropped) and wakes its own process at once;
//   - while stopped, a sweep every IdleSweep (one script, about four
//     commands) looks for pending tasks in the process's queues and for
//     scheduled and retried tasks, and leases run out, due before the next
//     sweep: 叫应 deadlines and escalations still fire on time.
//
// A task enqueued while the servers stop is not lost: the wake-up waits
// until they have stopped, and the sweep that follows the stop sees it.
// asynq hands a task to one server only, and a server that stops finishes
// the tasks it took (or gives them back), so none runs twice.

// wakeEvery is the shortest time between two wake-ups published.
const wakeEvery = 20 * time.Millisecond

// fullSweepEvery is how many sweeps may trust the earliest due time found
// by the last full look at the scheduled and retry sets. A full look costs
// a command per queue and set; it is also taken when the sets that hold
// something change, on a wake-up, and before the servers start for a time
// found due.
const fullSweepEvery = 10

// sweepScript looks for work. KEYS: the pending lists of the queues, then
// their scheduled, retry and lease sets. ARGV: how many pending lists; "1"
// to find the earliest score of the sets. It returns {pending lists that
// hold tasks, sets that hold tasks, the earliest score or -1}. Redis drops
// a list or set when it empties, so an idle sweep is EVALSHA and two EXISTS.
var sweepScript = redis.NewScript(`
local np = tonumber(ARGV[1])
local pending = redis.call("EXISTS", unpack(KEYS, 1, np))
if pending > 0 then return {pending, 0, -1} end
local sets = redis.call("EXISTS", unpack(KEYS, np + 1))
if sets == 0 or ARGV[2] ~= "1" then return {0, sets, -1} end
local first = -1
for i = np + 1, #KEYS do
  local r = redis.call("ZRANGE", KEYS[i], 0, 0, "WITHSCORES")
  if r[2] then
    local s = tonumber(r[2])
    if first < 0 or s < first then first = s end
  end
end
return {0, sets, first}
`)

// waker publishes wake-ups for Dispatcher.enqueue and pokes its own
// process's workers.
type waker struct {
	rdb     redis.UniversalClient
	channel string
	local   chan struct{} // buffered 1: a poke for this process's workers

	mu    sync.Mutex
	last  time.Time
	armed bool // a publish is due at the end of the current window
}

func newWaker(rdb redis.UniversalClient, prefix string) *waker {
	return &waker{rdb: rdb, channel: prefix + ":wake", local: make(chan struct{}, 1)}
}

// wake tells every worker process that a task was enqueued. Within
// wakeEvery of the last publish it publishes once at the window's end, so
// that a burst of enqueues costs one message and the last is not missed.
func (w *waker) wake() {
	select {
	case w.local <- struct{}{}:
	default:
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.armed {
		return
	}
	if wait := wakeEvery - time.Since(w.last); wait > 0 {
		w.armed = true
		time.AfterFunc(wait, func() {
			w.mu.Lock()
			w.armed = false
			w.mu.Unlock()
			w.publish()
		})
		return
	}
	w.last = time.Now()
	go w.publish()
}

func (w *waker) publish() {
	w.mu.Lock()
	w.last = time.Now()
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Lost, the wake-up is the sweep's: a second at most.
	w.rdb.Publish(ctx, w.channel, "1")
}

// enqueue is the one way tasks reach the queue: it wakes the workers.
func (d *Dispatcher) enqueue(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := d.client.EnqueueContext(ctx, t, opts...)
	if err == nil {
		d.waker.wake()
	}
	return info, err
}

// enqueueIn queues a task of a warning in base's queue of the warning's
// lane (see lanes.go).
func (d *Dispatcher) enqueueIn(ctx context.Context, warningID, base string, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	queue, err := d.lanes.queue(ctx, warningID, base)
	if err != nil {
		return nil, err
	}
	return d.enqueue(ctx, t, append(opts, asynq.Queue(queue))...)
}

// server is one asynq server of the workers and its handlers.
type server struct {
	name string
	s    *asynq.Server
	mux  *asynq.ServeMux
}

// workers starts and stops the servers of one process.
type workers struct {
	d     *Dispatcher
	build func() ([]server, error)

	running []server
	since   time.Time    // when the servers started
	active  atomic.Int64 // tasks running
	last    atomic.Int64 // unix ns: a task began or ended, or a wake-up came

	// What the last full look at the scheduled sets found.
	sets   int64
	sweeps int
	first  int64 // unix seconds; -1: nothing scheduled
	stale  bool
}

// track counts running tasks; it wraps every handler.
func (w *workers) track(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		w.active.Add(1)
		w.last.Store(time.Now().UnixNano())
		defer func() {
			w.last.Store(time.Now().UnixNano())
			w.active.Add(-1)
		}()
		return h.ProcessTask(ctx, t)
	})
}

// start makes and starts new servers.
func (w *workers) start() error {
	servers, err := w.build()
	if err != nil {
		return fmt.Errorf("dispatcher: workers: %w", err)
	}
	for i, s := range servers {
		if err := s.s.Start(s.mux); err != nil {
			shutdown(servers[:i])
			return fmt.Errorf("dispatcher: start %s workers: %w", s.name, err)
		}
	}
	w.running = servers
	w.since = time.Now()
	w.last.Store(w.since.UnixNano())
	w.stale = true
	w.d.metrics.WorkersPolling.Set(1)
	return nil
}

// stop shuts the servers down; running tasks finish first.
func (w *workers) stop() {
	shutdown(w.running)
	w.running = nil
	w.d.metrics.WorkersPolling.Set(0)
}

func shutdown(servers []server) {
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.s.Shutdown()
		}()
	}
	wg.Wait()
}

// loop starts the servers on demand and stops them when idle, until ctx
// ends; it leaves them running then, for Run to stop.
func (w *workers) loop(ctx context.Context) {
	if w.d.cfg.IdleStop < 0 {
		<-ctx.Done()
		return
	}
	wake := make(chan struct{}, 1)
	poke := func() {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	sub := w.d.rdb.Subscribe(ctx, w.d.waker.channel)
	defer sub.Close()
	go func() {
		for range sub.Channel() {
			poke()
		}
	}()
	tick := time.NewTimer(w.every())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.d.waker.local:
			w.woken(ctx)
		case <-wake:
			w.woken(ctx)
		case <-tick.C:
			w.tick(ctx)
		}
		tick.Reset(w.every())
	}
}

// every is how long the loop waits: a sweep's interval while the servers
// are stopped, and while they run a look, in this process only, at
// whether they are idle.
func (w *workers) every() time.Duration {
	if w.running == nil {
		return w.d.cfg.IdleSweep
	}
	return min(w.d.cfg.IdleSweep, max(w.d.cfg.IdleStop/4, 10*time.Millisecond))
}

func (w *workers) tick(ctx context.Context) {
	if w.running == nil {
		w.sweepAndStart(ctx)
		return
	}
	if !w.idle() {
		return
	}
	if busy, err := w.sweep(ctx, true); err != nil || busy {
		// Work is waiting or due soon (or Redis cannot say): poll on.
		w.last.Store(time.Now().UnixNano())
		return
	}
	w.stop()
	w.d.metrics.IdleStops.Inc()
	w.d.log.Debug("workers stopped polling: no work", "idle_sweep", w.d.cfg.IdleSweep)
	// What came while they stopped: a wake-up is in its channel; a task
	// whose wake-up was missed is pending.
	w.sweepAndStart(ctx)
}

// woken starts the servers, or keeps them running a while more.
func (w *workers) woken(ctx context.Context) {
	w.stale = true
	if w.running != nil {
		w.last.Store(time.Now().UnixNano())
		return
	}
	w.startNow(ctx, "wake-up")
}

func (w *workers) sweepAndStart(ctx context.Context) {
	busy, err := w.sweep(ctx, false)
	if err != nil {
		w.d.log.Warn("workers: idle sweep failed; polling again", "err", err)
	}
	if busy || err != nil {
		w.startNow(ctx, "sweep")
	}
}

func (w *workers) startNow(ctx context.Context, why string) {
	for ctx.Err() == nil {
		err := w.start()
		if err == nil {
			w.d.log.Debug("workers polling again", "by", why)
			return
		}
		w.d.log.Error("workers not started; trying again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// idle reports whether no task ran for IdleStop while the servers ran.
func (w *workers) idle() bool {
	if w.active.Load() > 0 {
		return false
	}
	idleFor := w.d.cfg.IdleStop
	return time.Since(time.Unix(0, w.last.Load())) >= idleFor && time.Since(w.since) >= idleFor
}

// sweep reports whether work waits in this process's queues or falls due
// before the next sweep. full asks for a fresh look at the scheduled sets.
func (w *workers) sweep(ctx context.Context, full bool) (bool, error) {
	horizon := time.Now().Add(w.d.cfg.IdleSweep + w.d.cfg.DelayedInterval + time.Second).Unix()
	w.sweeps++
	full = full || w.stale || w.sweeps >= fullSweepEvery || (w.first >= 0 && w.first <= horizon)
	pending, sets, first, err := w.look(ctx, false)
	if err != nil || pending > 0 {
		return pending > 0, err
	}
	if sets == 0 {
		w.sets, w.first, w.stale, w.sweeps = 0, -1, false, 0
		return false, nil
	}
	if full || sets != w.sets {
		if pending, sets, first, err = w.look(ctx, true); err != nil || pending > 0 {
			return pending > 0, err
		}
		w.sets, w.first, w.stale, w.sweeps = sets, first, false, 0
	}
	return w.first >= 0 && w.first <= horizon, nil
}

// look sums what sweepScript finds in each lane: a lane's queues share a
// slot on a Redis Cluster, so one script reads them. first is the earliest
// due of all, -1 for none.
func (w *workers) look(ctx context.Context, scores bool) (pending, sets, first int64, err error) {
	lanes, err := w.d.queues(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	first = -1
	for _, queues := range lanes {
		p, s, f, err := w.lookLane(ctx, queues, scores)
		if err != nil {
			return 0, 0, 0, err
		}
		pending += p
		sets += s
		if f >= 0 && (first < 0 || f < first) {
			first = f
		}
	}
	return pending, sets, first, nil
}

func (w *workers) lookLane(ctx context.Context, queues []string, scores bool) (pending, sets, first int64, err error) {
	keys := make([]string, 0, 4*len(queues))
	for _, q := range queues {
		keys = append(keys, asynqKey(q, "pending"))
	}
	for _, q := range queues {
		keys = append(keys, asynqKey(q, "scheduled"), asynqKey(q, "retry"), asynqKey(q, "lease"))
	}
	flag := "0"
	if scores {
		flag = "1"
	}
	r, err := sweepScript.Run(ctx, w.d.rdb, keys, len(queues), flag).Int64Slice()
	if err != nil {
		return 0, 0, 0, err
	}
	if len(r) != 3 {
		return 0, 0, 0, errors.New("dispatcher: idle sweep: unexpected answer")
	}
	return r[0], r[1], r[2], nil
}
