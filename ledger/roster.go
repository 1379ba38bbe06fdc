package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// A warning keeps the roster version it was planned with, in its hash: the
// people it reaches, escalates to and lists are looked up in that version,
// so a change of the roster during a red warning never reshapes it.

// PinRoster records the roster version a warning is planned with, unless
// one is recorded already, and returns the version recorded: a plan that
// runs again (a retry, a reconcile) keeps the first.
func (l *Ledger) PinRoster(ctx context.Context, warningID string, version int64) (int64, error) {
	pipe := l.rdb.TxPipeline()
	pipe.HSetNX(ctx, l.warningKey(warningID), "roster", version)
	got := pipe.HGet(ctx, l.warningKey(warningID), "roster")
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("ledger: record roster version of %s: %w", warningID, err)
	}
	return got.Int64()
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
