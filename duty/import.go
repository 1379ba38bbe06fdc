package duty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/xuri/excelize/v2"

	"warngate/internal/sheet"
	"warngate/region"
)

// Columns of the 值班表: one row per shift and duty officer; the rows of one
// shift (same division, start and end) name the same leader.
var Columns = []string{"division", "start", "end", "leader_id", "leader_name", "duty_id", "duty_name"}

var columns = []sheet.Column{
	{Name: "division", Aliases: []string{"区划代码", "单位区划代码", "行政区划代码"}},
	{Name: "start", Aliases: []string{"开始时间", "开始", "值班开始"}},
	{Name: "end", Aliases: []string{"结束时间", "结束", "值班结束"}},
	{Name: "leader_id", Aliases: []string{"带班领导编号", "带班领导工号"}},
	{Name: "leader_name", Aliases: []string{"带班领导", "带班领导姓名"}, Optional: true},
	{Name: "duty_id", Aliases: []string{"值班员编号", "值班人员编号"}},
	{Name: "duty_name", Aliases: []string{"值班员", "值班员姓名", "值班人员"}, Optional: true},
}

// SheetName is the worksheet imports prefer.
const SheetName = "值班表"

// RowError is one problem of an import or an override.
type RowError struct {
	Row     int    `json:"row"`             // as Excel numbers it; 0 for an override or the sheet as a whole
	Column  string `json:"column"`          // the header as written, or the field of an override
	Field   string `json:"field,omitempty"` // the column as Columns names it
	Message string `json:"message"`
	// Outside marks a person or division outside the caller's: a request
	// that names one is refused as a whole (403), not corrected.
	Outside bool `json:"-"`
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

// Result is what an import did, or on a dry run would do.
type Result struct {
	DryRun bool `json:"dry_run"`
	// Shifts are the shifts the sheet holds; Replaced the schedule's shifts
	// they replace (those overlapping the sheet's window in its divisions).
	Shifts    int `json:"shifts"`
	Replaced  int `json:"replaced"`
	Divisions int `json:"divisions"`
	// Errors are the problems in row order, at most MaxListed; with any,
	// nothing is stored.
	Errors      []RowError `json:"errors"`
	ErrorsTotal int        `json:"errors_total"`
}

// MaxListed bounds the errors a Result lists.
const MaxListed = 1000

func (r *Result) add(e RowError) {
	r.ErrorsTotal++
	if len(r.Errors) < MaxListed {
		r.Errors = append(r.Errors, e)
	}
}

// ImportOptions say how a 值班表 is imported.
type ImportOptions struct {
	DryRun bool
	// Allowed says whether the caller may set the duty of a division.
	Allowed func(code string) bool
	By      string
}

// parsed is a shift being read, with the row it started on.
type parsed struct {
	Shift
	row  int
	rows map[string]int // duty officer id → row
}

// Import reads a 值班表 (.xlsx or CSV) and stores its shifts, all or
// nothing: for each division it names, the schedule's shifts overlapping
// the sheet's window in that division (its first start to its last end) are
// replaced. Overrides stay: they win over the new schedule as over the old.
func (s *Store) Import(ctx context.Context, r io.Reader, f sheet.Format, o ImportOptions) (*Result, error) {
	res := &Result{DryRun: o.DryRun, Errors: []RowError{}}
	roster, err := s.opt.Roster(ctx)
	if err != nil {
		return nil, err
	}
	var (
		shifts   []*parsed
		byKey    = map[string]*parsed{}
		headers  []string
		date1904 bool
		rowsRead []sheet.Row // a month of shifts is a few thousand rows
	)
	tb, problems, err := sheet.Read(r, f, sheet.Options{Columns: columns, Sheets: []string{SheetName}}, func(row sheet.Row) bool {
		rowsRead = append(rowsRead, row)
		return true
	})
	if err != nil {
		return nil, err
	}
	headers, date1904 = tb.Headers, tb.Date1904
	colName := func(field string) string {
		if i := slices.IndexFunc(columns, func(c sheet.Column) bool { return c.Name == field }); i >= 0 && headers[i] != "" {
			return headers[i]
		}
		return field
	}
	for _, p := range problems {
		res.add(RowError{Row: p.Row, Column: p.Column, Message: p.Message})
	}
	for _, row := range rowsRead {
		c := row.Cells
		errAt := func(field, msg string) {
			res.add(RowError{Row: row.N, Column: colName(field), Field: field, Message: msg})
		}
		before := res.ErrorsTotal
		sh := Shift{Division: c[0], Source: FromSchedule, By: o.By, Recorded: s.opt.Now()}
		s.checkDivision(sh.Division, o.Allowed, errAt)
		var e1, e2 error
		sh.Start, e1 = ParseTime(c[1], date1904)
		if e1 != nil {
			errAt("start", e1.Error())
		}
		sh.End, e2 = ParseTime(c[2], date1904)
		if e2 != nil {
			errAt("end", e2.Error())
		}
		if e1 == nil && e2 == nil {
			checkWindow(sh.Start, sh.End, errAt)
		}
		sh.Leader, _ = s.officer(roster, c[3], c[4], "leader_id", "leader_name", o.Allowed, errAt)
		duty, _ := s.officer(roster, c[5], c[6], "duty_id", "duty_name", o.Allowed, errAt)
		if res.ErrorsTotal > before {
			continue
		}
		key := sh.Division + "|" + strconv.FormatInt(sh.Start.UnixMilli(), 10) + "|" + strconv.FormatInt(sh.End.UnixMilli(), 10)
		p, ok := byKey[key]
		if !ok {
			p = &parsed{Shift: sh, row: row.N, rows: map[string]int{}}
			byKey[key] = p
			shifts = append(shifts, p)
		} else if p.Leader.ID != sh.Leader.ID {
			errAt("leader_id", fmt.Sprintf("the leader of this shift is %s on row %d: one shift has one leader", p.Leader.ID, p.row))
			continue
		}
		if first, dup := p.rows[duty.ID]; dup {
			errAt("duty_id", fmt.Sprintf("%s is on this shift already (row %d)", duty.ID, first))
			continue
		}
		p.rows[duty.ID] = row.N
		p.Duty = append(p.Duty, duty)
	}
	// Shifts of one division must not overlap: two shifts cannot both be on duty.
	byDiv := map[string][]*parsed{}
	var divs []string
	for _, p := range shifts {
		if _, ok := byDiv[p.Division]; !ok {
			divs = append(divs, p.Division)
		}
		byDiv[p.Division] = append(byDiv[p.Division], p)
	}
	for _, d := range divs {
		list := byDiv[d]
		slices.SortStableFunc(list, func(a, b *parsed) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(list); i++ {
			prev, cur := list[i-1], list[i]
			if cur.Start.Before(prev.End) {
				later := max(prev.row, cur.row)
				other := min(prev.row, cur.row)
				res.add(RowError{Row: later, Column: colName("start"), Field: "start", Message: fmt.Sprintf("this shift (%s) overlaps the shift of row %d (%s) in %s: shifts of one division follow each other",
					span(cur.Shift), other, span(prev.Shift), d)})
			}
		}
	}
	slices.SortStableFunc(res.Errors, func(a, b RowError) int { return a.Row - b.Row })
	res.Shifts, res.Divisions = len(shifts), len(divs)
	if len(shifts) == 0 && res.ErrorsTotal == 0 {
		res.add(RowError{Message: "the sheet has no shifts: one row per shift and duty officer under the header"})
	}
	if res.ErrorsTotal > 0 {
		return res, nil
	}
	return res, s.replace(ctx, byDiv, divs, res, o.DryRun)
}

// replace swaps the schedule's shifts of each division's window for the
// sheet's, in one transaction; it counts what it replaces.
func (s *Store) replace(ctx context.Context, byDiv map[string][]*parsed, divs []string, res *Result, dry bool) error {
	keys := make([]string, len(divs))
	for i, d := range divs {
		keys[i] = s.key(FromSchedule, d)
	}
	for try := 0; try < 5; try++ {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			res.Replaced = 0
			type del struct {
				key     string
				members []any
			}
			var dels []del
			for _, d := range divs {
				list := byDiv[d]
				from, to := list[0].Start, list[0].End
				for _, p := range list {
					to = maxTime(to, p.End)
				}
				_, raw, err := s.around(ctx, FromSchedule, d, from, to)
				if err != nil {
					return err
				}
				res.Replaced += len(raw)
				members := make([]any, len(raw))
				for i, m := range raw {
					members[i] = m
				}
				dels = append(dels, del{s.key(FromSchedule, d), members})
			}
			if dry {
				return nil
			}
			_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				for i, d := range divs {
					if len(dels[i].members) > 0 {
						pipe.ZRem(ctx, dels[i].key, dels[i].members...)
					}
					for _, p := range byDiv[d] {
						pipe.ZAdd(ctx, s.key(FromSchedule, d), redis.Z{Score: float64(p.Start.UnixMilli()), Member: encode(p.Shift)})
					}
				}
				return nil
			})
			return err
		}, keys...)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("duty: store shifts: %w", err)
		}
		return nil
	}
	return errors.New("duty: the schedule kept changing while it was stored: try again")
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Override is a swap or an override for one window of one division.
type Override struct {
	Division string
	Start    time.Time
	End      time.Time
	LeaderID string
	DutyIDs  []string
	Reason   string
	By       string
}

