package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Problems is every problem found in a configuration, each with the line
// of the file it is on when it is on one. Load returns it, and so does
// Config.Problems, which adds those found by checks outside this package
// (the roster, the providers).
type Problems struct {
	// File is the configuration file, or "" when there is none.
	File  string
	Items []Problem
}

// Problem is one problem: what to fix and, when it is in the file, where.
type Problem struct {
	// Line is the line of the file the problem is on; 0 when it is not in
	// the file (the environment, a default).
	Line int
	Err  error
}

func (p Problem) Error() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %v", p.Line, p.Err)
	}
	return p.Err.Error()
}

func (p Problem) Unwrap() error { return p.Err }

// Error lists the problems, one a line.
func (p *Problems) Error() string {
	var b strings.Builder
	where := "the configuration"
	if p.File != "" {
		where = p.File
	}
	n := len(p.Items)
	if n == 1 {
		fmt.Fprintf(&b, "%s: 1 problem:", where)
	} else {
		fmt.Fprintf(&b, "%s: %d problems:", where, n)
	}
	for _, it := range p.Items {
		b.WriteString("\n  " + it.Error())
	}
	return b.String()
}

// Unwrap gives the problems to errors.Is and errors.As.
func (p *Problems) Unwrap() []error {
	out := make([]error, len(p.Items))
	for i, it := range p.Items {
		out[i] = it
	}
	return out
}

// Problems collects errs, joined or not, one problem each, placing each on
// the line of the file its setting is on, and orders them by line, those
// not in the file last; a *Problems among them is taken as it is. It
// returns nil when there are none.
func (c *Config) Problems(errs ...error) error {
	p := &Problems{File: c.file}
	var add func(err error)
	add = func(err error) {
		var it Problem
		switch e := err.(type) {
		case nil:
			return
		case Problem:
			it = e
		case *Problems:
			p.Items = append(p.Items, e.Items...)
			return
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				add(x)
			}
			return
		default:
			it = Problem{Line: c.lineOf(err.Error()), Err: err}
		}
		p.Items = append(p.Items, it)
	}
	for _, err := range errs {
		add(err)
	}
	if len(p.Items) == 0 {
		return nil
	}
	// In the order of the file, then what is not in it, each in the order
	// found.
	slices.SortStableFunc(p.Items, func(a, b Problem) int {
		switch {
		case a.Line == b.Line:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return a.Line - b.Line
	})
	return p
}

// settingRE finds the setting a message starts with: "dispatch.max_retry",
// "providers[1]", "providers[0] (kannel-main): kannel.callback_key".
var settingRE = regexp.MustCompile(`^([a-z0-9_]+(?:\[[0-9]+\])?(?:\.[a-z0-9_]+(?:\[[0-9]+\])?)*)(?: \([^)]*\))?(?:: ([a-z0-9_]+(?:\.[a-z0-9_]+)*))?`)

// lineOf finds the line of the setting msg starts with, the most precise
// one known, or 0.
func (c *Config) lineOf(msg string) int {
	m := settingRE.FindStringSubmatch(msg)
	if m == nil || c.lines == nil {
		return 0
	}
	path := m[1]
	if m[2] != "" {
		if l, ok := c.lines[path+"."+m[2]]; ok {
			return l
		}
	}
	for path != "" {
		if l, ok := c.lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// readNode walks the document: it records the line of every setting, and
// returns a problem for every key the configuration does not have, with the
// key it most likely meant.
func (c *Config) readNode(doc *yaml.Node) []error {
	c.lines = map[string]int{}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	var errs []error
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if isLeaf(t) {
			return
		}
		switch {
		case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
			keys := yamlKeys(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				at := join(path, k.Value)
				f, ok := keys[k.Value]
				if !ok {
					errs = append(errs, Problem{Line: k.Line, Err: unknownKey(path, k.Value, keys, reflect.TypeOf(Config{}))})
					continue
				}
				c.lines[at] = k.Line
				walk(v, f, at)
			}
		case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				at := join(path, k.Value)
				c.lines[at] = k.Line
				walk(v, t.Elem(), at)
			}
		case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
			for i, item := range n.Content {
				at := fmt.Sprintf("%s[%d]", path, i)
				c.lines[at] = item.Line
				walk(item, t.Elem(), at)
			}
		}
	}
	walk(doc, reflect.TypeOf(*c), "")
	return errs
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(time.Duration(0))
)

