package dispatcher_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/warning"
)

// polling reads warngate_workers_polling of the rig's registry.
func (r *rig) polling() float64 {
	mfs, _ := r.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "warngate_workers_polling" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// waitIdle waits until the rig's workers stop for want of work once more
// than they had when asked.
func waitIdle(t *testing.T, r *rig, stops float64) {
	t.Helper()
	waitFor(t, 30*time.Second, "workers stopped for want of work", func() (bool, string) {
		n, p := r.counter("warngate_workers_idle_stops_total"), r.polling()
		return n > stops && p == 0, fmt.Sprintf("warngate_workers_idle_stops_total %v, warngate_workers_polling %v", n, p)
	})
}

// villageWarning is a yellow warning for one village: no timer of its own
// (calls, fallback checks) falls due within the workers' minute-long sweep
// and keeps them polling after its deliveries.
func villageWarning() *warning.Warning {
	w := redWarning()
	w.Level = warning.Yellow
	w.Areas = []string{"530102001001"}
	return w
}

// queueCheck puts a 叫应 check for a warning that does not exist in the
// timers queue behind the workers' back (no wake-up), due at due.
func queueCheck(t *testing.T, r *rig, id string, due time.Time) {
	t.Helper()
	client := asynq.NewClientFromRedisClient(r.rdb)
	defer client.Close()
	timer, _ := json.Marshal(map[string]any{"w": "nosuchwarning", "due": due.UnixMilli()})
	if _, err := client.Enqueue(asynq.NewTask(dispatcher.TypeEscalate, timer), asynq.Queue(dispatcher.QueueTimers),
		asynq.TaskID(id), asynq.ProcessAt(due), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
}

// waitRun waits until the timers queue's task id has run.
func waitRun(t *testing.T, r *rig, id, what string) {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	waitFor(t, 30*time.Second, what, func() (bool, string) {
		info, err := insp.GetTaskInfo(dispatcher.QueueTimers, id)
		if err != nil {
			return false, err.Error()
		}
		return info.State == asynq.TaskStateCompleted, info.State.String()
	})
}

// A warning issued by another process (an API process, no workers) wakes
// workers that stopped for want of work, over Redis: their sweep is a
// minute apart, so nothing else could find it within the wait.
func TestIdleWorkersWokenByWarning(t *testing.T) {
	api := newRig(t, rigOptions{noWorkers: true})
	r := newRig(t, rigOptions{shared: true, idleStop: 200 * time.Millisecond, idleSweep: time.Minute})
	waitIdle(t, r, 0)
	ctx := context.Background()
	w, _, err := api.d.Submit(ctx, villageWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "every delivery final", progressDone(t, r, w.ID))
	p, _ := r.l.Progress(ctx, w.ID)
	if tot := p.Total(); tot.Planned == 0 || tot.Delivered == 0 {
		t.Fatalf("total %+v: want deliveries delivered", tot)
	}
	// And they stop again.
	waitIdle(t, r, 1)
}

// A task due while the workers are stopped runs: a 叫应 check scheduled for
// later, and a task that reached its queue without a wake-up (queued by a
// process of an older version, or its wake-up lost), both put in the queue
// behind the workers' back.
func TestIdleWorkersRunWhatFallsDue(t *testing.T) {
	r := newRig(t, rigOptions{idleStop: 200 * time.Millisecond, idleSweep: 100 * time.Millisecond})
	waitIdle(t, r, 0)
	queueCheck(t, r, "idle-timer", time.Now().Add(1500*time.Millisecond))
	client := asynq.NewClientFromRedisClient(r.rdb)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask(dispatcher.TypeEscalate, []byte(`{"w":"nosuchwarning"}`)), asynq.Queue(dispatcher.QueueTimers),
		asynq.TaskID("idle-pending"), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"idle-pending", "idle-timer"} {
		waitRun(t, r, id, id+" run")
	}
	waitIdle(t, r, 1)
}

// A 叫应 check falling due starts the server of the checks' queue, not
// every server of the process: after a city-wide red warning thousands of
// checks fall due one after another, and each woke nine servers that
// polled for idle_stop. asynq's own registry of servers (each lists itself
// with its queues while it runs) says which poll.
func TestIdleWorkersStartOnlyTheServerDue(t *testing.T) {
	r := newRig(t, rigOptions{idleStop: 2 * time.Second, idleSweep: 100 * time.Millisecond})
	waitIdle(t, r, 0)
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	if srvs, err := insp.Servers(); err != nil || len(srvs) != 0 {
		t.Fatalf("stopped workers: asynq lists %d servers (%v), want none", len(srvs), err)
	}
	queueCheck(t, r, "due-timer", time.Now().Add(1500*time.Millisecond))
	var queues []string
	waitFor(t, 30*time.Second, "a server polling for the check", func() (bool, string) {
		srvs, err := insp.Servers()
		if err != nil {
			return false, err.Error()
		}
		queues = queues[:0]
		for _, s := range srvs {
			for q := range s.Queues {
				queues = append(queues, q)
			}
		}
		return len(srvs) > 0, fmt.Sprintf("%d servers", len(srvs))
	})
	if n := r.counter("warngate_workers_sweep_failures_total"); n > 0 && len(queues) > 1 {
		// A look for work that failed (Redis too slow on a loaded machine)
		// starts every server, by design: it cannot tell what is due.
		t.Skipf("%v looks for work failed, and every server polls as it then must: queues %v", n, queues)
	}
	if !slices.Equal(queues, []string{dispatcher.QueueTimers}) {
		t.Errorf("servers polling for a check due: queues %v, want only %s", queues, dispatcher.QueueTimers)
	}
	if p := r.polling(); p != 1 {
		t.Errorf("warngate_workers_polling %v, want 1", p)
	}
	waitRun(t, r, "due-timer", "the check run")
	waitIdle(t, r, 1)
}

// A task scheduled for later (a plan's 叫应 deadline, minutes ahead) does
// not start stopped servers when it is queued: its wake-up asks the sweep
// to look again, and the sweep starts its server when it falls due.
func TestIdleWorkersLeaveTasksForLaterToTheSweep(t *testing.T) {
	r := newRig(t, rigOptions{idleStop: 200 * time.Millisecond, idleSweep: 100 * time.Millisecond})
	waitIdle(t, r, 0)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	timer, _ := json.Marshal(map[string]any{"w": "nosuchwarning", "due": later.UnixMilli()})
	if _, err := r.d.Enqueue(ctx, asynq.NewTask(dispatcher.TypeEscalate, timer), asynq.Queue(dispatcher.QueueTimers),
		asynq.TaskID("later-timer"), asynq.ProcessAt(later)); err != nil {
		t.Fatal(err)
	}
	// Over ten sweeps, nothing polls.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if p := r.polling(); p != 0 {
			t.Fatalf("warngate_workers_polling %v after a task queued for an hour later, want 0", p)
		}
		<-time.After(10 * time.Millisecond) // the window watched, not a wait for a condition
	}
	// A task due now starts its server through the same wake-up.
	if _, err := r.d.Enqueue(ctx, asynq.NewTask(dispatcher.TypeEscalate, []byte(`{"w":"nosuchwarning"}`)), asynq.Queue(dispatcher.QueueTimers),
		asynq.TaskID("now-timer"), asynq.Retention(time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitRun(t, r, "now-timer", "the task due now run")
	waitIdle(t, r, 1)
}

// heldSMS holds every SMS hand-over until released, its context ending
// first.
type heldSMS struct {
	called  chan struct{}
	release chan struct{}
	once    sync.Once
	gaveUp  atomic.Bool // a hand-over's context ended while held
}

func (n *heldSMS) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	n.once.Do(func() { close(n.called) })
	select {
	case <-n.release:
	case <-ctx.Done():
		n.gaveUp.Store(true)
		return nil, true, ctx.Err()
	}
	out := make([]channels.Receipt, len(b.Recipients))
	for i := range b.Recipients {
		out[i] = channels.Receipt{Index: i, State: warning.Delivered}
	}
	return out, false, nil
}

