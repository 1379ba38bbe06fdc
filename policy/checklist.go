package policy

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"warngate/region"
	"warngate/warning"
)

// ChecklistItem is one entry of the response checklists (响应清单): a thing a
// township or village must do when a warning of some levels reaches it.
type ChecklistItem struct {
	ID     string // short ascii slug, unique in the file
	Title  string // a few Chinese words, e.g. 监测巡查
	Detail string // one or two sentences of what to do
	// Scope is where the item is done: region.Township, region.Village or both.
	Scope []region.Level
	// Owner names the role that does the item at each division level of Scope.
	Owner map[region.Level]region.Role
	// Levels are the warning levels the item applies to, as written in the
	// file; every level when the file lists none.
	Levels []warning.Level
	// Due is how long after the warning is issued the item must be done, for
	// each of Levels. Zero means at once.
	Due map[warning.Level]Duration
	// OnlyFor limits a common item to these hazards; empty means every
	// hazard. Hazard items have none.
	OnlyFor []warning.Hazard
	// Source says where the item comes from (a guideline, or common practice).
	Source string
}

// Checklists are the templates a warning's checklists are generated from:
// common items for every warning, then items for its hazard.
type Checklists struct {
	Common []ChecklistItem
	// Hazards holds each hazard's own items, in file order; an item lists
	// the levels it applies to.
	Hazards map[warning.Hazard][]ChecklistItem
}

// Item is one item of a division's checklist for a warning.
type Item struct {
	ID, Title, Detail, Source string
	Owner                     region.Role
	// Due is how long after the warning is issued the item must be done.
	// Zero means at once.
	Due time.Duration
}

// For returns the items for a division level (township or village) for a
// warning's hazard and level, common items first, in file order; unknown
// hazards get the common items only.
func (c *Checklists) For(h warning.Hazard, l warning.Level, scope region.Level) []Item {
	var out []Item
	add := func(items []ChecklistItem) {
		for i := range items {
			it := &items[i]
			if !slices.Contains(it.Levels, l) || !slices.Contains(it.Scope, scope) ||
				len(it.OnlyFor) > 0 && !slices.Contains(it.OnlyFor, h) {
				continue
			}
			out = append(out, Item{
				ID: it.ID, Title: it.Title, Detail: it.Detail, Source: it.Source,
				Owner: it.Owner[scope], Due: time.Duration(it.Due[l]),
			})
		}
	}
	add(c.Common)
	add(c.Hazards[h])
	return out
}

//go:embed checklists.yaml
var checklistsYAML []byte

// DefaultChecklists returns the built-in checklists. They are examples
// rewritten from national and Beijing guidelines, not Yunnan's own: see the
// comment at the top of checklists.yaml.
func DefaultChecklists() *Checklists {
	c, err := ParseChecklists(bytes.NewReader(checklistsYAML))
	if err != nil {
		panic("policy: built-in checklists.yaml: " + err.Error())
	}
	return c
}

// DefaultChecklistsYAML returns the text of the built-in checklists, to start
// a local copy from.
func DefaultChecklistsYAML() []byte { return slices.Clone(checklistsYAML) }

// LoadChecklists reads a checklists file.
func LoadChecklists(path string) (*Checklists, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("checklists: %w", err)
	}
	defer f.Close()
	c, err := ParseChecklists(f)
	if err != nil {
		return nil, fmt.Errorf("checklists %s: %w", path, err)
	}
	return c, nil
}

// The file as written. Owner and due take two shapes each, so they stay
// nodes until validation; everything else is strings so that one bad name
// does not stop the decoder before the other problems are found.
type checklistsFile struct {
	Sources map[string]string              `yaml:"sources"`
	Common  []checklistItemYAML            `yaml:"common"`
	Hazards map[string][]checklistItemYAML `yaml:"hazards"`
}

type checklistItemYAML struct {
	ID      string    `yaml:"id"`
	Title   string    `yaml:"title"`
	Detail  string    `yaml:"detail"`
	Scope   []string  `yaml:"scope"`
	Owner   yaml.Node `yaml:"owner"`
	Levels  []string  `yaml:"levels"`
	Due     yaml.Node `yaml:"due"`
	OnlyFor []string  `yaml:"only_for"`
	Source  string    `yaml:"source"`
}