// SetOverride records an override, which wins over the schedule for its
// window; one for the same division, start and end replaces it. Problems
// name the fields of the request (division, start, end, leader.id,
// duty[0].id), all at once.
func (s *Store) SetOverride(ctx context.Context, o Override, allowed func(string) bool) (Shift, []RowError, error) {
	roster, err := s.opt.Roster(ctx)
	if err != nil {
		return Shift{}, nil, err
	}
	var errs []RowError
	errAt := func(field, msg string) { errs = append(errs, RowError{Column: field, Field: field, Message: msg}) }
	sh := Shift{Division: o.Division, Start: o.Start, End: o.End, Source: FromOverride, By: o.By, Recorded: s.opt.Now(), Reason: region.Clean(o.Reason)}
	s.checkDivision(o.Division, allowed, errAt)
	if o.Start.IsZero() {
		errAt("start", "start is missing: give the override's start, RFC 3339")
	}
	if o.End.IsZero() {
		errAt("end", "end is missing: give the override's end, RFC 3339")
	}
	if !o.Start.IsZero() && !o.End.IsZero() {
		checkWindow(o.Start, o.End, errAt)
	}
	// officer has just reported a person outside: mark that problem.
	outside := func() { errs[len(errs)-1].Outside = true }
	var out bool
	if sh.Leader, out = s.officer(roster, o.LeaderID, "", "leader.id", "", allowed, func(_, msg string) { errAt("leader.id", msg) }); out {
		outside()
	}
	if len(o.DutyIDs) == 0 {
		errAt("duty", "no duty officer: name at least one, by roster id")
	}
	seen := map[string]bool{}
	for i, id := range o.DutyIDs {
		f := fmt.Sprintf("duty[%d].id", i)
		if seen[id] {
			errAt(f, id+" is named twice")
			continue
		}
		seen[id] = true
		d, out := s.officer(roster, id, "", f, "", allowed, func(_, msg string) { errAt(f, msg) })
		if out {
			outside()
		}
		sh.Duty = append(sh.Duty, d)
	}
	if len(sh.Reason) > 200 {
		errAt("reason", "reason is longer than 200 bytes: keep it short")
	}
	if len(errs) > 0 {
		return Shift{}, errs, nil
	}
	key := s.key(FromOverride, o.Division)
	old, raw, err := s.around(ctx, FromOverride, o.Division, o.Start, o.End)
	if err != nil {
		return Shift{}, nil, err
	}
	pipe := s.rdb.TxPipeline()
	for i, x := range old {
		if x.Start.Equal(o.Start) && x.End.Equal(o.End) {
			pipe.ZRem(ctx, key, raw[i])
		}
	}
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(o.Start.UnixMilli()), Member: encode(sh)})
	if _, err := pipe.Exec(ctx); err != nil {
		return Shift{}, nil, fmt.Errorf("duty: store override: %w", err)
	}
	return sh, nil, nil
}

