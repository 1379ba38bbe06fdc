package api

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"warngate/channels"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// coverageRow is one division's coverage: residents of the warning's area,
// reached by at least one channel, and not yet.
type coverageRow struct {
	Code      string  `json:"code"`
	Name      string  `json:"name"`
	People    int64   `json:"people"`
	Reached   int64   `json:"reached"`
	Unreached int64   `json:"unreached"`
	Share     float64 `json:"share"`
	// Devices counts the loudspeakers and screens that played or showed
	// the warning: the village's coverage, never a person's.
	Devices int64 `json:"devices"`
	// Township is a village's township.
	Township string `json:"township,omitempty"`
}

func (r *coverageRow) add(o coverageRow) {
	r.People += o.People
	r.Reached += o.Reached
	r.Unreached += o.Unreached
	r.Devices += o.Devices
}

func (r *coverageRow) settle() {
	r.Unreached = max(0, r.People-r.Reached)
	r.Share = 0
	if r.People > 0 {
		r.Share = float64(min(r.Reached, r.People)) / float64(r.People)
	}
}

// unreachedPerson is a resident no channel has reached.
type unreachedPerson struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Village    string   `json:"village"`
	Reasons    []string `json:"reasons"`
	OnCallList bool     `json:"on_call_list"`
	Phone      string   `json:"phone,omitempty"` // masked
	GridWorker string   `json:"grid_worker,omitempty"`
}

// coverageReport is a warning's coverage in a division.
type coverageReport struct {
	WarningID       string            `json:"warning_id"`
	Division        string            `json:"division"`
	Name            string            `json:"name"`
	People          int64             `json:"people"`
	Reached         int64             `json:"reached"`
	Unreached       int64             `json:"unreached"`
	Share           float64           `json:"share"`
	Townships       []coverageRow     `json:"townships"`
	Villages        []coverageRow     `json:"villages"`
	UnreachedPeople []unreachedPerson `json:"unreached_people,omitempty"`
	// More says that UnreachedPeople was cut at the limit.
	More bool `json:"more,omitempty"`
}

// coverageLimit bounds the unreached people listed in one answer.
const coverageLimit = 5000

// coverage answers GET /api/v1/warnings/:id/coverage?division=CODE
// [&list=unreached&limit=N]: per village and township of the warning's area
// inside the division, residents, reached and not. The figures come from
// the ledger's counters and the roster version the warning was planned
// with, in one Redis call; the list costs a call or three per village
// listed, never one per person.
func (s *server) coverage(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	code := c.Query("division")
	if code == "" {
		code = principalOf(c).Division
	}
	if code == "" {
		code = s.cityCode()
	}
	div, ok := s.Tree.Get(code)
	if !ok {
		fail(c, http.StatusBadRequest, "invalid_query", "division: give the 12-digit code of a division", "division")
		return
	}
	list := c.Query("list")
	if list != "" && list != "unreached" {
		fail(c, http.StatusBadRequest, "invalid_query", "list: the only list is unreached", "list")
		return
	}
	limit := coverageLimit
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > coverageLimit {
			fail(c, http.StatusBadRequest, "invalid_query", "limit: 1 to "+strconv.Itoa(coverageLimit), "limit")
			return
		}
		limit = n
	}
	ctx := c.Request.Context()
	reach, err := s.Ledger.Coverage(ctx, w.ID)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	roster := s.rosterOf(c, w)
	rep := s.coverageOf(w, div, roster, reach)
	if list == "unreached" {
		if err := s.listUnreached(c, w, roster, rep, limit); err != nil {
			fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
			return
		}
	}
	c.JSON(http.StatusOK, rep)
}

// cityCode is the code of the city the gateway warns, not of the province
// its division tree may hang from.
func (s *server) cityCode() string {
	root := s.Tree.Root()
	if root.Level == region.Province && len(root.Children) == 1 {
		root = root.Children[0]
	}
	return root.Code
}

// coverageOf sums the coverage of the warning's area inside div.
func (s *server) coverageOf(w *warning.Warning, div *region.Division, roster region.Roster, reach map[string]ledger.DivisionReach) *coverageReport {
	rep := &coverageReport{WarningID: w.ID, Division: div.Code, Name: div.Name, Townships: []coverageRow{}, Villages: []coverageRow{}}
	// The parts of the warning's areas inside div: an area inside div
	// whole, or div itself when an area covers it.
	var tops []string
	for _, a := range w.Areas {
		switch {
		case s.Tree.Covers(div.Code, a):
			tops = append(tops, a)
		case s.Tree.Covers(a, div.Code):
			tops = append(tops, div.Code)
		}
	}
	seen := map[string]bool{}
	townships := map[string]int{}
	var total coverageRow
	for _, top := range tops {
		s.Tree.Walk(top, func(d *region.Division) bool {
			if seen[d.Code] || len(d.Children) > 0 {
				return true
			}
			seen[d.Code] = true
			r := reach[d.Code]
			row := coverageRow{Code: d.Code, Name: d.Name, People: int64(roster.Counts(d.Code).Residents), Reached: r.Reached, Devices: r.Devices}
			row.settle()
			if t, ok := s.Tree.Ancestor(d.Code, region.Township); ok {
				row.Township = t.Code
				i, ok := townships[t.Code]
				if !ok {
					i = len(rep.Townships)
					townships[t.Code] = i
					rep.Townships = append(rep.Townships, coverageRow{Code: t.Code, Name: t.Name})
				}
				rep.Townships[i].add(row)
			}
			rep.Villages = append(rep.Villages, row)
			total.add(row)
			return true
		})
	}
	for i := range rep.Townships {
		rep.Townships[i].settle()
	}
	total.settle()
	rep.People, rep.Reached, rep.Unreached, rep.Share = total.People, total.Reached, total.Unreached, total.Share
	return rep
}

// listUnreached adds the residents not reached, village by village, up to
// limit.
func (s *server) listUnreached(c *gin.Context, w *warning.Warning, roster region.Roster, rep *coverageReport, limit int) error {
	ctx := c.Request.Context()
	listed, err := s.Ledger.Fallback(ctx, w.ID)
	if err != nil {
		return err
	}
	rep.UnreachedPeople = []unreachedPerson{}
	for _, v := range rep.Villages {
		if v.Unreached == 0 {
			continue
		}
		if len(rep.UnreachedPeople) >= limit {
			rep.More = true
			break
		}
		left, err := s.Dispatcher.Unreached(ctx, w, roster, v.Code)
		if err != nil {
			return err
		}
		for _, e := range left {
			if len(rep.UnreachedPeople) >= limit {
				rep.More = true
				break
			}
			p := unreachedPerson{ID: e.PersonID, Name: e.Name, Village: e.Village, Reasons: e.Reasons}
			if e.Phone != "" {
				p.Phone = channels.MaskPhone(e.Phone)
			}
			if l, ok := listed[e.PersonID]; ok {
				p.OnCallList, p.Reasons = true, l.Reasons
				if gw, ok := roster.Person(l.GridWorker); ok {
					p.GridWorker = gw.Name
				}
			}
			rep.UnreachedPeople = append(rep.UnreachedPeople, p)
		}
	}
	return nil
}
