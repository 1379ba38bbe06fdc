package region

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Level is the rank of a division in the administrative hierarchy.
type Level string

// Levels of the hierarchy, from the top down.
const (
	Province Level = "province" // 省
	City     Level = "city"     // 市
	County   Level = "county"   // 县, 区, 县级市
	Township Level = "township" // 乡, 镇, 街道
	Village  Level = "village"  // 村委会, 社区居委会
)

var levels = []Level{Province, City, County, Township, Village}

// ParseLevel checks a level name.
func ParseLevel(s string) (Level, error) {
	if l := Level(s); l.rank() >= 0 {
		return l, nil
	}
	return "", fmt.Errorf("unknown level %q: use one of province, city, county, township, village", s)
}

// rank is 0 for Province down to 4 for Village, and -1 for an unknown level.
func (l Level) rank() int { return slices.Index(levels, l) }

// Chinese returns the level as operators name it, e.g. 乡镇.
func (l Level) Chinese() string {
	switch l {
	case Province:
		return "省"
	case City:
		return "市"
	case County:
		return "县区"
	case Township:
		return "乡镇"
	case Village:
		return "村社区"
	}
	return string(l)
}

// Division is one administrative division. Divisions belong to a Tree and must
// not be modified.
type Division struct {
	Code     string // the 12-digit NBS 统计用区划代码, e.g. 530102000000
	Name     string
	Level    Level
	Parent   *Division   // nil for the root
	Children []*Division // in file order
}

// Tree is a hierarchy of divisions with a single root. It is read-only once
// loaded and safe for concurrent use.
type Tree struct {
	divs   []Division // file order; Index and ByIndex number this slice
	byCode map[string]int32
	parent []int32 // -1 for the root
	pre    []int32 // division indices in preorder
	prePos []int32 // position of each division in pre
	size   []int32 // number of divisions in each subtree, itself included
	search []int32 // division indices, upper levels first, then file order
}

var treeHeader = []string{"code", "name", "level", "parent_code"}

