package callsheet

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"
)

// Limits on an uploaded file once unzipped, against zip bombs. A call list
// of a thousand households unzips to well under 1 MiB.
const (
	unzipLimit    = 64 << 20
	unzipXMLLimit = 16 << 20
)

// Read reads a call list that Write produced, once grid workers' results
// have been filled in, by hand from the printout or in Excel or WPS.
//
// It finds the header row by its labels, wherever it is, and matches each
// row to its household by the hidden 户编号 column. A row with nothing in it
// is skipped; a row whose results are blank is a household not reached yet
// (Reached nil). Sheet's warning details come from the hidden sheet Write
// adds; they are zero when the file has lost it (say, rows pasted into a new
// workbook).
//
// It reports every problem it finds, each a *CellError naming the row and
// column and what to write instead, and leaves out of Rows every row with a
// problem (both copies of a duplicated household). A file it cannot read at
// all gives one error, wrapping ErrNotXLSX or ErrNoHeader; a header without
// a column Read needs gives one error per missing column, and no rows.
//
// Read reads all of r into memory: the caller bounds its size.
func Read(r io.Reader) (Sheet, []error) {
	f, err := excelize.OpenReader(r, excelize.Options{UnzipSizeLimit: unzipLimit, UnzipXMLSizeLimit: unzipXMLLimit})
	if err != nil {
		return Sheet{}, []error{fmt.Errorf("%w: %v", ErrNotXLSX, err)}
	}
	defer f.Close()
	names := f.GetSheetList()
	if len(names) == 0 {
		return Sheet{}, []error{fmt.Errorf("%w: it has no worksheet", ErrNotXLSX)}
	}
	s, err := readMeta(f)
	if err != nil {
		return Sheet{}, []error{err}
	}
	var date1904 bool
	if p, err := f.GetWorkbookProps(); err == nil && p.Date1904 != nil {
		date1904 = *p.Date1904
	}
	for _, name := range names {
		if name == metaSheet {
			continue
		}
		// Raw values: a time typed into Excel is a number (a date serial)
		// whatever format it is shown in.
		rows, err := f.GetRows(name, excelize.Options{RawCellValue: true})
		if err != nil {
			return Sheet{}, []error{fmt.Errorf("%w: sheet %s: %v", ErrNotXLSX, name, err)}
		}
		hdr, idx, ok := findHeader(rows)
		if !ok {
			continue
		}
		if errs := checkHeader(hdr, idx); len(errs) > 0 {
			return s, errs
		}
		rd := reader{issued: s.Issued, date1904: date1904, idx: idx}
		s.Rows = rd.rows(rows[hdr+1:], hdr+2)
		return s, rd.errs
	}
	return s, []error{ErrNoHeader}
}

// readMeta reads the warning's details from the hidden sheet, if there is one.
func readMeta(f *excelize.File) (Sheet, error) {
	var s Sheet
	if i, _ := f.GetSheetIndex(metaSheet); i < 0 {
		return s, nil
	}
	rows, err := f.GetRows(metaSheet, excelize.Options{RawCellValue: true})
	if err != nil {
		return s, fmt.Errorf("%w: sheet %s: %v", ErrNotXLSX, metaSheet, err)
	}
	kv := make(map[string]string, len(rows))
	for _, r := range rows {
		if len(r) >= 2 {
			kv[r[0]] = r[1]
		}
	}
	if kv["format"] != metaFormat {
		return s, fmt.Errorf("callsheet: hidden sheet %s: format %q, want %q: export the call list again", metaSheet, kv["format"], metaFormat)
	}
	s.WarningID, s.Title, s.Level = kv["warning_id"], kv["title"], kv["level"]
	s.Village, s.VillageCode = kv["village"], kv["village_code"]
	if v := kv["issued"]; v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return s, fmt.Errorf("callsheet: hidden sheet %s: issued: %w", metaSheet, err)
		}
		s.Issued = t.In(cst)
	}
	return s, nil
}

// findHeader returns the index of the first row that names at least three of
// the columns, and where each column is in it (-1 when absent).
func findHeader(rows [][]string) (int, [numCols]int, bool) {
	var idx [numCols]int
	for i, r := range rows {
		for c := range idx {
			idx[c] = -1
		}
		found := 0
		for j, v := range r {
			l := headerLabel(v)
			for c := range numCols {
				if l == columns[c].label && idx[c] < 0 {
					idx[c] = j
					found++
				}
			}
		}
		if found >= 3 {
			return i, idx, true
		}
	}
	return 0, idx, false
}

// headerLabel drops spaces, line breaks and a bracketed hint such as （是/否）.
func headerLabel(v string) string {
	v = strings.Join(strings.Fields(v), "")
	if i := strings.IndexAny(v, "(（"); i >= 0 {
		v = v[:i]
	}
	return v
}

