package callsheet

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xuri/excelize/v2"
)

// Write writes s as an .xlsx call list ready to print on A4: a title row,
// an info row with instructions, a header row repeated on every page, and
// PerPage households a page. The result columns have drop-downs; the hidden
// 户编号 column, the title and the header are locked (without a password) so
// that a casual edit cannot break Read; every household cell stays editable.
//
// It refuses a sheet that Read could not match back: a row without a
// household id, a duplicated id, or a Method not in Methods.
func Write(w io.Writer, s Sheet) error {
	if err := validate(s); err != nil {
		return err
	}
	f := excelize.NewFile()
	defer f.Close()
	if err := build(f, s); err != nil {
		return fmt.Errorf("callsheet: write: %w", err)
	}
	if err := f.Write(w); err != nil {
		return fmt.Errorf("callsheet: write: %w", err)
	}
	return nil
}

func validate(s Sheet) error {
	var errs []error
	seen := make(map[string]int, len(s.Rows))
	for i, r := range s.Rows {
		n := i + 1
		switch first, dup := seen[r.HouseholdID]; {
		case strings.TrimSpace(r.HouseholdID) == "":
			errs = append(errs, fmt.Errorf("callsheet: household %d (%s): no household id", n, r.Head))
		case r.HouseholdID != strings.TrimSpace(r.HouseholdID):
			errs = append(errs, fmt.Errorf("callsheet: household %d: household id %q has surrounding spaces", n, r.HouseholdID))
		case dup:
			errs = append(errs, fmt.Errorf("callsheet: household %d: household id %q is also household %d", n, r.HouseholdID, first))
		default:
			seen[r.HouseholdID] = n
		}
		if r.Method != "" && !slices.Contains(Methods, r.Method) {
			errs = append(errs, fmt.Errorf("callsheet: household %d (%s): method %q: use one of %s", n, r.HouseholdID, r.Method, strings.Join(Methods, ", ")))
		}
	}
	return errors.Join(errs...)
}

// build lays s out on f's first sheet. The first error stops it.
func build(f *excelize.File, s Sheet) error {
	if err := f.SetSheetName(f.GetSheetName(0), sheetName); err != nil {
		return err
	}
	st, err := newStyles(f, s.Level)
	if err != nil {
		return err
	}
	n := len(s.Rows)
	last := firstRow + n - 1 // the last household's row; headerRow when there are none
	lastCol := colSource.letter()
	b := &builder{f: f}

	for c := range numCols {
		b.do(f.SetColWidth(sheetName, c.letter(), c.letter(), columns[c].width))
	}

	b.do(f.MergeCell(sheetName, cell(colSeq, titleRow), cell(colSource, titleRow)))
	b.do(f.SetCellStr(sheetName, cell(colSeq, titleRow), title(s)))
	b.do(f.SetCellStyle(sheetName, cell(colSeq, titleRow), cell(colSource, titleRow), st.title))
	b.do(f.SetRowHeight(sheetName, titleRow, titleHeight))

	b.do(f.MergeCell(sheetName, cell(colSeq, infoRow), cell(colSource, infoRow)))
	b.do(f.SetCellStr(sheetName, cell(colSeq, infoRow), info(s)))
	b.do(f.SetCellStyle(sheetName, cell(colSeq, infoRow), cell(colSource, infoRow), st.info))
	b.do(f.SetRowHeight(sheetName, infoRow, infoHeight))

	for c := range numCols {
		b.do(f.SetCellStr(sheetName, cell(c, headerRow), columns[c].header))
	}
	b.do(f.SetCellStyle(sheetName, cell(colSeq, headerRow), cell(colSource, headerRow), st.header))
	b.do(f.SetCellStyle(sheetName, cell(colID, headerRow), cell(colID, headerRow), st.id))
	b.do(f.SetRowHeight(sheetName, headerRow, headerHeight))

	for i, r := range s.Rows {
		row := firstRow + i
		b.do(f.SetSheetRow(sheetName, cell(colSeq, row), &[]any{
			i + 1, r.Head, r.Address, r.Phone, r.Category, r.GridWorker,
			reachedText(r.Reached), r.Method, timeText(r.At), r.Note, sourceText(r.Source), r.HouseholdID,
		}))
		b.do(f.SetRowHeight(sheetName, row, rowHeight))
	}
	if n > 0 {
		for c, id := range st.body {
			b.do(f.SetCellStyle(sheetName, cell(col(c), firstRow), cell(col(c), last), id))
		}
		b.do(f.SetCellStyle(sheetName, cell(colID, firstRow), cell(colID, last), st.id))
		b.do(dropDown(f, colReached, last, []string{"是", "否"}, "请填写“是”或“否”。"))
		b.do(dropDown(f, colMethod, last, Methods, "请填写"+strings.Join(Methods, "、")+"之一。"))
		at := excelize.NewDataValidation(true)
		at.Sqref = cell(colAt, firstRow) + ":" + cell(colAt, last)
		at.SetInput("时间", "填写“时:分”，如 18:30；跨日请写日期，如 07-02 06:30。")
		b.do(f.AddDataValidation(sheetName, at))
	}
	for k := PerPage; k < n; k += PerPage {
		b.do(f.InsertPageBreak(sheetName, cell(colSeq, firstRow+k)))
	}

	b.do(f.SetColVisible(sheetName, colID.letter(), false))
	b.do(f.SetPanes(sheetName, &excelize.Panes{
		Freeze: true, YSplit: headerRow, TopLeftCell: cell(colSeq, firstRow), ActivePane: "bottomLeft",
		Selection: []excelize.Selection{{SQRef: cell(colReached, firstRow), ActiveCell: cell(colReached, firstRow), Pane: "bottomLeft"}},
	}))
	ref := "'" + sheetName + "'!"
	b.do(f.SetDefinedName(&excelize.DefinedName{
		Name: "_xlnm.Print_Titles", Scope: sheetName,
		RefersTo: fmt.Sprintf("%s$%d:$%d", ref, titleRow, headerRow),
	}))
	b.do(f.SetDefinedName(&excelize.DefinedName{
		Name: "_xlnm.Print_Area", Scope: sheetName,
		RefersTo: fmt.Sprintf("%s$A$%d:$%s$%d", ref, titleRow, lastCol, max(last, headerRow)),
	}))
	b.do(pageSetup(f))
	b.do(f.ProtectSheet(sheetName, &excelize.SheetProtectionOptions{
		SelectLockedCells: true, SelectUnlockedCells: true, FormatColumns: true, FormatRows: true,
	}))

	b.do(writeMeta(f, s))
	f.SetActiveSheet(0)
	b.do(f.SetDocProps(&excelize.DocProperties{
		Title: title(s), Subject: "人工传递名单", Identifier: s.WarningID, Creator: "warngate",
	}))
	return b.err
}

