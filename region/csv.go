package region

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// problems collects what is wrong with one CSV file, so that every problem
// is reported at once.
type problems struct {
	kind  string // what the file holds: "regions", "people", …
	list  []problem
	fatal bool // the file could not be read to the end
}

type problem struct {
	line int // 0 for the file as a whole
	err  error
}

func (p *problems) add(line int, err error) {
	if line > 0 {
		err = fmt.Errorf("%s line %d: %w", p.kind, line, err)
	} else {
		err = fmt.Errorf("%s: %w", p.kind, err)
	}
	p.list = append(p.list, problem{line, err})
}

func (p *problems) addf(line int, format string, args ...any) {
	p.add(line, fmt.Errorf(format, args...))
}

// errs returns the problems in line order.
func (p *problems) errs() []error {
	slices.SortStableFunc(p.list, func(a, b problem) int { return cmp.Compare(a.line, b.line) })
	out := make([]error, len(p.list))
	for i, x := range p.list {
		out[i] = x.err
	}
	return out
}

// err joins the problems in line order, or returns nil when there are none.
func (p *problems) err() error { return errors.Join(p.errs()...) }

// readCSV checks the header of r and calls row for each record that has as
// many fields as the header, with spaces trimmed from its fields. Blank rows
// are skipped. A UTF-8 byte order mark, which spreadsheets write, is ignored.
func readCSV(p *problems, r io.Reader, header []string, row func(line int, f []string)) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	want := strings.Join(header, ",")
	head, err := cr.Read()
	if err == io.EOF {
		p.addf(0, "empty file: want the header %s", want)
		p.fatal = true
		return
	}
	if err != nil {
		p.readErr(err)
		return
	}
	head[0] = strings.TrimPrefix(head[0], "\ufeff")
	trim(head)
	if !slices.Equal(head, header) {
		p.addf(1, "header is %s: want %s", strings.Join(head, ","), want)
		p.fatal = true
		return
	}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return
		}
		if err != nil {
			p.readErr(err)
			return
		}
		line, _ := cr.FieldPos(0)
		if len(rec) != len(header) {
			p.addf(line, "%d fields, want %d (%s)", len(rec), len(header), want)
			continue
		}
		trim(rec)
		if strings.Join(rec, "") == "" {
			continue
		}
		row(line, rec)
	}
}

func (p *problems) readErr(err error) {
	line := 0
	if pe, ok := errors.AsType[*csv.ParseError](err); ok {
		line = pe.Line
	}
	p.list = append(p.list, problem{line, fmt.Errorf("%s: %w", p.kind, err)})
	p.fatal = true
}

func trim(f []string) {
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
}
