package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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
// made), and start again, on demand, only the servers whose queues have
// work:
//
//   - every enqueue goes through Dispatcher.enqueue, which publishes a
//     wake-up naming the task's queue on "<prefix>:wake" (at most one
//     message every wakeEvery, naming every queue of the window, the last
//     one never dropped) and wakes its own process at once. A task
//     scheduled beyond the sweep's horizon only asks for a fresh look at
//     the scheduled sets ("+<queue>"): the sweep starts its server when it
//     falls due;
//   - a sweep every IdleSweep (one script, about four commands while
//     nothing is there) looks for pending tasks in the process's queues and
//     for scheduled and retried tasks, and leases run out, due before the
//     next sweep: 叫应 deadlines and escalations still fire on time. It runs
//     while some servers poll too, for the queues of those that do not;
//   - servers idle for IdleStop stop, but for those whose queues have work
//     due before the next sweep, which poll on.
//
// A task enqueued while the servers stop is not lost: the wake-up waits
// until they have stopped, and the sweep that follows the stop sees it.
// asynq hands a task to one server only, and a server that stops finishes
// the tasks it took (or gives them back), so none runs twice.

// wakeEvery is the shortest time between two wake-ups published.
const wakeEvery = 20 * time.Millisecond

// fullSweepEvery is how many sweeps may trust the earliest due times found
// by the last full look at the scheduled and retry sets. A full look costs
// a command per queue and set; it is also taken when the sets that hold
// something change, on a wake-up, and before servers start for a time
// found due.
const fullSweepEvery = 10

// wakeAll is the wake-up that names no queue (a process of an older
// version sends it): every server starts.
const wakeAll = "1"

// sweepScript looks for work. KEYS: the pending lists of the queues, then
// their scheduled, retry and lease sets, three a queue. ARGV: how many
// queues; "1" to find the earliest score of each queue's sets. It returns
// {pending lists that hold tasks, sets that hold tasks}, then, when some
// pending list holds tasks, 1 or 0 for each queue, then, when asked and
// some set holds tasks, the earliest score of each queue (-1: none). Redis
// drops a list or set when it empties, so an idle sweep is EVALSHA and two
// EXISTS.
var sweepScript = redis.NewScript(`
local n = tonumber(ARGV[1])
local pending = redis.call("EXISTS", unpack(KEYS, 1, n))
local sets = redis.call("EXISTS", unpack(KEYS, n + 1))
local out = {pending, sets}
if pending > 0 then
  for q = 1, n do out[#out+1] = redis.call("EXISTS", KEYS[q]) end
end
if sets == 0 or ARGV[2] ~= "1" then return out end
for q = 1, n do
  local first = -1
  for k = n + 3 * q - 2, n + 3 * q do
    local r = redis.call("ZRANGE", KEYS[k], 0, 0, "WITHSCORES")
    if r[2] then
      local s = tonumber(r[2])
      if first < 0 or s < first then first = s end
    end
  end
  out[#out+1] = first
end
return out
`)

// wakeSet gathers the wake-ups that came until someone takes them: queue
// names, "+<queue>" for a look at the scheduled sets, or wakeAll.
type wakeSet struct {
	mu    sync.Mutex
	names map[string]bool
	ready chan struct{} // buffered 1: something to take
}

func newWakeSet() *wakeSet {
	return &wakeSet{names: map[string]bool{}, ready: make(chan struct{}, 1)}
}

func (s *wakeSet) add(names ...string) {
	s.mu.Lock()
	for _, n := range names {
		s.names[n] = true
	}
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take returns what came, in no order, and forgets it.
func (s *wakeSet) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.names))
	for n := range s.names {
		out = append(out, n)
	}
	clear(s.names)
	return out
}

