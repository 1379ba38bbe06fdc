package ledger

import (
	"context"
	"fmt"
	"time"

	"warngate/warning"
)

// Providers that report by their own message id (Tencent's sid, Alibaba's
// BizId) are found again through an index: one hash per provider and day,
// provider id → delivery ref, kept for ProviderIndexDays days. Reports come
// within hours; carriers give up on a message after 72 hours.
const ProviderIndexDays = 4

func (l *Ledger) providerIndexKey(provider string, day time.Time) string {
	return l.shared + ":pid:" + provider + ":" + day.UTC().Format("20060102")
}

// IndexProviderIDs remembers which delivery each provider id names.
func (l *Ledger) IndexProviderIDs(ctx context.Context, provider string, ids map[string]warning.Ref) error {
	if len(ids) == 0 {
		return nil
	}
	key := l.providerIndexKey(provider, l.now())
	kv := make([]any, 0, 2*len(ids))
	for id, ref := range ids {
		kv = append(kv, id, ref.String())
	}
	pipe := l.rdb.Pipeline()
	pipe.HSet(ctx, key, kv...)
	pipe.Expire(ctx, key, ProviderIndexDays*24*time.Hour)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ledger: index %s ids: %w", provider, err)
	}
	return nil
}

// ResolveProviderIDs finds the deliveries of provider ids indexed in the
// last ProviderIndexDays days. Unknown ids are missing from the result.
func (l *Ledger) ResolveProviderIDs(ctx context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	out := make(map[string]warning.Ref, len(ids))
	rest := ids
	day := l.now()
	for d := 0; d < ProviderIndexDays && len(rest) > 0; d++ {
		vals, err := l.rdb.HMGet(ctx, l.providerIndexKey(provider, day.AddDate(0, 0, -d)), rest...).Result()
		if err != nil {
			return nil, fmt.Errorf("ledger: resolve %s ids: %w", provider, err)
		}
		var missing []string
		for i, v := range vals {
			s, ok := v.(string)
			if !ok {
				missing = append(missing, rest[i])
				continue
			}
			if ref, err := warning.ParseRef(s); err == nil {
				out[rest[i]] = ref
			}
		}
		rest = missing
	}
	return out, nil
}
