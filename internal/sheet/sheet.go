// Package sheet reads the tables bureaus keep — .xlsx workbooks from Excel or
// WPS, and CSV files — as one plain table: a header in row 1 naming the
// columns, one record per row below. What cannot be read as such a table
// (a file that is not one, formulas, merged cells, a title row above the
// header, a second header row further down, text that is not UTF-8) is
// refused with the row as Excel numbers it and the column by its header,
// so that the person fixing the sheet finds the cell.
//
// It knows nothing of rosters or duty shifts: callers name their columns
// and check the values. It writes tables too, for exports.
package sheet

import (
	"errors"
	"fmt"
	"mime"
	"strings"
	"unicode"
)

// Format is how a table is stored.
type Format int

// Formats.
const (
	CSV Format = iota + 1
	XLSX
)

func (f Format) String() string {
	if f == XLSX {
		return "xlsx"
	}
	return "csv"
}

// Content types.
const (
	XLSXType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	CSVType  = "text/csv; charset=utf-8"
)

// ErrFormat is returned for a Content-Type that names neither format.
var ErrFormat = errors.New("send the sheet with Content-Type " + XLSXType + " (.xlsx) or text/csv (.csv, UTF-8)")

// FormatOf picks the format a request's Content-Type names. A generic
// application/octet-stream (a browser's upload of an unknown file) is told
// apart by the file's first bytes: an .xlsx is a zip.
func FormatOf(contentType string, head []byte) (Format, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil && contentType != "" {
		return 0, ErrFormat
	}
	switch mt {
	case XLSXType, "application/xlsx", "application/vnd.ms-excel":
		return XLSX, nil
	case "text/csv", "application/csv", "text/plain", "text/comma-separated-values":
		return CSV, nil
	case "", "application/octet-stream":
		if len(head) >= 4 && string(head[:4]) == "PK\x03\x04" {
			return XLSX, nil
		}
		return CSV, nil
	}
	return 0, ErrFormat
}

// Column is one column a caller reads.
type Column struct {
	// Name is the column's name in the English header, as in the CSV layouts
	// of the README: "phone".
	Name string
	// Aliases are other headers that mean the same column: 手机号, 联系电话.
	// Headers are compared without spaces, line breaks, case, and a
	// bracketed hint such as （必填）.
	Aliases []string
	// Optional columns may be missing from the header; their cells are then
	// empty.
	Optional bool
}

// Options say what a table must hold.
type Options struct {
	// Columns are read in this order into Row.Cells. Columns of the sheet
	// that are none of these are ignored (序号, 备注, …).
	Columns []Column
	// Sheets are the worksheet names to read, in order of preference (通讯录);
	// when a workbook has none of them, its first visible sheet is read.
	Sheets []string
	// MaxErrors bounds the problems reported; zero means 1000.
	MaxErrors int
}

func (o *Options) maxErrors() int {
	if o.MaxErrors <= 0 {
		return 1000
	}
	return o.MaxErrors
}

// Row is one record: its row number as Excel shows it (the header is row
// 1) and its cells in the order of Options.Columns, cleaned of control
// characters and trimmed.
type Row struct {
	N     int
	Cells []string
}

// Problem is something wrong with one cell, one row or the header.
type Problem struct {
	Row     int    // as Excel numbers it; 1 is the header; 0 for the file as a whole
	Column  string // the column's header as written in the sheet, or "" for the whole row
	Message string // what is wrong and what to do
}

func (p Problem) Error() string {
	switch {
	case p.Row == 0:
		return p.Message
	case p.Column == "":
		return fmt.Sprintf("row %d: %s", p.Row, p.Message)
	}
	return fmt.Sprintf("row %d, column %s: %s", p.Row, p.Column, p.Message)
}

// Refusal is a file that cannot be read as a table at all: it is not an
// .xlsx, not UTF-8 text, or has no header in row 1. It comes with the
// problems that make it so.
type Refusal struct {
	Problems []Problem
}

func (r *Refusal) Error() string {
	msgs := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		msgs[i] = p.Error()
	}
	return strings.Join(msgs, "; ")
}

func refuse(row int, col, format string, args ...any) *Refusal {
	return &Refusal{Problems: []Problem{{Row: row, Column: col, Message: fmt.Sprintf(format, args...)}}}
}

// Table is what Read found: the header names of the caller's columns as
// written in the sheet ("" for an optional column the sheet lacks).
type Table struct {
	Format  Format
	Sheet   string   // the worksheet read (xlsx only)
	Headers []string // per Options.Columns
	// Date1904 says the workbook counts dates from 1904 (old Mac Excel):
	// callers turning date serials into times need it.
	Date1904 bool
}

