package dispatcher_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"warngate/dispatcher"
	"warngate/policy"
	"warngate/warning"
)

// atItsInstant moves the clock to the instant a timed check's task
// carries, and runs the task there as a worker would (run).
func atItsInstant(t *testing.T, clock *stepClock, info *asynq.TaskInfo, run func(context.Context, *asynq.Task) error) {
	t.Helper()
	var p struct {
		Due int64 `json:"due"`
	}
	if err := json.Unmarshal(info.Payload, &p); err != nil || p.Due == 0 {
		t.Fatalf("%s: payload %s: %v", info.ID, info.Payload, err)
	}
	clock.add(time.UnixMilli(p.Due).Sub(clock.now()))
	if err := run(context.Background(), asynq.NewTask(info.Type, info.Payload)); err != nil {
		t.Fatal(err)
	}
}

// escalationTasks lists a warning's 叫应 checks in the timers queue,
// pending or scheduled, by id.
func escalationTasks(t *testing.T, insp *asynq.Inspector, warningID string) map[string]*asynq.TaskInfo {
	t.Helper()
	out := map[string]*asynq.TaskInfo{}
	for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks} {
		tasks, err := list(dispatcher.QueueTimers)
		if err != nil && !strings.Contains(err.Error(), "not found") {
			t.Fatal(err)
		}
		for _, ti := range tasks {
			if strings.HasPrefix(ti.ID, "esc/"+warningID+"/") {
				out[ti.ID] = ti
			}
		}
	}
	return out
}

// A 叫应 check runs at the instant its task carries, in milliseconds. When
// the interval between tries is no whole number of them (a deadline of one
// second over three tries), the officials' reminders fall a fraction of a
// millisecond after that instant: the check must still find them due. It
// used to find nobody, and queue the next check for the same millisecond
// under its own task id, which the queue refused while the check ran: the
// officials were never reminded, nor escalated.
func TestEscalationAtTheMillisecondItsTaskCarries(t *testing.T) {
	clock := newStepClock(time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC))
	p := policy.Default()
	for i := range p.Rules {
		if slices.Contains(p.Rules[i].Levels, warning.Red) {
			p.Rules[i].AckDeadline, p.Rules[i].AckTries, p.Rules[i].CallAfter = policy.Duration(time.Second), 3, 0
		}
	}
	r := newRig(t, rigOptions{now: clock.now, policy: p, noWorkers: true})
	ctx := context.Background()
	got := submitRed(t, r, "530102001001")
	if err := r.d.PlanNow(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	tasks := escalationTasks(t, insp, got.ID)
	if len(tasks) != 1 {
		t.Fatalf("want the first 叫应 check queued, have %v", keys(tasks))
	}
	var first *asynq.TaskInfo
	for _, ti := range tasks {
		first = ti
	}
	atItsInstant(t, clock, first, r.d.RunEscalation)
	officials, err := r.l.Officials(ctx, got.ID)
	if err != nil || len(officials) == 0 {
		t.Fatalf("officials: %v, %v", officials, err)
	}
	for _, o := range officials {
		if o.Tries != 2 {
			t.Errorf("at %s official %s has had %d tries; want the reminder due then, the second", clock.now().Format(time.RFC3339Nano), o.PersonID, o.Tries)
		}
	}
	var later []string
	for id := range escalationTasks(t, insp, got.ID) {
		if id != first.ID {
			later = append(later, id)
		}
	}
	if len(later) != 1 {
		t.Errorf("after the check at %s, the next checks queued are %v; want one, at the next reminder", clock.now().Format(time.RFC3339Nano), later)
	}
}
