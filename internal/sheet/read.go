package sheet

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// Limits on an uploaded workbook once unzipped, against zip bombs. A
// 通讯录 of 100,000 people unzips to about 30 MiB.
const (
	unzipLimit    = 512 << 20
	unzipXMLLimit = 64 << 20
)

// Read reads a table and calls fn for each row that is neither blank nor
// refused, in order. It returns the problems of rows it skipped (a formula,
// a merged cell, a second header row, a CSV row with a stray quote), at
// most Options.MaxErrors of them, and a *Refusal when the file cannot be
// read as a table at all. fn may stop the reading by returning false.
//
// An .xlsx is read whole into memory (the caller bounds its size); CSV is
// streamed.
func Read(r io.Reader, f Format, opt Options, fn func(Row) bool) (*Table, []Problem, error) {
	if f == XLSX {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, nil, err
		}
		return readXLSX(b, opt, fn)
	}
	return readCSV(r, opt, fn)
}

// problems collects row problems up to a limit, counting the rest.
type problems struct {
	list  []Problem
	max   int
	extra int
}

func (p *problems) add(pr Problem) {
	if len(p.list) < p.max {
		p.list = append(p.list, pr)
		return
	}
	p.extra++
}

func (p *problems) result() []Problem {
	if p.extra > 0 {
		p.list = append(p.list, Problem{Message: fmt.Sprintf("and %d more problems not listed: fix these first", p.extra)})
	}
	return p.list
}

func readCSV(r io.Reader, opt Options, fn func(Row) bool) (*Table, []Problem, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(64 << 10)
	if bytes.IndexByte(head, 0) >= 0 {
		return nil, nil, refuse(0, "", "the file is not text (it holds NUL bytes): upload a .csv saved as CSV UTF-8, or the .xlsx with Content-Type %s", XLSXType)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	cr.LazyQuotes = false
	t := &Table{Format: CSV}
	ps := problems{max: opt.maxErrors()}
	first, err := cr.Read()
	if err == io.EOF {
		return nil, nil, refuse(1, "", "the file is empty: the header %s goes in row 1", names(opt.Columns))
	}
	if err != nil {
		return nil, nil, csvRefusal(err)
	}
	first = append([]string(nil), first...)
	if !validUTF8(first) {
		return nil, nil, notUTF8(1)
	}
	// A title row above the header is told by a header in the next rows.
	var later [][]string
	idx, _ := header(first, opt.Columns)
	named := 0
	for _, i := range idx {
		if i >= 0 {
			named++
		}
	}
	var pending [][]string
	if named == 0 {
		for range 4 {
			rec, err := cr.Read()
			if err != nil {
				break
			}
			later = append(later, append([]string(nil), rec...))
		}
	}
	idx, t.Headers, err = checkHeaderErr(first, opt.Columns, later)
	if err != nil {
		return nil, nil, err
	}
	pending = later
	ls := labelsOf(opt.Columns)
	// Rows are numbered by the line they start on: Excel shows a CSV one
	// line a row, blank lines included (a cell spanning lines is rare).
	n := 1
	next := func() ([]string, error) {
		if len(pending) > 0 {
			r := pending[0]
			pending = pending[1:]
			n++
			return r, nil
		}
		rec, err := cr.Read()
		if err == nil {
			n, _ = cr.FieldPos(0)
		} else if pe, ok := errors.AsType[*csv.ParseError](err); ok {
			n = pe.StartLine
		}
		return rec, err
	}
	for {
		rec, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) && !errors.Is(pe.Err, csv.ErrFieldCount) {
				// The reader cannot resynchronise after a broken quote: say
				// where, and stop.
				ps.add(Problem{Row: n, Message: fmt.Sprintf("cannot read this row (%v): check its quotes (\") and that the file is CSV", pe.Err)})
				return t, ps.result(), nil
			}
			return nil, nil, err
		}
		if !validUTF8(rec) {
			return nil, nil, notUTF8(n)
		}
		cells, any := pick(rec, idx)
		if !any {
			continue
		}
		if ls.looksLikeHeader(rec, len(opt.Columns)) {
			ps.add(Problem{Row: n, Message: "this row repeats the header: a sheet has one header row, row 1; delete this one"})
			continue
		}
		if !fn(Row{N: n, Cells: cells}) {
			break
		}
	}
	return t, ps.result(), nil
}