// waker publishes wake-ups for Dispatcher.enqueue and tells its own
// process's workers.
type waker struct {
	rdb     redis.UniversalClient
	channel string
	local   *wakeSet // for this process's workers

	outbox *wakeSet // what the next publish names

	mu    sync.Mutex
	last  time.Time
	armed bool // a publish is due at the end of the current window
}

func newWaker(rdb redis.UniversalClient, prefix string) *waker {
	return &waker{rdb: rdb, channel: prefix + ":wake", local: newWakeSet(), outbox: newWakeSet()}
}

// wake tells every worker process that a task was enqueued in queue (for a
// task due later, that their sweep should look again). Within wakeEvery of
// the last publish it publishes once at the window's end, so that a burst
// of enqueues costs one message and the last is not missed.
func (w *waker) wake(queue string, later bool) {
	name := queue
	if later {
		name = "+" + queue
	}
	w.local.add(name)
	w.outbox.add(name)
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
	names := w.outbox.take()
	if len(names) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// Lost, the wake-up is the sweep's: a second at most.
	w.rdb.Publish(ctx, w.channel, strings.Join(names, ","))
}

// enqueue is the one way tasks reach the queue: it wakes the workers.
func (d *Dispatcher) enqueue(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	info, err := d.client.EnqueueContext(ctx, t, opts...)
	if err == nil {
		d.waker.wake(info.Queue, info.State == asynq.TaskStateScheduled && time.Until(info.NextProcessAt) > d.sweepAhead())
	}
	return info, err
}