// isLeaf reports whether values of t are read whole, not key by key.
func isLeaf(t reflect.Type) bool {
	if t == durationType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map, reflect.Slice:
		return false
	}
	return true
}

// yamlKeys maps the YAML keys of a struct type to their fields' types.
func yamlKeys(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f.Type
	}
	return out
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// unknownKey says that key is not a setting at path, and which one it
// likely meant: a setting there within two edits, or one of that name
// elsewhere (a key indented at the wrong level).
func unknownKey(path, key string, here map[string]reflect.Type, root reflect.Type) error {
	at := join(path, key)
	best, bestD := "", 3
	for k := range here {
		if d := editDistance(strings.ToLower(key), k); d < bestD || (d == bestD && k < best) {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Errorf("%s: unknown setting; did you mean %s?", at, join(path, best))
	}
	if elsewhere := findKey(root, key, "", 0); len(elsewhere) > 0 {
		return fmt.Errorf("%s: unknown setting; did you mean %s? (check the indentation)", at, strings.Join(elsewhere, " or "))
	}
	names := make([]string, 0, len(here))
	for k := range here {
		names = append(names, k)
	}
	slices.Sort(names)
	if len(names) <= 12 {
		return fmt.Errorf("%s: unknown setting; the settings here are %s", at, strings.Join(names, ", "))
	}
	return fmt.Errorf("%s: unknown setting; see deploy/config/warngate.yaml for the settings", at)
}

// findKey lists the paths below t whose last key is key.
func findKey(t reflect.Type, key, path string, depth int) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || isLeaf(t) || depth > 3 {
		return nil
	}
	var out []string
	keys := yamlKeys(t)
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if k == key && path != "" {
			out = append(out, join(path, k))
		}
		out = append(out, findKey(keys[k], key, join(path, k), depth+1)...)
	}
	return out
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of neighbours that turn a into b.
func editDistance(a, b string) int {
	x, y := []rune(a), []rune(b)
	d := make([][]int, len(x)+1)
	for i := range d {
		d[i] = make([]int, len(y)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(x); i++ {
		for j := 1; j <= len(y); j++ {
			cost := 1
			if x[i-1] == y[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && x[i-1] == y[j-2] && x[i-2] == y[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(x)][len(y)]
}

// typeErrorRE reads yaml.v3's "line 5: cannot unmarshal !!str `abc` into int".
var typeErrorRE = regexp.MustCompile("^line ([0-9]+): cannot unmarshal !!([a-z]+) `(.*)` into (.+)$")

// typeProblems turns the decoder's type errors into problems that name the
// setting and what it wants.
func (c *Config) typeProblems(err error) []error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []error{err}
	}
	byLine := map[int]string{}
	for path, l := range c.lines {
		if cur, ok := byLine[l]; !ok || len(path) > len(cur) {
			byLine[l] = path
		}
	}
	var out []error
	for _, s := range te.Errors {
		m := typeErrorRE.FindStringSubmatch(s)
		if m == nil {
			line, msg := 0, s
			if l, rest, ok := strings.Cut(strings.TrimPrefix(s, "line "), ": "); ok {
				if n, err := strconv.Atoi(l); err == nil {
					line, msg = n, rest
				}
			}
			if path := byLine[line]; path != "" && !strings.HasPrefix(msg, path) {
				msg = path + ": " + msg
			}
			out = append(out, Problem{Line: line, Err: errors.New(msg)})
			continue
		}
		line, _ := strconv.Atoi(m[1])
		what := byLine[line]
		if what == "" {
			what = "value"
		}
		out = append(out, Problem{Line: line, Err: fmt.Errorf("%s: %q is %s, but this setting wants %s", what, m[3], yamlKindName(m[2]), goTypeName(m[4]))})
	}
	return out
}

func yamlKindName(tag string) string {
	switch tag {
	case "str":
		return "text"
	case "int", "float":
		return "a number"
	case "bool":
		return "true or false"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "null":
		return "empty"
	}
	return "a " + tag
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping of names to values"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string" || strings.HasSuffix(t, ".Secret"):
		return "text"
	case t == "time.Duration" || strings.HasSuffix(t, ".Duration"):
		return "a duration such as 30s or 5m"
	}
	return "a mapping of settings"
}
