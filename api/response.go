package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/callsheet"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// The bureau's side of 叫应, checklists and call lists.

type officialView struct {
	PersonID     string    `json:"person_id"`
	Name         string    `json:"name"`
	Role         string    `json:"role"`
	RoleName     string    `json:"role_name"`
	Phone        string    `json:"phone,omitempty"`
	Division     string    `json:"division"`
	DivisionName string    `json:"division_name"`
	Township     string    `json:"township,omitempty"`
	State        string    `json:"state"`
	Tries        int       `json:"tries"`
	LastTry      time.Time `json:"last_try"`
	AckedAt      time.Time `json:"acked_at,omitzero"`
	Method       string    `json:"method,omitempty"`
	// From says how the official was chosen: "duty", standing in a role on
	// the 值班表's shift (Role is that role), or "role", as the roster's
	// holder of their role.
	From string `json:"from"`
	// Calls are the official's phone calls, in the order they ended, and
	// CallSummary what they came to (无人接听×3).
	Calls       []callView `json:"calls,omitempty"`
	CallSummary string     `json:"call_summary,omitempty"`
}

// callView is one call to an official.
type callView struct {
	CallID      string    `json:"call_id"`
	Outcome     string    `json:"outcome"`
	OutcomeName string    `json:"outcome_name"`
	Keys        string    `json:"keys,omitempty"`
	RingSeconds float64   `json:"ring_seconds"`
	TalkSeconds float64   `json:"talk_seconds"`
	Billed      int       `json:"billed_minutes"`
	Account     string    `json:"account,omitempty"`
	Ended       time.Time `json:"ended"`
}

// withCalls adds an official's calls to their view.
func withCalls(v *officialView, calls []ledger.CallRecord) {
	for _, c := range calls {
		v.Calls = append(v.Calls, callView{CallID: c.CallID, Outcome: string(c.Outcome), OutcomeName: c.Outcome.Chinese(), Keys: c.Keys,
			RingSeconds: c.Ring.Seconds(), TalkSeconds: c.Talk.Seconds(), Billed: c.Billed, Account: c.Account, Ended: c.Ended})
	}
	v.CallSummary = ledger.CallSummary(calls)
}

// officialView shows an official of a warning; sources names those who
// stood in for a role on a shift, with that role.
func (s *server) officialView(r region.Roster, sources map[string]string, o ledger.Official) officialView {
	v := officialView{PersonID: o.PersonID, Division: o.Division, State: o.State.String(), Tries: o.Tries, LastTry: o.LastTry, AckedAt: o.AckedAt, Method: o.Method,
		From: dispatcher.FromRole}
	if p, ok := r.Person(o.PersonID); ok {
		if role, onShift := sources[o.PersonID]; onShift {
			p.Role, v.From = region.Role(role), dispatcher.FromDuty
		}
		v.Name, v.Role, v.RoleName, v.Phone = p.Name, string(p.Role), p.Role.Chinese(), p.Phone
	}
	if d, ok := s.Tree.Get(o.Division); ok {
		v.DivisionName = d.Name
	}
	if t, ok := s.Tree.Ancestor(o.Division, region.Township); ok {
		v.Township = t.Code
	}
	return v
}

// acks lists who has and has not confirmed: ?state=waiting|confirmed|unreached&division=CODE.
func (s *server) acks(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	state, division := c.Query("state"), c.Query("division")
	switch state {
	case "", "waiting", "confirmed", "unreached":
	default:
		fail(c, http.StatusBadRequest, "invalid_query", "state: use waiting, confirmed or unreached", "state")
		return
	}
	officials, err := s.Ledger.Officials(c.Request.Context(), w.ID)
	var sources map[string]string
	if err == nil {
		sources, err = s.Ledger.OfficialSources(c.Request.Context(), w.ID)
	}
	var calls map[string][]ledger.CallRecord
	if err == nil {
		calls, err = s.Ledger.Calls(c.Request.Context(), w.ID)
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	var counts ledger.AckCounts
	out := []officialView{}
	me := principalOf(c)
	for _, o := range officials {
		if division != "" && !s.Tree.Covers(division, o.Division) || !s.covers(me, o.Division) {
			continue
		}
		counts.Expected++
		switch o.State {
		case ledger.AckConfirmed:
			counts.Confirmed++
		case ledger.AckUnreached:
			counts.Unreached++
		default:
			counts.Waiting++
		}
		if state == "" || o.State.String() == state {
			v := s.officialView(s.rosterOf(c, w), sources, o)
			withCalls(&v, calls[o.PersonID])
			out = append(out, v)
		}
	}
	slices.SortFunc(out, func(a, b officialView) int {
		if c := strings.Compare(a.Division, b.Division); c != 0 {
			return c
		}
		return strings.Compare(a.PersonID, b.PersonID)
	})
	c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "counts": counts, "officials": out})
}

