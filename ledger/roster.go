package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// A warning keeps the roster version it was planned with, in its hash: the
// people it reaches, escalates to and lists are looked up in that version,
// so a change of the roster during a red warning never reshapes it. Beside
// it, the bucket target of its plan (warning.BucketsFor), so that a plan
// run again or a resend by a later version of the gateway lays out the
// deliveries as the first run did.

// PlanPin is what a warning's plan records before it expands.
type PlanPin struct {
	Roster       int64 // roster version
	BucketTarget int   // recipients to a ledger bucket
}

// pinScript records a plan's roster version and bucket target unless a
// roster version is recorded already, and returns what is recorded. A
// warning whose roster version was recorded without a target was planned
// by an older version: it has none. KEYS: the warning. ARGV: version,
// target. Returns {version, target or false}.
var pinScript = redis.NewScript(`
if redis.call("HSETNX", KEYS[1], "roster", ARGV[1]) == 1 then
  redis.call("HSET", KEYS[1], "bucket_target", ARGV[2])
end
return redis.call("HMGET", KEYS[1], "roster", "bucket_target")
`)

// PinPlan records the roster version and bucket target a warning is
// planned with, unless a version is recorded already, and returns what is
// recorded: a plan that runs again (a retry, a reconcile) keeps the first
// run's.
func (l *Ledger) PinPlan(ctx context.Context, warningID string, version int64, target int) (PlanPin, error) {
	vals, err := pinScript.Run(ctx, l.rdb, []string{l.warningKey(warningID)}, version, target).Slice()
	if err != nil {
		return PlanPin{}, fmt.Errorf("ledger: record the roster version of %s: %w", warningID, err)
	}
	return pinOf(vals)
}

// BucketTarget is the bucket target a warning was planned with
// (warning.LegacyBucketTarget for one planned before targets were
// recorded).
func (l *Ledger) BucketTarget(ctx context.Context, warningID string) (int, error) {
	vals, err := l.rdb.HMGet(ctx, l.warningKey(warningID), "roster", "bucket_target").Result()
	if err != nil {
		return 0, fmt.Errorf("ledger: bucket target of %s: %w", warningID, err)
	}
	p, err := pinOf(vals)
	return p.BucketTarget, err
}

func pinOf(vals []any) (PlanPin, error) {
	p := PlanPin{BucketTarget: warning.LegacyBucketTarget}
	if s, ok := vals[0].(string); ok {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return p, fmt.Errorf("ledger: roster version %q is not a number", s)
		}
		p.Roster = v
	}
	if s, ok := vals[1].(string); ok {
		t, err := strconv.Atoi(s)
		if err != nil || t < 1 {
			return p, fmt.Errorf("ledger: bucket target %q is not a positive number", s)
		}
		p.BucketTarget = t
	}
	return p, nil
}

// RosterVersion is the roster version a warning was planned with; ok is
// false before its plan ran (and for warnings planned before versions were
// recorded).
func (l *Ledger) RosterVersion(ctx context.Context, warningID string) (version int64, ok bool, err error) {
	v, err := l.rdb.HGet(ctx, l.warningKey(warningID), "roster").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("ledger: roster version of %s: %w", warningID, err)
	}
	return v, true, nil
}
