package dispatcher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/dispatcher"
)

// The janitor looks for a stopped worker's tasks when the first running
// heartbeat can have lapsed, not once a second: an idle process asks Redis
// once every BeatTTL, since a task that starts after a look lapses no
// sooner, and a busy one finds a lapsed task a millisecond after it lapses.
func TestJanitorLooksWhenTheFirstHeartbeatLapses(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	key := r.d.RunningKey()
	look := func() (int, time.Duration) {
		t.Helper()
		n, next, err := r.d.LookForLapsed(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n, next
	}
	if _, next := look(); next != dispatcher.BeatTTL {
		t.Fatalf("nothing running: next look in %v, want BeatTTL (%v)", next, dispatcher.BeatTTL)
	}

	now, err := r.rdb.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	// A heartbeat that lapses in 1.5 s, and one of a task that does not
	// exist, lapsed: the look takes the lapsed one (nothing to resume) and
	// comes back when the other lapses.
	lapses := now.UnixMilli() + 1500
	r.rdb.ZAdd(ctx, key, redis.Z{Score: float64(lapses), Member: "sms.red|w/sms/1|1.a|t1"},
		redis.Z{Score: float64(now.UnixMilli() - 10), Member: "sms.red|w/sms/2|1.a|t2"})
	n, next := look()
	if n != 0 {
		t.Fatalf("resumed %d tasks that asynq does not have", n)
	}
	if next <= 0 || next > 1501*time.Millisecond {
		t.Fatalf("next look in %v, want when the running heartbeat lapses, at most 1.501s", next)
	}
	if left, _ := r.rdb.ZRange(ctx, key, 0, -1).Result(); fmt.Sprint(left) != "[sms.red|w/sms/1|1.a|t1]" {
		t.Fatalf("heartbeats left %v, want the running one", left)
	}
	// A heartbeat renewed for longer than BeatTTL still gets a look within
	// BeatTTL.
	r.rdb.ZAdd(ctx, key, redis.Z{Score: float64(now.UnixMilli() + 60_000), Member: "sms.red|w/sms/1|1.a|t1"})
	if _, next := look(); next != dispatcher.BeatTTL {
		t.Fatalf("next look in %v, want at most BeatTTL (%v)", next, dispatcher.BeatTTL)
	}

	// More lapsed than one look takes: the next look is at once.
	var many []redis.Z
	for i := range 100 {
		many = append(many, redis.Z{Score: 0, Member: fmt.Sprintf("sms.red|w/sms/%d|1.a|t", 100+i)})
	}
	r.rdb.ZAdd(ctx, key, many...)
	if _, next := look(); next != 0 {
		t.Fatalf("with lapsed heartbeats left: next look in %v, want at once", next)
	}
	if _, next := look(); next != dispatcher.BeatTTL {
		t.Fatalf("after the rest: next look in %v, want BeatTTL", next)
	}
}

// The beat loop waits while no task runs, and a task that starts then has
// its heartbeat renewed: the loop wakes for it.
func TestHeartbeatsRenewedForATaskStartedWhileIdle(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.d.StartBeats(ctx)
	if n, _ := r.rdb.ZCard(ctx, r.d.RunningKey()).Result(); n != 0 {
		t.Fatalf("%d heartbeats before any task", n)
	}
	const m = "sms.red|w/sms/1|1.a|t1"
	r.d.HoldTask(m)
	waitFor(t, 10*time.Second, "the task's heartbeat renewed", func() (bool, string) {
		s, err := r.rdb.ZScore(ctx, r.d.RunningKey(), m).Result()
		return err == nil && s > 0, fmt.Sprint(s, err)
	})
}
