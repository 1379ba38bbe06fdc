package dispatcher

import (
	"context"
	"time"

	"github.com/hibiken/asynq"
)

// Freeze makes the dispatcher a worker that stopped without dying: its
// heartbeats and its janitor stop, while its asynq servers keep the tasks
// they run, as a process frozen, partitioned from Redis, or killed (asynq's
// own lease outlives a killed process by half a minute and more).
func (d *Dispatcher) Freeze() {
	d.live.mu.Lock()
	d.live.frozen = true
	d.live.mu.Unlock()
}

// LookForLapsed is one look of the janitor: how many tasks it resumed and
// when it would look next.
func (d *Dispatcher) LookForLapsed(ctx context.Context) (int, time.Duration, error) {
	return d.resumeLapsed(ctx)
}

// StartBeats runs the process's heartbeat renewals until ctx ends.
func (d *Dispatcher) StartBeats(ctx context.Context) { go d.live.beatLoop(ctx) }

// HoldTask counts a task as running in this process, as a task's start
// does, without writing its first heartbeat.
func (d *Dispatcher) HoldTask(member string) { d.live.add(member) }

// RunningKey is the sorted set of running tasks' heartbeats.
func (d *Dispatcher) RunningKey() string { return d.live.key }

// PlanNow runs a warning's plan as its task would, in the test's goroutine.
func (d *Dispatcher) PlanNow(ctx context.Context, id string) error {
	return d.plan(ctx, asynq.NewTask(TypePlan, []byte(`{"w":"`+id+`"}`)))
}

// Enqueue queues a task as the dispatcher's own enqueues do, wake-up
// included.
func (d *Dispatcher) Enqueue(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error) {
	return d.enqueue(ctx, t, opts...)
}

// ReadAtOnce sets how many residents a fallback check reads at once, until
// the test ends.
func ReadAtOnce(t interface{ Cleanup(func()) }, n int) {
	was := fallbackReadAtOnce
	fallbackReadAtOnce = n
	t.Cleanup(func() { fallbackReadAtOnce = was })
}

// SetBucketTarget makes the dispatcher plan new warnings with n recipients
// to a ledger bucket, as a gateway of another version would.
func (d *Dispatcher) SetBucketTarget(n int) { d.bucketTarget.Store(int64(n)) }

// LaneTasks is how many tasks the servers of one lane run at once.
func (d *Dispatcher) LaneTasks() int {
	n := 0
	for _, s := range d.laneServers("", func(h asynq.Handler) asynq.Handler { return h }) {
		n += s.cfg.Concurrency
	}
	return n
}

// RunFallback runs a fallback check's task in the test's goroutine, as a
// worker that took it from the queue would.
func (d *Dispatcher) RunFallback(ctx context.Context, t *asynq.Task) error {
	return d.fallbackTask(ctx, t)
}

// RunEscalation runs a 叫应 check's task in the test's goroutine, as a
// worker that took it from the queue would.
func (d *Dispatcher) RunEscalation(ctx context.Context, t *asynq.Task) error {
	return d.escalateTask(ctx, t)
}

// HoldReportSlots takes n of the turns Record waits for, as n report
// requests being recorded would; release gives them back.
func (d *Dispatcher) HoldReportSlots(n int) (release func()) {
	for range n {
		d.reportSlots <- struct{}{}
	}
	return func() {
		for range n {
			<-d.reportSlots
		}
	}
}
