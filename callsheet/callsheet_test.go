package callsheet

import (
	"archive/zip"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"
)

var issued = time.Date(2026, 7, 1, 18, 30, 0, 0, cst)

// sample is a call list of n households whose results are all blank.
func sample(n int) Sheet {
	s := Sheet{
		WarningID:   "530102-20260701-0007",
		Title:       "五华区暴雨红色预警",
		Level:       "红色预警（Ⅰ级/特别严重）",
		Village:     "沙朗村",
		VillageCode: "530102101201",
		Issued:      issued,
	}
	heads := []string{"张桂芬", "李德明", "王小燕", "赵有才", "欧阳春花"}
	cats := []string{"独居老人", "留守儿童", "残疾人", "危房户", "低洼地带住户"}
	workers := []string{"杨丽", "段志强"}
	for i := range n {
		s.Rows = append(s.Rows, Row{
			HouseholdID: fmt.Sprintf("530102101201-H%03d", i+1),
			Head:        heads[i%len(heads)],
			Address:     fmt.Sprintf("五华区沙朗街道沙朗村委会大村%d组%d号", i%7+1, i+1),
			Phone:       fmt.Sprintf("138%08d", i+1),
			Category:    cats[i%len(cats)],
			GridWorker:  workers[i/PerPage%len(workers)],
			Source:      []string{SourceRoster, SourceRoster, SourceFallback}[i%3],
		})
	}
	return s
}

// filled is sample(n) with results of every kind, as Read returns them.
func filled(n int) Sheet {
	s := sample(n)
	yes, no := true, false
	for i := range s.Rows {
		r := &s.Rows[i]
		at := issued.Add(time.Duration(i+5) * time.Minute)
		switch i % 5 {
		case 0: // not reached yet
		case 1:
			r.Reached, r.Method, r.At = &yes, "上门", at
		case 2:
			r.Reached, r.Method, r.At, r.Note = &no, "电话", at, "电话无人接听\n明早再去"
		case 3:
			r.Reached, r.Method, r.At, r.Note = &yes, "广播", at.Add(7*time.Hour), "=1+1 <已转移> & 安置"
		case 4:
			r.Reached, r.Method, r.Note = &yes, "其他", "托邻居转告"
		}
	}
	return s
}

func write(t *testing.T, s Sheet) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatalf("Write: %v", err)
	}
	return buf.Bytes()
}

func open(t *testing.T, b []byte) *excelize.File {
	t.Helper()
	f, err := excelize.OpenReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func save(t *testing.T, f *excelize.File) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.Write(&buf); err != nil {
		t.Fatalf("save: %v", err)
	}
	return buf.Bytes()
}

// sameSheet reports how got differs from want, comparing times as instants.
func sameSheet(t *testing.T, got, want Sheet) {
	t.Helper()
	if got.WarningID != want.WarningID || got.Title != want.Title || got.Level != want.Level ||
		got.Village != want.Village || got.VillageCode != want.VillageCode || !got.Issued.Equal(want.Issued) {
		t.Errorf("sheet = %+v\nwant %+v", header(got), header(want))
	}
	if len(got.Rows) != len(want.Rows) {
		t.Fatalf("read %d rows, want %d", len(got.Rows), len(want.Rows))
	}
	for i := range want.Rows {
		if g, w := rowString(got.Rows[i]), rowString(want.Rows[i]); g != w {
			t.Errorf("row %d:\n got %s\nwant %s", i, g, w)
		}
	}
}

func header(s Sheet) Sheet { s.Rows = nil; return s }

