package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"warngate/region"
	"warngate/warning"
)

// Batch is one provider call's worth of recipients: one channel, one audience.
type Batch struct {
	Channel    warning.Channel
	Audience   warning.Audience
	Recipients []warning.Recipient
}

// Group names a progress counter: deliveries on a channel to an audience in a division.
type Group struct {
	Channel  warning.Channel
	Audience warning.Audience
	Division string
}

// Summary is what a plan holds, counted.
type Summary struct {
	Rule string
	// Planned counts deliveries per group.
	Planned map[Group]int64
	// NoAddress counts people an audience includes who have no address on
	// one of its channels (a resident without a WeChat openid, say).
	NoAddress map[warning.Channel]map[warning.Audience]int64
	// Unreachable counts people an audience includes who have no address
	// on any of its channels: only a visit reaches them.
	Unreachable map[warning.Audience]int64
	Batches     int
	// Buckets is the plan's bucket directory: how many ledger buckets the
	// recipients of each kind and division (warning.BucketGroup) are
	// spread over. Whoever looks a delivery up by recipient finds its
	// bucket with it (warning.Bucket).
	Buckets map[string]int
	// Calls says who is called on the voice channel and when; nil when
	// the rule calls nobody.
	Calls *CallPlan
}

// CallPlan is the voice step of a plan: the officials called, when the
// first call goes, and how often they are called again until they confirm.
type CallPlan struct {
	// Officials counts the officials called, by audience (those with a phone).
	Officials map[warning.Audience]int64
	// After is when the first call goes after the message, to those who
	// have not confirmed by then; zero: with the message, planned as
	// deliveries of the voice channel.
	After time.Duration
	// Tries is how many times an official is called in all, Interval apart.
	Tries    int
	Interval time.Duration
}

// Total is the number of planned deliveries.
func (s *Summary) Total() int64 {
	var n int64
	for _, v := range s.Planned {
		n += v
	}
	return n
}

// ErrNoRule is returned when no rule matches a warning.
var ErrNoRule = errors.New("no policy rule matches the warning")

// Expand turns a warning into batches and hands each to emit as soon as it is
// full, so that no more than one batch per channel is held at a time. Emit
// owns the batch it is given. Officials come first, then devices, residents
// and call-list households, so that the people who must act hear first.
//
// A warning's areas cover their subtrees. The county and township officials
// above an area are told too: a village's warning is their business.
func (p *Policy) Expand(w *warning.Warning, tree *region.Tree, roster region.Roster, emit func(Batch) error) (*Summary, error) {
	return p.ExpandInBuckets(w, tree, roster, warning.BucketTarget, emit)
}