func checkHeaderErr(first []string, cols []Column, later [][]string) ([]int, []string, error) {
	idx, headers, ref := checkHeader(first, cols, later)
	if ref != nil {
		return nil, nil, ref
	}
	return idx, headers, nil
}

func csvRefusal(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return refuse(pe.Line, "", "cannot read the file as CSV (%v): save it as CSV UTF-8 (逗号分隔), or upload the .xlsx", pe.Err)
	}
	return err
}

func validUTF8(rec []string) bool {
	for _, f := range rec {
		if !utf8.ValidString(f) {
			return false
		}
	}
	return true
}

func notUTF8(row int) error {
	return refuse(row, "", "the text is not UTF-8 (a CSV saved by Excel as ANSI/GBK?): save it as CSV UTF-8 (逗号分隔), or upload the .xlsx")
}

func readXLSX(b []byte, opt Options, fn func(Row) bool) (*Table, []Problem, error) {
	notXLSX := func(why string) error {
		return refuse(0, "", "the file is not an .xlsx workbook (%s): upload the sheet saved from Excel or WPS as .xlsx (not .xls, .et or a photo), or a CSV with Content-Type text/csv", why)
	}
	if len(b) < 4 || string(b[:4]) != "PK\x03\x04" {
		return nil, nil, notXLSX("it is not a zip archive")
	}
	f, err := excelize.OpenReader(bytes.NewReader(b), excelize.Options{UnzipSizeLimit: unzipLimit, UnzipXMLSizeLimit: unzipXMLLimit})
	if err != nil {
		return nil, nil, notXLSX(err.Error())
	}
	defer f.Close()
	name := ""
	for _, want := range opt.Sheets {
		if i, _ := f.GetSheetIndex(want); i >= 0 {
			name = want
			break
		}
	}
	if name == "" {
		for _, s := range f.GetSheetList() {
			if v, _ := f.GetSheetVisible(s); v {
				name = s
				break
			}
		}
	}
	if name == "" {
		return nil, nil, notXLSX("it has no visible worksheet")
	}
	t := &Table{Format: XLSX, Sheet: name}
	if p, err := f.GetWorkbookProps(); err == nil && p.Date1904 != nil {
		t.Date1904 = *p.Date1904
	}
	rows, err := f.Rows(name)
	if err != nil {
		return nil, nil, notXLSX(err.Error())
	}
	defer rows.Close()
	// The iterator stops at every row number, returning no cells for rows
	// the file leaves out: counting its steps counts rows as Excel does.
	at := 0
	read := func() ([]string, int, bool, error) {
		if !rows.Next() {
			return nil, 0, false, rows.Error()
		}
		at++
		// Raw values: a number stays as typed (a phone number, a division
		// code), a time is a date serial whatever format shows it.
		cells, err := rows.Columns(excelize.Options{RawCellValue: true})
		return cells, at, true, err
	}
	first, _, ok, err := read()
	if err != nil {
		return nil, nil, notXLSX(err.Error())
	}
	if !ok {
		return nil, nil, refuse(1, "", "sheet %s is empty: the header %s goes in row 1", name, names(opt.Columns))
	}
	var later [][]string
	var buffered []struct {
		cells []string
		n     int
	}
	if _, named := header(first, opt.Columns); named == 0 {
		for range 4 {
			c, m, ok, err := read()
			if err != nil || !ok {
				break
			}
			later = append(later, c)
			buffered = append(buffered, struct {
				cells []string
				n     int
			}{c, m})
		}
	}
	idx, headers, refErr := checkHeaderErr(first, opt.Columns, later)
	if refErr != nil {
		return nil, nil, refErr
	}
	t.Headers = headers
	colName := func(j int) string {
		for i, x := range idx {
			if x == j {
				return headers[i]
			}
		}
		if j < len(first) && strings.TrimSpace(first[j]) != "" {
			return strings.TrimSpace(first[j])
		}
		letter, _ := excelize.ColumnNumberToName(j + 1)
		return letter
	}

	// Cells that are not plain values are refused by cell, before any row.
	ps := problems{max: opt.maxErrors()}
	bad := map[int]bool{} // rows refused whole
	merged, err := f.GetMergeCells(name, true)
	if err != nil {
		return nil, nil, notXLSX(err.Error())
	}
	for _, m := range merged {
		c, r, err := excelize.CellNameToCoordinates(m.GetStartAxis())
		if err != nil {
			continue
		}
		ps.add(Problem{Row: r, Column: colName(c - 1), Message: fmt.Sprintf("cells %s:%s are merged: unmerge them (取消合并) and write the value in every row", m.GetStartAxis(), m.GetEndAxis())})
		_, r2, _ := excelize.CellNameToCoordinates(m.GetEndAxis())
		for k := r; k <= max(r, r2); k++ {
			bad[k] = true
		}
	}
	formulas, err := formulaCells(b, name)
	if err != nil {
		return nil, nil, notXLSX(err.Error())
	}
	for _, ref := range formulas {
		c, r, err := excelize.CellNameToCoordinates(ref)
		if err != nil {
			continue
		}
		ps.add(Problem{Row: r, Column: colName(c - 1), Message: fmt.Sprintf("cell %s holds a formula: replace it by its value (复制后选择性粘贴为数值)", ref)})
		bad[r] = true
	}

	ls := labelsOf(opt.Columns)
	emit := func(cells []string, n int) bool {
		if bad[n] {
			return true
		}
		picked, any := pick(cells, idx)
		if !any {
			return true
		}
		if ls.looksLikeHeader(cells, len(opt.Columns)) {
			ps.add(Problem{Row: n, Message: "this row repeats the header: a sheet has one header row, row 1; delete this one"})
			return true
		}
		return fn(Row{N: n, Cells: picked})
	}
	for _, x := range buffered {
		if !emit(x.cells, x.n) {
			return t, ps.result(), nil
		}
	}
	for {
		cells, n, ok, err := read()
		if err != nil {
			return nil, nil, notXLSX(err.Error())
		}
		if !ok || !emit(cells, n) {
			break
		}
	}
	return t, ps.result(), nil
}

