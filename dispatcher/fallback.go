package dispatcher

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// TypeFallback is the task that, once a warning's fallback_after passes,
// puts every resident no electronic channel reached on their village's call
// list, for a grid worker to visit.
const TypeFallback = "escalate:fallback"

// fallbackTaskID is the fallback check's task id: one per warning.
func fallbackTaskID(warningID string) string { return "fallback/" + warningID }

// scheduleFallback queues the fallback check of a warning that reaches
// residents under a rule with fallback_after. Drills and tests do not
// reach residents, and make no visits.
func (d *Dispatcher) scheduleFallback(ctx context.Context, w *warning.Warning) error {
	rule := d.policy.Rule(w)
	if rule == nil || rule.FallbackAfter <= 0 || w.Status != warning.StatusActual || len(rule.Send[warning.Residents]) == 0 {
		return nil
	}
	return d.enqueueTimer(ctx, TypeFallback, fallbackTaskID(w.ID),
		timerAt(w.ID, w.Accepted.Add(rule.FallbackAfter.Std())))
}

func (d *Dispatcher) fallbackTask(ctx context.Context, t *asynq.Task) error {
	p, err := decodeTimer(t)
	if err != nil {
		return err
	}
	if err := d.awaitDue(ctx, p.due()); err != nil {
		return err
	}
	_, err = d.CheckFallback(ctx, p.WarningID)
	return err
}

