package dispatcher_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/dispatcher"
	"warngate/region"
	"warngate/warning"
)

// batchEnqueues counts a plan's enqueues of batches (asynq's script on a
// channel queue's task hash and pending list; not its forwarder's, which
// moves due tasks) in flight at once, each made to last a few
// milliseconds so that those sent together overlap.
type batchEnqueues struct {
	mu        sync.Mutex
	now, most int
	total     int
	channelQ  map[string]bool
	lastsFor  time.Duration
}

func (*batchEnqueues) DialHook(next redis.DialHook) redis.DialHook { return next }
func (*batchEnqueues) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (b *batchEnqueues) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !b.matches(cmd) {
			return next(ctx, cmd)
		}
		b.mu.Lock()
		b.now++
		b.total++
		b.most = max(b.most, b.now)
		b.mu.Unlock()
		time.Sleep(b.lastsFor)
		err := next(ctx, cmd)
		b.mu.Lock()
		b.now--
		b.mu.Unlock()
		return err
	}
}

func (b *batchEnqueues) matches(cmd redis.Cmder) bool {
	k := scriptKeys(cmd)
	if len(k) < 2 || !strings.HasPrefix(k[0], "asynq:{") {
		return false
	}
	q, _, _ := strings.Cut(strings.TrimPrefix(k[0], "asynq:{"), "}")
	return b.channelQ[q] && strings.HasPrefix(k[0], "asynq:{"+q+"}:t:") && k[1] == "asynq:{"+q+"}:pending"
}

// A city-wide plan enqueues its batches two at a time: each enqueue writes
// a batch of recipients to Redis, and more at once held up the commands of
// the small warnings accepted meanwhile (their first official's p99 in
// the bench). Every batch is still queued and delivered.
func TestPlanEnqueuesTwoBatchesAtOnce(t *testing.T) {
	r := newRig(t, rigOptions{demo: &region.DemoOptions{ResidentsPerVillage: 100, HouseholdsPerVillage: 2}})
	hook := &batchEnqueues{channelQ: map[string]bool{}, lastsFor: 3 * time.Millisecond}
	for _, ch := range warning.Channels {
		for _, tier := range dispatcher.Tiers {
			hook.channelQ[dispatcher.QueueName(ch, tier)] = true
		}
	}
	r.rdb.AddHook(hook)
	w, _, err := r.d.Submit(context.Background(), redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "fan-out", progressDone(t, r, w.ID))
	hook.mu.Lock()
	most, total := hook.most, hook.total
	hook.mu.Unlock()
	t.Logf("%d batch enqueues, at most %d at once", total, most)
	if total < 20 {
		t.Fatalf("%d batch enqueues seen; want the plan's many", total)
	}
	if most > 2 {
		t.Errorf("%d batch enqueues of one plan at once; want at most 2", most)
	}
}
