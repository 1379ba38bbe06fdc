package region

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// loaded is a Roster read from CSV files.
type loaded struct {
	tree        *Tree
	people      [][]Person // indexed like tree.divs
	devices     [][]Device
	households  [][]Household
	counts      []Counts // of each subtree
	byID        map[string]personAt
	byPhone     map[string]personAt
	byHousehold map[string]personAt
}

type personAt struct{ div, i int32 }

var _ Roster = (*loaded)(nil)

// LoadRosterFiles is LoadRoster on the named files. An empty path means the
// roster has none of that kind.
func LoadRosterFiles(t *Tree, peoplePath, devicesPath, householdsPath string) (Roster, error) {
	var readers [3]io.Reader
	for i, path := range []string{peoplePath, devicesPath, householdsPath} {
		if path == "" {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("roster: %w", err)
		}
		defer f.Close()
		readers[i] = f
	}
	return LoadRoster(t, readers[0], readers[1], readers[2])
}

var (
	peopleHeader     = PeopleColumns
	devicesHeader    = DeviceColumns
	householdsHeader = HouseholdColumns
)

// LoadRoster reads a roster for the divisions of t from CSV with these headers
// (a nil reader means none of that kind):
//
//	people:     id,name,phone,wechat_openid,wecom_userid,role,division
//	devices:    id,name,kind,division,platform_id
//	households: id,head,address,phone,category,division,grid_worker
//
// Phone numbers are 11-digit mainland mobile numbers and may carry a +86 or 86
// prefix, which is dropped. Every problem in the three files is reported at
// once, each naming the file kind, the line and what to fix.
func LoadRoster(t *Tree, people, devices, households io.Reader) (Roster, error) {
	n := t.Len()
	l := &loaded{
		tree:        t,
		people:      make([][]Person, n),
		devices:     make([][]Device, n),
		households:  make([][]Household, n),
		counts:      make([]Counts, n),
		byID:        make(map[string]personAt),
		byPhone:     make(map[string]personAt),
		byHousehold: make(map[string]personAt),
	}
	var errs []error

	// Grid workers are remembered even from rows with other problems, so that
	// a bad phone number does not also make their households' rows wrong.
	gridWorkers := map[string]Role{}
	if people != nil {
		p := problems{kind: "people"}
		seen := map[string]int{}
		readCSV(&p, people, peopleHeader, func(line int, f []string) {
			ok := checkID(&p, line, "person", f[0], seen)
			x, errs := ParsePersonRow(t, f)
			if x.Role != "" && x.ID != "" {
				if _, dup := gridWorkers[x.ID]; !dup {
					gridWorkers[x.ID] = x.Role
				}
			}
			if !p.addRow(line, errs) || !ok {
				return
			}
			div := l.tree.byCode[x.Division]
			at := personAt{div, int32(len(l.people[div]))}
			l.byID[x.ID] = at
			if prev, ok := l.byPhone[x.Phone]; x.Phone != "" && (!ok || (!l.people[prev.div][prev.i].Role.Audience().Official() && x.Role.Audience().Official())) {
				l.byPhone[x.Phone] = at
			}
			l.people[div] = append(l.people[div], x)
		})
		errs = append(errs, p.errs()...)
	}
	if devices != nil {
		p := problems{kind: "devices"}
		seen := map[string]int{}
		readCSV(&p, devices, devicesHeader, func(line int, f []string) {
			ok := checkID(&p, line, "device", f[0], seen)
			x, errs := ParseDeviceRow(t, f)
			if p.addRow(line, errs) && ok {
				div := l.tree.byCode[x.Division]
				l.devices[div] = append(l.devices[div], x)
			}
		})
		errs = append(errs, p.errs()...)
	}
	if households != nil {
		p := problems{kind: "households"}
		seen := map[string]int{}
		readCSV(&p, households, householdsHeader, func(line int, f []string) {
			ok := checkID(&p, line, "household", f[0], seen)
			x, errs := ParseHouseholdRow(t, f)
			if x.GridWorker != "" {
				role, found := gridWorkers[x.GridWorker]
				if err := GridWorkerProblem(x.GridWorker, found, role, "the people file"); err != nil {
					errs = append(errs, &ColumnError{Column: "grid_worker", Message: err.Error()})
				}
			}
			if p.addRow(line, errs) && ok {
				div := l.tree.byCode[x.Division]
				l.byHousehold[x.ID] = personAt{div, int32(len(l.households[div]))}
				l.households[div] = append(l.households[div], x)
			}
		})
		errs = append(errs, p.errs()...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	for i := range n {
		c := &l.counts[i]
		for _, x := range l.people[i] {
			if x.Role == Resident {
				c.Residents++
			} else {
				c.Officials++
			}
			if x.WeChatOpenID != "" {
				c.WeChatFollowers++
			}
		}
		for _, x := range l.devices[i] {
			if x.Kind == Loudspeaker {
				c.Loudspeakers++
			} else {
				c.Screens++
			}
		}
		c.Households = len(l.households[i])
	}
	t.sumSubtrees(l.counts)
	return l, nil
}

// checkID reports whether id is usable and not yet seen, and records it.
func checkID(p *problems, line int, noun, id string, seen map[string]int) bool {
	if err := CheckID(noun, id); err != nil {
		p.add(line, err)
		return false
	}
	if first, dup := seen[id]; dup {
		p.add(line, DuplicateID(noun, id, "line", first))
		return false
	}
	seen[id] = line
	return true
}

// addRow records a row's problems and reports whether it had none.
func (p *problems) addRow(line int, errs []*ColumnError) bool {
	for _, e := range errs {
		p.add(line, e)
	}
	return len(errs) == 0
}

// mobile checks a mainland mobile number, 1[3-9] and 9 more digits, and drops
// a +86 or 86 prefix.
func mobile(s string) (string, error) {
	n := s
	if rest, ok := strings.CutPrefix(n, "+86"); ok {
		n = rest
	} else if len(n) == 13 && strings.HasPrefix(n, "86") {
		n = n[2:]
	}
	ok := len(n) == 11 && n[0] == '1' && n[1] >= '3' && n[1] <= '9'
	for i := 2; ok && i < len(n); i++ {
		ok = n[i] >= '0' && n[i] <= '9'
	}
	if !ok {
		return "", fmt.Errorf("phone %q is not an 11-digit mainland mobile number: write 1[3-9] and 9 more digits, optionally after +86", s)
	}
	return n, nil
}

// People implements Roster.
func (l *loaded) People(code string, fn func(Person) bool) {
	if i, ok := l.tree.byCode[code]; ok {
		for _, x := range l.people[i] {
			if !fn(x) {
				return
			}
		}
	}
}

// Devices implements Roster.
func (l *loaded) Devices(code string, fn func(Device) bool) {
	if i, ok := l.tree.byCode[code]; ok {
		for _, x := range l.devices[i] {
			if !fn(x) {
				return
			}
		}
	}
}

// Households implements Roster.
func (l *loaded) Households(code string, fn func(Household) bool) {
	if i, ok := l.tree.byCode[code]; ok {
		for _, x := range l.households[i] {
			if !fn(x) {
				return
			}
		}
	}
}

// Counts implements Roster.
func (l *loaded) Counts(code string) Counts {
	if i, ok := l.tree.byCode[code]; ok {
		return l.counts[i]
	}
	return Counts{}
}

// Person implements Roster.
func (l *loaded) Person(id string) (Person, bool) {
	at, ok := l.byID[id]
	if !ok {
		return Person{}, false
	}
	return l.people[at.div][at.i], true
}

// ByPhone implements Roster.
func (l *loaded) ByPhone(phone string) (Person, bool) {
	at, ok := l.byPhone[phone]
	if !ok {
		return Person{}, false
	}
	return l.people[at.div][at.i], true
}

// Household implements Roster.
func (l *loaded) Household(id string) (Household, bool) {
	at, ok := l.byHousehold[id]
	if !ok {
		return Household{}, false
	}
	return l.households[at.div][at.i], true
}