// CheckFallback puts every resident of a live warning whom no channel has
// reached on their village's call list, assigned to the village's grid
// workers in turn, with the reasons each channel gives (用户关机, 无微信, …)
// and a phone when one is known. Residents listed already stay as they are.
// It returns how many it added.
func (d *Dispatcher) CheckFallback(ctx context.Context, warningID string) (int, error) {
	w, err := d.ledger.Warning(ctx, warningID)
	if err != nil {
		return 0, err
	}
	now := d.now()
	rule := d.policy.Rule(w)
	if !w.Live(now) {
		// Nobody is listed for a warning no longer in force: the residents
		// named for a check are forgotten.
		return 0, d.ledger.DropCandidates(ctx, w.ID, 0)
	}
	if rule == nil || rule.FallbackAfter <= 0 {
		return 0, nil
	}
	chs := rule.Send[warning.Residents]
	// Before the deadline only those whom every channel failed for good
	// are listed: nothing more will reach them. Such a resident was named
	// a candidate when their last channel failed, so an early check looks
	// at the candidates only (all residents for AllResidents); the
	// deadline's looks at everyone.
	early := now.Before(w.Accepted.Add(rule.FallbackAfter.Std()))
	roster := d.rosterFor(ctx, w)
	var taken []string
	var read int64
	var only map[string]map[string]bool // division → candidates; nil: everyone
	if early {
		if taken, read, err = d.ledger.Candidates(ctx, w.ID); err != nil {
			return 0, err
		}
		if !slices.Contains(taken, ledger.AllResidents) {
			only = map[string]map[string]bool{}
			for _, id := range taken {
				if p, ok := roster.Person(id); ok && p.Role == region.Resident {
					if only[p.Division] == nil {
						only[p.Division] = map[string]bool{}
					}
					only[p.Division][id] = true
				}
			}
		}
	}
	// Grid workers take residents in turn, counting those an earlier check
	// gave them.
	listed, err := d.ledger.Fallback(ctx, w.ID)
	if err != nil {
		return 0, err
	}
	load := map[string]int{}
	for _, e := range listed {
		load[e.GridWorker]++
	}
	// Village by village (the candidates' villages, or every one), the
	// residents' deliveries read a few thousand at a time.
	var entries []ledger.FallbackEntry
	var people []region.Person
	workers := map[string][]region.Person{}
	flush := func() error {
		add, err := d.unreachedAmong(ctx, w, chs, people, workers, now, early, listed, load)
		entries = append(entries, add...)
		people, workers = people[:0], map[string][]region.Person{}
		return err
	}
	visit := func(code string, only map[string]bool) error {
		people = append(people, residentsOf(roster, code, only, workers)...)
		if len(people) >= fallbackReadAtOnce {
			return flush()
		}
		return nil
	}
	if only != nil {
		for _, code := range slices.Sorted(maps.Keys(only)) {
			if err := visit(code, only[code]); err != nil {
				return 0, err
			}
		}
	} else {
		for _, area := range w.Areas {
			d.tree.Walk(area, func(div *region.Division) bool {
				err = visit(div.Code, nil)
				return err == nil
			})
			if err != nil {
				return 0, err
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	n, err := d.ledger.AddFallback(ctx, w.ID, entries)
	if err != nil {
		return n, err
	}
	// Those looked at are forgotten once what they gave is listed; one
	// named again meanwhile stays for the next check. The deadline's
	// check leaves none for later.
	if !early {
		read = 0
	}
	if err := d.ledger.DropCandidates(ctx, w.ID, read); err != nil {
		return n, err
	}
	if n > 0 {
		d.metrics.FallbackVisits.WithLabelValues(w.Level.String()).Add(float64(n))
		d.log.Info("residents put on call lists", "warning_id", w.ID, "count", n)
		err = d.ledger.Audit(ctx, ledger.AuditEntry{Who: "system", Action: "fallback", WarningID: w.ID,
			Detail: fmt.Sprintf("%d residents not reached by any channel put on their villages' call lists", n)})
	}
	return n, err
}

// fallbackReadAtOnce is about how many residents a fallback check reads
// the deliveries of at once.
var fallbackReadAtOnce = 4000

// residentsOf returns the residents of a division (those only names, when
// not nil) and adds its grid workers to workers, by division.
func residentsOf(roster region.Roster, code string, only map[string]bool, workers map[string][]region.Person) []region.Person {
	var people []region.Person
	roster.People(code, func(p region.Person) bool {
		switch p.Role {
		case region.Resident:
			if only == nil || only[p.ID] {
				people = append(people, p)
			}
		case region.GridWorker:
			workers[code] = append(workers[code], p)
		}
		return true
	})
	return people
}

// unreachedAmong lists the residents of people (of any divisions) whom no
// channel reached, as call-list entries; with early, only those whom every
// channel failed for good. Residents in listed are left out; with load
// (residents listed per grid worker) each is given to the grid worker of
// their own division (workers) who has the fewest. The deliveries of all
// are read in a few pipelined round trips.
func (d *Dispatcher) unreachedAmong(ctx context.Context, w *warning.Warning, chs []warning.Channel, people []region.Person, workers map[string][]region.Person,
	now time.Time, early bool, listed map[string]ledger.FallbackEntry, load map[string]int) ([]ledger.FallbackEntry, error) {
	if len(people) == 0 {
		return nil, nil
	}
	entries := make([]ledger.Entry, len(people))
	for i, p := range people {
		entries[i] = ledger.Entry{RecipientID: p.ID, Audience: warning.Residents, Division: p.Division}
	}
	reach, err := d.ledger.PersonReach(ctx, w.ID, entries)
	if err != nil {
		return nil, err
	}
	var left []int
	var leftEntries []ledger.Entry
	for i, r := range reach {
		if len(r) == 0 {
			left = append(left, i)
			leftEntries = append(leftEntries, entries[i])
		}
	}
	if len(left) == 0 {
		return nil, nil
	}
	reasons := make([][]string, len(left))
	hopeless := make([]bool, len(left))
	for k := range hopeless {
		hopeless[k] = true
	}
	for _, ch := range chs {
		dvs, err := d.ledger.DeliveriesOf(ctx, w.ID, ch, leftEntries)
		if err != nil {
			return nil, err
		}
		for k, i := range left {
			reason, final := unreachedReason(people[i], ch, dvs[k])
			reasons[k] = append(reasons[k], reason)
			hopeless[k] = hopeless[k] && final
		}
	}
	var out []ledger.FallbackEntry
	for k, i := range left {
		if early && !hopeless[k] {
			continue
		}
		if _, ok := listed[people[i].ID]; ok {
			continue
		}
		p := people[i]
		e := ledger.FallbackEntry{PersonID: p.ID, Name: p.Name, Village: p.Division, Phone: p.Phone, Reasons: reasons[k], At: now}
		if gws := workers[p.Division]; len(gws) > 0 && load != nil {
			// the grid worker with the fewest, the first of them on a tie
			gw := gws[0].ID
			for _, x := range gws[1:] {
				if load[x.ID] < load[gw] {
					gw = x.ID
				}
			}
			e.GridWorker = gw
			load[gw]++
		}
		out = append(out, e)
	}
	return out, nil
}

// unreachedReason says why a channel has not reached a resident, as grid
// workers read it: the provider's reason for a failure (用户关机), 无微信 or
// 无手机号 for a resident without the address, else that it is not yet
// delivered. final says that the channel will not reach them.
func unreachedReason(p region.Person, ch warning.Channel, dv ledger.Delivery) (reason string, final bool) {
	switch {
	case dv.State == warning.Failed && dv.Extra != "":
		return dv.Extra, true
	case dv.State == warning.Failed:
		return ch.Chinese() + "发送失败", true
	case dv.State == warning.Expired:
		return ch.Chinese() + "已过期", true
	case dv.Audience == "" && dv.State == warning.Queued && !dv.Reopened:
		switch {
		case ch == warning.WeChat && p.WeChatOpenID == "":
			return "无微信", true
		case ch == warning.SMS && p.Phone == "":
			return "无手机号", true
		case ch == warning.WeCom && p.WeComUserID == "":
			return "无企业微信", true
		}
	}
	return ch.Chinese() + "未送达", false
}

// mayBeResident tells whether a delivery report's recipient may be a
// resident, whose failure a fallback check looks at: an official's is
// not (a report names no audience; the roster knows, and one the roster
// no longer knows may be).
func (d *Dispatcher) mayBeResident(id string) bool {
	p, ok := d.roster.Person(id)
	return !ok || p.Role == region.Resident
}

// fallbackSoonAfter is how long after a failure is recorded the residents
// whom every channel failed are listed: failures that come together are
// listed together.
const fallbackSoonAfter = 30 * time.Second

// fallbackSoon queues a fallback check shortly, before the deadline, for a
// warning whose deliveries to residents failed: residents whom every
// channel failed for good need not wait for fallback_after. The check
// looks at the residents named (those a channel failed), or at every
// resident when none is named (a plan with residents no channel has an
// address for). One check per warning and 30 seconds at most; the task id
// says so, and the residents named meanwhile wait in the ledger for it.
func (d *Dispatcher) fallbackSoon(ctx context.Context, w *warning.Warning, residents ...string) {
	rule := d.policy.Rule(w)
	if rule == nil || rule.FallbackAfter <= 0 || w.Status != warning.StatusActual || len(rule.Send[warning.Residents]) == 0 {
		return
	}
	now := d.now()
	due := now.Add(fallbackSoonAfter)
	if !due.Before(w.Accepted.Add(rule.FallbackAfter.Std())) {
		d.fallbackSlots.Delete(w.ID) // the deadline's check lists them all
		return
	}
	if len(residents) == 0 {
		residents = []string{ledger.AllResidents}
	}
	if err := d.ledger.AddCandidates(ctx, w.ID, residents); err != nil {
		// The deadline's check still finds them.
		d.log.Warn("fallback candidates not recorded", "warning_id", w.ID, "err", err)
	}
	slot := now.UnixMilli() / fallbackSoonAfter.Milliseconds()
	if last, ok := d.fallbackSlots.Load(w.ID); ok && last.(int64) == slot {
		return
	}
	d.fallbackSlots.Store(w.ID, slot)
	id := fmt.Sprintf("%s/soon/%d", fallbackTaskID(w.ID), slot)
	if err := d.enqueueTimer(ctx, TypeFallback, id, timerAt(w.ID, due)); err != nil {
		d.log.Warn("fallback check not queued", "warning_id", w.ID, "err", err)
	}
}

// Unreached lists the residents of one division (not its subtree) whom no
// channel has reached yet, with the reasons each channel gives; it costs a
// Redis call for the division and one per channel, never one per resident.
func (d *Dispatcher) Unreached(ctx context.Context, w *warning.Warning, roster region.Roster, code string) ([]ledger.FallbackEntry, error) {
	var chs []warning.Channel
	if rule := d.policy.Rule(w); rule != nil {
		chs = rule.Send[warning.Residents]
	}
	workers := map[string][]region.Person{}
	people := residentsOf(roster, code, nil, workers)
	return d.unreachedAmong(ctx, w, chs, people, workers, d.now(), false, nil, nil)
}