// While some servers poll (an SMS batch still with its provider), a check
// falling due for a server that does not still runs: the sweep goes on for
// the queues of the servers stopped.
func TestIdleWorkersSweepWhileOthersPoll(t *testing.T) {
	sms := &heldSMS{called: make(chan struct{}), release: make(chan struct{})}
	r := newRig(t, rigOptions{idleStop: 200 * time.Millisecond, idleSweep: 100 * time.Millisecond, providerTimeout: time.Minute,
		override: map[warning.Channel]channels.Notifier{warning.SMS: sms}})
	defer close(sms.release)
	waitIdle(t, r, 0)
	ctx := context.Background()
	if _, _, err := r.d.Submit(ctx, villageWarning(), dispatcher.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sms.called:
	case <-time.After(30 * time.Second):
		t.Fatal("no SMS handed over after 30s")
	}
	// Once the plan's work is done, the servers without it stop; the SMS
	// server's batch keeps it polling.
	queueCheck(t, r, "due-while-held", time.Now().Add(1500*time.Millisecond))
	waitRun(t, r, "due-while-held", "the check run while the SMS batch is held")
	if sms.gaveUp.Load() {
		t.Fatal("the check ran only once the held SMS hand-over had timed out and the servers went idle")
	}
}

// Stopped workers cost Redis a sweep a second. The count is the server's
// (INFO commandstats), so it needs a Redis nobody else uses.
func TestIdleWorkersRedisCommands(t *testing.T) {
	u, _ := url.Parse(os.Getenv("WARNGATE_TEST_REDIS"))
	alone := os.Getenv("WARNGATE_TEST_REDIS_ALONE") == "1"
	if !alone && (u == nil || u.Port() != "6382") {
		t.Skip("counts every command of the Redis server: set WARNGATE_TEST_REDIS_ALONE=1 with a WARNGATE_TEST_REDIS that nobody else uses")
	}
	r := newRig(t, rigOptions{idleStop: 200 * time.Millisecond})
	if r.rdb.Options().Addr != u.Host {
		t.Skip("runs on the embedded Redis: the count needs a real one")
	}
	waitIdle(t, r, 0)
	stats := commandStats(t, r)
	before, clients := commands(t, r), otherDatabases(t, r)
	// Over the window, look every 200 ms for clients of other databases
	// (packages tested at the same time): their commands would count.
	const window = 3 * time.Second
	start, own := time.Now(), int64(1) // the first INFO counts in the second's total
	for time.Since(start) < window {
		<-time.After(200 * time.Millisecond) // the window measured, not a wait for a condition
		if c := otherDatabases(t, r); c != "" {
			clients = c
		}
		own++
	}
	after := commands(t, r)
	perSecond := float64(after-before-own) / time.Since(start).Seconds()
	if !alone && clients != "" {
		t.Skipf("other clients use this Redis (%s): their commands would count; %.1f commands/s", clients, perSecond)
	}
	if r.polling() != 0 {
		t.Fatal("workers started while nothing was queued")
	}
	t.Logf("idle: %.1f Redis commands/s", perSecond)
	if perSecond > 30 {
		t.Errorf("idle workers made %.1f Redis commands/s, want at most 30; calls by command: %s", perSecond, stats())
	}
}