func rowString(r Row) string {
	reached := "nil"
	if r.Reached != nil {
		reached = fmt.Sprint(*r.Reached)
	}
	at := ""
	if !r.At.IsZero() {
		at = r.At.In(cst).Format(time.RFC3339)
	}
	return fmt.Sprintf("%q %q %q %q %q %q reached=%s %q %s %q source=%s",
		r.HouseholdID, r.Head, r.Address, r.Phone, r.Category, r.GridWorker, reached, r.Method, at, r.Note, r.Source)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    Sheet
	}{
		{"empty", sample(0)},
		{"one fresh household", sample(1)},
		{"65 fresh households", sample(65)},
		{"65 households with results", filled(65)},
		{"no issue time", func() Sheet { s := filled(3); s.Issued = time.Time{}; return s }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, errs := Read(bytes.NewReader(write(t, tc.s)))
			if len(errs) > 0 {
				t.Fatalf("Read: %v", errors.Join(errs...))
			}
			sameSheet(t, got, tc.s)
		})
	}
}

// sheetXML is the part of a worksheet's XML the layout tests look at.
type sheetXML struct {
	RowBreaks struct {
		Brk []struct {
			ID  int  `xml:"id,attr"`
			Man bool `xml:"man,attr"`
		} `xml:"brk"`
	} `xml:"rowBreaks"`
	Protection *struct {
		Sheet bool `xml:"sheet,attr"`
	} `xml:"sheetProtection"`
}