// LoadTree reads divisions from CSV with the header code,name,level,parent_code.
// Rows may come in any order; exactly one row, the root, has an empty
// parent_code, and every other row's parent must lie at a higher level. Every
// problem is reported at once, each naming its line and what to fix.
func LoadTree(r io.Reader) (*Tree, error) {
	type row struct {
		Division
		line   int
		parent string
	}
	var (
		p     = problems{kind: "regions"}
		rows  []row
		first = map[string]int{} // code → index in rows of its first row
		root  = -1
	)
	readCSV(&p, r, treeHeader, func(line int, f []string) {
		rw := row{Division: Division{Code: f[0], Name: f[1], Level: Level(f[2])}, line: line, parent: f[3]}
		if !isCode(rw.Code) {
			p.addf(line, "code %q is not 12 digits: write the 12-digit 统计用区划代码, e.g. 530102000000", rw.Code)
		} else if at, dup := first[rw.Code]; dup {
			p.addf(line, "duplicate code %s (first on line %d): remove one of the rows", rw.Code, rows[at].line)
		} else {
			first[rw.Code] = len(rows)
		}
		if rw.Name == "" {
			p.addf(line, "name is empty: give the division's name")
		}
		if _, err := ParseLevel(f[2]); err != nil {
			p.add(line, err)
		}
		switch {
		case rw.parent == "" && root >= 0:
			p.addf(line, "parent_code is empty but line %d is already the root: give this division's parent", rows[root].line)
		case rw.parent == "":
			root = len(rows)
		case !isCode(rw.parent):
			p.addf(line, "parent_code %q is not 12 digits: write the parent's 12-digit code, e.g. 530100000000", rw.parent)
		}
		rows = append(rows, rw)
	})
	if p.fatal {
		return nil, p.err()
	}
	if len(rows) == 0 {
		p.addf(0, "no divisions after the header: add at least the root")
		return nil, p.err()
	}
	if root < 0 {
		p.addf(0, "no root: exactly one row (the division at the top) must have an empty parent_code")
	}
	// Parents are checked once every row is known, so rows may come in any order.
	for _, rw := range rows {
		if !isCode(rw.parent) {
			continue
		}
		at, ok := first[rw.parent]
		if !ok {
			p.addf(rw.line, "unknown parent_code %s: add a row for it or correct the code", rw.parent)
			continue
		}
		pl := rows[at].Level
		if pl.rank() >= 0 && rw.Level.rank() >= 0 && pl.rank() >= rw.Level.rank() {
			p.addf(rw.line, "parent %s is a %s, which does not lie above a %s: correct the level or the parent_code", rw.parent, pl, rw.Level)
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}

	n := len(rows)
	t := &Tree{
		divs:   make([]Division, n),
		byCode: make(map[string]int32, n),
		parent: make([]int32, n),
		pre:    make([]int32, 0, n),
		prePos: make([]int32, n),
		size:   make([]int32, n),
		search: make([]int32, n),
	}
	for i, rw := range rows {
		t.divs[i] = rw.Division
		t.byCode[rw.Code] = int32(i)
	}
	kids := make([][]int32, n)
	for i, rw := range rows {
		if rw.parent == "" {
			t.parent[i] = -1
			continue
		}
		j := t.byCode[rw.parent]
		t.parent[i] = j
		t.divs[i].Parent = &t.divs[j]
		t.divs[j].Children = append(t.divs[j].Children, &t.divs[i])
		kids[j] = append(kids[j], int32(i))
	}
	// Levels strictly descend from parent to child, so there is no cycle and
	// the depth is at most len(levels): recursion is safe.
	var visit func(i int32)
	visit = func(i int32) {
		t.prePos[i] = int32(len(t.pre))
		t.pre = append(t.pre, i)
		for _, k := range kids[i] {
			visit(k)
		}
		t.size[i] = int32(len(t.pre)) - t.prePos[i]
	}
	visit(int32(root))
	for i := range t.search {
		t.search[i] = int32(i)
	}
	slices.SortStableFunc(t.search, func(a, b int32) int {
		return t.divs[a].Level.rank() - t.divs[b].Level.rank()
	})
	return t, nil
}

// isCode reports whether s is a 12-digit division code.
func isCode(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Get finds a division by its 12-digit code.
func (t *Tree) Get(code string) (*Division, bool) {
	i, ok := t.byCode[code]
	if !ok {
		return nil, false
	}
	return &t.divs[i], true
}

// Root returns the division at the top of the tree.
func (t *Tree) Root() *Division { return &t.divs[t.pre[0]] }

// Len returns the number of divisions.
func (t *Tree) Len() int { return len(t.divs) }

// Walk calls fn for the division with the given code and then every division
// under it, in preorder with children in file order, until fn returns false.
// It calls nothing for an unknown code.
func (t *Tree) Walk(code string, fn func(d *Division) bool) {
	i, ok := t.byCode[code]
	if !ok {
		return
	}
	start := t.prePos[i]
	for _, j := range t.pre[start : start+t.size[i]] {
		if !fn(&t.divs[j]) {
			return
		}
	}
}

// Ancestor returns the division with the given code if it is at level, or
// else its ancestor at level. It reports false for an unknown code and when
// no division on the way to the root is at level.
func (t *Tree) Ancestor(code string, level Level) (*Division, bool) {
	d, _ := t.Get(code)
	for ; d != nil; d = d.Parent {
		if d.Level == level {
			return d, true
		}
	}
	return nil, false
}

// Path returns the divisions from the root down to the one with the given
// code, both included, or nil for an unknown code.
func (t *Tree) Path(code string) []*Division {
	d, ok := t.Get(code)
	if !ok {
		return nil
	}
	n := 0
	for x := d; x != nil; x = x.Parent {
		n++
	}
	path := make([]*Division, n)
	for x := d; x != nil; x = x.Parent {
		n--
		path[n] = x
	}
	return path
}

// Covers reports whether the division code is the division area or lies under
// it. It is false when either code is unknown.
func (t *Tree) Covers(area, code string) bool {
	a, ok1 := t.byCode[area]
	c, ok2 := t.byCode[code]
	if !ok1 || !ok2 {
		return false
	}
	pa, pc := t.prePos[a], t.prePos[c]
	return pa <= pc && pc < pa+t.size[a]
}

// Search returns up to limit divisions whose name or code contains q, upper
// levels first (counties before townships before villages), in file order
// within a level. A limit of zero or less means no limit; an empty q (after
// trimming spaces) matches nothing.
func (t *Tree) Search(q string, limit int) []*Division {
	q = strings.TrimSpace(q)
	if q == "" {
		return nil
	}
	var out []*Division
	for _, i := range t.search {
		d := &t.divs[i]
		if strings.Contains(d.Name, q) || strings.Contains(d.Code, q) {
			out = append(out, d)
			if len(out) == limit {
				break
			}
		}
	}
	return out
}

// Index returns the division's position in file order, from 0 to Len()-1.
// For the embedded tree it is stable from one run to the next (until the
// shipped file changes), so it may be stored in place of the code.
func (t *Tree) Index(code string) (int, bool) {
	i, ok := t.byCode[code]
	return int(i), ok
}

// ByIndex inverts Index. It returns nil when i is out of range.
func (t *Tree) ByIndex(i int) *Division {
	if i < 0 || i >= len(t.divs) {
		return nil
	}
	return &t.divs[i]
}

// sumSubtrees turns counts of each division alone, indexed like t.divs, into
// counts of each subtree, in place.
func (t *Tree) sumSubtrees(c []Counts) {
	// In reverse preorder every division comes after all of its descendants.
	for k := len(t.pre) - 1; k > 0; k-- {
		i := t.pre[k]
		c[t.parent[i]] = c[t.parent[i]].add(c[i])
	}
}
