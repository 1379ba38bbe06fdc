package dispatcher

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// asynqQueues is asynq's set of the queues it knows: a queue is added at
// its first enqueue by each process.
const asynqQueues = "asynq:queues"

// asynqKey names one of asynq's keys of a queue: "pending", "active",
// "scheduled", "retry", "archived", "lease", or "t:<task id>".
func asynqKey(queue, what string) string { return "asynq:{" + queue + "}:" + what }

// queueStats is one queue's tasks by state and the age of its oldest
// pending task.
type queueStats struct {
	pending, active, scheduled, retry, archived int64
	latency                                     time.Duration
}

// readQueues reads every queue asynq knows, in order of name: five counts
// a queue in one pipeline and, with ages, the oldest pending task of the
// queues that have one in two more. asynq's Inspector.GetQueueInfo also counts the
// day's processed and failed tasks, groups, and samples tasks for a memory
// estimate: about 30 commands a queue, and a deployment has up to 37
// queues a lane, read at every scrape of every process's /metrics — more
// than an idle gateway's whole budget of Redis commands.
func readQueues(ctx context.Context, rdb redis.UniversalClient, ages bool) ([]string, []queueStats, error) {
	queues, err := rdb.SMembers(ctx, asynqQueues).Result()
	if err != nil {
		return nil, nil, err
	}
	slices.Sort(queues)
	stats := make([]queueStats, len(queues))
	if len(queues) == 0 {
		return queues, stats, nil
	}
	counts := make([][5]*redis.IntCmd, len(queues))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range queues {
			counts[i] = [5]*redis.IntCmd{
				p.LLen(ctx, asynqKey(q, "pending")),
				p.LLen(ctx, asynqKey(q, "active")),
				p.ZCard(ctx, asynqKey(q, "scheduled")),
				p.ZCard(ctx, asynqKey(q, "retry")),
				p.ZCard(ctx, asynqKey(q, "archived")),
			}
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var waiting []int
	for i, c := range counts {
		s := &stats[i]
		s.pending, s.active, s.scheduled, s.retry, s.archived = c[0].Val(), c[1].Val(), c[2].Val(), c[3].Val(), c[4].Val()
		if s.pending > 0 {
			waiting = append(waiting, i)
		}
	}
	if !ages || len(waiting) == 0 {
		return queues, stats, nil
	}
	// The oldest pending task is at the tail: asynq pushes at the head and
	// takes from the tail.
	oldest := make([]*redis.StringCmd, len(waiting))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, i := range waiting {
			oldest[k] = p.LIndex(ctx, asynqKey(queues[i], "pending"), -1)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	since := make([]*redis.StringCmd, len(waiting))
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, i := range waiting {
			since[k] = p.HGet(ctx, asynqKey(queues[i], "t:"+oldest[k].Val()), "pending_since")
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, err
	}
	now := time.Now() // asynq's own clock, not the dispatcher's
	for k, i := range waiting {
		if ns, err := strconv.ParseInt(since[k].Val(), 10, 64); err == nil && ns > 0 {
			stats[i].latency = max(0, now.Sub(time.Unix(0, ns)))
		}
	}
	return queues, stats, nil
}
