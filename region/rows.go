package region

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The columns of roster rows, in the order of the CSV files' headers. The
// same checks serve roster files read at start-up, CSV uploads and .xlsx
// sheets, so that a row refused in one is refused in the others with the
// same words.
var (
	PeopleColumns    = []string{"id", "name", "phone", "wechat_openid", "wecom_userid", "role", "division"}
	DeviceColumns    = []string{"id", "name", "kind", "division", "platform_id"}
	HouseholdColumns = []string{"id", "head", "address", "phone", "category", "division", "grid_worker"}
)

// Longest values, in characters: enough for any real name, address or
// platform id, short enough that a pasted paragraph is caught.
var (
	maxFieldRunes     = map[string]int{"id": 64, "name": 64, "head": 64, "address": 200, "wechat_openid": 128, "wecom_userid": 64, "platform_id": 128}
	defaultFieldRunes = 64
)

// ColumnError is what is wrong with one column of a roster row, phrased so
// that the person fixing the sheet knows what to write instead.
type ColumnError struct {
	Column  string // as in the CSV header: "phone", "division", …
	Message string
}

// Error implements error.
func (e *ColumnError) Error() string { return e.Message }

// rowCheck gathers a row's problems in the order the columns are checked.
type rowCheck []*ColumnError

func (r *rowCheck) addf(col, format string, args ...any) {
	*r = append(*r, &ColumnError{Column: col, Message: fmt.Sprintf(format, args...)})
}

// field cleans one value: control characters (a line break typed into a
// cell, a tab) become spaces and the ends are trimmed, so that a value never
// breaks the stored row; a value longer than its column allows is refused.
func (r *rowCheck) field(col, s string) string {
	s = Clean(s)
	limit := defaultFieldRunes
	if n, ok := maxFieldRunes[col]; ok {
		limit = n
	}
	if utf8.RuneCountInString(s) > limit {
		r.addf(col, "%s is %d characters long: write at most %d", col, utf8.RuneCountInString(s), limit)
	}
	return s
}

// Clean turns control characters into spaces, collapses nothing else and
// trims the ends. Invalid UTF-8 becomes U+FFFD.
func Clean(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == utf8.RuneError }) < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD")))
}

// CheckID reports what is wrong with the form of an id (not whether it is
// unique: that is the caller's, who knows the other rows).
func CheckID(noun, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("id is empty: give each %s a unique id", noun)
	case strings.ContainsFunc(id, func(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }):
		return fmt.Errorf("id %q contains '/' or whitespace: remove them, as the id travels in delivery refs", id)
	case utf8.RuneCountInString(id) > maxFieldRunes["id"]:
		return fmt.Errorf("id %q is longer than %d characters: use a shorter id", id, maxFieldRunes["id"])
	}
	return nil
}

// DuplicateID is the problem of an id seen before at line (or row) first.
func DuplicateID(noun, id, where string, first int) error {
	return fmt.Errorf("duplicate id %q (first on %s %d): give each %s its own id", id, where, first, noun)
}

// GridWorkerProblem is what is wrong with a household's grid worker, or nil:
// found says whether a person with that id exists, role is their role.
func GridWorkerProblem(id string, found bool, role Role, where string) error {
	switch {
	case id == "":
		return fmt.Errorf("grid_worker is empty: give the id of the grid worker who visits this household")
	case !found:
		return fmt.Errorf("grid_worker %q is not in %s: use the id of a person with role grid_worker", id, where)
	case role != GridWorker:
		return fmt.Errorf("grid_worker %q is a %s: use the id of a person with role grid_worker", id, role)
	}
	return nil
}

// ParsePersonRow checks a people row's fields, in PeopleColumns order, and
// returns the person with its phone number normalised. It checks everything
// but the id, whose form (CheckID) and uniqueness the caller checks first.
func ParsePersonRow(t *Tree, f []string) (Person, []*ColumnError) {
	var r rowCheck
	x := Person{ID: Clean(f[0]), Name: r.field("name", f[1]), WeChatOpenID: r.field("wechat_openid", f[3]),
		WeComUserID: r.field("wecom_userid", f[4]), Division: Clean(f[6])}
	phone := Clean(f[2])
	var err error
	if x.Role, err = ParseRole(Clean(f[5])); err != nil {
		r.addf("role", "%s", err)
	}
	r.division(t, x.Division)
	if phone != "" {
		if x.Phone, err = mobile(phone); err != nil {
			r.addf("phone", "%s", err)
		}
	} else if x.WeChatOpenID == "" && x.WeComUserID == "" {
		r.addf("phone", "no phone, wechat_openid or wecom_userid: give at least one way to reach this person")
	}
	return x, r
}

// ParseDeviceRow checks a devices row's fields, in DeviceColumns order,
// all but the id.
func ParseDeviceRow(t *Tree, f []string) (Device, []*ColumnError) {
	var r rowCheck
	x := Device{ID: Clean(f[0]), Name: r.field("name", f[1]), Division: Clean(f[3]), Platform: r.field("platform_id", f[4])}
	var err error
	if x.Kind, err = ParseDeviceKind(Clean(f[2])); err != nil {
		r.addf("kind", "%s", err)
	}
	r.division(t, x.Division)
	if x.Platform == "" {
		r.addf("platform_id", "platform_id is empty: give the device's id on the vendor platform")
	}
	return x, r
}

// ParseHouseholdRow checks a households row's fields, in HouseholdColumns
// order, all but the id and whether its grid worker exists (the caller
// knows the people: see GridWorkerProblem); an empty grid_worker is refused
// here.
func ParseHouseholdRow(t *Tree, f []string) (Household, []*ColumnError) {
	var r rowCheck
	x := Household{ID: Clean(f[0]), Head: r.field("head", f[1]), Address: r.field("address", f[2]), Division: Clean(f[5]), GridWorker: Clean(f[6])}
	var err error
	if p := Clean(f[3]); p != "" {
		if x.Phone, err = mobile(p); err != nil {
			r.addf("phone", "%s", err)
		}
	}
	if x.Category, err = ParseHouseholdCategory(Clean(f[4])); err != nil {
		r.addf("category", "%s", err)
	}
	if d, known := r.division(t, x.Division); known && d.Level != Village {
		r.addf("division", "division %s is a %s: households belong to a village (村/社区)", x.Division, d.Level)
	}
	if x.GridWorker == "" {
		r.addf("grid_worker", "%s", GridWorkerProblem("", false, "", ""))
	}
	return x, r
}

func (r *rowCheck) division(t *Tree, code string) (*Division, bool) {
	d, ok := t.Get(code)
	if !ok {
		r.addf("division", "unknown division %q: use a 12-digit code from the region tree", code)
	}
	return d, ok
}

// Mobile checks a mainland mobile number, 1[3-9] and 9 more digits, and
// drops a +86 or 86 prefix.
func Mobile(s string) (string, error) { return mobile(s) }

// Add sums two counts.
func (c Counts) Add(o Counts) Counts { return c.add(o) }

// SumSubtrees turns counts of each division alone, indexed like the tree's
// file order (Index), into counts of each subtree, in place.
func (t *Tree) SumSubtrees(c []Counts) { t.sumSubtrees(c) }