// sweepAhead is how far ahead a sweep looks for tasks falling due: to the
// next sweep, and the forwarder's interval and a second of margin beyond
// it, so that a server started for a task polls when it falls due.
func (d *Dispatcher) sweepAhead() time.Duration {
	return d.cfg.IdleSweep + d.cfg.DelayedInterval + time.Second
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

// server is one asynq server of the workers: its configuration, its
// handlers and the queues it takes tasks from, and once started the
// server itself.
type server struct {
	name   string
	cfg    asynq.Config
	mux    *asynq.ServeMux
	queues []string
	s      *asynq.Server
}

// workers starts and stops the servers of one process.
type workers struct {
	d     *Dispatcher
	build func() ([]server, error)

	running map[string]server // by name
	total   int               // servers the last build made
	since   time.Time         // when a server last started
	active  atomic.Int64      // tasks running
	last    atomic.Int64      // unix ns: a task began or ended, or a wake-up came

	// What the last full look at the scheduled sets found.
	sets   int64
	sweeps int
	firsts map[string]int64 // queue → its earliest due, unix seconds; -1: none
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

// start makes and starts the servers that need says should poll and do
// not already; need nil starts them all. It returns the names started.
func (w *workers) start(need map[string]bool) ([]string, error) {
	servers, err := w.build()
	if err != nil {
		return nil, fmt.Errorf("dispatcher: workers: %w", err)
	}
	w.total = len(servers)
	if w.running == nil {
		w.running = map[string]server{}
	}
	var started []string
	for _, s := range servers {
		if _, ok := w.running[s.name]; ok || !serves(s, need) {
			continue
		}
		s.s = asynq.NewServerFromRedisClient(w.d.rdb, s.cfg)
		if err := s.s.Start(s.mux); err != nil {
			return started, fmt.Errorf("dispatcher: start %s workers: %w", s.name, err)
		}
		w.running[s.name] = s
		started = append(started, s.name)
	}
	if len(started) > 0 {
		w.since = time.Now()
		w.last.Store(w.since.UnixNano())
		w.stale = true
	}
	w.d.metrics.WorkersPolling.Set(float64(len(w.running)))
	return started, nil
}

// serves reports whether s takes tasks from a queue of need (nil: every
// queue).
func serves(s server, need map[string]bool) bool {
	if need == nil {
		return true
	}
	for _, q := range s.queues {
		if need[q] {
			return true
		}
	}
	return false
}

// stop shuts down the servers that need no longer names (nil: all);
// running tasks finish first.
func (w *workers) stop(need map[string]bool) {
	var stopping []server
	for name, s := range w.running {
		if need == nil || !serves(s, need) {
			stopping = append(stopping, s)
			delete(w.running, name)
		}
	}
	shutdown(stopping)
	w.d.metrics.WorkersPolling.Set(float64(len(w.running)))
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

// loop starts servers on demand and stops them when idle, until ctx ends;
// it leaves them running then, for Run to stop.
func (w *workers) loop(ctx context.Context) {
	if w.d.cfg.IdleStop < 0 {
		<-ctx.Done()
		return
	}
	remote := newWakeSet()
	sub := w.d.rdb.Subscribe(ctx, w.d.waker.channel)
	defer sub.Close()
	go func() {
		for m := range sub.Channel() {
			remote.add(strings.Split(m.Payload, ",")...)
		}
	}()
	tick := time.NewTimer(w.every())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.d.waker.local.ready:
			w.woken(ctx, w.d.waker.local.take())
		case <-remote.ready:
			w.woken(ctx, remote.take())
		case <-tick.C:
			w.tick(ctx)
		}
		tick.Reset(w.every())
	}
}

// every is how long the loop waits: a sweep's interval while no server
// polls, and while some do a look, in this process only, at whether they
// are idle, with a sweep for the queues of the others.
func (w *workers) every() time.Duration {
	if len(w.running) == 0 {
		return w.d.cfg.IdleSweep
	}
	return min(w.d.cfg.IdleSweep, max(w.d.cfg.IdleStop/4, 10*time.Millisecond))
}

func (w *workers) tick(ctx context.Context) {
	if len(w.running) == 0 {
		w.sweepAndStart(ctx)
		return
	}
	idle := w.idle()
	if !idle && w.polls(nil) {
		return
	}
	need, err := w.sweep(ctx, idle)
	if err != nil {
		w.d.metrics.SweepFailures.Inc()
		if idle {
			// Redis cannot say: poll on.
			w.last.Store(time.Now().UnixNano())
		}
		return
	}
	if idle {
		w.stop(need)
		if len(w.running) > 0 {
			// Work waits or falls due soon for those left: they poll on.
			w.last.Store(time.Now().UnixNano())
		} else {
			w.d.metrics.IdleStops.Inc()
			w.d.log.Debug("workers stopped polling: no work", "idle_sweep", w.d.cfg.IdleSweep)
			// What came while they stopped: a wake-up is in its channel;
			// a task whose wake-up was missed is pending.
			w.sweepAndStart(ctx)
			return
		}
	}
	// Work for the servers that do not poll.
	w.startNow(ctx, need, "sweep")
}

// woken starts the servers of the queues a wake-up names, or keeps them
// running a while more; a "+<queue>" asks the next sweep for a full look.
func (w *workers) woken(ctx context.Context, names []string) {
	need := map[string]bool{}
	for _, n := range names {
		switch {
		case n == wakeAll:
			need = nil
		case strings.HasPrefix(n, "+"):
			w.stale = true
		case need != nil:
			need[n] = true
		}
	}
	if need != nil && len(need) == 0 {
		return
	}
	for _, s := range w.running {
		if serves(s, need) {
			w.last.Store(time.Now().UnixNano())
			break
		}
	}
	w.stale = true
	w.startNow(ctx, need, "wake-up")
}

func (w *workers) sweepAndStart(ctx context.Context) {
	need, err := w.sweep(ctx, false)
	if err != nil {
		w.d.metrics.SweepFailures.Inc()
		w.d.log.Warn("workers: idle sweep failed; polling again", "err", err)
		need = nil
	}
	w.startNow(ctx, need, "sweep")
}

// startNow starts the servers need names that do not poll (nil: all),
// trying again each second until they start or ctx ends.
func (w *workers) startNow(ctx context.Context, need map[string]bool, why string) {
	if w.polls(need) {
		return
	}
	for ctx.Err() == nil {
		started, err := w.start(need)
		if err == nil {
			if len(started) > 0 {
				w.d.log.Debug("workers polling again", "by", why, "servers", started)
			}
			return
		}
		w.d.log.Error("workers not started; trying again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// polls reports whether a running server takes tasks from each queue of
// need (nil: whether every server runs), so that nothing need start.
func (w *workers) polls(need map[string]bool) bool {
	if need == nil {
		return w.total > 0 && len(w.running) >= w.total
	}
	for q := range need {
		found := false
		for _, s := range w.running {
			if slices.Contains(s.queues, q) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// idle reports whether no task ran for IdleStop while the servers ran.
func (w *workers) idle() bool {
	if w.active.Load() > 0 {
		return false
	}
	idleFor := w.d.cfg.IdleStop
	return time.Since(time.Unix(0, w.last.Load())) >= idleFor && time.Since(w.since) >= idleFor
}

// sweep returns the queues of this process where work waits or falls due
// before the next sweep. full asks for a fresh look at the scheduled sets.
func (w *workers) sweep(ctx context.Context, full bool) (map[string]bool, error) {
	horizon := time.Now().Add(w.d.sweepAhead()).Unix()
	w.sweeps++
	full = full || w.stale || w.sweeps >= fullSweepEvery || len(w.dueBy(horizon)) > 0
	need, sets, _, err := w.look(ctx, false)
	if err != nil {
		return nil, err
	}
	if sets == 0 {
		w.sets, w.firsts, w.stale, w.sweeps = 0, nil, false, 0
		return need, nil
	}
	if full || sets != w.sets {
		var firsts map[string]int64
		if need, sets, firsts, err = w.look(ctx, true); err != nil {
			return nil, err
		}
		w.sets, w.firsts, w.stale, w.sweeps = sets, firsts, false, 0
	}
	for _, q := range w.dueBy(horizon) {
		need[q] = true
	}
	return need, nil
}

// dueBy names the queues whose earliest due, at the last full look, comes
// by horizon (unix seconds).
func (w *workers) dueBy(horizon int64) []string {
	var due []string
	for q, f := range w.firsts {
		if f >= 0 && f <= horizon {
			due = append(due, q)
		}
	}
	return due
}

// look reads what sweepScript finds in each lane: a lane's queues share a
// slot on a Redis Cluster, so one script reads them. need names the
// queues whose pending list holds tasks; with scores, firsts gives each
// queue's earliest due (-1: none).
func (w *workers) look(ctx context.Context, scores bool) (need map[string]bool, sets int64, firsts map[string]int64, err error) {
	lanes, err := w.d.queues(ctx)
	if err != nil {
		return nil, 0, nil, err
	}
	need = map[string]bool{}
	if scores {
		firsts = map[string]int64{}
	}
	for _, queues := range lanes {
		s, err := w.lookLane(ctx, queues, scores, need, firsts)
		if err != nil {
			return nil, 0, nil, err
		}
		sets += s
	}
	return need, sets, firsts, nil
}

func (w *workers) lookLane(ctx context.Context, queues []string, scores bool, need map[string]bool, firsts map[string]int64) (sets int64, err error) {
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
		return 0, err
	}
	n := len(queues)
	want := 2
	if r[0] > 0 {
		want += n
	}
	if scores && len(r) >= 2 && r[1] > 0 {
		want += n
	}
	if len(r) < 2 || len(r) != want {
		return 0, errors.New("dispatcher: idle sweep: unexpected answer")
	}
	rest := r[2:]
	if r[0] > 0 {
		for i, q := range queues {
			if rest[i] > 0 {
				need[q] = true
			}
		}
		rest = rest[n:]
	}
	if len(rest) == n {
		for i, q := range queues {
			firsts[q] = rest[i]
		}
	}
	return r[1], nil
}
