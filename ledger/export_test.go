package ledger

import "context"

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

// ReportsPerScript and ReportScriptHash let a test watch the report
// scripts go by.
const ReportsPerScript = reportsPerScript

var ReportScriptHash = reportScript.Hash()
