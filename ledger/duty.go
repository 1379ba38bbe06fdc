package ledger

import (
	"context"
	"fmt"
)

// Officials chosen from a duty schedule (值班表) rather than as the roster's
// role holders are remembered per warning, with the role they stood in:
//
//	<prefix>:{<warning>}:src → person id → role (township_duty, …)
//
// A person missing from it was chosen as a role holder. The divisions whose
// schedule had nobody on duty are progress fields "dfb|<division>".

func (l *Ledger) sourcesKey(id string) string { return l.prefix + ":{" + id + "}:src" }

// SetOfficialSources records the officials of a warning taken from a duty
// shift, with the role each stood in. Recording again is harmless.
func (l *Ledger) SetOfficialSources(ctx context.Context, warningID string, roles map[string]string) error {
	if len(roles) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(roles))
	for id, role := range roles {
		args = append(args, id, role)
	}
	if err := l.rdb.HSet(ctx, l.sourcesKey(warningID), args...).Err(); err != nil {
		return fmt.Errorf("ledger: duty sources of %s: %w", warningID, err)
	}
	return nil
}

// OfficialSources returns, of a warning's officials, those taken from a
// duty shift and the role each stood in.
func (l *Ledger) OfficialSources(ctx context.Context, warningID string) (map[string]string, error) {
	m, err := l.rdb.HGetAll(ctx, l.sourcesKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: duty sources of %s: %w", warningID, err)
	}
	return m, nil
}

// MarkDutyFallback records the divisions whose duty schedule had nobody on
// duty for a warning, so that their role holders were asked instead.
func (l *Ledger) MarkDutyFallback(ctx context.Context, warningID string, divisions []string) error {
	if len(divisions) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(divisions))
	for _, d := range divisions {
		args = append(args, "dfb|"+d, 1)
	}
	if err := l.rdb.HSet(ctx, l.progressKey(warningID), args...).Err(); err != nil {
		return fmt.Errorf("ledger: duty fallback of %s: %w", warningID, err)
	}
	return nil
}