func (s *Store) checkDivision(code string, allowed func(string) bool, errAt func(field, msg string)) {
	d, ok := s.opt.Tree.Get(code)
	switch {
	case code == "":
		errAt("division", "division is empty: give the 12-digit code of the division on duty")
	case !ok:
		errAt("division", fmt.Sprintf("unknown division %q: use a 12-digit code from the region tree", code))
	case d.Level == region.Province:
		errAt("division", fmt.Sprintf("%s is the province: give the city, a county, a township or a village", code))
	case allowed != nil && !allowed(code):
		errAt("division", fmt.Sprintf("%s lies outside your division: you may set duty only inside it", code))
	}
}

func checkWindow(start, end time.Time, errAt func(field, msg string)) {
	switch {
	case !end.After(start):
		errAt("end", fmt.Sprintf("end %s is not after start %s: a shift ends after it starts", fmtTime(end), fmtTime(start)))
	case end.Sub(start) > MaxShift:
		errAt("end", fmt.Sprintf("a shift of %s: a shift lasts at most 7 days; check the dates", end.Sub(start).Round(time.Minute)))
	}
}

// officer checks a person a shift names: an official of the roster, of a
// division the caller may set duty in (allowed; nil allows all: putting
// someone on duty hands them the division's warnings and their phone to
// whoever asks who is on duty), whose name, when given, is the roster's.
// outside reports a person of another division.
func (s *Store) officer(r region.Roster, id, name, idField, nameField string, allowed func(string) bool, errAt func(field, msg string)) (o Officer, outside bool) {
	id, name = region.Clean(id), region.Clean(name)
	if id == "" {
		errAt(idField, fmt.Sprintf("%s is empty: give the person's id from the roster (通讯录)", idField))
		return Officer{}, false
	}
	p, ok := r.Person(id)
	switch {
	case !ok:
		errAt(idField, fmt.Sprintf("%q is not in the roster: import them with the 通讯录 first, or correct the id", id))
		return Officer{ID: id, Name: name}, false
	case allowed != nil && !allowed(p.Division):
		// Not named: the caller may not read people outside their division.
		errAt(idField, fmt.Sprintf("%s belongs to a division outside yours: name officials of your division", id))
		return Officer{ID: id}, true
	case !p.Role.Audience().Official():
		errAt(idField, fmt.Sprintf("%s (%s) is a %s: name an official", id, p.Name, p.Role))
	case name != "" && name != p.Name && nameField != "":
		errAt(nameField, fmt.Sprintf("%s is %s in the roster, not %s: correct the id or the name", id, p.Name, name))
	}
	return Officer{ID: id, Name: p.Name}, false
}