// unreached is the 未叫应 list, by township.
func (s *server) unreached(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	officials, err := s.Ledger.Officials(c.Request.Context(), w.ID)
	var sources map[string]string
	if err == nil {
		sources, err = s.Ledger.OfficialSources(c.Request.Context(), w.ID)
	}
	var calls map[string][]ledger.CallRecord
	if err == nil {
		calls, err = s.Ledger.Calls(c.Request.Context(), w.ID)
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	type group struct {
		Township  string         `json:"township"`
		Name      string         `json:"name"`
		Officials []officialView `json:"officials"`
	}
	groups := map[string]*group{}
	me := principalOf(c)
	for _, o := range officials {
		if o.State != ledger.AckUnreached || !s.covers(me, o.Division) {
			continue
		}
		v := s.officialView(s.rosterOf(c, w), sources, o)
		withCalls(&v, calls[o.PersonID])
		key := v.Township
		if key == "" {
			key = o.Division
		}
		g := groups[key]
		if g == nil {
			g = &group{Township: key}
			if d, ok := s.Tree.Get(key); ok {
				g.Name = d.Name
			}
			groups[key] = g
		}
		g.Officials = append(g.Officials, v)
	}
	out := []group{}
	for _, g := range groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b group) int { return strings.Compare(a.Township, b.Township) })
	c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "townships": out})
}

type ackRequest struct {
	PersonID string `json:"person_id"`
}

// confirmByAPI lets an integration confirm for an official.
func (s *server) confirmByAPI(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	var req ackRequest
	body, ok := readBody(c, smallBody, "a confirmation")
	if !ok {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil || req.PersonID == "" {
		fail(c, http.StatusBadRequest, "invalid_request", `send {"person_id":"..."}`, "person_id")
		return
	}
	if p, ok := s.rosterOf(c, w).Person(req.PersonID); ok && !s.inside(c, p.Division, "person_id") {
		return
	}
	first, err := s.Dispatcher.Acknowledge(c.Request.Context(), w.ID, req.PersonID, "api", actorOf(c))
	if errors.Is(err, ledger.ErrNotAddressed) {
		fail(c, http.StatusNotFound, "not_addressed", req.PersonID+" was not asked to confirm this warning", "person_id")
		return
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"person_id": req.PersonID, "confirmed": true, "first": first})
}

func (s *server) escalations(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	steps, err := s.Ledger.Steps(c.Request.Context(), w.ID)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	me := principalOf(c)
	if me.Division != "" { // a step is seen where the person it concerns is
		steps = slices.DeleteFunc(steps, func(st ledger.Step) bool {
			p, ok := s.rosterOf(c, w).Person(st.PersonID)
			return !ok || !s.covers(me, p.Division)
		})
	}
	if steps == nil {
		steps = []ledger.Step{}
	}
	c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "steps": steps})
}

func (s *server) audit(c *gin.Context) {
	limit, err := strconv.Atoi(c.DefaultQuery("limit", "100"))
	if err != nil || limit < 1 || limit > 1000 {
		fail(c, http.StatusBadRequest, "invalid_query", "limit must be 1 to 1000", "limit")
		return
	}
	entries, err := s.Ledger.AuditLog(c.Request.Context(), c.Query("warning"), limit)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	if me := principalOf(c); me.Division != "" {
		// Below the city: entries about warnings that reach the caller's
		// division, nothing of the rest (sign-ins, other divisions' users).
		seen := map[string]bool{}
		entries = slices.DeleteFunc(entries, func(e ledger.AuditEntry) bool {
			if e.WarningID == "" {
				return true
			}
			ok, known := seen[e.WarningID]
			if !known {
				w, err := s.Ledger.Warning(c.Request.Context(), e.WarningID)
				ok = err == nil && s.touches(me, w)
				seen[e.WarningID] = ok
			}
			return !ok
		})
	}
	if entries == nil {
		entries = []ledger.AuditEntry{}
	}
	c.JSON(http.StatusOK, gin.H{"entries": entries})
}

