package ledger

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis replicates asynchronously: a write the master answered can be lost
// when a Sentinel failover promotes a replica that had not received it, and
// during a failover the old master goes on taking writes for a moment that
// it drops when it rejoins as a replica. What the gateway cannot ask anyone
// to send again — a warning it accepted, a provider's delivery report it
// acknowledged — is confirmed by a replica (Redis WAIT, on the connection
// that wrote) before it is acknowledged.
//
// When no replica confirms, a warning is written again (the next attempt
// reaches the new master) and a report is refused with a "try again" so that
// the provider sends it again. A replica missing for longer than
// ReplicaGrace is an outage, not a failover: writes are then acknowledged
// from the master alone, rather than refusing every warning and report, and
// Replication says since when (a metric and an alert).

// ErrNotReplicated is returned when no replica confirmed a write. With
// CreateWarning it comes with the stored warning: it is on the master.
var ErrNotReplicated = errors.New("not confirmed by a Redis replica")

// ReplicaGrace is how long replicas may fail to confirm before the ledger
// takes it for an outage and acknowledges writes from the master alone.
const ReplicaGrace = 30 * time.Second

// degradedWait bounds WAIT while replicas are missing: enough to notice
// that they are back, little enough not to slow every write.
const degradedWait = 10 * time.Millisecond

// replicaAttempts bounds the writes of one warning while a failover settles.
const replicaAttempts = 4

type replication struct {
	required int
	wait     time.Duration
	lagSince atomic.Int64 // unix ms since when replicas have not confirmed; 0 when they do
}

// RequireReplicas makes the ledger confirm with n replicas (waiting up to
// wait) every new warning and every batch of delivery reports. Zero, the
// default, is for a single Redis without replicas.
func (l *Ledger) RequireReplicas(n int, wait time.Duration) {
	l.repl.required, l.repl.wait = n, wait
}

// Replication returns how many replicas must confirm writes and, when they
// have not for a while, since when; zero when they do.
func (l *Ledger) Replication() (required int, missingSince time.Time) {
	if ms := l.repl.lagSince.Load(); ms != 0 {
		missingSince = time.UnixMilli(ms)
	}
	return l.repl.required, missingSince
}

// degraded reports whether replicas have been missing for over ReplicaGrace.
func (l *Ledger) degraded() bool {
	since := l.repl.lagSince.Load()
	return since != 0 && l.now().UnixMilli()-since > ReplicaGrace.Milliseconds()
}

// waitCmd queues WAIT on a pipeline, after the writes it is to confirm.
func (l *Ledger) waitCmd(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
	wait := l.repl.wait
	if l.degraded() {
		wait = degradedWait
	}
	return p.Do(ctx, "WAIT", l.repl.required, max(1, wait.Milliseconds()))
}

// confirmed records what WAIT answered and says whether the write may be
// acknowledged: nil when enough replicas hold it, or when they have been
// missing past the grace; ErrNotReplicated otherwise.
func (l *Ledger) confirmed(wait *redis.Cmd) error {
	n, err := wait.Int64()
	if err == nil && n >= int64(l.repl.required) {
		l.repl.lagSince.Store(0)
		return nil
	}
	l.repl.lagSince.CompareAndSwap(0, l.now().UnixMilli())
	if l.degraded() {
		return nil
	}
	return ErrNotReplicated
}

// evalReplicated runs a script and WAIT on one connection (WAIT counts
// the replicas that have that connection's writes), again while no replica
// confirms: the scripts given are idempotent. After the attempts the write
// is on the master, and replicated is ErrNotReplicated.
func (l *Ledger) evalReplicated(ctx context.Context, script *redis.Script, keys []string, args []any) (res *redis.Cmd, replicated, err error) {
	for attempt := range replicaAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, nil, context.Cause(ctx)
			case <-time.After(l.repl.wait / 2):
			}
		}
		var cmd, wait *redis.Cmd
		var p redis.Pipeliner
		if p, err = l.pipelineFor(ctx, keys[0]); err == nil {
			cmd = script.Eval(ctx, p, keys, args...)
			wait = l.waitCmd(ctx, p)
			_, err = p.Exec(ctx)
		}
		if err != nil {
			continue // a connection cut by the failover: the next attempt reconnects
		}
		res = cmd
		if replicated = l.confirmed(wait); replicated == nil {
			return res, nil, nil
		}
	}
	if res == nil {
		return nil, nil, err
	}
	return res, fmt.Errorf("%w after %d attempts", ErrNotReplicated, replicaAttempts), nil
}

// run runs a script, confirmed by replicas when they are required.
func (l *Ledger) run(ctx context.Context, script *redis.Script, keys []string, args []any) (res *redis.Cmd, replicated error) {
	if l.repl.required <= 0 {
		return script.Run(ctx, l.rdb, keys, args...), nil
	}
	res, replicated, err := l.evalReplicated(ctx, script, keys, args)
	if err != nil {
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(err)
		return cmd, nil
	}
	return res, replicated
}

// pipelineFor returns a pipeline on the connection that holds key: on a
// Redis Cluster, one to the master of its slot, so that a WAIT after the
// writes counts the replicas of that master.
func (l *Ledger) pipelineFor(ctx context.Context, key string) (redis.Pipeliner, error) {
	if cc, ok := l.rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, err
		}
		return node.Pipeline(), nil
	}
	return l.rdb.Pipeline(), nil
}

// pipelinedReplicated queues each command i (add, in the slot of keys[i])
// on a pipeline, one per Redis Cluster master (one on a single Redis),
// each followed by a WAIT when replicas are required, and runs them. A
// command's own error is left in its result; err is a pipeline's.
// replicated is ErrNotReplicated when some master's replicas did not
// confirm.
func (l *Ledger) pipelinedReplicated(ctx context.Context, keys []string, add func(p redis.Pipeliner, i int)) (replicated, err error) {
	type shard struct {
		p    redis.Pipeliner
		wait *redis.Cmd
	}
	var shards []*shard
	byAddr := map[string]*shard{}
	cc, cluster := l.rdb.(*redis.ClusterClient)
	for i, k := range keys {
		var sh *shard
		if !cluster {
			if len(shards) == 0 {
				shards = append(shards, &shard{p: l.rdb.Pipeline()})
			}
			sh = shards[0]
		} else {
			node, err := cc.MasterForKey(ctx, k)
			if err != nil {
				return nil, err
			}
			addr := node.Options().Addr
			if sh = byAddr[addr]; sh == nil {
				sh = &shard{p: node.Pipeline()}
				byAddr[addr] = sh
				shards = append(shards, sh)
			}
		}
		add(sh.p, i)
	}
	// The shards' pipelines run at once: one that does not answer holds
	// back its own commands, not the others'.
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		if l.repl.required > 0 {
			sh.wait = l.waitCmd(ctx, sh.p)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, e := sh.p.Exec(ctx); e != nil && !redis.HasErrorPrefix(e, "NOSCRIPT") {
				errs[i] = e
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, sh := range shards {
		if sh.wait != nil {
			if r := l.confirmed(sh.wait); r != nil {
				replicated = r
			}
		}
	}
	return replicated, nil
}
