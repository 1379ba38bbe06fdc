package dispatcher

import (
	"context"
	"fmt"
	"time"

	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// ChecklistEntry is one item of a division's response checklist for a
// warning, with its state.
type ChecklistEntry struct {
	ID        string            `json:"id"`
	Title     string            `json:"title"`
	Detail    string            `json:"detail"`
	Source    string            `json:"source,omitempty"`
	Owner     region.Role       `json:"owner"`
	OwnerName string            `json:"owner_name"`
	DueAt     time.Time         `json:"due_at"`
	Status    ledger.ItemStatus `json:"status"`
	Note      string            `json:"note,omitempty"`
	By        string            `json:"by,omitempty"`
	At        time.Time         `json:"at,omitempty"`
	Overdue   bool              `json:"overdue"`
}

// AtOnceGrace is when an item due "at once" counts as overdue.
const AtOnceGrace = 15 * time.Minute

// ChecklistDivisions lists the townships and villages a warning attaches a
// checklist to: every one under its areas, and the townships above areas
// that are villages.
func (d *Dispatcher) ChecklistDivisions(w *warning.Warning) []*region.Division {
	seen := map[string]bool{}
	var out []*region.Division
	add := func(dv *region.Division) {
		if (dv.Level == region.Township || dv.Level == region.Village) && !seen[dv.Code] {
			seen[dv.Code] = true
			out = append(out, dv)
		}
	}
	for _, a := range w.Areas {
		for _, up := range d.tree.Path(a) {
			if up.Level == region.Township {
				add(up)
			}
		}
		d.tree.Walk(a, func(dv *region.Division) bool { add(dv); return true })
	}
	return out
}

func (d *Dispatcher) entries(w *warning.Warning, dv *region.Division, states map[string]ledger.ItemState, now time.Time) []ChecklistEntry {
	if d.checklists == nil {
		return nil
	}
	items := d.checklists.For(w.Hazard, w.Level, dv.Level)
	out := make([]ChecklistEntry, 0, len(items))
	for _, it := range items {
		due := it.Due
		if due < AtOnceGrace {
			due = AtOnceGrace // "at once" still needs a moment to be done and ticked
		}
		e := ChecklistEntry{ID: it.ID, Title: it.Title, Detail: it.Detail, Source: it.Source, Owner: it.Owner,
			OwnerName: it.Owner.Chinese(), DueAt: w.Accepted.Add(due), Status: ledger.ItemPending}
		if st, ok := states[it.ID]; ok {
			e.Status, e.Note, e.By, e.At = st.Status, st.Note, st.By, st.At
		}
		e.Overdue = e.Status == ledger.ItemPending && now.After(e.DueAt)
		out = append(out, e)
	}
	return out
}

// Checklist returns a division's checklist for a warning; a division the
// warning does not reach has none.
func (d *Dispatcher) Checklist(ctx context.Context, w *warning.Warning, division string) ([]ChecklistEntry, error) {
	var dv *region.Division
	for _, x := range d.ChecklistDivisions(w) {
		if x.Code == division {
			dv = x
		}
	}
	if dv == nil {
		return nil, fmt.Errorf("division %s: no checklist for this warning: %w", division, ledger.ErrNotFound)
	}
	all, err := d.ledger.Items(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	return d.entries(w, dv, all[division], d.now()), nil
}

// SetChecklistItem changes an item of a division's checklist. Officials may
// change only their own division's checklist; the bureau any.
func (d *Dispatcher) SetChecklistItem(ctx context.Context, w *warning.Warning, a Actor, division, itemID string, st ledger.ItemStatus, note string) error {
	if !a.Bureau() {
		p, ok := d.rosterFor(ctx, w).Person(a.PersonID)
		if !ok || !p.Role.Audience().Official() || p.Division != division {
			return fmt.Errorf("%w: only the officials of %s may change its checklist", ErrForbidden, division)
		}
	}
	entries, err := d.Checklist(ctx, w, division)
	if err != nil {
		return err
	}
	found := false
	for _, e := range entries {
		found = found || e.ID == itemID
	}
	if !found {
		return fmt.Errorf("item %q: not on the checklist of %s for this warning: %w", itemID, division, ledger.ErrNotFound)
	}
	if _, err := d.ledger.SetItem(ctx, w.ID, division, itemID, st, a.who(), note); err != nil {
		return err
	}
	return d.ledger.Audit(ctx, ledger.AuditEntry{Who: a.who(), Action: "checklist", WarningID: w.ID, Target: division + "/" + itemID, Detail: string(st) + " " + note, From: a.From})
}

// ChecklistCounts sums a division's checklist.
type ChecklistCounts struct {
	Items   int `json:"items"`
	Done    int `json:"done"`
	NA      int `json:"not_applicable"`
	Pending int `json:"pending"`
	Overdue int `json:"overdue"`
}

func (c *ChecklistCounts) add(o ChecklistCounts) {
	c.Items += o.Items
	c.Done += o.Done
	c.NA += o.NA
	c.Pending += o.Pending
	c.Overdue += o.Overdue
}

// ChecklistSummary returns each division's counts, and each township's
// rolled up with its villages under the township's code.
func (d *Dispatcher) ChecklistSummary(ctx context.Context, w *warning.Warning) (own, rolled map[string]ChecklistCounts, err error) {
	all, err := d.ledger.Items(ctx, w.ID)
	if err != nil {
		return nil, nil, err
	}
	now := d.now()
	own = map[string]ChecklistCounts{}
	rolled = map[string]ChecklistCounts{}
	for _, dv := range d.ChecklistDivisions(w) {
		var c ChecklistCounts
		for _, e := range d.entries(w, dv, all[dv.Code], now) {
			c.Items++
			switch e.Status {
			case ledger.ItemDone:
				c.Done++
			case ledger.ItemNA:
				c.NA++
			default:
				c.Pending++
				if e.Overdue {
					c.Overdue++
				}
			}
		}
		own[dv.Code] = c
		if t, ok := d.tree.Ancestor(dv.Code, region.Township); ok {
			r := rolled[t.Code]
			r.add(c)
			rolled[t.Code] = r
		}
	}
	return own, rolled, nil
}