// checklists: with ?division= one division's items, else the counts of
// every township (its own and its villages rolled up) and village.
func (s *server) checklists(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	ctx := c.Request.Context()
	if div := c.Query("division"); div != "" {
		entries, err := s.Dispatcher.Checklist(ctx, w, div)
		if errors.Is(err, ledger.ErrNotFound) {
			fail(c, http.StatusNotFound, "not_found", err.Error(), "division")
			return
		}
		if err != nil {
			fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
			return
		}
		c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "division": div, "items": entries})
		return
	}
	own, rolled, err := s.Dispatcher.ChecklistSummary(ctx, w)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	type row struct {
		Code  string                     `json:"code"`
		Name  string                     `json:"name"`
		Level string                     `json:"level"`
		Own   dispatcher.ChecklistCounts `json:"own"`
		Total dispatcher.ChecklistCounts `json:"total"`
	}
	var all dispatcher.ChecklistCounts
	out := []row{}
	me := principalOf(c)
	for code, c := range own {
		if !s.covers(me, code) {
			continue
		}
		d, _ := s.Tree.Get(code)
		r := row{Code: code, Name: d.Name, Level: string(d.Level), Own: c, Total: c}
		if d.Level == region.Township {
			r.Total = rolled[code]
		}
		out = append(out, r)
		all.Items += c.Items
		all.Done += c.Done
		all.NA += c.NA
		all.Pending += c.Pending
		all.Overdue += c.Overdue
	}
	slices.SortFunc(out, func(a, b row) int { return strings.Compare(a.Code, b.Code) })
	c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "total": all, "divisions": out})
}

type itemRequest struct {
	Status string `json:"status"`
	Note   string `json:"note"`
}

func (s *server) setItem(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	var req itemRequest
	body, ok := readBody(c, smallBody, "a checklist item")
	if !ok {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		fail(c, http.StatusBadRequest, "invalid_request", `send {"status":"done","note":"..."}`, "")
		return
	}
	st, err := ledger.ParseItemStatus(req.Status)
	if err != nil {
		fail(c, http.StatusUnprocessableEntity, "invalid_status", err.Error(), "status")
		return
	}
	err = s.Dispatcher.SetChecklistItem(c.Request.Context(), w, actorOf(c), c.Param("division"), c.Param("item"), st, req.Note)
	if errors.Is(err, ledger.ErrNotFound) {
		fail(c, http.StatusNotFound, "not_found", err.Error(), "item")
		return
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

// households lists a village's call list with marks: ?village=CODE.
func (s *server) households(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	village := c.Query("village")
	if d, ok := s.Tree.Get(village); !ok || d.Level != region.Village {
		fail(c, http.StatusBadRequest, "invalid_query", "village: give a village's 12-digit code", "village")
		return
	}
	rows, err := s.callList(c, w, village)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"warning_id": w.ID, "village": village, "households": rows})
}

type householdRow struct {
	ID         string       `json:"id"`
	Head       string       `json:"head"`
	Address    string       `json:"address"`
	Phone      string       `json:"phone,omitempty"`
	Category   string       `json:"category"`
	GridWorker string       `json:"grid_worker"`
	Delivery   string       `json:"delivery"`
	Mark       *ledger.Mark `json:"mark,omitempty"`
	// Source is "roster" for a household the roster lists, "fallback" for
	// a resident no channel reached in time, put on the list to be visited.
	Source string `json:"source"`
	// Reasons say why no channel reached a resident of the fallback list.
	Reasons []string `json:"reasons,omitempty"`
}

