package dispatcher

import (
	"context"
	"slices"
	"sync"
	"time"

	"warngate/duty"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// OnDuty says who is on duty (值班) in divisions at a time, as
// duty.Store.OnDutyIn does: for each division that a shift of its 值班表
// covers then, the shift's leader (带班领导) and its duty officers (值班员).
// A division absent from the answer has no shift at that time. A plan asks
// once for every county and township of the warning's areas.
type OnDuty func(ctx context.Context, divisions []string, at time.Time) (map[string]duty.Standing, error)

// Where an official was chosen from, as the 叫应 rows say it.
const (
	FromDuty = "duty" // the 值班表's shift at that time
	FromRole = "role" // the roster's holder of the role
)

// dutyRoster is a roster as a warning's 叫应 sees it at one time: at each
// county and township, the people on duty then stand in for the roster's
// holders of the leader and duty roles (county_leader and county_duty,
// township_leader and township_duty); everyone else is the roster's. A
// division whose 值班表 has no shift at that time keeps its role holders,
// and is remembered as such. It is for one plan or one check: it asks the
// duty store at most once per division.
type dutyRoster struct {
	region.Roster
	ctx    context.Context
	at     time.Time
	tree   *region.Tree
	onDuty OnDuty
	onErr  func(divisions []string, err error)

	mu       sync.Mutex
	shifts   map[string]*dutyShift // division → its shift, nil: none
	read     map[string]readShift  // shifts read from the duty store, asked for or read ahead
	serving  map[string]region.Person
	fallback []string // divisions that kept their role holders, in the order asked
}

// dutyShift is a division's shift as people standing in their roles.
type dutyShift struct{ people []region.Person }

// withDuty wraps a roster in the duty schedule at a time; without a duty
// store it is the roster itself.
func (d *Dispatcher) withDuty(ctx context.Context, r region.Roster, at time.Time) region.Roster {
	dr := d.dutyAt(ctx, at)
	if dr == nil {
		return r
	}
	dr.Roster = r
	return dr
}

// dutyAt is the duty schedule at a time, its roster still to be set; nil
// without a duty store.
func (d *Dispatcher) dutyAt(ctx context.Context, at time.Time) *dutyRoster {
	if d.onDuty == nil {
		return nil
	}
	return &dutyRoster{ctx: ctx, at: at, tree: d.tree, onDuty: d.onDuty,
		onErr: func(divisions []string, err error) {
			d.log.Warn("duty schedule not read: the roster's role holders are asked", "divisions", divisions, "err", err)
		},
		shifts: map[string]*dutyShift{}, read: map[string]readShift{}, serving: map[string]region.Person{}}
}

// dutyDivisions are the counties and townships a warning's areas touch:
// those above each area and those in it, whose officials a plan asks.
func dutyDivisions(tree *region.Tree, areas []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(dv *region.Division) {
		if _, _, ok := dutyRoles(dv.Level); ok && !seen[dv.Code] {
			seen[dv.Code] = true
			out = append(out, dv.Code)
		}
	}
	for _, a := range areas {
		for _, dv := range tree.Path(a) {
			add(dv)
		}
		tree.Walk(a, func(dv *region.Division) bool {
			add(dv)
			return true
		})
	}
	return out
}

// dutyRoles are the roles a shift fills at a level: its leader's, then its officers'.
func dutyRoles(l region.Level) (leader, officer region.Role, ok bool) {
	switch l {
	case region.County:
		return region.CountyLeader, region.CountyDuty, true
	case region.Township:
		return region.TownshipLeader, region.TownshipDuty, true
	}
	return "", "", false
}

// shift resolves a county's or township's shift, once.
func (r *dutyRoster) shift(code string) (*dutyShift, region.Role, region.Role, bool) {
	d, ok := r.tree.Get(code)
	if !ok {
		return nil, "", "", false
	}
	leaderRole, officerRole, ok := dutyRoles(d.Level)
	if !ok {
		return nil, "", "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, done := r.shifts[code]; !done {
		if _, ok := r.read[code]; !ok {
			r.fetch([]string{code})
		}
		if read := r.read[code]; read.err != nil || read.shift == nil {
			r.shifts[code] = nil
			r.fallback = append(r.fallback, code)
		} else {
			r.shifts[code] = r.stand(code, *read.shift)
		}
	}
	return r.shifts[code], leaderRole, officerRole, true
}

// readShift is a division's shift as read: nil when it has none.
type readShift struct {
	shift *duty.Standing
	err   error
}

// prefetch reads ahead, with one call to the duty store, the shifts of the
// counties and townships among codes. A shift read ahead counts only once
// a walk asks for its division, as one asked then would.
func (r *dutyRoster) prefetch(codes []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ask []string
	for _, code := range codes {
		if _, done := r.read[code]; done || slices.Contains(ask, code) {
			continue
		}
		if d, ok := r.tree.Get(code); ok {
			if _, _, ok := dutyRoles(d.Level); ok {
				ask = append(ask, code)
			}
		}
	}
	if len(ask) > 0 {
		r.fetch(ask)
	}
}

// fetch reads the shifts of divisions with one call to the duty store and
// keeps them in r.read; r.mu is held.
func (r *dutyRoster) fetch(codes []string) {
	all, err := r.onDuty(r.ctx, codes, r.at)
	if err != nil {
		r.onErr(codes, err)
	}
	for _, code := range codes {
		read := readShift{err: err}
		if st, ok := all[code]; ok {
			read.shift = &st
		}
		r.read[code] = read
	}
}

// stand puts a shift's people in the roles they stand in at a division.
func (r *dutyRoster) stand(code string, st duty.Standing) *dutyShift {
	d, _ := r.tree.Get(code)
	leaderRole, officerRole, _ := dutyRoles(d.Level)
	leader, officers := st.Leader, st.Duty
	s := &dutyShift{}
	stand := func(p region.Person, role region.Role) {
		if p.ID == "" || slices.ContainsFunc(s.people, func(x region.Person) bool { return x.ID == p.ID }) {
			return
		}
		p.Role, p.Division = role, code
		s.people = append(s.people, p)
		r.serving[p.ID] = p
	}
	stand(leader, leaderRole)
	for _, o := range officers {
		stand(o, officerRole)
	}
	// On a small township's night shift one person may be both the leader
	// and the only duty officer. They are asked once, as the leader (their
	// own silence goes up to the county), but the walk of the division's
	// people shows them in the duty officer's role: it is the duty officer
	// that the silence of the villages below is escalated to, and they are
	// the one on duty.
	if leader.ID != "" && onlyOfficer(officers, leader.ID) && len(s.people) > 0 && s.people[0].ID == leader.ID {
		s.people[0].Role = officerRole
	}
	return s
}

// onlyOfficer reports whether id is a shift's only duty officer.
func onlyOfficer(officers []region.Person, id string) bool {
	found := false
	for _, o := range officers {
		switch o.ID {
		case "":
		case id:
			found = true
		default:
			return false
		}
	}
	return found
}

// People implements region.Roster: at a county or township with a shift,
// the shift's people in their duty roles instead of the role holders, each
// once. A leader who is also the shift's only duty officer is listed as
// the duty officer (Person still gives their leader's role).
func (r *dutyRoster) People(code string, fn func(region.Person) bool) {
	s, leaderRole, officerRole, ok := r.shift(code)
	if !ok || s == nil {
		r.Roster.People(code, fn)
		return
	}
	for _, p := range s.people {
		if !fn(p) {
			return
		}
	}
	r.Roster.People(code, func(p region.Person) bool {
		if p.Role == leaderRole || p.Role == officerRole || r.standing(p.ID) {
			return true
		}
		return fn(p)
	})
}

func (r *dutyRoster) standing(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.serving[id]
	return ok
}

// Person implements region.Roster: someone on a shift this roster has
// resolved is seen in the role they stand in.
func (r *dutyRoster) Person(id string) (region.Person, bool) {
	r.mu.Lock()
	p, ok := r.serving[id]
	r.mu.Unlock()
	if ok {
		return p, true
	}
	return r.Roster.Person(id)
}

// sources says, of people, who was taken from a shift: person id → the role
// they stand in.
func (r *dutyRoster) sources() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.serving))
	for id, p := range r.serving {
		out[id] = string(p.Role)
	}
	return out
}