// ParseChecklists decodes and validates checklists. Unknown keys are errors;
// every problem is reported at once.
func ParseChecklists(r io.Reader) (*Checklists, error) {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	var f checklistsFile
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("decode: %w", err)
	}
	v := checklistValidator{sources: f.Sources, ids: map[string]string{}}
	c := &Checklists{Hazards: map[warning.Hazard][]ChecklistItem{}}

	for _, k := range checklistKeys(f.Sources) {
		if strings.TrimSpace(f.Sources[k]) == "" {
			v.errorf("checklists sources.%s: text is required: say where items citing %s come from", k, k)
		}
	}
	if len(f.Common) == 0 && len(f.Hazards) == 0 {
		v.errorf("checklists: no items: add common items or hazards")
	}
	for i, raw := range f.Common {
		at := fmt.Sprintf("checklists common item %d", i+1)
		if it, ok := v.item(at, raw, true); ok {
			c.Common = append(c.Common, it)
		}
	}
	seen := map[warning.Hazard]string{}
	for _, key := range checklistKeys(f.Hazards) {
		h, err := warning.ParseHazard(key)
		if err != nil {
			v.errorf("checklists hazards: %w", err)
		} else if prev, dup := seen[h]; dup {
			v.errorf("checklists hazards: %s and %s are the same hazard: merge their items", prev, key)
		} else {
			seen[h] = key
		}
		for i, raw := range f.Hazards[key] {
			at := fmt.Sprintf("checklists %s item %d", key, i+1)
			if it, ok := v.item(at, raw, false); ok && err == nil {
				c.Hazards[h] = append(c.Hazards[h], it)
			}
		}
	}
	if err := errors.Join(v.errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// checklistRoles lists who works at each division level a checklist is for.
var checklistRoles = map[region.Level][]region.Role{
	region.Township: {region.TownshipDuty, region.TownshipLeader},
	region.Village:  {region.VillageOfficer, region.InfoOfficer, region.GridWorker},
}

var checklistID = regexp.MustCompile(`^[a-z][a-z0-9_]{0,39}$`)

type checklistValidator struct {
	sources map[string]string
	ids     map[string]string // id → where it was first defined
	errs    []error
}

func (v *checklistValidator) errorf(format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf(format, args...))
}

// item validates one item; at names it in messages ("checklists common
// item 3"). It reports false when the item has a problem.
func (v *checklistValidator) item(at string, raw checklistItemYAML, common bool) (ChecklistItem, bool) {
	n := len(v.errs)
	it := ChecklistItem{ID: raw.ID, Title: strings.TrimSpace(raw.Title), Detail: strings.TrimSpace(raw.Detail)}
	switch {
	case raw.ID == "":
		v.errorf("%s: id is required", at)
	case !checklistID.MatchString(raw.ID):
		at += " (" + raw.ID + ")"
		v.errorf("%s: id must be a short lower-case ascii slug such as rain_drain", at)
	default:
		at += " (" + raw.ID + ")"
		if prev, dup := v.ids[raw.ID]; dup {
			v.errorf("%s: id %q is already used by %s", at, raw.ID, prev)
		} else {
			v.ids[raw.ID] = at
		}
	}
	if it.Title == "" {
		v.errorf("%s: title is required", at)
	}
	if it.Detail == "" {
		v.errorf("%s: detail is required: one or two sentences of what to do", at)
	}

	if len(raw.Scope) == 0 {
		v.errorf("%s: scope is required: [township], [village] or [township, village]", at)
	}
	for _, s := range raw.Scope {
		l := region.Level(s)
		switch {
		case checklistRoles[l] == nil:
			v.errorf("%s: scope %q: use township or village", at, s)
		case slices.Contains(it.Scope, l):
			v.errorf("%s: scope %s is listed twice", at, s)
		default:
			it.Scope = append(it.Scope, l)
		}
	}
	it.Owner = v.owner(at, &raw.Owner, it.Scope, len(it.Scope) == len(raw.Scope))

	for _, s := range raw.Levels {
		l, err := warning.ParseLevel(s)
		switch {
		case err != nil:
			v.errorf("%s: levels: %w", at, err)
		case slices.Contains(it.Levels, l):
			v.errorf("%s: level %s is listed twice", at, l)
		default:
			it.Levels = append(it.Levels, l)
		}
	}
	if len(raw.Levels) == 0 {
		it.Levels = slices.Clone(warning.Levels)
	}
	it.Due = v.due(at, &raw.Due, it.Levels)

	if len(raw.OnlyFor) > 0 && !common {
		v.errorf("%s: only_for is for common items: a hazard's items apply to that hazard only", at)
	}
	for _, s := range raw.OnlyFor {
		h, err := warning.ParseHazard(s)
		switch {
		case err != nil:
			v.errorf("%s: only_for: %w", at, err)
		case slices.Contains(it.OnlyFor, h):
			v.errorf("%s: only_for lists %s twice", at, h)
		default:
			it.OnlyFor = append(it.OnlyFor, h)
		}
	}

	switch {
	case raw.Source == "" && !common:
		v.errorf("%s: source is required: name one of the keys under sources", at)
	case raw.Source == "":
	case v.sources[raw.Source] == "":
		if len(v.sources) == 0 {
			v.errorf("%s: unknown source %q: define it under sources", at, raw.Source)
		} else {
			v.errorf("%s: unknown source %q: use one of %s", at, raw.Source, strings.Join(checklistKeys(v.sources), ", "))
		}
	default:
		it.Source = strings.TrimSpace(v.sources[raw.Source])
	}
	return it, len(v.errs) == n
}