// ParseTime reads a time of a sheet: RFC 3339; "2026-12-04 20:00" (also
// with seconds, "T" or slashes) in Beijing time; or an Excel date serial,
// as a time typed into Excel is stored, read as Beijing wall time.
func ParseTime(v string, date1904 bool) (time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}, errors.New("empty: write a time such as 2026-12-04 20:00 (Beijing time)")
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	// An offset's '+' left unescaped in a URL arrives as a space.
	if n := len(v); n > 6 && v[n-6] == ' ' && v[n-3] == ':' {
		if t, err := time.Parse(time.RFC3339, v[:n-6]+"+"+v[n-5:]); err == nil {
			return t, nil
		}
	}
	norm := strings.ReplaceAll(v, "/", "-")
	for _, layout := range []string{"2006-1-2 15:04", "2006-1-2 15:04:05", "2006-1-2T15:04", "2006-1-2T15:04:05"} {
		if t, err := time.ParseInLocation(layout, norm, Beijing); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil && f > 1 && f < 2958466 {
		t, err := excelize.ExcelDateToTime(f, date1904)
		if err == nil {
			// Excel keeps wall time without a zone: it is Beijing's.
			t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), int(math.Round(float64(t.Second())+float64(t.Nanosecond())/1e9)), 0, Beijing)
			return t.Truncate(time.Minute), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write 2026-12-04 20:00 (Beijing time) or RFC 3339 such as 2026-12-04T20:00:00+08:00", v)
}

func fmtTime(t time.Time) string { return t.In(Beijing).Format("2006-01-02 15:04") }

func span(s Shift) string { return fmtTime(s.Start) + "–" + fmtTime(s.End) }