// fallbacks lists the divisions asked that had no shift.
func (r *dutyRoster) fallbacks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.fallback)
}

// recordDuty remembers, for a planned warning, which officials stood in for
// a role on a shift, and which divisions had nobody on duty so that their
// role holders were asked (in its progress and in a metric).
func (d *Dispatcher) recordDuty(ctx context.Context, w *warning.Warning, r region.Roster, officials []ledger.Official) error {
	dr, ok := r.(*dutyRoster)
	if !ok {
		return nil
	}
	if err := d.recordSources(ctx, w.ID, dr, officials); err != nil {
		return err
	}
	fb := dr.fallbacks()
	if err := d.ledger.MarkDutyFallback(ctx, w.ID, fb); err != nil {
		return err
	}
	for _, code := range fb {
		if dv, ok := d.tree.Get(code); ok {
			d.metrics.DutyFallback.WithLabelValues(string(dv.Level)).Inc()
		}
	}
	return nil
}

// recordSources records which of the officials stood in for a role on a shift.
func (d *Dispatcher) recordSources(ctx context.Context, warningID string, dr *dutyRoster, officials []ledger.Official) error {
	all := dr.sources()
	mine := map[string]string{}
	for _, o := range officials {
		if role, ok := all[o.PersonID]; ok {
			mine[o.PersonID] = role
		}
	}
	return d.ledger.SetOfficialSources(ctx, warningID, mine)
}
