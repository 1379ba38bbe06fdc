package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// report sums up how a warning went — for drills (演练) above all, which
// every township and village must hold once a year: who confirmed and how
// fast, who never did, what was delivered, which checklists were worked.
func (s *server) report(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	ctx := c.Request.Context()
	officials, err := s.Ledger.Officials(ctx, w.ID)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	calls, err := s.Ledger.Calls(ctx, w.ID)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	p, total, err := s.progressFor(c, w)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	type township struct {
		Code      string           `json:"code"`
		Name      string           `json:"name"`
		Counts    ledger.AckCounts `json:"acknowledgements"`
		Unreached []string         `json:"unreached,omitempty"`
	}
	var times []time.Duration
	var counts ledger.AckCounts
	towns := map[string]*township{}
	me := principalOf(c)
	for _, o := range officials {
		if !s.covers(me, o.Division) {
			continue
		}
		key := o.Division
		if t, ok := s.Tree.Ancestor(o.Division, region.Township); ok {
			key = t.Code
		}
		tw := towns[key]
		if tw == nil {
			tw = &township{Code: key}
			if d, ok := s.Tree.Get(key); ok {
				tw.Name = d.Name
			}
			towns[key] = tw
		}
		counts.Expected++
		tw.Counts.Expected++
		switch o.State {
		case ledger.AckConfirmed:
			counts.Confirmed++
			tw.Counts.Confirmed++
			times = append(times, o.AckedAt.Sub(w.Accepted))
		case ledger.AckUnreached:
			counts.Unreached++
			tw.Counts.Unreached++
			name := o.PersonID
			if pr, ok := s.rosterOf(c, w).Person(o.PersonID); ok {
				name = pr.Name + "（" + pr.Role.Chinese() + "）"
			}
			if cs := calls[o.PersonID]; len(cs) > 0 {
				name += "：电话" + ledger.CallSummary(cs)
			}
			tw.Unreached = append(tw.Unreached, name)
		default:
			counts.Waiting++
			tw.Counts.Waiting++
		}
	}
	slices.Sort(times)
	pct := func(q float64) float64 {
		if len(times) == 0 {
			return 0
		}
		return times[min(len(times)-1, int(q*float64(len(times))))].Seconds()
	}
	list := make([]township, 0, len(towns))
	for _, t := range towns {
		list = append(list, *t)
	}
	slices.SortFunc(list, func(a, b township) int { return strings.Compare(a.Code, b.Code) })
	_, rolled, err := s.Dispatcher.ChecklistSummary(ctx, w)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	var done, items int
	for code, r := range rolled {
		if !s.covers(me, code) {
			continue
		}
		done += r.Done + r.NA
		items += r.Items
	}
	cov, err := s.reportCoverage(c, w)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{
		"coverage":         cov,
		"warning":          s.warningView(w),
		"drill":            w.Status != "actual",
		"deliveries":       total,
		"billing":          p.Billing,
		"calls":            callCounts(p.Calls),
		"acknowledgements": counts,
		"confirm_seconds":  gin.H{"p50": pct(0.5), "p90": pct(0.9), "max": pct(1)},
		"townships":        list,
		"checklists":       gin.H{"items": items, "done_or_not_applicable": done},
	})
}

// reportCoverage is the coverage of the caller's division (the city for the
// bureau) by township: residents of the warning's area reached by at least
// one channel or a visit. A drill that reaches only officials shows its
// residents as not reached: what a real warning would still have to do.
func (s *server) reportCoverage(c *gin.Context, w *warning.Warning) (gin.H, error) {
	reach, err := s.Ledger.Coverage(c.Request.Context(), w.ID)
	if err != nil {
		return nil, err
	}
	code := principalOf(c).Division
	if code == "" {
		code = s.cityCode()
	}
	div, ok := s.Tree.Get(code)
	if !ok {
		div = s.Tree.Root()
	}
	rep := s.coverageOf(w, div, s.rosterOf(c, w), reach)
	return gin.H{"division": rep.Division, "people": rep.People, "reached": rep.Reached, "unreached": rep.Unreached,
		"share": rep.Share, "townships": rep.Townships}, nil
}