func readSheetXML(t *testing.T, b []byte) sheetXML {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.Open("xl/worksheets/sheet1.xml")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var x sheetXML
	if err := xml.NewDecoder(rc).Decode(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

func TestPageBreaks(t *testing.T) {
	// A break's id is the last row of its page: households 1–30 are rows 4–33.
	for _, tc := range []struct {
		households int
		want       []int
	}{
		{0, nil},
		{29, nil},
		{30, nil},
		{31, []int{33}},
		{60, []int{33}},
		{65, []int{33, 63}},
		{91, []int{33, 63, 93}},
	} {
		t.Run(fmt.Sprint(tc.households), func(t *testing.T) {
			t.Parallel()
			var got []int
			for _, b := range readSheetXML(t, write(t, sample(tc.households))).RowBreaks.Brk {
				if !b.Man {
					t.Errorf("break after row %d is not manual", b.ID)
				}
				got = append(got, b.ID)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("row breaks after rows %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPageSetup(t *testing.T) {
	b := write(t, sample(65))
	f := open(t, b)

	layout, err := f.GetPageLayout(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	if *layout.Size != paperA4 || *layout.Orientation != "portrait" {
		t.Errorf("paper size %d %s, want A4 (%d) portrait", *layout.Size, *layout.Orientation, paperA4)
	}
	if layout.FitToWidth == nil || *layout.FitToWidth != 1 || layout.FitToHeight == nil || *layout.FitToHeight != 0 {
		t.Errorf("fit to %v wide by %v tall, want 1 wide by 0 (automatic) tall", layout.FitToWidth, layout.FitToHeight)
	}
	props, err := f.GetSheetProps(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	if props.FitToPage == nil || !*props.FitToPage {
		t.Error("fitToPage is not set: Excel would ignore fitToWidth")
	}

	wantNames := map[string]string{
		"_xlnm.Print_Titles": "'人工传递名单'!$1:$3",
		"_xlnm.Print_Area":   "'人工传递名单'!$A$1:$K$68",
	}
	for _, dn := range f.GetDefinedName() {
		if want, ok := wantNames[dn.Name]; ok {
			if dn.RefersTo != want || dn.Scope != sheetName {
				t.Errorf("%s = %s (scope %s), want %s (scope %s)", dn.Name, dn.RefersTo, dn.Scope, want, sheetName)
			}
			delete(wantNames, dn.Name)
		}
	}
	for name := range wantNames {
		t.Errorf("%s is not defined", name)
	}

	// The title, info and header rows (printed on every page) and PerPage
	// households fit on one A4 page even at 100%: fit to width only shrinks.
	m, err := f.GetPageMargins(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	const a4Height = 297 / 25.4 * 72 // pt
	printable := a4Height - (*m.Top+*m.Bottom)*72
	used := 0.0
	for row := titleRow; row < firstRow+PerPage; row++ {
		h, err := f.GetRowHeight(sheetName, row)
		if err != nil {
			t.Fatal(err)
		}
		used += h
	}
	if used > printable {
		t.Errorf("a page needs %.1fpt but A4 has %.1fpt between the margins", used, printable)
	}
	if h, _ := f.GetRowHeight(sheetName, firstRow+64); h != rowHeight {
		t.Errorf("last household's row is %.1fpt high, want %.1f", h, rowHeight)
	}
	hf, err := f.GetHeaderFooter(sheetName)
	if err != nil || !strings.Contains(hf.OddFooter, "&P") {
		t.Errorf("footer %+v (%v): want page numbers", hf, err)
	}
}

func TestSheetLayout(t *testing.T) {
	b := write(t, filled(65))
	f := open(t, b)

	if got := f.GetSheetList(); !slices.Equal(got, []string{sheetName, metaSheet}) {
		t.Errorf("sheets %v", got)
	}
	if v, _ := f.GetSheetVisible(metaSheet); v {
		t.Errorf("sheet %s is visible", metaSheet)
	}
	if v, _ := f.GetColVisible(sheetName, "L"); v {
		t.Error("household id column L is visible")
	}
	var headers []string
	for c := range numCols {
		v, _ := f.GetCellValue(sheetName, cell(c, headerRow))
		headers = append(headers, v)
	}
	want := []string{"序号", "户主", "地址", "电话", "类别", "网格员", "是否传递到位\n（是/否）", "传递方式", "时间", "备注", "来源", "户编号（勿改）"}
	if !slices.Equal(headers, want) {
		t.Errorf("headers %q\nwant %q", headers, want)
	}
	title, _ := f.GetCellValue(sheetName, "A1")
	if title != "五华区暴雨红色预警　红色预警（Ⅰ级/特别严重）　沙朗村　人工传递名单" {
		t.Errorf("title %q", title)
	}
	info, _ := f.GetCellValue(sheetName, "A2")
	for _, s := range []string{"530102-20260701-0007", "2026-07-01 18:30", "共 65 户", "请逐户传递，填写是否传递到位、方式、时间"} {
		if !strings.Contains(info, s) {
			t.Errorf("info row %q lacks %q", info, s)
		}
	}
	for _, tc := range []struct{ cell, want string }{
		{"A4", "1"}, {"A68", "65"}, {"I5", "2026-07-01 18:36"}, {"G5", "是"}, {"G6", "否"}, {"K66", "补访"}, {"K67", "名册"}, {"L68", "530102101201-H065"},
	} {
		if v, _ := f.GetCellValue(sheetName, tc.cell); v != tc.want {
			t.Errorf("%s = %q, want %q", tc.cell, v, tc.want)
		}
	}

	dvs, err := f.GetDataValidations(sheetName)
	if err != nil {
		t.Fatal(err)
	}
	lists := map[string]string{}
	for _, dv := range dvs {
		lists[dv.Sqref] = dv.Formula1
	}
	if lists["G4:G68"] != `"是,否"` || lists["H4:H68"] != `"上门,电话,广播,其他"` {
		t.Errorf("drop-downs %v", lists)
	}

	if x := readSheetXML(t, b); x.Protection == nil || !x.Protection.Sheet {
		t.Error("sheet is not protected")
	}
	for _, tc := range []struct {
		cell   string
		locked bool
	}{{"A1", true}, {"G3", true}, {"K4", false}, {"L4", true}, {"L68", true}, {"A4", false}, {"C10", false}, {"G4", false}, {"J68", false}} {
		id, _ := f.GetCellStyle(sheetName, tc.cell)
		st, err := f.GetStyle(id)
		if err != nil {
			t.Fatal(err)
		}
		// Excel locks a cell unless its style says otherwise.
		locked := st.Protection == nil || st.Protection.Locked
		if locked != tc.locked {
			t.Errorf("%s locked = %v, want %v", tc.cell, locked, tc.locked)
		}
	}
}

func TestWriteRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Sheet)
		want string
	}{
		{"no id", func(s *Sheet) { s.Rows[1].HouseholdID = "" },
			"callsheet: household 2 (李德明): no household id"},
		{"duplicate id", func(s *Sheet) { s.Rows[2].HouseholdID = s.Rows[0].HouseholdID },
			`callsheet: household 3: household id "530102101201-H001" is also household 1`},
		{"unknown method", func(s *Sheet) { s.Rows[0].Method = "visit" },
			`callsheet: household 1 (530102101201-H001): method "visit": use one of 上门, 电话, 广播, 其他`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sample(3)
			tc.edit(&s)
			err := Write(io.Discard, s)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Write: %v\nwant %s", err, tc.want)
			}
		})
	}
}

// serial is the Excel date serial of a wall-clock time.
func serial(t time.Time) float64 {
	wall := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
	return wall.Sub(time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC)).Hours() / 24
}

// TestReadFilledIn fills a fresh list in as a person would, in Excel.
func TestReadFilledIn(t *testing.T) {
	f := open(t, write(t, sample(9)))
	dateStyle, err := f.NewStyle(&excelize.Style{NumFmt: 22}) // m/d/yy h:mm, as Excel shows a typed date
	if err != nil {
		t.Fatal(err)
	}
	timeStyle, err := f.NewStyle(&excelize.Style{NumFmt: 20}) // h:mm
	if err != nil {
		t.Fatal(err)
	}
	set := func(cell string, v any) {
		t.Helper()
		var err error
		switch v := v.(type) {
		case float64:
			err = f.SetCellFloat(sheetName, cell, v, -1, 64)
		case bool:
			err = f.SetCellBool(sheetName, cell, v)
		case int:
			err = f.SetCellInt(sheetName, cell, int64(v))
		case string:
			err = f.SetCellStr(sheetName, cell, v)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	style := func(cell string, id int) {
		t.Helper()
		if err := f.SetCellStyle(sheetName, cell, cell, id); err != nil {
			t.Fatal(err)
		}
	}
	// Row 4 is household 1.
	set("G4", "Y")
	set("H4", "电话")
	set("I4", serial(time.Date(2026, 7, 1, 19, 5, 0, 0, time.UTC)))
	style("I4", dateStyle)
	set("G5", "√")
	set("H5", " 上门 ")
	set("I5", "18:50")
	set("J5", "已告知转移")
	set("G6", 1)
	set("H6", "广播")
	set("I6", 0.8125) // 19:30 typed into a cell: a serial below 1
	style("I6", timeStyle)
	set("G7", "否")
	set("H7", "其它")
	set("I7", "7月2日 上午8点半")
	set("J7", "家中无人")
	set("G8", true) // TRUE
	set("H8", "Phone")
	set("I8", "２０２６－０７－０２ ０６：３０")
	set("G9", "×")
	set("H9", "入户")
	set("I9", "01:30") // after midnight: the day after the 18:30 warning
	set("G10", "no")
	set("I10", serial(time.Date(2026, 7, 1, 17, 0, 0, 0, time.UTC))+0.25) // 23:00
	set("J12", "邻居说已外出打工")                                                // a note alone: not reached yet

	got, errs := Read(bytes.NewReader(save(t, f)))
	if len(errs) > 0 {
		t.Fatalf("Read: %v", errors.Join(errs...))
	}
	want := sample(9)
	yes, no := true, false
	at := func(d, h, m int) time.Time { return time.Date(2026, 7, d, h, m, 0, 0, cst) }
	for i, r := range []struct {
		reached *bool
		method  string
		at      time.Time
		note    string
	}{
		{&yes, "电话", at(1, 19, 5), ""},
		{&yes, "上门", at(1, 18, 50), "已告知转移"},
		{&yes, "广播", at(1, 19, 30), ""},
		{&no, "其他", at(2, 8, 30), "家中无人"},
		{&yes, "电话", at(2, 6, 30), ""},
		{&no, "上门", at(2, 1, 30), ""},
		{&no, "", at(1, 23, 0), ""},
		{nil, "", time.Time{}, ""},
		{nil, "", time.Time{}, "邻居说已外出打工"},
	} {
		w := &want.Rows[i]
		w.Reached, w.Method, w.At, w.Note = r.reached, r.method, r.at, r.note
	}
	sameSheet(t, got, want)
}

func TestReadErrors(t *testing.T) {
	type edit = func(t *testing.T, f *excelize.File)
	set := func(cells ...string) edit {
		return func(t *testing.T, f *excelize.File) {
			for i := 0; i < len(cells); i += 2 {
				if err := f.SetCellStr(sheetName, cells[i], cells[i+1]); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for _, tc := range []struct {
		name     string
		edit     edit
		want     []string
		wantRows int // rows read cleanly, out of 6
	}{
		{"unknown method", set("G5", "是", "H5", "步行"), []string{
			`row 5, column H (传递方式): unknown method "步行": write one of 上门, 电话, 广播, 其他`,
		}, 5},
		{"bad yes or no", set("G6", "可能"), []string{
			`row 6, column G (是否传递到位): "可能" is neither 是 nor 否: write 是 or 否 (Y/N, 1/0 and √/× are read too)`,
		}, 5},
		{"duplicate id", set("L7", "530102101201-H001"), []string{
			`row 7, column L (户编号): household "530102101201-H001" is also on row 4: keep one row per household and delete the other`,
		}, 4},
		{"missing id", set("L8", ""), []string{
			`row 8, column L (户编号): no household id: rows added by hand cannot be matched to a household; delete the row and write about it in 备注 of a listed household`,
		}, 5},
		{"row added by hand", set("B11", "新搬来的住户", "G11", "是"), []string{
			`row 11, column L (户编号): no household id: rows added by hand cannot be matched to a household; delete the row and write about it in 备注 of a listed household`,
		}, 6},
		{"method without yes or no", set("H4", "电话"), []string{
			`row 4, column G (是否传递到位): blank, but 传递方式 or 时间 is filled in: write 是 or 否`,
		}, 5},
		{"bad time", set("G4", "是", "I4", "下班后"), []string{
			`row 4, column I (时间): "下班后" is not a time: write it like 18:30, or 07-02 06:30 for another day`,
		}, 5},
		{"no such day", set("G4", "是", "I4", "2026-06-31 10:00"), []string{
			`row 4, column I (时间): "2026-06-31 10:00" is not a date: check the month and day`,
		}, 5},
		{"before the warning", set("G4", "是", "I4", "2026-06-30 10:00"), []string{
			`row 4, column I (时间): 2026-06-30 10:00 is before the warning was issued at 2026-07-01 18:30: check the date`,
		}, 5},
		{"several", set("G9", "是", "H9", "微信", "I9", "25:00", "G5", "?"), []string{
			`row 5, column G (是否传递到位): "?" is neither 是 nor 否: write 是 or 否 (Y/N, 1/0 and √/× are read too)`,
			`row 9, column H (传递方式): unknown method "微信": write one of 上门, 电话, 广播, 其他`,
			`row 9, column I (时间): "25:00" is not a time: write it like 18:30, or 07-02 06:30 for another day`,
		}, 4},
		{"header moved", func(t *testing.T, f *excelize.File) {
			if err := f.InsertRows(sheetName, 1, 2); err != nil {
				t.Fatal(err)
			}
			if err := f.InsertCols(sheetName, "A", 1); err != nil {
				t.Fatal(err)
			}
			set("H7", "是", "I7", "步行")(t, f) // G and H before the new column A
		}, []string{
			`row 7, column I (传递方式): unknown method "步行": write one of 上门, 电话, 广播, 其他`,
		}, 5},
		{"time alone without the hidden sheet", func(t *testing.T, f *excelize.File) {
			if err := f.DeleteSheet(metaSheet); err != nil {
				t.Fatal(err)
			}
			set("G4", "是", "I4", "18:40", "G5", "是", "I5", "2026-07-01 18:40")(t, f)
		}, []string{
			`row 4, column I (时间): the day is missing and this file does not say when the warning was issued: write the date too, e.g. 2026-07-01 18:30`,
		}, 5},
		{"column renamed", set("H3", "方式"), []string{
			`callsheet: header row 3 has no 传递方式 column: upload the call list warngate exported, with all its columns kept`,
		}, 0},
		{"id column header cleared", set("L3", ""), []string{
			`callsheet: header row 3 has no 户编号 column (the hidden column that matches rows to households): upload the call list warngate exported, with all its columns kept`,
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := open(t, write(t, sample(6)))
			tc.edit(t, f)
			s, errs := Read(bytes.NewReader(save(t, f)))
			var got []string
			for _, err := range errs {
				got = append(got, err.Error())
				var ce *CellError
				if strings.HasPrefix(err.Error(), "row ") && !errors.As(err, &ce) {
					t.Errorf("%v is not a *CellError", err)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			if len(s.Rows) != tc.wantRows {
				t.Errorf("read %d rows cleanly, want %d", len(s.Rows), tc.wantRows)
			}
		})
	}
}

func TestReadUnreadable(t *testing.T) {
	noHeader := func() []byte {
		f := open(t, write(t, sample(3)))
		if err := f.RemoveRow(sheetName, headerRow); err != nil {
			t.Fatal(err)
		}
		return save(t, f)
	}()
	otherWorkbook := func() []byte {
		f := excelize.NewFile()
		defer f.Close()
		if err := f.SetSheetRow("Sheet1", "A1", &[]any{"姓名", "电话"}); err != nil {
			t.Fatal(err)
		}
		return save(t, f)
	}()
	for _, tc := range []struct {
		name string
		file []byte
		want error
	}{
		{"csv", []byte("序号,户主,地址\n1,张桂芬,大村1组\n"), ErrNotXLSX},
		{"empty", nil, ErrNotXLSX},
		{"xls", append([]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, make([]byte, 512)...), ErrNotXLSX},
		{"zip but not a workbook", func() []byte {
			var buf bytes.Buffer
			zw := zip.NewWriter(&buf)
			w, _ := zw.Create("hello.txt")
			w.Write([]byte("hello"))
			zw.Close()
			return buf.Bytes()
		}(), ErrNotXLSX},
		{"header row deleted", noHeader, ErrNoHeader},
		{"another workbook", otherWorkbook, ErrNoHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, errs := Read(bytes.NewReader(tc.file))
			if len(errs) != 1 || !errors.Is(errs[0], tc.want) {
				t.Fatalf("Read: %v, want one %v", errs, tc.want)
			}
			if len(s.Rows) != 0 {
				t.Errorf("read %d rows", len(s.Rows))
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	at := func(d, h, m int) time.Time { return time.Date(2026, 7, d, h, m, 0, 0, cst) }
	late := time.Date(2026, 12, 31, 23, 0, 0, 0, cst)
	for _, tc := range []struct {
		in     string
		issued time.Time
		want   time.Time
		err    bool
	}{
		{"", issued, time.Time{}, false},
		{"2026-07-01 18:30", issued, at(1, 18, 30), false},
		{"2026-07-01 18:30:00", issued, at(1, 18, 30), false},
		{"2026/7/1 19:05", issued, at(1, 19, 5), false},
		{"2026.07.01 19:05", issued, at(1, 19, 5), false},
		{"2026-07-01T19:05:00", issued, at(1, 19, 5), false},
		{"2026-07-01T11:05:00Z", issued, at(1, 19, 5), false},
		{"2026年7月1日19时05分", issued, at(1, 19, 5), false},
		{"7月2日 下午3点半", issued, at(2, 15, 30), false},
		{"晚上9点", issued, at(1, 21, 0), false},
		{"07-02 06:30", issued, at(2, 6, 30), false},
		{"18:30", issued, at(1, 18, 30), false},
		{"１９：４５", issued, at(1, 19, 45), false},
		{"18:29", issued, at(2, 18, 29), false}, // before the warning: the next day
		{"01:30", issued, at(2, 1, 30), false},
		{"0.8125", issued, at(1, 19, 30), false},
		{"0.0625", issued, at(2, 1, 30), false},
		{"46204.8125", issued, at(1, 19, 30), false},
		{"46204.81249999", issued, at(1, 19, 30), false},
		{"01-01 08:00", late, time.Date(2027, 1, 1, 8, 0, 0, 0, cst), false},
		{"00:15", late, time.Date(2027, 1, 1, 0, 15, 0, 0, cst), false},
		{"18:30", time.Time{}, time.Time{}, true},
		{"07-02 06:30", time.Time{}, time.Time{}, true},
		{"2026-07-01", issued, time.Time{}, true},
		{"1830", issued, time.Time{}, true},
		{"24:00", issued, time.Time{}, true},
		{"18:61", issued, time.Time{}, true},
		{"2026-02-30 10:00", issued, time.Time{}, true},
		{"昨天", issued, time.Time{}, true},
		{"NaN", issued, time.Time{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseTime(tc.in, tc.issued, false)
			if (err != nil) != tc.err || !got.Equal(tc.want) {
				t.Errorf("parseTime(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
	// The 1904 date system counts days from 1904-01-01.
	if got, err := parseTime("44742.8125", issued, true); err != nil || !got.Equal(at(1, 19, 30)) {
		t.Errorf("1904 serial = %v, %v", got, err)
	}
}

func TestParseReached(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   bool
		wantOK bool
	}{
		{"是", true, true}, {"否", false, true}, {"Y", true, true}, {"n", false, true},
		{"Yes", true, true}, {"NO", false, true}, {"1", true, true}, {"0", false, true},
		{"√", true, true}, {"×", false, true}, {"✓", true, true}, {"x", false, true},
		{"Ｙ", true, true}, {" 是 ", true, true}, {"TRUE", true, true},
		{"可能", false, false}, {"2", false, false}, {"是否", false, false},
	} {
		got, ok := parseReached(tc.in)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("parseReached(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

func TestMethods(t *testing.T) {
	for i, name := range Methods {
		code := MethodCode(name)
		if code == "" || MethodName(code) != name {
			t.Errorf("method %d: %s → %q → %q", i, name, code, MethodName(code))
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"上门", "上门"}, {"visit", "上门"}, {"入户", "上门"}, {"PHONE", "电话"}, {"电话通知", "电话"},
		{"大喇叭", "广播"}, {"loudspeaker", "广播"}, {"其它", "其他"}, {"上 门", "上门"},
		{"微信", ""}, {"步行", ""},
	} {
		got, ok := parseMethod(tc.in)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("parseMethod(%q) = %q, %v; want %q", tc.in, got, ok, tc.want)
		}
	}
	if MethodCode("") != "" || MethodCode("入户") != "" || MethodName("sms") != "" {
		t.Error("unknown methods should map to \"\"")
	}
}

// TestPDF renders a sample to PDF for a person to look at, when LibreOffice
// is installed; CALLSHEET_PDF names where to keep it.
func TestPDF(t *testing.T) {
	bin := ""
	for _, name := range []string{"libreoffice", "soffice"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("libreoffice is not installed")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "callsheet.xlsx")
	if err := os.WriteFile(src, write(t, filled(65)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "--headless", "-env:UserInstallation=file://"+filepath.Join(dir, "profile"),
		"--convert-to", "pdf", "--outdir", dir, src)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out)
	}
	pdf, err := os.ReadFile(filepath.Join(dir, "callsheet.pdf"))
	if err != nil {
		t.Fatal(err)
	}
	if pages := len(regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(pdf, -1)); pages > 0 && pages != 3 {
		t.Errorf("%d pages, want 3 for 65 households", pages)
	}
	if keep := os.Getenv("CALLSHEET_PDF"); keep != "" {
		if err := os.WriteFile(keep, pdf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkWrite(b *testing.B) {
	s := filled(300)
	for b.Loop() {
		if err := Write(io.Discard, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead(b *testing.B) {
	var buf bytes.Buffer
	if err := Write(&buf, filled(300)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, errs := Read(bytes.NewReader(buf.Bytes())); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}
