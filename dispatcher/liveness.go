package dispatcher

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"warngate/ledger"
	"warngate/warning"
)

// asynq gives a dead worker's tasks back only when their 30-second lease has
// run out and its recoverer, once a minute, looks: about 100 s in all, and
// neither can be shortened in v0.26. A red warning cannot wait that long, so
// every worker process keeps its own, shorter watch:
//
//   - each deliver and plan task, when it starts, enters a sorted set of
//     running tasks, scored by when its heartbeat lapses; the process renews
//     every score it holds once a second (one command);
//   - a janitor in every worker process looks for tasks whose heartbeat
//     lapsed (one command) when the earliest running task's lapses, or
//     BeatTTL after its last look when none runs (a task that starts after
//     the look lapses no sooner), takes one (ZREM: one janitor wins),
//     breaks the dead attempt's batch lock, and queues the task again under
//     a new id, "<id>~<token of the dead attempt>", a batch in its channel's
//     urgent queue, ahead of the backlog. The ledger skips whoever
//     was recorded and settles the chunk that was with the provider; the
//     original task, when asynq gives it back, finds nothing left to do.
//
// Scores are Redis's own clock (TIME), so the processes' clocks need not
// agree.
const (
	// BeatEvery is how often a process renews its running tasks' heartbeats.
	BeatEvery = time.Second
	// BeatTTL is how long a heartbeat lasts: a task not renewed for that
	// long is taken for dead. Long enough to ride out a pause of the
	// process (GC, a busy machine), short enough to resume within 10 s.
	BeatTTL = 5 * time.Second
	// resumedRetention keeps a resumed task visible once done, so that
	// operators (and tests) see what the janitor did.
	resumedRetention = time.Hour
)

// beatScript renews heartbeats. KEYS: running. ARGV: ttl ms, members...
var beatScript = redis.NewScript(`
local t = redis.call("TIME")
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call("ZADD", KEYS[1], due, ARGV[i]) end
return #ARGV - 1
`)

