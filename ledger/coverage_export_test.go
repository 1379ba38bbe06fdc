package ledger

import "context"

// DropFallbackEntry takes a resident off a warning's fallback list as no
// code path does, to show that Uncover puts them back.
func (l *Ledger) DropFallbackEntry(ctx context.Context, warningID, personID string) error {
	return l.rdb.HDel(ctx, l.fallbackKey(warningID), personID).Err()
}
