package roster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/sheet"
	"warngate/region"
)

// Change says how rows change the roster.
type Change struct {
	Kind Kind
	// Merge only adds and changes rows. Without it, the rows are the
	// complete list of the divisions they name: rows of those divisions
	// missing from them are retired.
	Merge bool
	// Scope, when set (and not Merge), extends the complete list to every
	// division under this one, so that a division whose rows were all
	// deleted from the sheet is emptied too.
	Scope string
	// Allowed says whether the caller may touch a division; rows elsewhere
	// are refused. Nil allows every division.
	Allowed func(code string) bool
	// DryRun computes the difference and the problems and stores nothing.
	DryRun bool
	// By and Note are recorded with the version: who, and what for.
	By, Note string
}

// RowError is one problem of an import or an edit.
type RowError struct {
	// Row is the row as Excel numbers it, the header being row 1; 0 for an
	// edit through the API and for a problem of the sheet as a whole.
	Row int `json:"row"`
	// Column is the column's header as written in the sheet (手机号, or
	// phone), or the field of an edit; "" for the whole row.
	Column string `json:"column"`
	// Field is the column as the README's layout names it: phone.
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

func (e RowError) Error() string {
	switch {
	case e.Row == 0 && e.Column == "":
		return e.Message
	case e.Row == 0:
		return e.Column + ": " + e.Message
	case e.Column == "":
		return fmt.Sprintf("row %d: %s", e.Row, e.Message)
	}
	return fmt.Sprintf("row %d, column %s: %s", e.Row, e.Column, e.Message)
}

// Result is what a change did, or on a dry run would do.
type Result struct {
	Kind   Kind `json:"kind"`
	DryRun bool `json:"dry_run"`
	// Counts of rows: new ids, ids whose row or division changed, ids
	// retired, and ids given again unchanged.
	Added     int `json:"added"`
	Changed   int `json:"changed"`
	Retired   int `json:"retired"`
	Unchanged int `json:"unchanged"`
	// The ids, at most MaxListed of each, in row order.
	AddedIDs   []string `json:"added_ids"`
	ChangedIDs []string `json:"changed_ids"`
	RetiredIDs []string `json:"retired_ids"`
	// Errors are the problems, in row order, at most MaxListed; with any,
	// nothing is applied. ErrorsTotal counts them all.
	Errors      []RowError `json:"errors"`
	ErrorsTotal int        `json:"errors_total"`
	// Base is the version the rows were compared with; Version the one the
	// change made (Base when nothing changed, or on a dry run).
	Base    int64 `json:"base_version"`
	Version int64 `json:"version"`
	// Divisions are the divisions whose lists the change replaced.
	Divisions int `json:"divisions"`
}

// MaxListed bounds the ids and errors a Result lists.
const MaxListed = 1000

func (r *Result) addError(e RowError) {
	r.ErrorsTotal++
	if len(r.Errors) < MaxListed {
		r.Errors = append(r.Errors, e)
	}
}

func list(ids *[]string, id string) {
	if len(*ids) < MaxListed {
		*ids = append(*ids, id)
	}
}

// ErrFormat wraps a file that is not a sheet at all.
var ErrFormat = errors.New("not a roster sheet")

// Import reads a sheet of one kind (.xlsx or CSV, see package sheet) and
// applies it, all or nothing: with any problem nothing is stored and the
// Result lists every problem (up to MaxListed) by row and column. A file
// that cannot be read as a sheet at all is an error wrapping a
// *sheet.Refusal.
func (s *Store) Import(ctx context.Context, r io.Reader, f sheet.Format, ch Change) (*Result, error) {
	b := s.newBuilder(ch)
	tb, problems, err := sheet.Read(r, f, sheet.Options{Columns: ch.Kind.sheetColumns(), Sheets: []string{ch.Kind.SheetName()}}, func(row sheet.Row) bool {
		b.add(row.N, row.Cells)
		return true
	})
	if err != nil {
		return nil, err
	}
	// Rows were checked as they streamed, before the header was known to
	// the builder: name their columns as the sheet does now.
	b.headers = tb.Headers
	for i, e := range b.res.Errors {
		b.res.Errors[i].Column = b.columnName(e.Field)
	}
	for _, p := range problems {
		b.res.addError(RowError{Row: p.Row, Column: p.Column, Message: p.Message})
	}
	return s.apply(ctx, b)
}

// Put adds or replaces one row, given in the kind's columns (Columns), as
// an edit through the API: problems name the columns as fields.
func (s *Store) Put(ctx context.Context, fields []string, ch Change) (*Result, error) {
	ch.Merge = true
	b := s.newBuilder(ch)
	b.add(0, fields)
	return s.apply(ctx, b)
}

// Retire removes one row by id. A grid worker who still visits households
// is not retired: they must be given to another first.
func (s *Store) Retire(ctx context.Context, id string, ch Change) (*Result, error) {
	ch.Merge = true
	b := s.newBuilder(ch)
	b.retire = id
	return s.apply(ctx, b)
}

// builder gathers the rows of a change, checked one by one, grouped by
// division in the stored form.
type builder struct {
	s       *Store
	ch      Change
	res     Result
	headers []string // the sheet's headers per column; nil for an edit

	rows map[int][]byte // division index → rows, in order, stored form
	// seen holds every id given, valid or not: the row it was first given
	// on, and for a valid row its division index + 1 (0 for a row refused).
	// One map for both: an import of a city holds a million ids.
	seen      map[string]uint64
	mentioned map[int]bool // divisions named by rows, valid or not
	retire    string       // Retire's id
}

func (s *Store) newBuilder(ch Change) *builder {
	return &builder{s: s, ch: ch, res: Result{Kind: ch.Kind, DryRun: ch.DryRun, AddedIDs: []string{}, ChangedIDs: []string{}, RetiredIDs: []string{}, Errors: []RowError{}},
		rows: map[int][]byte{}, seen: map[string]uint64{}, mentioned: map[int]bool{}}
}

// errorAt records a problem of a row's column, named as the sheet names it
// once the header is known.
func (b *builder) errorAt(row int, col, msg string) {
	b.res.addError(RowError{Row: row, Column: b.columnName(col), Field: col, Message: msg})
}

func (b *builder) columnName(col string) string {
	if i := slices.Index(b.ch.Kind.Columns(), col); i >= 0 && b.headers != nil && b.headers[i] != "" {
		return b.headers[i]
	}
	return col
}

// add checks one row and keeps it in the stored form. Problems that need
// the other rows or the roster (a grid worker who does not exist) are
// checked once every row is in.
func (b *builder) add(row int, f []string) {
	k, tree := b.ch.Kind, b.s.tree
	before := b.res.ErrorsTotal
	id := region.Clean(f[0])
	if err := region.CheckID(k.noun(), id); err != nil {
		b.errorAt(row, "id", err.Error())
	} else if first, dup := b.seen[id]; dup {
		b.errorAt(row, "id", region.DuplicateID(k.noun(), id, "row", int(first>>32)).Error())
	} else {
		// A copy: the id must not hold the whole line it was read from.
		id = strings.Clone(id)
		b.seen[id] = uint64(row) << 32
	}
	var (
		div    string
		errs   []*region.ColumnError
		encode func([]byte) []byte
	)
	switch k {
	case People:
		var p region.Person
		p, errs = region.ParsePersonRow(tree, f)
		p.ID, div = id, p.Division
		encode = func(b []byte) []byte { return appendPerson(b, p) }
	case Devices:
		var d region.Device
		d, errs = region.ParseDeviceRow(tree, f)
		d.ID, div = id, d.Division
		encode = func(b []byte) []byte { return appendDevice(b, d) }
	case Households:
		var h region.Household
		h, errs = region.ParseHouseholdRow(tree, f)
		h.ID, div = id, h.Division
		encode = func(b []byte) []byte { return appendHousehold(b, h) }
	}
	for _, e := range errs {
		b.errorAt(row, e.Column, e.Message)
	}
	i, known := tree.Index(div)
	if known {
		b.mentioned[i] = true
		if b.ch.Allowed != nil && !b.ch.Allowed(div) {
			b.errorAt(row, "division", fmt.Sprintf("%s lies outside your division: you may change only the roster of your own", div))
		}
	}
	if b.res.ErrorsTotal > before {
		return
	}
	b.rows[i] = encode(b.rows[i])
	b.seen[id] |= uint64(i + 1)
}

// apply compares the rows with the current version, checks what needs the
// whole roster, and unless anything is wrong or it is a dry run, stores the
// divisions that changed as a new version.
func (s *Store) apply(ctx context.Context, b *builder) (*Result, error) {
	if !b.ch.DryRun {
		unlock, err := s.lock(ctx, 15*time.Second)
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	base, err := s.changeBase(ctx)
	if err != nil {
		return nil, err
	}
	res := &b.res
	res.Base, res.Version = base.info.Number, base.info.Number
	content := b.compare(base)
	slices.SortStableFunc(res.Errors, func(x, y RowError) int { return x.Row - y.Row })
	if res.ErrorsTotal > 0 || b.ch.DryRun {
		return res, nil
	}
	n, err := s.commit(ctx, base, b.ch, content)
	if err != nil {
		return nil, err
	}
	res.Version = n
	return res, nil
}

// changeBase is the version a change applies to: the current one, or the
// base roster (the demo) made into a version in memory.
func (s *Store) changeBase(ctx context.Context) (*version, error) {
	r, n, err := s.Current(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		return r.(*version), nil
	}
	s.baseOnce.Do(func() { s.base = materialize(s.tree, s.opt.Base) })
	return s.base, nil
}

// compare classifies the rows against base, checks what needs the whole
// roster, and returns the new content of every division the change
// touches, by division index ("" empties it).
func (b *builder) compare(base *version) map[int]string {
	k, res, tree := b.ch.Kind, &b.res, b.s.tree
	chunks := base.chunks[k.index()]
	rowOf := func(id string) int { return int(b.seen[id] >> 32) }

	// Which divisions are replaced whole, and which lose a row that moved.
	covered := map[int]bool{}
	if !b.ch.Merge {
		for i := range b.mentioned {
			covered[i] = true
		}
		if b.ch.Scope != "" {
			tree.Walk(b.ch.Scope, func(d *region.Division) bool {
				i, _ := tree.Index(d.Code)
				covered[i] = true
				return true
			})
		}
	}
	roleLeft := map[string]int{} // grid workers who stop being one → their row
	touched := map[int]bool{}
	for i := range covered {
		touched[i] = true
	}
	divs := make([]int, 0, len(b.rows))
	for i := range b.rows {
		divs = append(divs, i)
	}
	slices.Sort(divs)
	type classified struct {
		id  string
		row int
		how int // 0 added, 1 changed, 2 unchanged
	}
	var all []classified
	texts := make(map[int]string, len(divs)) // the rows of each division, as stored
	for _, i := range divs {
		touched[i] = true
		data := string(b.rows[i])
		texts[i] = data
		for _, r := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
			id := rowID(r)
			c := classified{id: id, row: rowOf(id)}
			bd, br, found := base.locate(k, id)
			switch {
			case !found:
				c.how = 0
			case bd != i || chunks[bd].row(br) != r:
				c.how = 1
				if bd != i {
					touched[bd] = true
					if code := tree.ByIndex(bd).Code; b.ch.Allowed != nil && !b.ch.Allowed(code) {
						b.errorAt(c.row, "id", fmt.Sprintf("id %q belongs to a %s outside your division: give another id", id, k.noun()))
					}
				}
				if k == People {
					was, _ := decodePerson(chunks[bd].row(br), "")
					now, _ := decodePerson(r, "")
					if was.Role == region.GridWorker && now.Role != region.GridWorker {
						roleLeft[id] = c.row
					}
				}
			default:
				c.how = 2
			}
			if k == Households {
				h, _ := decodeHousehold(r, "")
				gw, known := base.Person(h.GridWorker)
				was := ""
				if found {
					prev, _ := decodeHousehold(chunks[bd].row(br), "")
					was = prev.GridWorker
				}
				if err := region.GridWorkerProblem(h.GridWorker, known, gw.Role, "the roster"); err != nil {
					b.errorAt(c.row, "grid_worker", err.Error())
				} else if h.GridWorker != was && b.ch.Allowed != nil && !b.ch.Allowed(gw.Division) {
					// A grid worker marks the households they visit: one of
					// another division would act, and read, outside it.
					b.errorAt(c.row, "grid_worker", fmt.Sprintf("grid worker %s belongs to a division outside yours: name a grid worker of your division", h.GridWorker))
				}
			}
			all = append(all, c)
		}
	}
	slices.SortStableFunc(all, func(x, y classified) int { return x.row - y.row })
	for _, c := range all {
		switch c.how {
		case 0:
			res.Added++
			list(&res.AddedIDs, c.id)
		case 1:
			res.Changed++
			list(&res.ChangedIDs, c.id)
		default:
			res.Unchanged++
		}
	}

	// Retired: rows of the covered divisions the change does not give.
	var retired []string
	retire := func(id string) {
		res.Retired++
		list(&res.RetiredIDs, id)
		retired = append(retired, id)
	}
	if b.retire != "" {
		bd, _, found := base.locate(k, b.retire)
		switch {
		case !found:
			b.errorAt(0, "id", fmt.Sprintf("no %s with id %q in the roster", k.noun(), b.retire))
		case b.ch.Allowed != nil && !b.ch.Allowed(tree.ByIndex(bd).Code):
			b.errorAt(0, "id", fmt.Sprintf("no %s with id %q in the roster", k.noun(), b.retire))
		default:
			touched[bd] = true
			retire(b.retire)
		}
	}
	coveredList := make([]int, 0, len(covered))
	for i := range covered {
		coveredList = append(coveredList, i)
	}
	slices.Sort(coveredList)
	for _, i := range coveredList {
		c := chunks[i]
		for r := range c.len() {
			if id := rowID(c.row(r)); !b.has(id) {
				retire(id)
			}
		}
	}
	if k == People {
		b.checkGridWorkers(base, retired, roleLeft)
	}

	// The new content of every division touched.
	gone := map[string]bool{}
	for _, id := range retired {
		gone[id] = true
	}
	out := make(map[int]string, len(touched))
	for i := range touched {
		if covered[i] {
			out[i] = texts[i]
			continue
		}
		// Merged: the stored rows, each replaced where the change gives it
		// anew, dropped where it moved away or is retired; new rows after.
		var nb strings.Builder
		given := map[string]string{}
		var order []string
		if data, ok := texts[i]; ok {
			for _, r := range strings.Split(strings.TrimSuffix(data, "\n"), "\n") {
				given[rowID(r)] = r
				order = append(order, rowID(r))
			}
		}
		c := chunks[i]
		for r := range c.len() {
			old := c.row(r)
			id := rowID(old)
			switch nr, ok := given[id]; {
			case ok:
				nb.WriteString(nr)
				nb.WriteByte(rowSep)
				delete(given, id)
			case gone[id]:
			case b.has(id) && b.divisionOf(id) != i:
			default:
				nb.WriteString(old)
				nb.WriteByte(rowSep)
			}
		}
		for _, id := range order {
			if nr, ok := given[id]; ok {
				nb.WriteString(nr)
				nb.WriteByte(rowSep)
			}
		}
		out[i] = nb.String()
	}
	res.Divisions = len(covered)
	return out
}

// has reports whether the change gives a row with this id, valid or not: a
// row refused for a bad phone number is not a person retired.
func (b *builder) has(id string) bool {
	_, ok := b.seen[id]
	return ok
}

// divisionOf is the division index a valid row gives, or -1.
func (b *builder) divisionOf(id string) int {
	return int(uint32(b.seen[id])) - 1
}

// checkGridWorkers refuses to retire, or take the role from, a grid worker
// who still visits households: the households would have nobody.
func (b *builder) checkGridWorkers(base *version, retired []string, roleLeft map[string]int) {
	if len(retired) == 0 && len(roleLeft) == 0 {
		return
	}
	affected := map[string]bool{}
	for _, id := range retired {
		affected[id] = true
	}
	for id := range roleLeft {
		affected[id] = true
	}
	visits := map[string][]string{}
	for i, c := range base.chunks[Households.index()] {
		_ = i
		for r := range c.len() {
			h, _ := decodeHousehold(c.row(r), "")
			if affected[h.GridWorker] {
				visits[h.GridWorker] = append(visits[h.GridWorker], h.ID)
			}
		}
	}
	ids := make([]string, 0, len(visits))
	for id := range visits {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		hh := visits[id]
		shown := strings.Join(hh[:min(5, len(hh))], ", ")
		if len(hh) > 5 {
			shown += fmt.Sprintf(" and %d more", len(hh)-5)
		}
		if row, ok := roleLeft[id]; ok {
			b.errorAt(row, "role", fmt.Sprintf("%s is the grid worker of households %s: give them another grid worker first, or keep the role grid_worker", id, shown))
			continue
		}
		b.errorAt(int(b.seen[id]>>32), "id", fmt.Sprintf("%s would be retired but is the grid worker of households %s: give them another grid worker first", id, shown))
	}
}

// commitScript makes a new version: a copy of the base manifest's chunks
// with the changed fields set ("" deletes), and makes it current, unless
// the current version is no longer the base.
// KEYS: current, base manifest, new manifest, versions. ARGV: base, new,
// then field, value pairs.
var commitScript = redis.NewScript(`
local cur = redis.call("GET", KEYS[1]) or "0"
if cur ~= ARGV[1] then return redis.error_reply("CONFLICT current version is " .. cur) end
if redis.call("EXISTS", KEYS[3]) == 1 then return redis.error_reply("CONFLICT version " .. ARGV[2] .. " exists") end
if ARGV[1] ~= "0" then
  local all = redis.call("HGETALL", KEYS[2])
  local batch = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 1) ~= "#" then
      batch[#batch + 1] = all[i]
      batch[#batch + 1] = all[i + 1]
      if #batch >= 1000 then redis.call("HSET", KEYS[3], unpack(batch)); batch = {} end
    end
  end
  if #batch > 0 then redis.call("HSET", KEYS[3], unpack(batch)) end
end
local set = {}
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == "" then
    redis.call("HDEL", KEYS[3], ARGV[i])
  else
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
    if #set >= 1000 then redis.call("HSET", KEYS[3], unpack(set)); set = {} end
  end
end
if #set > 0 then redis.call("HSET", KEYS[3], unpack(set)) end
redis.call("SET", KEYS[1], ARGV[2])
redis.call("ZADD", KEYS[4], ARGV[2], ARGV[2])
return ARGV[2]
`)

// commit stores the chunks that changed and a manifest naming them.
func (s *Store) commit(ctx context.Context, base *version, ch Change, content map[int]string) (int64, error) {
	k := ch.Kind
	saved := base.info.Number > 0
	type put struct {
		field string
		id    string
		data  string
	}
	var puts []put
	var fields []any
	for i, data := range content {
		code := s.tree.ByIndex(i).Code
		id, oldID := "", ""
		if data != "" {
			id = chunkID(k, data)
		}
		if old := base.chunks[k.index()][i]; old != nil {
			oldID = old.id
		}
		if saved && id == oldID || !saved && id == "" {
			continue
		}
		if id != "" {
			puts = append(puts, put{field(k, code), id, data})
		}
		fields = append(fields, field(k, code), id)
	}
	if !saved {
		// The first version holds the whole base roster, as changed.
		for kk, byDiv := range base.chunks {
			for i, c := range byDiv {
				if c == nil || Kinds[kk] == k && hasKey(content, i) {
					continue
				}
				code := s.tree.ByIndex(i).Code
				fields = append(fields, field(Kinds[kk], code), c.id)
				puts = append(puts, put{field(Kinds[kk], code), c.id, c.data})
			}
		}
	}
	if len(fields) == 0 {
		return base.info.Number, nil
	}
	now := s.now()
	// This process serves the new version at once: its chunks are parsed
	// here rather than read back.
	parsed := make([]*chunk, 0, len(puts))
	for _, p := range puts {
		k, _, _ := parseField(p.field)
		c, err := parseChunk(p.id, k, p.data)
		if err != nil {
			return 0, err
		}
		parsed = append(parsed, c)
	}
	for start := 0; start < len(puts); start += 64 {
		pipe := s.rdb.Pipeline()
		for _, p := range puts[start:min(start+64, len(puts))] {
			pipe.Set(ctx, s.chunkKey(p.id), p.data, 0)
			pipe.ZAdd(ctx, s.chunksKey(), redis.Z{Score: float64(now.UnixMilli()), Member: p.id})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("roster: store chunks: %w", err)
		}
	}
	n := base.info.Number + 1
	fields = append(fields, "#at", strconv.FormatInt(now.UnixMilli(), 10), "#by", ch.By, "#note", ch.Note)
	args := append([]any{strconv.FormatInt(base.info.Number, 10), strconv.FormatInt(n, 10)}, fields...)
	keys := []string{s.currentKey(), s.manifestKey(base.info.Number), s.manifestKey(n), s.versionsKey()}
	if err := commitScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return 0, fmt.Errorf("roster: commit version %d: %w", n, err)
	}
	s.mu.Lock()
	for _, c := range parsed {
		if _, ok := s.chunks[c.id]; !ok {
			s.chunks[c.id] = c
		}
	}
	s.mu.Unlock()
	if _, err := s.advance(ctx, n); err != nil {
		return n, err
	}
	return n, nil
}

func hasKey(m map[int]string, i int) bool {
	_, ok := m[i]
	return ok
}