// commands is the server's total of commands processed.
func commands(t testing.TB, r *rig) int64 {
	t.Helper()
	info, err := r.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatal("no total_commands_processed in INFO stats")
	return 0
}

// commandStats returns a function that names the commands called since.
func commandStats(t *testing.T, r *rig) func() string {
	t.Helper()
	read := func() map[string]int64 {
		info, err := r.rdb.Info(context.Background(), "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]int64{}
		for _, line := range strings.Split(info, "\n") {
			name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
			if !ok {
				continue
			}
			n, _, _ := strings.Cut(rest, ",")
			m[strings.TrimPrefix(name, "cmdstat_")], _ = strconv.ParseInt(n, 10, 64)
		}
		return m
	}
	before := read()
	return func() string {
		var out []string
		for name, n := range read() {
			if d := n - before[name]; d > 0 {
				out = append(out, fmt.Sprintf("%s %d", name, d))
			}
		}
		slices.Sort(out)
		return strings.Join(out, ", ")
	}
}

// otherDatabases names the databases other clients of the server use.
func otherDatabases(t *testing.T, r *rig) string {
	t.Helper()
	list, err := r.rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	own := "db=" + strconv.Itoa(r.rdb.Options().DB)
	var other []string
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "db=") && f != own {
				other = append(other, f)
			}
		}
	}
	return strings.Join(other, " ")
}

// TaskWorkers, which sizes a process's Redis connections, counts every
// task its servers may run at once, whatever the channels' concurrency.
func TestTaskWorkersCountEveryServer(t *testing.T) {
	for _, conc := range []map[warning.Channel]int{nil, {warning.SMS: 32, warning.WeChat: 1}} {
		r := newRig(t, rigOptions{noWorkers: true, concurrency: conc})
		if got, want := dispatcher.TaskWorkers(conc), r.d.LaneTasks(); got < want {
			t.Errorf("concurrency %v: TaskWorkers %d, the servers run %d at once", conc, got, want)
		}
	}
}