// ExpandInBuckets is Expand with the bucket target a warning's plan
// recorded (warning.BucketsFor): a plan run again and a resend give every
// recipient the bucket the first run gave them, where the ledger keeps
// their delivery.
func (p *Policy) ExpandInBuckets(w *warning.Warning, tree *region.Tree, roster region.Roster, target int, emit func(Batch) error) (*Summary, error) {
	rule := p.Rule(w)
	if rule == nil {
		return nil, fmt.Errorf("policy: %w (hazard %s, level %s)", ErrNoRule, w.Hazard, w.Level)
	}
	areas, err := topAreas(tree, w.Areas)
	if err != nil {
		return nil, err
	}
	e := &expander{
		policy: p, rule: rule, emit: emit, status: w.Status, tree: tree, roster: roster, target: target,
		sum: &Summary{Rule: rule.Name, Planned: map[Group]int64{}, NoAddress: map[warning.Channel]map[warning.Audience]int64{}, Unreachable: map[warning.Audience]int64{},
			Buckets: map[string]int{}},
		bufs: map[bufKey][]warning.Recipient{},
	}
	for a := range rule.Send {
		if rule.Calls(a) {
			e.sum.Calls = &CallPlan{Officials: map[warning.Audience]int64{}, After: p.CallAfter(rule, SentAt(w)),
				Tries: rule.CallTimes(), Interval: rule.CallInterval()}
			break
		}
	}

	// Officials of the divisions above each area, once each.
	above := map[string]bool{}
	for _, a := range areas {
		for _, d := range tree.Path(a.Code) {
			if d.Code != a.Code && (d.Level == region.County || d.Level == region.Township) {
				above[d.Code] = true
			}
		}
	}
	aboveCodes := make([]string, 0, len(above))
	for c := range above {
		aboveCodes = append(aboveCodes, c)
	}
	slices.Sort(aboveCodes)

	walk := func(fn func(d *region.Division) error) error {
		var err error
		for _, a := range areas {
			tree.Walk(a.Code, func(d *region.Division) bool {
				err = fn(d)
				return err == nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}
	officials := func(code string) error {
		var err error
		roster.People(code, func(pr region.Person) bool {
			if aud := pr.Role.Audience(); aud.Official() {
				err = e.person(pr, aud)
			}
			return err == nil
		})
		return err
	}

	for _, c := range aboveCodes {
		if err := officials(c); err != nil {
			return nil, err
		}
	}
	steps := []func(d *region.Division) error{
		func(d *region.Division) error { return officials(d.Code) },
		func(d *region.Division) error {
			var err error
			roster.Devices(d.Code, func(dv region.Device) bool {
				err = e.device(dv)
				return err == nil
			})
			return err
		},
		func(d *region.Division) error {
			var err error
			roster.People(d.Code, func(pr region.Person) bool {
				if pr.Role == region.Resident {
					err = e.person(pr, warning.Residents)
				}
				return err == nil
			})
			return err
		},
		func(d *region.Division) error {
			var err error
			roster.Households(d.Code, func(h region.Household) bool {
				err = e.household(h)
				return err == nil
			})
			return err
		},
	}
	for _, step := range steps {
		if err := walk(step); err != nil {
			return nil, err
		}
		if err := e.flushAll(); err != nil {
			return nil, err
		}
	}
	return e.sum, nil
}

// SentAt is when a warning's message goes out, for the night hours: when
// it was accepted (released), or issued when it is not yet.
func SentAt(w *warning.Warning) time.Time {
	if !w.Accepted.IsZero() {
		return w.Accepted
	}
	if !w.Issued.IsZero() {
		return w.Issued
	}
	return time.Now()
}

// topAreas resolves area codes and drops those inside another area. The
// province a tree may hang from is context, not jurisdiction: a code of it
// is refused as outside, as a code the tree does not have is.
func topAreas(tree *region.Tree, codes []string) ([]*region.Division, error) {
	set := map[string]bool{}
	var errs []error
	for i, c := range codes {
		d, ok := tree.Get(c)
		switch {
		case !ok:
			errs = append(errs, &warning.FieldError{Field: fmt.Sprintf("areas[%d]", i),
				Message: fmt.Sprintf("%s is not a division of %s, which this gateway warns; give the 12-digit code of a division in it", c, jurisdictionName(tree))})
			continue
		case d.Level == region.Province:
			errs = append(errs, &warning.FieldError{Field: fmt.Sprintf("areas[%d]", i),
				Message: fmt.Sprintf("%s is %s, the province: outside %s, which this gateway warns; name the city or its counties, townships and villages", c, d.Name, jurisdictionName(tree))})
			continue
		}
		set[c] = true
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	var out []*region.Division
	done := map[string]bool{}
	for _, c := range codes {
		if done[c] {
			continue
		}
		done[c] = true
		covered := false
		for _, d := range tree.Path(c) {
			if d.Code != c && set[d.Code] {
				covered = true
				break
			}
		}
		if !covered {
			d, _ := tree.Get(c)
			out = append(out, d)
		}
	}
	return out, nil
}

// jurisdictionName names what a tree's gateway warns: the divisions under
// its province, or its root, e.g. "昆明市 (530100000000)".
func jurisdictionName(tree *region.Tree) string {
	tops := []*region.Division{tree.Root()}
	if tops[0].Level == region.Province {
		tops = tops[0].Children
	}
	names := make([]string, len(tops))
	for i, d := range tops {
		names[i] = d.Name + " (" + d.Code + ")"
	}
	return strings.Join(names, ", ")
}

// CheckAreas reports every area code that is not a division of the tree, as
// field errors, so that the API can refuse a warning before storing it.
func CheckAreas(tree *region.Tree, codes []string) error {
	_, err := topAreas(tree, codes)
	return err
}

type bufKey struct {
	ch  warning.Channel
	aud warning.Audience
}

type expander struct {
	policy *Policy
	rule   *Rule
	emit   func(Batch) error
	sum    *Summary
	status warning.Status
	bufs   map[bufKey][]warning.Recipient
	order  []bufKey
	tree   *region.Tree
	roster region.Roster
	target int // recipients to a bucket (warning.BucketsFor)
	// lastGroup is the group of the last recipient given a bucket.
	lastGroup lastGroup
}

type lastGroup struct {
	aud      warning.Audience
	division string
	names    []string // the group's buckets
}

// bucket gives a recipient its ledger bucket. A village's people (its
// households, its devices) are spread over buckets of about the plan's
// target by the village's residents (households, devices)
// in the roster, a number that duty changes leave alone, so that a resend
// that expands the warning again finds the same buckets. The divisions
// above villages hold officials only, a bucket each.
//
// Recipients come division by division, each on a channel or two: the
// names of the last group's buckets are kept, so that most recipients get
// theirs without a lookup or a new string.
func (e *expander) bucket(r warning.Recipient) string {
	if l := &e.lastGroup; r.Audience == l.aud && r.Division == l.division && l.names != nil {
		return l.names[warning.BucketIndex(r.ID, len(l.names))]
	}
	g := warning.BucketGroup(r.Audience, r.Division)
	m := e.buckets(g, r)
	names := make([]string, m)
	for i := range names {
		names[i] = warning.BucketName(g, i)
	}
	e.lastGroup = lastGroup{aud: r.Audience, division: r.Division, names: names}
	return names[warning.BucketIndex(r.ID, m)]
}

// buckets is how many buckets group g of recipient r has.
func (e *expander) buckets(g string, r warning.Recipient) int {
	m, ok := e.sum.Buckets[g]
	if !ok {
		m = 1
		if d, found := e.tree.Get(r.Division); found && len(d.Children) == 0 {
			c := e.roster.Counts(r.Division)
			switch warning.BucketKind(r.Audience) {
			case 'h':
				m = warning.BucketsFor(c.Households, e.target)
			case 'd':
				m = warning.BucketsFor(c.Loudspeakers+c.Screens, e.target)
			default:
				m = warning.BucketsFor(c.Residents, e.target)
			}
		}
		e.sum.Buckets[g] = m
	}
	return m
}

func (e *expander) add(ch warning.Channel, aud warning.Audience, r warning.Recipient) error {
	if !e.allowed(aud, r.ID) {
		return nil
	}
	k := bufKey{ch, aud}
	buf, ok := e.bufs[k]
	if !ok {
		e.order = append(e.order, k)
	}
	if buf == nil {
		buf = make([]warning.Recipient, 0, e.policy.Batch(ch))
	}
	r.Bucket = e.bucket(r)
	buf = append(buf, r)
	e.sum.Planned[Group{ch, aud, r.Division}]++
	if len(buf) >= e.policy.Batch(ch) {
		e.bufs[k] = nil
		return e.flush(k, buf)
	}
	e.bufs[k] = buf
	return nil
}

// allowed applies drills' and tests' narrower audiences.
func (e *expander) allowed(aud warning.Audience, id string) bool {
	switch e.status {
	case warning.StatusExercise:
		return len(e.policy.DrillAudiences) == 0 || slices.Contains(e.policy.DrillAudiences, aud)
	case warning.StatusTest:
		return slices.Contains(e.policy.TestRecipients, id)
	}
	return true
}

func (e *expander) flush(k bufKey, buf []warning.Recipient) error {
	if len(buf) == 0 {
		return nil
	}
	e.sum.Batches++
	return e.emit(Batch{Channel: k.ch, Audience: k.aud, Recipients: buf})
}

func (e *expander) flushAll() error {
	for _, k := range e.order {
		buf := e.bufs[k]
		e.bufs[k] = nil
		if err := e.flush(k, buf); err != nil {
			return err
		}
	}
	return nil
}

func (e *expander) noAddress(ch warning.Channel, aud warning.Audience) {
	m := e.sum.NoAddress[ch]
	if m == nil {
		m = map[warning.Audience]int64{}
		e.sum.NoAddress[ch] = m
	}
	m[aud]++
}

func (e *expander) person(p region.Person, aud warning.Audience) error {
	chs := e.rule.Send[aud]
	reachable := false
	for _, ch := range chs {
		var addr string
		switch ch {
		case warning.SMS, warning.Voice:
			addr = p.Phone
		case warning.WeChat:
			addr = p.WeChatOpenID
		case warning.WeCom:
			addr = p.WeComUserID
		}
		if addr == "" {
			e.noAddress(ch, aud)
			continue
		}
		reachable = true
		if ch == warning.Voice && e.allowed(aud, p.ID) {
			e.sum.Calls.Officials[aud]++
			if e.sum.Calls.After > 0 {
				continue // called later by the 叫应 checks, if still unconfirmed
			}
		}
		if err := e.add(ch, aud, warning.Recipient{ID: p.ID, Address: addr, Audience: aud, Division: p.Division, Name: p.Name}); err != nil {
			return err
		}
	}
	if len(chs) > 0 && !reachable && e.allowed(aud, p.ID) {
		e.sum.Unreachable[aud]++
	}
	return nil
}

func (e *expander) device(d region.Device) error {
	aud, want := warning.Screens, warning.Screen
	if d.Kind == region.Loudspeaker {
		aud, want = warning.Loudspeakers, warning.Broadcast
	}
	for _, ch := range e.rule.Send[aud] {
		if ch != want {
			continue
		}
		if err := e.add(ch, aud, warning.Recipient{ID: d.ID, Address: d.Platform, Audience: aud, Division: d.Division, Name: d.Name}); err != nil {
			return err
		}
	}
	return nil
}

func (e *expander) household(h region.Household) error {
	if cats := e.rule.HouseholdCategories; len(cats) > 0 && !slices.Contains(cats, h.Category) {
		return nil
	}
	for _, ch := range e.rule.Send[warning.Households] {
		addr := h.GridWorker
		if ch == warning.SMS {
			addr = h.Phone
		}
		if addr == "" {
			e.noAddress(ch, warning.Households)
			continue
		}
		if err := e.add(ch, warning.Households, warning.Recipient{ID: h.ID, Address: addr, Audience: warning.Households, Division: h.Division, Name: h.Head}); err != nil {
			return err
		}
	}
	return nil
}
