package roster

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"warngate/internal/sheet"
	"warngate/region"
)

// Live returns a region.Roster that answers from the newest version this
// process has loaded, for lookups not tied to a warning.
func (s *Store) Live() region.Roster { return live{s} }

type live struct{ s *Store }

func (l live) r() region.Roster { r, _ := l.s.Latest(); return r }

func (l live) People(code string, fn func(region.Person) bool)        { l.r().People(code, fn) }
func (l live) Devices(code string, fn func(region.Device) bool)       { l.r().Devices(code, fn) }
func (l live) Households(code string, fn func(region.Household) bool) { l.r().Households(code, fn) }
func (l live) Counts(code string) region.Counts                       { return l.r().Counts(code) }
func (l live) Person(id string) (region.Person, bool)                 { return l.r().Person(id) }
func (l live) ByPhone(phone string) (region.Person, bool)             { return l.r().ByPhone(phone) }
func (l live) Household(id string) (region.Household, bool)           { return l.r().Household(id) }

// Seed stores r as the first version when no roster was ever stored, as the
// roster files of the configuration are at the first start; it reports
// whether it did. Later starts leave the stored roster alone: changes go
// through imports and edits.
func (s *Store) Seed(ctx context.Context, r region.Roster, by, note string) (bool, error) {
	unlock, err := s.lock(ctx, 30*time.Second)
	if err != nil {
		return false, err
	}
	defer unlock()
	n, err := s.currentNumber(ctx)
	if err != nil || n > 0 {
		return false, err
	}
	base := materialize(s.tree, r)
	n, err = s.commit(ctx, base, Change{Kind: People, By: by, Note: note}, nil)
	return n > 0, err
}

// Row is one row of the roster, in its kind's columns (Kind.Columns).
type Row []string

// Get finds one row by id in the current version.
func (s *Store) Get(ctx context.Context, k Kind, id string) (Row, bool, error) {
	r, _, err := s.Current(ctx)
	if err != nil {
		return nil, false, err
	}
	switch k {
	case People:
		p, ok := r.Person(id)
		return personRow(p), ok, nil
	case Households:
		h, ok := r.Household(id)
		return householdRow(h), ok, nil
	}
	if v, ok := r.(*version); ok {
		i, row, found := v.locate(Devices, id)
		if !found {
			return nil, false, nil
		}
		f, _ := fieldsOf(Devices, v.chunks[Devices.index()][i].row(row), s.tree.ByIndex(i).Code)
		return f, true, nil
	}
	var out Row
	s.tree.Walk(s.tree.Root().Code, func(d *region.Division) bool {
		r.Devices(d.Code, func(x region.Device) bool {
			if x.ID == id {
				out = deviceRow(x)
			}
			return out == nil
		})
		return out == nil
	})
	return out, out != nil, nil
}

func personRow(p region.Person) Row {
	return Row{p.ID, p.Name, p.Phone, p.WeChatOpenID, p.WeComUserID, string(p.Role), p.Division}
}

func deviceRow(d region.Device) Row {
	return Row{d.ID, d.Name, string(d.Kind), d.Division, d.Platform}
}

func householdRow(h region.Household) Row {
	return Row{h.ID, h.Head, h.Address, h.Phone, string(h.Category), h.Division, h.GridWorker}
}

// Division is the row's division code.
func (r Row) Division(k Kind) string {
	switch k {
	case Devices:
		return r[3]
	case Households:
		return r[5]
	}
	return r[6]
}

// Each calls fn for every row of a kind in the divisions under within (all
// of them for ""), division by division in the tree's order, until fn
// returns false.
func (s *Store) Each(r region.Roster, k Kind, within string, fn func(Row) bool) {
	if within == "" {
		within = s.tree.Root().Code
	}
	more := true
	s.tree.Walk(within, func(d *region.Division) bool {
		switch k {
		case People:
			r.People(d.Code, func(p region.Person) bool { more = fn(personRow(p)); return more })
		case Devices:
			r.Devices(d.Code, func(x region.Device) bool { more = fn(deviceRow(x)); return more })
		case Households:
			r.Households(d.Code, func(h region.Household) bool { more = fn(householdRow(h)); return more })
		}
		return more
	})
}

// Search lists up to limit rows under within whose id, name or phone (for
// households also the address) contains q.
func (s *Store) Search(ctx context.Context, k Kind, within, q string, limit int) ([]Row, error) {
	r, _, err := s.Current(ctx)
	if err != nil {
		return nil, err
	}
	q = strings.TrimSpace(q)
	out := []Row{}
	s.Each(r, k, within, func(row Row) bool {
		if q == "" || matches(k, row, q) {
			out = append(out, row)
		}
		return len(out) < limit
	})
	return out, nil
}

func matches(k Kind, row Row, q string) bool {
	var fields []string
	switch k {
	case People:
		fields = []string{row[0], row[1], row[2], row[4]}
	case Devices:
		fields = []string{row[0], row[1], row[4]}
	case Households:
		fields = []string{row[0], row[1], row[2], row[3]}
	}
	for _, f := range fields {
		if strings.Contains(f, q) {
			return true
		}
	}
	return false
}

// Export writes the current version's rows of a kind under within as an
// .xlsx in the layout Import reads: the sheet named for the kind, the
// header in row 1 (English column names, or with chinese the Chinese ones
// the samples use), one row per person, device or household, every value
// as text.
func (s *Store) Export(ctx context.Context, w io.Writer, k Kind, within string, chinese bool) error {
	r, _, err := s.Current(ctx)
	if err != nil {
		return err
	}
	header := k.Columns()
	if chinese {
		header = k.ChineseHeader()
	}
	widths := map[Kind][]float64{
		People:     {14, 10, 14, 30, 16, 16, 15},
		Devices:    {14, 24, 12, 15, 18},
		Households: {14, 10, 30, 14, 14, 15, 14},
	}[k]
	return sheet.WriteXLSX(w, k.SheetName(), header, widths, func(yield func([]string) error) error {
		var werr error
		s.Each(r, k, within, func(row Row) bool {
			if chinese {
				chineseNames(k, row)
			}
			werr = yield(row)
			return werr == nil
		})
		if werr != nil {
			return fmt.Errorf("roster: export: %w", werr)
		}
		return nil
	})
}

// chineseNames writes a row's role, kind or category as operators name it
// (网格员, 应急广播, 独居老人), as the Chinese samples do.
func chineseNames(k Kind, row Row) {
	switch k {
	case People:
		row[5] = region.Role(row[5]).Chinese()
	case Devices:
		row[2] = region.DeviceKind(row[2]).Chinese()
	case Households:
		row[4] = region.HouseholdCategory(row[4]).Chinese()
	}
}
