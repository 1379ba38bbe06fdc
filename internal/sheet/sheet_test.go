package sheet

import (
	"bytes"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/xuri/excelize/v2"
)

var cols = []Column{
	{Name: "id", Aliases: []string{"编号"}},
	{Name: "name", Aliases: []string{"姓名"}},
	{Name: "phone", Aliases: []string{"手机号"}},
	{Name: "note", Optional: true},
}

func readAll(t *testing.T, b []byte, f Format) ([]Row, []Problem, error) {
	t.Helper()
	var rows []Row
	_, ps, err := Read(bytes.NewReader(b), f, Options{Columns: cols}, func(r Row) bool {
		rows = append(rows, r)
		return true
	})
	return rows, ps, err
}

// book builds a workbook: rows of values from A1, then edit changes it.
func book(t *testing.T, rows [][]any, edit func(f *excelize.File)) []byte {
	t.Helper()
	f := excelize.NewFile()
	for i, r := range rows {
		ref, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := f.SetSheetRow("Sheet1", ref, &r); err != nil {
			t.Fatal(err)
		}
	}
	if edit != nil {
		edit(f)
	}
	var buf bytes.Buffer
	if _, err := f.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadCSV(t *testing.T) {
	in := "\ufeff编号,姓名 ,手机号（必填）,备注\r\np1,李明,13800000001,x\r\n\r\n,,,\r\np2,\"王\n芳\",+8613900000002,\r\n"
	rows, ps, err := readAll(t, []byte(in), CSV)
	if err != nil || len(ps) != 0 {
		t.Fatalf("%v %v", err, ps)
	}
	if len(rows) != 2 || rows[0].N != 2 || strings.Join(rows[1].Cells, "|") != "p2|王 芳|+8613900000002|" || rows[1].N != 5 {
		t.Errorf("rows %+v", rows)
	}
}

// Files that are not a table are refused whole, naming what to do; rows
// that are not plain records are refused by row and column.
func TestRefusals(t *testing.T) {
	garbage := make([]byte, 10<<20)
	rand.Read(garbage)
	zipGarbage := append([]byte("PK\x03\x04"), garbage[:1<<20]...)
	gbk := []byte("id,name,phone\np1,\xc0\xee\xc3\xf7,13800000001\n") // 李明 in GBK
	tests := []struct {
		name string
		in   []byte
		f    Format
		want string // in the refusal
	}{
		{"garbage as xlsx", garbage, XLSX, "not an .xlsx workbook"},
		{"broken zip as xlsx", zipGarbage, XLSX, "not an .xlsx workbook"},
		{"garbage as csv", garbage, CSV, "not text"},
		{"gbk csv", gbk, CSV, "row 2: the text is not UTF-8"},
		{"empty csv", nil, CSV, "row 1: the file is empty"},
		{"no header", []byte("p1,李明,13800000001\n"), CSV, "row 1: row 1 is not a header naming the columns id,name,phone,note"},
		{"title row", book(t, [][]any{{"华山街道通讯录"}, {"编号", "姓名", "手机号"}, {"p1", "李明", "13800000001"}}, nil), XLSX,
			`row 1: the header must be row 1, but it is row 2 (row 1 holds "华山街道通讯录")`},
		{"missing column", []byte("id,name\np1,x\n"), CSV, "row 1, column phone: the header has no phone column: add a column headed phone (or 手机号)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(t, tt.in, tt.f)
			var ref *Refusal
			if !errors.As(err, &ref) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a refusal with %q", err, tt.want)
			}
		})
	}
}

func TestCellsThatAreNotValues(t *testing.T) {
	b := book(t, [][]any{
		{"编号", "姓名", "手机号"},
		{"p1", "李明", "13800000001"},
		{"p2", "王芳", "13900000002"},
		{"p3", "张伟", "13900000003"},
		{"编号", "姓名", "手机号"},
		{"p4", "刘洋", 13900000004},
		{"p5", "陈静", "13900000005"},
	}, func(f *excelize.File) {
		f.SetCellFormula("Sheet1", "C3", `="139"&"00000002"`)
		f.MergeCell("Sheet1", "B4", "B5")
	})
	rows, ps, err := readAll(t, b, XLSX)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range ps {
		got = append(got, p.Error())
	}
	want := []string{
		"row 4, column 姓名: cells B4:B5 are merged: unmerge them (取消合并) and write the value in every row",
		"row 3, column 手机号: cell C3 holds a formula: replace it by its value (复制后选择性粘贴为数值)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r.Cells[0]+"@"+string(rune('0'+r.N)))
	}
	// Row 5, the second header, is inside the merge; rows 2, 6 and 7 are read.
	if strings.Join(ids, " ") != "p1@2 p4@6 p5@7" || rows[1].Cells[2] != "13900000004" {
		t.Errorf("rows %v %+v", ids, rows)
	}

	// A second header row on its own is named.
	b = book(t, [][]any{{"id", "name", "phone"}, {"p1", "a", "1"}, {"id", "name", "phone"}, {"p2", "b", "2"}}, nil)
	_, ps, err = readAll(t, b, XLSX)
	if err != nil || len(ps) != 1 || ps[0].Row != 3 || !strings.Contains(ps[0].Message, "repeats the header") {
		t.Errorf("second header: %v %v", err, ps)
	}
}

func TestWriteReadsBack(t *testing.T) {
	var buf bytes.Buffer
	err := WriteXLSX(&buf, "通讯录", []string{"编号", "姓名", "手机号"}, []float64{10, 10, 14}, func(yield func([]string) error) error {
		for _, r := range [][]string{{"p1", "李明", "13800000001"}, {"p2", "王芳", "013900000002"}} {
			if err := yield(r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var rows []Row
	tb, ps, err := Read(&buf, XLSX, Options{Columns: cols, Sheets: []string{"通讯录"}}, func(r Row) bool { rows = append(rows, r); return true })
	if err != nil || len(ps) != 0 || tb.Sheet != "通讯录" {
		t.Fatal(err, ps, tb)
	}
	if len(rows) != 2 || rows[1].Cells[2] != "013900000002" || rows[0].N != 2 {
		t.Errorf("rows %+v", rows)
	}
}