// checkHeader reports the columns Read cannot do without.
func checkHeader(hdr int, idx [numCols]int) []error {
	var errs []error
	for _, c := range []col{colID, colReached, colMethod, colAt} {
		if idx[c] < 0 {
			hint := ""
			if c == colID {
				hint = " (the hidden column that matches rows to households)"
			}
			errs = append(errs, fmt.Errorf("callsheet: header row %d has no %s column%s: upload the call list warngate exported, with all its columns kept",
				hdr+1, columns[c].label, hint))
		}
	}
	return errs
}

// reader reads the rows under the header.
type reader struct {
	issued   time.Time
	date1904 bool
	idx      [numCols]int
	errs     []error
}

// rows reads rows, the first of which is Excel row first.
func (rd *reader) rows(rows [][]string, first int) []Row {
	var out []Row
	seen := make(map[string]int) // household id → Excel row
	dup := make(map[string]bool)
	for i, cells := range rows {
		n := first + i
		get := func(c col) string {
			j := rd.idx[c]
			if j < 0 || j >= len(cells) {
				return ""
			}
			return strings.TrimSpace(cells[j])
		}
		blank := true
		for c := colHead; c < numCols; c++ { // a 序号 alone is not a household
			if get(c) != "" {
				blank = false
				break
			}
		}
		if blank {
			continue
		}
		before := len(rd.errs)
		cellErr := func(c col, msg string) {
			rd.errs = append(rd.errs, &CellError{
				Row: n, Column: columnName(rd.idx[c]), Label: columns[c].label, Value: get(c), Msg: msg,
			})
		}
		r := Row{
			HouseholdID: get(colID),
			Head:        get(colHead),
			Address:     get(colAddress),
			Phone:       phone(get(colPhone)),
			Category:    get(colCategory),
			GridWorker:  get(colWorker),
			Note:        get(colNote),
			Source:      sourceCode(get(colSource)),
		}
		switch first, ok := seen[r.HouseholdID]; {
		case r.HouseholdID == "":
			cellErr(colID, "no household id: rows added by hand cannot be matched to a household; "+
				"delete the row and write about it in 备注 of a listed household")
		case ok:
			cellErr(colID, fmt.Sprintf("household %q is also on row %d: keep one row per household and delete the other", r.HouseholdID, first))
			dup[r.HouseholdID] = true
		default:
			seen[r.HouseholdID] = n
		}
		if v := get(colReached); v != "" {
			if b, ok := parseReached(v); ok {
				r.Reached = &b
			} else {
				cellErr(colReached, fmt.Sprintf("%q is neither 是 nor 否: write 是 or 否 (Y/N, 1/0 and √/× are read too)", v))
			}
		}
		if v := get(colMethod); v != "" {
			if m, ok := parseMethod(v); ok {
				r.Method = m
			} else {
				cellErr(colMethod, fmt.Sprintf("unknown method %q: write one of %s", v, strings.Join(Methods, ", ")))
			}
		}
		if v := get(colAt); v != "" {
			t, err := parseTime(v, rd.issued, rd.date1904)
			switch {
			case err != nil:
				cellErr(colAt, err.Error())
			case !rd.issued.IsZero() && t.Before(rd.issued.Truncate(time.Minute)):
				cellErr(colAt, fmt.Sprintf("%s is before the warning was issued at %s: check the date", t.Format(timeLayout), rd.issued.Format(timeLayout)))
			default:
				r.At = t
			}
		}
		if get(colReached) == "" && (get(colMethod) != "" || get(colAt) != "") {
			cellErr(colReached, "blank, but 传递方式 or 时间 is filled in: write 是 or 否")
		}
		if len(rd.errs) == before {
			out = append(out, r)
		}
	}
	if len(dup) > 0 {
		kept := out[:0]
		for _, r := range out {
			if !dup[r.HouseholdID] {
				kept = append(kept, r)
			}
		}
		out = kept
	}
	return out
}

func columnName(i int) string {
	name, err := excelize.ColumnNumberToName(i + 1)
	if err != nil {
		return "?"
	}
	return name
}

// phone undoes Excel's scientific notation for a phone number retyped as a
// number (1.3800138E+10).
func phone(v string) string {
	if !strings.ContainsAny(v, "Ee") {
		return v
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f != math.Trunc(f) || f < 0 || f > 1e15 {
		return v
	}
	return strconv.FormatFloat(f, 'f', 0, 64)
}

// sourceCode reads a printed source back; a sheet without the column is the
// roster's.
func sourceCode(printed string) string {
	if printed == "补访" {
		return SourceFallback
	}
	return SourceRoster
}
