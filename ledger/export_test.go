package ledger

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// ClaimIdempotencyKey writes an idempotency key as the first step of
// CreateWarning does, as if the request had stopped right after it.
func (l *Ledger) ClaimIdempotencyKey(ctx context.Context, key, id, fingerprint string) error {
	return l.rdb.Set(ctx, l.idemKey(key), id+"|"+fingerprint, IdempotencyTTL).Err()
}

// Unindex removes a warning from the indexes, as if the request that
// stored it had stopped before indexing it.
func (l *Ledger) Unindex(ctx context.Context, id string) error {
	if err := l.rdb.ZRem(ctx, l.indexKey(), id).Err(); err != nil {
		return err
	}
	return l.rdb.ZRem(ctx, l.unplannedKey(), id).Err()
}

// ReportsPerScript lets a test watch the report scripts go by.
const ReportsPerScript = reportsPerScript

// LoadReportScript loads the report script in Redis and returns its hash,
// so that a test watching the scripts go by sees each call once: a script
// not loaded yet goes as an EVALSHA refused, then an EVAL.
func LoadReportScript(ctx context.Context, rdb redis.Scripter) (string, error) {
	return reportScript.Load(ctx, rdb).Result()
}