// builder keeps the first error of a run of excelize calls, which fail only
// on programming errors (a bad cell name or style), so that build reads as
// the layout it makes.
type builder struct {
	f   *excelize.File
	err error
}

func (b *builder) do(err error) {
	if b.err == nil && err != nil {
		b.err = err
	}
}

func cell(c col, row int) string { return c.letter() + strconv.Itoa(row) }

func title(s Sheet) string {
	var parts []string
	for _, p := range []string{s.Title, s.Level, s.Village} {
		if p = strings.TrimSpace(p); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(append(parts, "人工传递名单"), "　")
}

func info(s Sheet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "预警编号：%s　发布时间：%s　%s", s.WarningID, timeText(s.Issued), s.Village)
	if s.VillageCode != "" {
		fmt.Fprintf(&b, "（%s）", s.VillageCode)
	}
	fmt.Fprintf(&b, "　共 %d 户\n", len(s.Rows))
	b.WriteString("请逐户传递，填写是否传递到位、方式、时间。是否：填“是/否”；方式：" +
		strings.Join(Methods, "/") + "；时间：如 18:30，跨日写 07-02 06:30")
	return b.String()
}

func reachedText(r *bool) string {
	switch {
	case r == nil:
		return ""
	case *r:
		return "是"
	}
	return "否"
}

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(cst).Format(timeLayout)
}

func dropDown(f *excelize.File, c col, last int, items []string, msg string) error {
	dv := excelize.NewDataValidation(true)
	dv.Sqref = cell(c, firstRow) + ":" + cell(c, last)
	if err := dv.SetDropList(items); err != nil {
		return err
	}
	// A warning, not a stop: Read also accepts Y/N, √/× and the like, and a
	// grid worker's own word is better kept than refused.
	dv.SetError(excelize.DataValidationErrorStyleWarning, columns[c].label, msg)
	return f.AddDataValidation(sheetName, dv)
}

func pageSetup(f *excelize.File) error {
	// Fit to one page wide by any number tall (fitToHeight 0, "blank" in
	// Excel's dialog): fitting the height as well would make Excel ignore
	// the manual row breaks that put PerPage households on each page.
	if err := f.SetPageLayout(sheetName, &excelize.PageLayoutOptions{
		Size:        ptr(paperA4),
		Orientation: ptr("portrait"),
		FitToWidth:  ptr(1),
		FitToHeight: ptr(0),
	}); err != nil {
		return err
	}
	if err := f.SetSheetProps(sheetName, &excelize.SheetPropsOptions{FitToPage: ptr(true)}); err != nil {
		return err
	}
	if err := f.SetPageMargins(sheetName, &excelize.PageLayoutMarginsOptions{
		Top: ptr(marginTop), Bottom: ptr(marginBottom), Left: ptr(marginSide), Right: ptr(marginSide),
		Header: ptr(marginHeader), Footer: ptr(marginFooter), Horizontally: ptr(true),
	}); err != nil {
		return err
	}
	return f.SetHeaderFooter(sheetName, &excelize.HeaderFooterOptions{
		OddFooter: "&L网格员签字：__________&C第 &P 页 / 共 &N 页&R村（社区）负责人签字：__________",
	})
}