// lapsedScript lists tasks whose heartbeat lapsed, then gives Redis's time
// and the earliest heartbeat still running ("" when none), in ms.
// KEYS: running. ARGV: limit.
var lapsedScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "LIMIT", 0, tonumber(ARGV[1]))
local nxt = redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. now, "+inf", "WITHSCORES", "LIMIT", 0, 1)
out[#out+1] = string.format("%.0f", now)
out[#out+1] = nxt[2] or ""
return out
`)

// lapsedLimit is how many lapsed tasks a janitor takes a look.
const lapsedLimit = 64

// liveness is one process's heartbeats for the tasks it runs.
type liveness struct {
	rdb   redis.UniversalClient
	key   string
	owner string // this process: "<pid>.<random>"
	log   *slog.Logger

	mu      sync.Mutex
	running map[string]bool
	frozen  bool // tests: a process that stopped without dying
	// entered wakes the beat loop, which waits for a task while none runs.
	entered chan struct{}
}

func newLiveness(rdb redis.UniversalClient, prefix string, log *slog.Logger) *liveness {
	return &liveness{rdb: rdb, key: prefix + ":running", owner: strconv.Itoa(os.Getpid()) + "." + newToken(), log: log,
		running: map[string]bool{}, entered: make(chan struct{}, 1)}
}

// newToken returns a short random name for an attempt or a process.
func newToken() string {
	var b [4]byte
	rand.Read(b[:])
	return strconv.FormatUint(uint64(binary.LittleEndian.Uint32(b[:])), 36)
}

// runningTask is one task this process is running.
type runningTask struct {
	lv     *liveness
	member string
	// token names the attempt; the batch lock it takes carries it, so that
	// a janitor can break the lock of this attempt and no other.
	token string
	// beaten is closed once the first heartbeat was written (or failed).
	beaten chan struct{}
}

// member is "<queue>|<task id>|<owner>|<token>".
func member(queue, taskID, owner, token string) string {
	return queue + "|" + taskID + "|" + owner + "|" + token
}

func parseMember(m string) (queue, taskID, owner, token string, ok bool) {
	f := strings.Split(m, "|")
	if len(f) != 4 {
		return "", "", "", "", false
	}
	return f[0], f[1], f[2], f[3], true
}

// enter starts the heartbeat of the task t, at once: a task that dies in
// its first second must be found too.
//
// The first heartbeat is written while the task reads what it needs (its
// warning): the task calls started before it writes anything, a batch
// lock first of all, so that a lock is never taken by an attempt no
// janitor could find. Under load one Redis round trip is 5–30 ms of a
// warning's way to its first official.
func (lv *liveness) enter(ctx context.Context, t *asynq.Task) *runningTask {
	queue, _ := asynq.GetQueueName(ctx)
	id, _ := asynq.GetTaskID(ctx)
	r := &runningTask{lv: lv, token: newToken(), beaten: make(chan struct{})}
	if id == "" { // called outside a server (tests)
		close(r.beaten)
		return r
	}
	r.member = member(queue, id, lv.owner, r.token)
	lv.add(r.member)
	go func() {
		defer close(r.beaten)
		if err := beatScript.Run(ctx, lv.rdb, []string{lv.key}, BeatTTL.Milliseconds(), r.member).Err(); err != nil {
			lv.log.Warn("heartbeat not started; the next beat tries again", "task", id, "err", err)
		}
	}()
	return r
}

// add counts member among the running tasks whose heartbeats the beat loop
// renews, and wakes the loop if it waits for one.
func (lv *liveness) add(member string) {
	lv.mu.Lock()
	lv.running[member] = true
	lv.mu.Unlock()
	select {
	case lv.entered <- struct{}{}:
	default:
	}
}

// idle tells whether no task runs.
func (lv *liveness) idle() bool {
	lv.mu.Lock()
	defer lv.mu.Unlock()
	return len(lv.running) == 0
}

// started waits for the task's first heartbeat to be written.
func (r *runningTask) started() { <-r.beaten }

// leave ends the heartbeat, off the worker's path. If Redis cannot be
// told, the heartbeat lapses and a janitor finds the task: harmless when it
// is done (asynq has it as completed), and what is wanted when asynq could
// not record its end.
func (r *runningTask) leave() {
	if r.member == "" {
		return
	}
	r.lv.mu.Lock()
	delete(r.lv.running, r.member)
	r.lv.mu.Unlock()
	go func() {
		// After the first heartbeat, which would otherwise come back.
		r.started()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		r.lv.rdb.ZRem(ctx, r.lv.key, r.member)
	}()
}

// beat renews every running task's heartbeat; it costs nothing while the
// process runs no task.
func (lv *liveness) beat(ctx context.Context) {
	lv.mu.Lock()
	if lv.frozen {
		lv.mu.Unlock()
		return
	}
	args := make([]any, 0, len(lv.running)+1)
	args = append(args, BeatTTL.Milliseconds())
	for m := range lv.running {
		args = append(args, m)
	}
	lv.mu.Unlock()
	if len(args) == 1 {
		return
	}
	if err := beatScript.Run(ctx, lv.rdb, []string{lv.key}, args...).Err(); err != nil {
		lv.log.Warn("heartbeat not renewed", "tasks", len(args)-1, "err", err)
	}
}

// beatLoop renews heartbeats until ctx ends, once a second while tasks
// run; while none does, it waits for one instead of waking each second (a
// task writes its first heartbeat itself).
func (lv *liveness) beatLoop(ctx context.Context) {
	t := time.NewTicker(BeatEvery)
	defer t.Stop()
	for {
		if lv.idle() {
			select {
			case <-ctx.Done():
				return
			case <-lv.entered:
			}
			t.Reset(BeatEvery)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			lv.beat(ctx)
		}
	}
}

// janitorLoop looks for tasks whose worker stopped, when a heartbeat can
// first have lapsed, and resumes them; and every few seconds for warnings
// whose plan stalled.
func (d *Dispatcher) janitorLoop(ctx context.Context) {
	look := time.NewTimer(0)
	defer look.Stop()
	reconcile := time.NewTimer(0)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-look.C:
			n, next, err := d.resumeLapsed(ctx)
			if err != nil {
				d.log.Warn("janitor: looking for stopped workers' tasks failed", "err", err)
				next = time.Second
			} else if n > 0 {
				d.log.Warn("janitor: resumed tasks of a worker that stopped", "tasks", n)
			}
			look.Reset(next)
		case <-reconcile.C:
			if n, err := d.Reconcile(ctx, reconcileGrace); err != nil {
				d.log.Warn("reconcile failed", "err", err)
			} else if n > 0 {
				d.log.Warn("re-planned warnings whose plan was lost or stalled", "count", n)
			}
			reconcile.Reset(reconcileEvery)
		}
	}
}

// The janitor looks at unplanned warnings every reconcileEvery, at those
// accepted over reconcileGrace ago (younger ones are being planned).
const (
	reconcileEvery = 2 * time.Second
	reconcileGrace = 3 * time.Second
)

// resumeLapsed resumes the tasks whose heartbeat lapsed and returns how
// many, and when to look next: when the earliest heartbeat still running
// lapses, or BeatTTL from now when none runs, since a task that starts
// after this look lapses no sooner; at once when the look took its limit.
func (d *Dispatcher) resumeLapsed(ctx context.Context) (int, time.Duration, error) {
	d.live.mu.Lock()
	frozen := d.live.frozen
	d.live.mu.Unlock()
	if frozen {
		return 0, time.Second, nil
	}
	res, err := lapsedScript.Run(ctx, d.rdb, []string{d.live.key}, lapsedLimit).StringSlice()
	if err != nil {
		return 0, 0, err
	}
	if len(res) < 2 {
		return 0, 0, errors.New("janitor: unexpected answer from Redis")
	}
	lapsed, next := res[:len(res)-2], nextLook(res[len(res)-2], res[len(res)-1])
	if len(lapsed) == lapsedLimit {
		next = 0
	}
	n := 0
	for _, m := range lapsed {
		// One janitor takes each: the one whose ZREM removed it.
		won, err := d.rdb.ZRem(ctx, d.live.key, m).Result()
		if err != nil {
			return n, 0, err
		}
		if won == 0 {
			continue
		}
		resumed, err := d.resume(ctx, m)
		if err != nil {
			// Put it back, lapsed, for the next look.
			d.rdb.ZAdd(ctx, d.live.key, redis.Z{Score: 0, Member: m})
			return n, 0, err
		}
		if resumed {
			n++
		}
	}
	return n, next, nil
}

// nextLook is how long after Redis's now (ms) the earliest heartbeat still
// running (ms, "" for none) lapses: a millisecond past it, so that the look
// finds it lapsed; BeatTTL when none runs.
func nextLook(now, earliest string) time.Duration {
	if earliest == "" {
		return BeatTTL
	}
	n, err1 := strconv.ParseInt(now, 10, 64)
	e, err2 := strconv.ParseFloat(earliest, 64)
	if err1 != nil || err2 != nil {
		return time.Second
	}
	return min(BeatTTL, max(0, time.Duration(int64(e)-n+1)*time.Millisecond))
}

// resume queues again the task a lapsed heartbeat names, if asynq still
// has it running, after breaking its attempt's batch lock.
func (d *Dispatcher) resume(ctx context.Context, m string) (bool, error) {
	queue, taskID, owner, token, ok := parseMember(m)
	if !ok {
		return false, nil
	}
	base, _, _ := strings.Cut(taskID, "~")
	// A batch that was in flight goes ahead of the channel's backlog: the
	// queue's pending list is first in, first out.
	to := queue
	if w, ch, batch, ok := parseBatchID(base); ok {
		if err := d.ledger.Unlock(ctx, w, ch, batch, ledger.HoldGen(batch, token)); err != nil {
			return false, err
		}
		to = sameLane(queue, QueueName(ch, TierUrgent))
	}
	info, err := d.inspector.GetTaskInfo(queue, taskID)
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("janitor: task %s: %w", taskID, err)
	}
	if info.State != asynq.TaskStateActive {
		return false, nil // done, or waiting in the queue: asynq has it
	}
	newID := base + "~" + token
	_, err = d.enqueue(ctx, asynq.NewTask(info.Type, info.Payload), asynq.Queue(to), asynq.TaskID(newID),
		asynq.MaxRetry(info.MaxRetry), asynq.Timeout(info.Timeout), asynq.Retention(resumedRetention))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("janitor: resume %s: %w", taskID, err)
	}
	d.metrics.Resumed.WithLabelValues(info.Type).Inc()
	d.log.Warn("janitor: resumed a task whose worker stopped", "task", taskID, "as", newID, "worker", owner)
	return true, nil
}

// runningNow reports whether a task whose id starts with prefix has a live
// heartbeat in queue.
func (d *Dispatcher) runningNow(ctx context.Context, queue, prefix string) (bool, error) {
	now, err := d.rdb.Time(ctx).Result()
	if err != nil {
		return false, err
	}
	iter := d.rdb.ZScan(ctx, d.live.key, 0, queue+"|"+prefix+"*", 256).Iterator()
	for iter.Next(ctx) {
		if !iter.Next(ctx) {
			break
		}
		if score, _ := strconv.ParseFloat(iter.Val(), 64); int64(score) > now.UnixMilli() {
			return true, nil
		}
	}
	return false, iter.Err()
}

// parseBatchID splits a deliver task's id "<warning>/<channel>/<batch>".
func parseBatchID(id string) (warningID string, ch warning.Channel, batch int, ok bool) {
	f := strings.Split(id, "/")
	if len(f) != 3 {
		return "", "", 0, false
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || !slices.Contains(warning.Channels, warning.Channel(f[1])) {
		return "", "", 0, false
	}
	return f[0], warning.Channel(f[1]), n, true
}
