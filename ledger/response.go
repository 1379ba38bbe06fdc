package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Checklist items and call-list marks. A checklist is attached to every
// township and village a warning reaches without writing anything; only
// changes are stored, one hash per warning:
//
//	"<division>|<item id>" → "<status>|<ms b36>|<person id>|<note>"
//
// Call-list marks, one hash per warning: household id →
// "<y|n>|<method>|<ms b36>|<person id>|<note>".

func (l *Ledger) checklistKey(id string) string { return l.prefix + ":{" + id + "}:cl" }
func (l *Ledger) marksKey(id string) string     { return l.prefix + ":{" + id + "}:hh" }

// ItemStatus is where a checklist item stands.
type ItemStatus string

// Checklist item statuses.
const (
	ItemPending ItemStatus = "pending"
	ItemDone    ItemStatus = "done"
	ItemNA      ItemStatus = "not_applicable"
)

// ParseItemStatus checks a status name.
func ParseItemStatus(s string) (ItemStatus, error) {
	switch ItemStatus(s) {
	case ItemPending, ItemDone, ItemNA:
		return ItemStatus(s), nil
	}
	return "", fmt.Errorf("unknown status %q: use pending, done or not_applicable", s)
}

// ItemState is a checklist item's recorded change.
type ItemState struct {
	Status ItemStatus `json:"status"`
	At     time.Time  `json:"at"`
	By     string     `json:"by"`
	Note   string     `json:"note,omitempty"`
}

func clean(s string, n int) string {
	s = strings.NewReplacer("|", "／", "\n", " ", "\r", " ").Replace(s)
	if r := []rune(s); len(r) > n {
		s = string(r[:n])
	}
	return s
}

// SetItem records a checklist item's status for a division.
func (l *Ledger) SetItem(ctx context.Context, warningID, division, itemID string, st ItemStatus, by, note string) (ItemState, error) {
	s := ItemState{Status: st, At: l.now(), By: by, Note: clean(note, 500)}
	v := string(st) + "|" + ms36(s.At) + "|" + by + "|" + s.Note
	if err := l.rdb.HSet(ctx, l.checklistKey(warningID), division+"|"+itemID, v).Err(); err != nil {
		return ItemState{}, fmt.Errorf("ledger: checklist item: %w", err)
	}
	return s, nil
}

// Items returns every recorded checklist change of a warning, keyed by
// division and then item id.
func (l *Ledger) Items(ctx context.Context, warningID string) (map[string]map[string]ItemState, error) {
	m, err := l.rdb.HGetAll(ctx, l.checklistKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: checklist of %s: %w", warningID, err)
	}
	out := map[string]map[string]ItemState{}
	for k, v := range m {
		div, item, ok := strings.Cut(k, "|")
		f := strings.SplitN(v, "|", 4)
		if !ok || len(f) != 4 {
			continue
		}
		ms, _ := strconv.ParseInt(f[1], 36, 64)
		if out[div] == nil {
			out[div] = map[string]ItemState{}
		}
		out[div][item] = ItemState{Status: ItemStatus(f[0]), At: time.UnixMilli(ms), By: f[2], Note: f[3]}
	}
	return out, nil
}

// Mark is a grid worker's record of reaching a household.
type Mark struct {
	Reached bool      `json:"reached"`
	Method  string    `json:"method,omitempty"` // visit, phone, loudspeaker, other
	At      time.Time `json:"at"`
	By      string    `json:"by"`
	Note    string    `json:"note,omitempty"`
}

// SetMark records whether a household was reached.
func (l *Ledger) SetMark(ctx context.Context, warningID, householdID string, m Mark) error {
	if m.At.IsZero() {
		m.At = l.now()
	}
	r := "n"
	if m.Reached {
		r = "y"
	}
	v := r + "|" + clean(m.Method, 20) + "|" + ms36(m.At) + "|" + m.By + "|" + clean(m.Note, 500)
	if err := l.rdb.HSet(ctx, l.marksKey(warningID), householdID, v).Err(); err != nil {
		return fmt.Errorf("ledger: call-list mark: %w", err)
	}
	return nil
}

// Marks returns the call-list marks of a warning by household id.
func (l *Ledger) Marks(ctx context.Context, warningID string) (map[string]Mark, error) {
	m, err := l.rdb.HGetAll(ctx, l.marksKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: call-list marks of %s: %w", warningID, err)
	}
	out := make(map[string]Mark, len(m))
	for id, v := range m {
		f := strings.SplitN(v, "|", 5)
		if len(f) != 5 {
			continue
		}
		ms, _ := strconv.ParseInt(f[2], 36, 64)
		out[id] = Mark{Reached: f[0] == "y", Method: f[1], At: time.UnixMilli(ms), By: f[3], Note: f[4]}
	}
	return out, nil
}
