package dispatcher_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/dispatcher"
	"warngate/region"
	"warngate/warning"
)

// A city-wide plan enqueues its batches two at a time: each enqueue writes
// a batch of recipients to Redis, and more at once held up the commands of
// the small warnings accepted meanwhile (their first official's p99 in
// the bench). Every batch is still queued and delivered.
func TestPlanEnqueuesTwoBatchesAtOnce(t *testing.T) {
	r := newRig(t, rigOptions{demo: &region.DemoOptions{ResidentsPerVillage: 100, HouseholdsPerVillage: 2}})
	// asynq's enqueue of a batch in any channel's queue (not its
	// forwarder's moves of due tasks), made to last a few milliseconds so
	// that enqueues sent together overlap.
	var enqueues []func(redis.Cmder) bool
	for _, ch := range warning.Channels {
		for _, tier := range dispatcher.Tiers {
			enqueues = append(enqueues, enqueuesIn(dispatcher.QueueName(ch, tier)))
		}
	}
	watch := &commandWatch{delay: 3 * time.Millisecond, match: func(cmd redis.Cmder) bool {
		return slices.ContainsFunc(enqueues, func(m func(redis.Cmder) bool) bool { return m(cmd) })
	}}
	r.rdb.AddHook(watch)
	w, _, err := r.d.Submit(context.Background(), redWarning(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "fan-out", progressDone(t, r, w.ID))
	total, most := watch.counts()
	t.Logf("%d batch enqueues, at most %d at once", total, most)
	if total < 20 {
		t.Fatalf("%d batch enqueues seen; want the plan's many", total)
	}
	if most > 2 {
		t.Errorf("%d batch enqueues of one plan at once; want at most 2", most)
	}
}