// formulaCells lists the cells of a worksheet that hold a formula, by
// reading the sheet's XML from the zip: excelize shows only their cached
// values. The limits are those of the whole upload.
func formulaCells(b []byte, sheet string) ([]string, error) {
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return nil, err
	}
	files := map[string]*zip.File{}
	for _, f := range zr.File {
		files[f.Name] = f
	}
	open := func(name string) (io.ReadCloser, error) {
		f, ok := files[name]
		if !ok {
			return nil, fmt.Errorf("%s missing", name)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, err
		}
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(rc, unzipLimit), rc}, nil
	}
	var wb struct {
		Sheets []struct {
			Name string `xml:"name,attr"`
			RID  string `xml:"http://schemas.openxmlformats.org/officeDocument/2006/relationships id,attr"`
		} `xml:"sheets>sheet"`
	}
	var rels struct {
		Rels []struct {
			ID     string `xml:"Id,attr"`
			Target string `xml:"Target,attr"`
		} `xml:"Relationship"`
	}
	for name, v := range map[string]any{"xl/workbook.xml": &wb, "xl/_rels/workbook.xml.rels": &rels} {
		rc, err := open(name)
		if err != nil {
			return nil, err
		}
		err = xml.NewDecoder(rc).Decode(v)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	target := ""
	for _, s := range wb.Sheets {
		if s.Name != sheet {
			continue
		}
		for _, r := range rels.Rels {
			if r.ID == s.RID {
				target = r.Target
			}
		}
	}
	if target == "" {
		return nil, fmt.Errorf("sheet %s has no part", sheet)
	}
	if strings.HasPrefix(target, "/") {
		target = strings.TrimPrefix(target, "/")
	} else {
		target = path.Join("xl", target)
	}
	rc, err := open(target)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	dec := xml.NewDecoder(rc)
	var out []string
	cell := ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "c":
				cell = ""
				for _, a := range se.Attr {
					if a.Name.Local == "r" {
						cell = a.Value
					}
				}
			case "f":
				if cell != "" && (len(out) == 0 || out[len(out)-1] != cell) {
					out = append(out, cell)
				}
			}
		}
	}
}