// owner reads a role, or a map from scope to role, and checks that each
// role works at its level. scopeOK is false when scope had errors already,
// so that they are not reported twice.
func (v *checklistValidator) owner(at string, n *yaml.Node, scope []region.Level, scopeOK bool) map[region.Level]region.Role {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	fits := func(l region.Level, r region.Role) bool { return slices.Contains(checklistRoles[l], r) }
	out := map[region.Level]region.Role{}
	switch {
	case n.Kind == 0 || n.Kind == yaml.ScalarNode && (n.Value == "" || n.Tag == "!!null"):
		v.errorf("%s: owner is required: the role that does the item, e.g. township_duty", at)
	case n.Kind == yaml.ScalarNode:
		r, err := region.ParseRole(n.Value)
		if err != nil {
			v.errorf("%s: owner: %w", at, err)
			return out
		}
		for _, l := range scope {
			if !fits(l, r) {
				if len(scope) > 1 {
					v.errorf("%s: owner %s does not work at a %s: give one owner per scope, e.g. owner: {township: township_duty, village: village_officer}", at, r, l)
				} else {
					v.errorf("%s: owner %s does not work at a %s: use %s", at, r, l, checklistRoleList(checklistRoles[l]))
				}
				continue
			}
			out[l] = r
		}
	case n.Kind == yaml.MappingNode:
		named := map[region.Level]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i].Value, n.Content[i+1].Value
			l := region.Level(k)
			if !slices.Contains(scope, l) {
				if scopeOK {
					v.errorf("%s: owner names a role for %s, which is not in scope", at, k)
				}
				continue
			}
			if named[l] {
				v.errorf("%s: owner names %s twice", at, l)
				continue
			}
			named[l] = true
			r, err := region.ParseRole(val)
			switch {
			case err != nil:
				v.errorf("%s: owner %s: %w", at, k, err)
			case !fits(l, r):
				v.errorf("%s: owner %s does not work at a %s: use %s", at, r, l, checklistRoleList(checklistRoles[l]))
			default:
				out[l] = r
			}
		}
		for _, l := range scope {
			if !named[l] {
				v.errorf("%s: owner names no role for %s", at, l)
			}
		}
	default:
		v.errorf("%s: owner must be a role, or one role per scope such as {township: township_duty, village: village_officer}", at)
	}
	return out
}

// due reads one duration for every level, or a map from level to duration
// that must cover exactly the item's levels, and checks that a more severe
// level never allows more time than a milder one.
func (v *checklistValidator) due(at string, n *yaml.Node, levels []warning.Level) map[warning.Level]Duration {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	out := map[warning.Level]Duration{}
	parse := func(what, s string) (Duration, bool) {
		d, err := time.ParseDuration(s)
		if err != nil {
			v.errorf("%s: %s %q is not a duration such as 30m or 2h (0 for at once)", at, what, s)
			return 0, false
		}
		if d < 0 {
			v.errorf("%s: %s %s is negative: use 0 for at once", at, what, s)
			return 0, false
		}
		return Duration(d), true
	}
	switch {
	case n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		v.errorf("%s: due is required: a duration such as 1h (0 for at once), or one per level such as {red: 30m, blue: 4h}", at)
		return out
	case n.Kind == yaml.ScalarNode:
		d, ok := parse("due", n.Value)
		if !ok {
			return out
		}
		for _, l := range levels {
			out[l] = d
		}
		return out
	case n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i].Value, n.Content[i+1].Value
			l, err := warning.ParseLevel(k)
			if err != nil {
				v.errorf("%s: due: %w", at, err)
				continue
			}
			if _, dup := out[l]; dup {
				v.errorf("%s: due gives %s twice", at, l)
				continue
			}
			d, ok := parse("due "+l.String(), val)
			if !ok {
				out[l] = -1 // seen, but not checked against the other levels
				continue
			}
			if !slices.Contains(levels, l) {
				v.errorf("%s: due gives %s, which is not in levels", at, l)
			}
			out[l] = d
		}
		for _, l := range levels {
			if _, ok := out[l]; !ok {
				v.errorf("%s: due gives no time for %s", at, l)
			}
		}
	default:
		v.errorf("%s: due must be a duration, or one per level such as {red: 30m, blue: 4h}", at)
		return out
	}
	// warning.Levels runs from the most severe down.
	var prev warning.Level
	for _, l := range warning.Levels {
		d, ok := out[l]
		if !ok || d < 0 {
			continue
		}
		if prev != 0 && out[prev] > d {
			v.errorf("%s: due %s %s is later than %s %s: a more severe level must not allow more time",
				at, prev, checklistDuration(out[prev]), l, checklistDuration(d))
		}
		prev = l
	}
	for l, d := range out {
		if d < 0 || !slices.Contains(levels, l) {
			delete(out, l)
		}
	}
	return out
}

// checklistDuration prints a due time as it is written: 2h, not 2h0m0s.
func checklistDuration(d Duration) string {
	s := time.Duration(d).String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	if s == "0s" {
		s = "0"
	}
	return s
}

func checklistRoleList(rs []region.Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

func checklistKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
