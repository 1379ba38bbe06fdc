// Package duty keeps who is on duty (值班) in each division: the monthly
// 值班表 a county or township keeps, imported as shifts — a start, an end,
// the 带班领导 (leader of the shift) and the 值班员 (duty officers) — and the
// swaps and overrides a township or the bureau makes, which win over the
// schedule for their window. It answers who is on duty in a division at a
// given time.
//
// People are named by their roster id and checked against the current
// roster when a schedule is imported; their phones and accounts are looked
// up in the roster when asked who is on duty, so a phone changed since the
// import is the one used. It must not decide who receives a warning nor
// audit (its callers know who acts).
package duty

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/region"
)

// Beijing is the time zone of the sheets: a time written without an offset
// is Beijing time.
var Beijing = time.FixedZone("CST", 8*3600)

// Officer is someone named on a shift.
type Officer struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Shift is one stretch of duty in one division.
type Shift struct {
	Division string    `json:"division"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Leader   Officer   `json:"leader"`
	Duty     []Officer `json:"duty"`
	// Source is "schedule" for a shift of an imported 值班表, "override"
	// for a swap or an override, which wins over the schedule.
	Source string `json:"source"`
	// By is who imported the schedule or made the override, and Recorded
	// when; Reason says why an override was made.
	By       string    `json:"by,omitempty"`
	Recorded time.Time `json:"recorded,omitzero"`
	Reason   string    `json:"reason,omitempty"`
}

// Covers reports whether the shift holds time at.
func (s Shift) Covers(at time.Time) bool { return !at.Before(s.Start) && at.Before(s.End) }

// Sources of shifts.
const (
	FromSchedule = "schedule"
	FromOverride = "override"
)

// MaxShift is the longest shift: a week. A longer one is a typing mistake.
const MaxShift = 7 * 24 * time.Hour

// Options configure a Store.
type Options struct {
	// Prefix starts every key, as the ledger's do. Default "wg".
	Prefix string
	Tree   *region.Tree
	// Roster is the current roster, against which names are checked and
	// from which officers' details are taken.
	Roster func(ctx context.Context) (region.Roster, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store keeps shifts in Redis. It is safe for concurrent use.
type Store struct {
	rdb redis.UniversalClient
	opt Options
}

// New returns a store.
func New(rdb redis.UniversalClient, o Options) *Store {
	if o.Prefix == "" {
		o.Prefix = "wg"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{rdb: rdb, opt: o}
}

// Keys: one sorted set of shifts per division and source, by start time.
// They share a hash tag, so that an import replacing several divisions'
// shifts is one transaction in a Redis Cluster too; a city's month of
// shifts is well under a megabyte.
func (s *Store) key(source, division string) string {
	t := "s"
	if source == FromOverride {
		t = "o"
	}
	return s.opt.Prefix + ":{duty}:" + t + ":" + division
}

func encode(sh Shift) string {
	b, _ := json.Marshal(sh)
	return string(b)
}

func decode(member string) (Shift, bool) {
	var sh Shift
	if err := json.Unmarshal([]byte(member), &sh); err != nil {
		return Shift{}, false
	}
	return sh, true
}

// around reads the shifts of one source that may cover [from, to): those
// starting before to and at most MaxShift before from.
func (s *Store) around(ctx context.Context, source, division string, from, to time.Time) ([]Shift, []string, error) {
	members, err := s.rdb.ZRangeByScore(ctx, s.key(source, division), &redis.ZRangeBy{
		Min: strconv.FormatInt(from.Add(-MaxShift).UnixMilli(), 10),
		Max: "(" + strconv.FormatInt(to.UnixMilli(), 10),
	}).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("duty: read %s: %w", division, err)
	}
	var shifts []Shift
	var raw []string
	for _, m := range members {
		if sh, ok := decode(m); ok && sh.End.After(from) {
			shifts = append(shifts, sh)
			raw = append(raw, m)
		}
	}
	return shifts, raw, nil
}

// ErrNoShift is returned when nobody is on duty at a time in a division:
// no shift of its 值班表 or override covers it.
var ErrNoShift = errors.New("no shift covers this time")

// Now returns the shift covering at in a division: an override, the most
// recently made when several cover it, else the schedule's shift.
func (s *Store) Now(ctx context.Context, division string, at time.Time) (Shift, error) {
	shifts, err := s.nowIn(ctx, []string{division}, at)
	if err != nil {
		return Shift{}, err
	}
	sh, ok := shifts[division]
	if !ok {
		return Shift{}, fmt.Errorf("%s at %s: %w", division, at.In(Beijing).Format("2006-01-02 15:04"), ErrNoShift)
	}
	return sh, nil
}

// nowIn is Now for many divisions in one round trip: the shift covering
// at in each division that has one.
func (s *Store) nowIn(ctx context.Context, divisions []string, at time.Time) (map[string]Shift, error) {
	by := &redis.ZRangeBy{
		Min: strconv.FormatInt(at.Add(-MaxShift).UnixMilli(), 10),
		Max: "(" + strconv.FormatInt(at.Add(time.Millisecond).UnixMilli(), 10),
	}
	pl := s.rdb.Pipeline()
	overrides := make([]*redis.StringSliceCmd, len(divisions))
	schedules := make([]*redis.StringSliceCmd, len(divisions))
	for i, d := range divisions {
		overrides[i] = pl.ZRangeByScore(ctx, s.key(FromOverride, d), by)
		schedules[i] = pl.ZRangeByScore(ctx, s.key(FromSchedule, d), by)
	}
	if _, err := pl.Exec(ctx); err != nil {
		return nil, fmt.Errorf("duty: read the shifts of %d divisions: %w", len(divisions), err)
	}
	out := make(map[string]Shift)
	for i, d := range divisions {
		if sh, ok := covering(overrides[i].Val(), schedules[i].Val(), at); ok {
			out[d] = sh
		}
	}
	return out, nil
}

// covering picks, of a division's overrides and schedule shifts, the one
// that holds at: the most recently made override covering it, else the
// schedule's shift.
func covering(overrides, schedule []string, at time.Time) (Shift, bool) {
	var best *Shift
	for _, m := range overrides {
		if o, ok := decode(m); ok && o.Covers(at) && (best == nil || o.Recorded.After(best.Recorded)) {
			best = &o
		}
	}
	if best != nil {
		return *best, true
	}
	for _, m := range schedule {
		if sh, ok := decode(m); ok && sh.Covers(at) {
			return sh, true
		}
	}
	return Shift{}, false
}

// Standing is who is on duty in a division at a time, as people of the
// current roster: the shift's leader and duty officers, and the shift.
type Standing struct {
	Leader region.Person
	Duty   []region.Person
	Shift  Shift
}

// OnDuty says who is on duty in a division at a time, as people of the
// current roster: the shift's leader, its duty officers, and the shift. ok
// is false when no shift covers the time. Someone a shift names who has
// left the roster is returned with the id and name the shift gives and no
// way to reach them.
func (s *Store) OnDuty(ctx context.Context, division string, at time.Time) (leader region.Person, duty []region.Person, shift Shift, ok bool, err error) {
	all, err := s.OnDutyIn(ctx, []string{division}, at)
	if err != nil {
		return region.Person{}, nil, Shift{}, false, err
	}
	st, ok := all[division]
	return st.Leader, st.Duty, st.Shift, ok, nil
}

// OnDutyIn is OnDuty for many divisions at once, in two Redis round trips
// whatever their number (the shifts, then the roster's version): a plan
// asks it for every county and township of a warning's areas. A division
// with no shift covering at is absent from the map.
func (s *Store) OnDutyIn(ctx context.Context, divisions []string, at time.Time) (map[string]Standing, error) {
	if len(divisions) == 0 {
		return map[string]Standing{}, nil
	}
	shifts, err := s.nowIn(ctx, divisions, at)
	if err != nil || len(shifts) == 0 {
		return map[string]Standing{}, err
	}
	r, err := s.opt.Roster(ctx)
	if err != nil {
		return nil, err
	}
	person := func(o Officer) region.Person {
		if p, ok := r.Person(o.ID); ok {
			return p
		}
		return region.Person{ID: o.ID, Name: o.Name}
	}
	out := make(map[string]Standing, len(shifts))
	for d, sh := range shifts {
		st := Standing{Leader: person(sh.Leader), Shift: sh}
		for _, o := range sh.Duty {
			st.Duty = append(st.Duty, person(o))
		}
		out[d] = st
	}
	return out, nil
}

// Shifts lists the schedule's shifts and the overrides of a division that
// overlap [from, to), by start.
func (s *Store) Shifts(ctx context.Context, division string, from, to time.Time) ([]Shift, error) {
	var out []Shift
	for _, src := range []string{FromSchedule, FromOverride} {
		shifts, _, err := s.around(ctx, src, division, from, to)
		if err != nil {
			return nil, err
		}
		out = append(out, shifts...)
	}
	slices.SortStableFunc(out, func(a, b Shift) int { return a.Start.Compare(b.Start) })
	return out, nil
}
