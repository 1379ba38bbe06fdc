// Package callsheet writes the printable call list (人工传递名单) that a
// village's grid workers (网格员) take door to door when an orange or red
// warning is issued, as an .xlsx file, and reads it back once the results are
// filled in.
//
// It is pure: it turns a Sheet into bytes and bytes into a Sheet. It must not
// talk HTTP, Redis or the ledger, nor decide who is on a list (policy's job);
// it imports nothing of warngate. (Rosters and duty schedules are read
// and written by internal/sheet, which shares nothing with call lists.)
package callsheet

import (
	"errors"
	"fmt"
	"time"
)

// Sheet is one village's call list for one warning.
type Sheet struct {
	WarningID string
	Title     string // e.g. 五华区暴雨红色预警
	Level     string // e.g. 红色预警（Ⅰ级/特别严重）
	Village   string
	// VillageCode is the village's 12-digit division code.
	VillageCode string
	// Issued is when the warning was issued. It is printed in +08:00, to the
	// minute, and a time written without a date is taken relative to it.
	Issued time.Time
	Rows   []Row
}

// Row is one household on the list, with what its grid worker reports.
type Row struct {
	// HouseholdID matches an uploaded row back to its household. It is in a
	// hidden, locked column and never printed.
	HouseholdID string
	Head        string // 户主
	Address     string
	Phone       string // printed in full: the grid worker has to call it
	Category    string // in Chinese, e.g. 独居老人
	GridWorker  string // the grid worker's name
	// Source is SourceRoster for a household the roster lists, or
	// SourceFallback for a resident no channel reached in time.
	Source string

	// The results, filled in by the grid worker; all blank on a fresh list.

	// Reached is 是 (true), 否 (false), or nil while nobody has reported.
	Reached *bool
	// Method is one of Methods, or "".
	Method string
	// At is when the household was reached (or tried), to the minute in
	// +08:00; zero when blank.
	At   time.Time
	Note string
}

// Sources of a row.
const (
	SourceRoster   = "roster"
	SourceFallback = "fallback"
)

// Methods are the ways a grid worker passes a warning on, as printed in the
// 传递方式 drop-down: visit, phone, loudspeaker, other.
var Methods = []string{"上门", "电话", "广播", "其他"}

var methodCodes = []string{"visit", "phone", "loudspeaker", "other"}

// MethodCode returns the API code ("visit", "phone", "loudspeaker", "other")
// of a method named as in Methods, or "" for "" and for any other name.
func MethodCode(zh string) string {
	for i, m := range Methods {
		if m == zh {
			return methodCodes[i]
		}
	}
	return ""
}

// MethodName inverts MethodCode: it returns the Chinese name of an API code,
// or "" for an unknown code.
func MethodName(code string) string {
	for i, c := range methodCodes {
		if c == code {
			return Methods[i]
		}
	}
	return ""
}

// Errors Read returns when it cannot read any row at all. Each comes alone;
// ErrNotXLSX is wrapped with the reason.
var (
	ErrNotXLSX  = errors.New("callsheet: not an .xlsx file: upload the call list warngate exported (not .xls, .csv, .et or a photo)")
	ErrNoHeader = errors.New("callsheet: no header row (序号, 户主, 地址, … 备注, 户编号): upload the call list warngate exported, with its header row and hidden 户编号 column kept")
)

// CellError is a problem with one cell of an uploaded call list. Read reports
// one per problem, in row order.
type CellError struct {
	Row    int    // the Excel row number, as shown at the left of the sheet
	Column string // the column letter, e.g. "H"
	Label  string // the column's header, e.g. 传递方式
	Value  string // what the cell holds, trimmed
	Msg    string // what is wrong and what to write instead
}

// Error implements error: row 12, column H (传递方式): unknown method ….
func (e *CellError) Error() string {
	return fmt.Sprintf("row %d, column %s (%s): %s", e.Row, e.Column, e.Label, e.Msg)
}

// cst is China Standard Time: times are printed and read in +08:00.
var cst = time.FixedZone("CST", 8*3600)

// timeLayout is how Write prints times. Read accepts it and more: see parseTime.
const timeLayout = "2006-01-02 15:04"