// writeMeta keeps the warning's details on a very hidden sheet (not even
// listed under Unhide), so that Read gets them back exactly rather than by
// parsing the printed title.
func writeMeta(f *excelize.File, s Sheet) error {
	if _, err := f.NewSheet(metaSheet); err != nil {
		return err
	}
	issued := ""
	if !s.Issued.IsZero() {
		issued = s.Issued.In(cst).Format(time.RFC3339)
	}
	for i, kv := range [][2]string{
		{"format", metaFormat},
		{"warning_id", s.WarningID},
		{"title", s.Title},
		{"level", s.Level},
		{"village", s.Village},
		{"village_code", s.VillageCode},
		{"issued", issued},
	} {
		if err := f.SetSheetRow(metaSheet, "A"+strconv.Itoa(i+1), &[]any{kv[0], kv[1]}); err != nil {
			return err
		}
	}
	return f.SetSheetVisible(metaSheet, false, true)
}

// styles are the cell styles of one call list.
type styles struct {
	title, info, header, id int
	body                    [colID]int // per column, for the household rows
}

func newStyles(f *excelize.File, level string) (*styles, error) {
	border := []excelize.Border{
		{Type: "left", Color: "000000", Style: 1},
		{Type: "right", Color: "000000", Style: 1},
		{Type: "top", Color: "000000", Style: 1},
		{Type: "bottom", Color: "000000", Style: 1},
	}
	locked := &excelize.Protection{Locked: true}
	unlocked := &excelize.Protection{Locked: false}
	titleColour := "000000"
	switch {
	case strings.Contains(level, "红色"):
		titleColour = "C00000"
	case strings.Contains(level, "橙色"):
		titleColour = "E46C0A"
	}
	var st styles
	var err error
	add := func(s *excelize.Style) int {
		id, e := f.NewStyle(s)
		if err == nil {
			err = e
		}
		return id
	}
	st.title = add(&excelize.Style{
		Font:       &excelize.Font{Family: fontHeader, Size: 14, Color: titleColour},
		Alignment:  &excelize.Alignment{Horizontal: "center", Vertical: "center", ShrinkToFit: true},
		Protection: locked,
	})
	st.info = add(&excelize.Style{
		Font:       &excelize.Font{Family: fontBody, Size: 9},
		Alignment:  &excelize.Alignment{Horizontal: "left", Vertical: "center", WrapText: true},
		Protection: locked,
	})
	st.header = add(&excelize.Style{
		Font:       &excelize.Font{Family: fontHeader, Size: 9},
		Alignment:  &excelize.Alignment{Horizontal: "center", Vertical: "center", WrapText: true},
		Fill:       excelize.Fill{Type: "pattern", Pattern: 1, Color: []string{"D9D9D9"}},
		Border:     border,
		Protection: locked,
	})
	st.id = add(&excelize.Style{
		Font:       &excelize.Font{Family: fontBody, Size: 9},
		Protection: locked,
	})
	// Short values shrink rather than spill or wrap: row heights are fixed
	// so that every page holds PerPage households.
	centre := add(&excelize.Style{
		Font:       &excelize.Font{Family: fontBody, Size: 10.5},
		Alignment:  &excelize.Alignment{Horizontal: "center", Vertical: "center", ShrinkToFit: true},
		Border:     border,
		Protection: unlocked,
	})
	left := add(&excelize.Style{
		Font:       &excelize.Font{Family: fontBody, Size: 10.5},
		Alignment:  &excelize.Alignment{Horizontal: "left", Vertical: "center", ShrinkToFit: true},
		Border:     border,
		Protection: unlocked,
	})
	wrap := add(&excelize.Style{
		Font:       &excelize.Font{Family: fontBody, Size: 9},
		Alignment:  &excelize.Alignment{Horizontal: "left", Vertical: "center", WrapText: true},
		Border:     border,
		Protection: unlocked,
	})
	st.body = [colID]int{
		colSeq: centre, colHead: left, colAddress: wrap, colPhone: left, colCategory: left,
		colWorker: left, colReached: centre, colMethod: centre, colAt: centre, colNote: wrap,
		colSource: centre,
	}
	return &st, err
}

func ptr[T any](v T) *T { return &v }

// sourceText prints where a row comes from: 名册 for the roster's households,
// 补访 for a resident no channel reached, put on the list to be visited.
func sourceText(source string) string {
	if source == SourceFallback {
		return "补访"
	}
	return "名册"
}