// callList is the call list of one village for a warning.
func (s *server) callList(c *gin.Context, w *warning.Warning, village string) ([]householdRow, error) {
	ctx := c.Request.Context()
	marks, err := s.Ledger.Marks(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	out := []householdRow{}
	roster := s.rosterOf(c, w)
	var hs []region.Household
	roster.Households(village, func(h region.Household) bool {
		hs = append(hs, h)
		return true
	})
	dvs, err := s.callListDeliveries(ctx, w, hs)
	if err != nil {
		return nil, err
	}
	for i, h := range hs {
		d := dvs[i]
		if d.State == warning.Queued && d.Audience == "" {
			continue
		}
		r := householdRow{ID: h.ID, Head: h.Head, Address: h.Address, Phone: h.Phone, Category: h.Category.Chinese(), Delivery: d.State.String(), Source: callsheet.SourceRoster}
		if gw, ok := roster.Person(h.GridWorker); ok {
			r.GridWorker = gw.Name
		}
		if m, ok := marks[h.ID]; ok {
			r.Mark = &m
		}
		out = append(out, r)
	}
	listed, err := s.Ledger.Fallback(ctx, w.ID)
	if err != nil {
		return nil, err
	}
	var extra []householdRow
	for id, e := range listed {
		if e.Village != village {
			continue
		}
		r := householdRow{ID: id, Head: e.Name, Phone: e.Phone, Delivery: warning.Queued.String(), Source: callsheet.SourceFallback, Reasons: e.Reasons}
		if p, ok := roster.Person(id); ok {
			r.Category = p.Role.Chinese()
		}
		if gw, ok := roster.Person(e.GridWorker); ok {
			r.GridWorker = gw.Name
		}
		if m, ok := marks[id]; ok {
			r.Mark = &m
			if m.Reached {
				r.Delivery = warning.Delivered.String()
			}
		}
		extra = append(extra, r)
	}
	slices.SortFunc(extra, func(a, b householdRow) int { return strings.Compare(a.ID, b.ID) })
	return append(out, extra...), nil
}

type markRequest struct {
	Reached *bool  `json:"reached"`
	Method  string `json:"method"`
	Note    string `json:"note"`
}

func (s *server) markHousehold(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	var req markRequest
	body, ok := readBody(c, smallBody, "a household mark")
	if !ok {
		return
	}
	if err := json.Unmarshal(body, &req); err != nil || req.Reached == nil {
		fail(c, http.StatusBadRequest, "invalid_request", `send {"reached":true,"method":"visit","note":"..."}`, "reached")
		return
	}
	r := "no"
	if *req.Reached {
		r = "yes"
	}
	m, err := markFromForm(r, req.Method, req.Note)
	if err != nil {
		fail(c, http.StatusUnprocessableEntity, "invalid_mark", err.Error(), "method")
		return
	}
	err = s.Dispatcher.MarkHousehold(c.Request.Context(), w, actorOf(c), c.Param("hid"), m)
	if s.refuseNotInForce(c, err) {
		return
	}
	if errors.Is(err, ledger.ErrNotFound) {
		fail(c, http.StatusNotFound, "not_found", err.Error(), "household")
		return
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}

// refuseNotInForce answers 409 for the error of a call-list mark, or of a
// call list, on a warning no longer in force (dispatcher.InForce's), and
// reports whether it did: "superseded" naming the current version, where
// the households are to be marked, when an update replaced it; "closed"
// when it, or the update that replaced it, was lifted or expired (or the
// update awaits approval), as the error says.
func (s *server) refuseNotInForce(c *gin.Context, err error) bool {
	if !errors.Is(err, dispatcher.ErrNotLive) {
		return false
	}
	var sup *dispatcher.SupersededError
	if errors.As(err, &sup) && sup.Current != nil && s.Dispatcher.InForce(c.Request.Context(), sup.Current) == nil {
		fail(c, http.StatusConflict, "superseded", err.Error()+": nothing was recorded; mark the households on the current version "+sup.Current.ID, "")
		return true
	}
	fail(c, http.StatusConflict, "closed", err.Error()+": nothing was recorded", "")
	return true
}

// callListDeliveries loads the call-list deliveries of households of a
// warning: their buckets in one read of the plan's directory, then each
// delivery. One never put on the list is Queued with no audience.
func (s *server) callListDeliveries(ctx context.Context, w *warning.Warning, hs []region.Household) ([]ledger.Delivery, error) {
	entries := make([]ledger.Entry, len(hs))
	for i, h := range hs {
		entries[i] = ledger.Entry{RecipientID: h.ID, Audience: warning.Households, Division: h.Division}
	}
	if err := s.Ledger.Locate(ctx, w.ID, entries); err != nil {
		return nil, err
	}
	out := make([]ledger.Delivery, len(hs))
	for i, e := range entries {
		d, err := s.Ledger.Delivery(ctx, warning.Ref{WarningID: w.ID, Channel: warning.CallList, RecipientID: e.RecipientID, Bucket: e.Bucket})
		if err != nil {
			return nil, err
		}
		out[i] = d
	}
	return out, nil
}
