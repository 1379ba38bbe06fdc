package callsheet

// The printed layout. Sizes are chosen so that a page always holds the title,
// info and header rows plus PerPage households, even at 100% scale: fit to
// width only ever shrinks, so no printer or office suite can push a household
// onto an automatic page break of its own.
//
//	A4 portrait is 842pt tall; the margins below leave 842 − 21.6 − 28.8 = 791.6pt.
//	titleHeight + infoHeight + headerHeight + PerPage×rowHeight = 24 + 26 + 28 + 30×23 = 768pt.
//
// The columns A–J are 116 characters wide (about 610pt with the workbook's
// Calibri 11 default), which fit to width scales to about 91% on A4.
const (
	// PerPage is how many households each printed page holds. Write puts a
	// manual page break after every PerPage households.
	PerPage = 30

	sheetName  = "人工传递名单"
	metaSheet  = "warngate" // very hidden: the warning's details, read back by Read
	metaFormat = "warngate-callsheet/1"

	titleRow  = 1
	infoRow   = 2
	headerRow = 3
	firstRow  = 4 // the first household

	titleHeight  = 24.0
	infoHeight   = 26.0
	headerHeight = 28.0
	rowHeight    = 23.0 // two lines of 9pt for a long address; about 7.5mm to write in

	marginTop    = 0.3 // inches
	marginBottom = 0.4
	marginSide   = 0.25
	marginHeader = 0.15
	marginFooter = 0.15

	paperA4 = 9 // the OOXML paper size code

	fontBody   = "宋体"
	fontHeader = "黑体"
)

// col is a column of the table, in printed order.
type col int

const (
	colSeq col = iota
	colHead
	colAddress
	colPhone
	colCategory
	colWorker
	colReached
	colMethod
	colAt
	colNote
	colSource // roster, or a resident no channel reached (fallback)
	colID     // hidden
	numCols
)

// columns describes each column. label is the name Read looks for in the
// header row (after dropping spaces and any bracketed hint); header is what
// is printed there.
var columns = [numCols]struct {
	label, header string
	width         float64 // in characters
}{
	colSeq:      {"序号", "序号", 5},
	colHead:     {"户主", "户主", 8},
	colAddress:  {"地址", "地址", 21},
	colPhone:    {"电话", "电话", 12.5},
	colCategory: {"类别", "类别", 9},
	colWorker:   {"网格员", "网格员", 7.5},
	colReached:  {"是否传递到位", "是否传递到位\n（是/否）", 10},
	colMethod:   {"传递方式", "传递方式", 8},
	colAt:       {"时间", "时间", 16},
	colNote:     {"备注", "备注", 14},
	colSource:   {"来源", "来源", 5},
	colID:       {"户编号", "户编号（勿改）", 16},
}

// letter returns the column's letter in the layout Write produces.
func (c col) letter() string { return string(rune('A' + int(c))) }