// label normalises a header for comparison. Most cells of a data row need
// no change, and are returned as they are without allocating: every row is
// compared with the header, to catch a second header row.
func label(s string) string {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c > ' ' && c != '*' && c != '(' && !(c >= 'A' && c <= 'Z') && c != 0x7f
	}
	if plain && !strings.Contains(s, "（") && !strings.Contains(s, "\u3000") && !strings.Contains(s, "\u00a0") && !strings.HasPrefix(s, "\ufeff") {
		return s
	}
	s = strings.ToLower(strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '*' }), ""))
	s = strings.TrimPrefix(s, "\ufeff")
	if i := strings.IndexAny(s, "(（"); i > 0 {
		s = s[:i]
	}
	return s
}

// labels maps every name a column goes by, normalised, to the column.
type labels struct {
	m   map[string]int
	max int // the longest name, in bytes
}

func labelsOf(cols []Column) labels {
	ls := labels{m: map[string]int{}}
	for i := len(cols) - 1; i >= 0; i-- { // the first column to claim a name keeps it
		for _, a := range append([]string{cols[i].Name}, cols[i].Aliases...) {
			l := label(a)
			ls.m[l] = i
			ls.max = max(ls.max, len(l))
		}
	}
	return ls
}

// header matches a header row against the columns: where each column is
// (-1 when absent), and how many cells named one of them.
func header(cells []string, cols []Column) (idx []int, named int) {
	return labelsOf(cols).header(cells, len(cols))
}

func (ls labels) header(cells []string, n int) (idx []int, named int) {
	idx = make([]int, n)
	for i := range idx {
		idx[i] = -1
	}
	for j, v := range cells {
		l := label(v)
		if l == "" {
			continue
		}
		if i, ok := ls.m[l]; ok && idx[i] < 0 {
			idx[i] = j
			named++
		}
	}
	return idx, named
}

// looksLikeHeader says whether a row names at least half of the columns: a
// header row, or a second copy of it further down.
func (ls labels) looksLikeHeader(cells []string, n int) bool {
	named := 0
	seen := 0 // bit per column
	for _, v := range cells {
		// Values much longer than any name (an openid, an address) are no
		// header: they need not be normalised.
		if len(v) > 2*ls.max {
			continue
		}
		if i, ok := ls.m[label(v)]; ok && seen&(1<<i) == 0 {
			seen |= 1 << i
			named++
		}
	}
	return named >= (n+1)/2 && named >= 2
}

func looksLikeHeader(cells []string, cols []Column) bool {
	return labelsOf(cols).looksLikeHeader(cells, len(cols))
}

// checkHeader reads row 1, or refuses the file.
func checkHeader(first []string, cols []Column, later [][]string) ([]int, []string, *Refusal) {
	idx, named := header(first, cols)
	if named == 0 {
		for k, r := range later {
			if looksLikeHeader(r, cols) {
				return nil, nil, refuse(1, "", "the header must be row 1, but it is row %d (row 1 holds %q): delete the rows above the header, such as a title", k+2, strings.Join(nonEmpty(first), " "))
			}
		}
		return nil, nil, refuse(1, "", "row 1 is not a header naming the columns %s: put the header in row 1", names(cols))
	}
	var ref Refusal
	headers := make([]string, len(cols))
	for i, c := range cols {
		if idx[i] >= 0 {
			headers[i] = strings.TrimSpace(strings.TrimPrefix(first[idx[i]], "\ufeff"))
			continue
		}
		if !c.Optional {
			alias := ""
			if len(c.Aliases) > 0 {
				alias = " (or " + c.Aliases[0] + ")"
			}
			ref.Problems = append(ref.Problems, Problem{Row: 1, Column: c.Name, Message: fmt.Sprintf("the header has no %s column: add a column headed %s%s", c.Name, c.Name, alias)})
		}
	}
	if len(ref.Problems) > 0 {
		return nil, nil, &ref
	}
	return idx, headers, nil
}

func names(cols []Column) string {
	n := make([]string, len(cols))
	for i, c := range cols {
		n[i] = c.Name
	}
	return strings.Join(n, ",")
}

func nonEmpty(cells []string) []string {
	var out []string
	for _, c := range cells {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// pick returns the caller's cells of a row, cleaned, and whether any holds
// something.
func pick(cells []string, idx []int) ([]string, bool) {
	out := make([]string, len(idx))
	any := false
	for i, j := range idx {
		if j >= 0 && j < len(cells) {
			out[i] = clean(cells[j])
			any = any || out[i] != ""
		}
	}
	return out, any
}

// clean turns control characters (a line break typed into a cell) into
// spaces and trims the ends.
func clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		s = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, s)
	}
	return strings.TrimSpace(s)
}
