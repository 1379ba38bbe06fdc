package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/accounts"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// MaxBody bounds a warning request.
const MaxBody = 256 << 10

// warningRequest is the body of POST /api/v1/warnings. parseWarningRequest
// fills it field by field, and toWarning checks the values one by one, so
// that every mistake is reported at once.
type warningRequest struct {
	Hazard      string          `json:"hazard"`
	Level       json.RawMessage `json:"level"`
	Areas       []string        `json:"areas"`
	Headline    string          `json:"headline"`
	Description string          `json:"description"`
	Instruction string          `json:"instruction"`
	Status      string          `json:"status"`
	Expires     string          `json:"expires"`
	Sender      string          `json:"sender"`
}

func (req *warningRequest) toWarning() (*warning.Warning, error) {
	var errs []error
	bad := func(field, msg string) { errs = append(errs, &warning.FieldError{Field: field, Message: msg}) }
	w := &warning.Warning{
		Areas: req.Areas, Headline: strings.TrimSpace(req.Headline), Description: req.Description,
		Instruction: req.Instruction, Sender: req.Sender, MsgType: warning.MsgAlert,
	}
	if req.Hazard == "" {
		bad("hazard", "required: e.g. rainstorm, geological_hazard, forest_fire (or 暴雨)")
	} else if h, err := warning.ParseHazard(req.Hazard); err != nil {
		bad("hazard", err.Error())
	} else {
		w.Hazard = h
	}
	if len(req.Level) == 0 {
		bad("level", "required: blue, yellow, orange or red (or Ⅳ, Ⅲ, Ⅱ, Ⅰ)")
	} else if err := w.Level.UnmarshalJSON(req.Level); err != nil {
		bad("level", err.Error())
	}
	if st, err := warning.ParseStatus(req.Status); err != nil {
		bad("status", err.Error())
	} else {
		w.Status = st
	}
	if req.Expires == "" {
		bad("expires", "required: RFC 3339 with offset, e.g. 2026-07-01T18:00:00+08:00")
	} else if t, err := time.Parse(time.RFC3339, req.Expires); err != nil {
		bad("expires", fmt.Sprintf("%q is not an RFC 3339 time such as 2026-07-01T18:00:00+08:00", req.Expires))
	} else {
		w.Expires = t
	}
	if len(errs) > 0 {
		// Report the rest of the warning's problems too, once per field.
		seen := map[string]bool{}
		for _, e := range errs {
			seen[e.(*warning.FieldError).Field] = true
		}
		if verr := w.Validate(time.Now()); verr != nil {
			for _, e := range verr.(interface{ Unwrap() []error }).Unwrap() {
				if fe := e.(*warning.FieldError); !seen[fe.Field] {
					errs = append(errs, fe)
				}
			}
		}
		return nil, errors.Join(errs...)
	}
	return w, nil
}

func (s *server) createWarning(c *gin.Context) {
	w, ok := s.decodeWarning(c)
	if !ok || !s.areasInside(c, w.Areas) {
		return
	}
	key := c.GetHeader("Idempotency-Key")
	if len(key) > 200 {
		fail(c, http.StatusBadRequest, "invalid_header", "Idempotency-Key may be at most 200 characters", "Idempotency-Key")
		return
	}
	stored, existed, err := s.Dispatcher.Submit(c.Request.Context(), w, dispatcher.SubmitOptions{
		IdempotencyKey: key, By: actorOf(c), NeedsApproval: s.needsApproval(principalOf(c), w.Level),
	})
	if errors.Is(err, dispatcher.ErrInvalid) {
		failFields(c, err)
		return
	}
	if failKeyReused(c, err, key) {
		return
	}
	if err != nil {
		s.Log.Error("warning not stored", "err", err)
		fail(c, http.StatusServiceUnavailable, "unavailable", "the warning was NOT accepted (state store unavailable); send it again", "")
		return
	}
	c.Header("Location", "/api/v1/warnings/"+stored.ID)
	status := http.StatusAccepted
	if existed {
		status = http.StatusOK
	}
	c.JSON(status, s.warningView(stored))
}

// failKeyReused answers an Idempotency-Key sent again with a warning that
// says something else than the first request's, and reports whether err
// was that. Answering the first warning would drop the second in silence.
func failKeyReused(c *gin.Context, err error, key string) bool {
	var kr *ledger.KeyReusedError
	if !errors.As(err, &kr) {
		return false
	}
	fail(c, http.StatusUnprocessableEntity, "idempotency_key_reused", fmt.Sprintf(
		"Idempotency-Key %q was first used for warning %s, and this body differs from that request's (hazard, level, areas, text, status, expiry, sender or the warning updated): "+
			"send a new warning with a new key, or the first body again to get warning %s", key, kr.FirstID, kr.FirstID), "Idempotency-Key")
	return true
}

type warningView struct {
	*warning.Warning
	LevelName  string `json:"level_name"`
	HazardName string `json:"hazard_name"`
	Progress   string `json:"progress_url"`
	// IssuedByName and ApprovedByName are the users' display names (值班员),
	// where the gateway knows them.
	IssuedByName   string `json:"issued_by_name,omitempty"`
	ApprovedByName string `json:"approved_by_name,omitempty"`
}

// named fills in the display names of a view's issuer and approver.
func (s *server) named(ctx context.Context, v warningView) warningView {
	v.IssuedByName, v.ApprovedByName = s.displayName(ctx, v.IssuedBy), s.displayName(ctx, v.ApprovedBy)
	return v
}

// displayName is how people know a user: the display name (值班员) of the
// user an actor names ("duty", "duty/token:cap-feed"), 系统管理员 for the
// admin token; the user name itself when the user has none or is gone.
func (s *server) displayName(ctx context.Context, actor string) string {
	user, _, _ := strings.Cut(actor, "/token:")
	switch {
	case user == "":
		return ""
	case user == accounts.Bootstrap.Name:
		return accounts.Bootstrap.Display
	case s.Accounts == nil:
		return user
	}
	if u, err := s.Accounts.User(ctx, user); err == nil && u.DisplayName != "" {
		return u.DisplayName
	}
	return user
}

func (s *server) warningView(w *warning.Warning) warningView {
	return warningView{
		Warning:    w,
		LevelName:  w.Hazard.Chinese() + w.Level.Colour() + "预警（" + w.Level.Roman() + "级/" + w.Level.Grade() + "）",
		HazardName: w.Hazard.Chinese(),
		Progress:   "/api/v1/warnings/" + w.ID + "/progress",
	}
}

// loadWarning is the :id warning, as authorize loaded it for the route's
// scope, or from the ledger.
func (s *server) loadWarning(c *gin.Context) *warning.Warning {
	if w, ok := c.Value(ctxWarning).(*warning.Warning); ok {
		return w
	}
	w, err := s.Ledger.Warning(c.Request.Context(), c.Param("id"))
	if errors.Is(err, ledger.ErrNotFound) {
		fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
		return nil
	}
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", "state store unavailable: "+err.Error(), "")
		return nil
	}
	return w
}

func (s *server) getWarning(c *gin.Context) {
	if w := s.loadWarning(c); w != nil {
		c.JSON(http.StatusOK, s.named(c.Request.Context(), s.warningView(w)))
	}
}

func (s *server) listWarnings(c *gin.Context) {
	limit, _ := strconv.Atoi(c.DefaultQuery("limit", "50"))
	offset, _ := strconv.Atoi(c.DefaultQuery("offset", "0"))
	if limit < 1 || limit > 500 {
		fail(c, http.StatusBadRequest, "invalid_query", "limit must be 1 to 500", "limit")
		return
	}
	ws, err := s.visibleWarnings(c, max(offset, 0), limit)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	out := make([]warningView, 0, len(ws))
	for _, w := range ws {
		out = append(out, s.warningView(w))
	}
	c.JSON(http.StatusOK, gin.H{"warnings": out})
}

// visibleScan bounds how many warnings a list below the city reads to fill a page.
const visibleScan = 20_000

// visibleWarnings lists, newest first, the warnings that reach into the
// caller's division, skipping offset of them.
func (s *server) visibleWarnings(c *gin.Context, offset, limit int) ([]*warning.Warning, error) {
	me := principalOf(c)
	ctx := c.Request.Context()
	out := make([]*warning.Warning, 0, limit)
	step := limit
	if me.Division != "" {
		step = 500
	}
	for from := 0; len(out) < limit && from < visibleScan; from += step {
		start := from
		if me.Division == "" {
			start = offset + from
		}
		ids, err := s.Ledger.Warnings(ctx, start, step)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			w, err := s.Ledger.Warning(ctx, id)
			if err != nil || !s.touches(me, w) {
				continue
			}
			if me.Division != "" && offset > 0 {
				offset--
				continue
			}
			if out = append(out, w); len(out) == limit {
				break
			}
		}
		if len(ids) < step {
			break
		}
	}
	return out, nil
}

type channelProgress struct {
	ledger.Counts
	Name      string                   `json:"name"`
	Audiences map[string]ledger.Counts `json:"audiences"`
	Reasons   map[string]int64         `json:"failure_reasons,omitempty"`
	// Billing is what each provider account bills, by account name.
	Billing map[string]ledger.Bill `json:"billing,omitempty"`
}

type divisionProgress struct {
	Code  string `json:"code"`
	Name  string `json:"name"`
	Level string `json:"level"`
	ledger.Counts
	// Acks counts the confirmations of the division's officials, when it has any.
	Acks *ledger.AckCounts `json:"acks,omitempty"`
}

func (s *server) progress(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	p, total, err := s.progressFor(c, w)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	level := region.Level(c.DefaultQuery("level", "township"))
	if _, err := region.ParseLevel(string(level)); err != nil {
		fail(c, http.StatusBadRequest, "invalid_query", err.Error(), "level")
		return
	}
	chans := map[string]channelProgress{}
	audiences := map[string]ledger.Counts{}
	for ch, counts := range p.Channels {
		cp := channelProgress{Counts: counts, Name: ch.Chinese(), Audiences: map[string]ledger.Counts{}, Reasons: p.Reasons[ch], Billing: p.Billing[ch]}
		for a, ac := range p.Audiences[ch] {
			cp.Audiences[string(a)] = ac
			sum := audiences[string(a)]
			sum.Add(ac)
			audiences[string(a)] = sum
		}
		chans[string(ch)] = cp
	}
	// Roll division counts up to the level asked for.
	rolled := map[string]ledger.Counts{}
	for code, counts := range p.Divisions {
		d, ok := s.Tree.Ancestor(code, level)
		if !ok {
			continue // a recipient above the level asked for (a county official in a township view)
		}
		sum := rolled[d.Code]
		sum.Add(counts)
		rolled[d.Code] = sum
	}
	acks := map[string]*ledger.AckCounts{}
	for code, counts := range p.AckDivisions {
		d, ok := s.Tree.Ancestor(code, level)
		if !ok {
			continue
		}
		if acks[d.Code] == nil {
			acks[d.Code] = &ledger.AckCounts{}
			if _, ok := rolled[d.Code]; !ok {
				rolled[d.Code] = ledger.Counts{}
			}
		}
		acks[d.Code].Add(counts)
	}
	divs := make([]divisionProgress, 0, len(rolled))
	for code, counts := range rolled {
		d, _ := s.Tree.Get(code)
		divs = append(divs, divisionProgress{Code: code, Name: d.Name, Level: string(d.Level), Counts: counts, Acks: acks[code]})
	}
	slices.SortFunc(divs, func(a, b divisionProgress) int { return strings.Compare(a.Code, b.Code) })
	var plannedAt *time.Time
	if !p.PlannedAt.IsZero() {
		plannedAt = &p.PlannedAt
	}
	c.JSON(http.StatusOK, gin.H{
		"warning_id": w.ID, "state": w.State, "planned_at": plannedAt,
		"complete":  plannedAt != nil && total.Pending == 0,
		"total":     total,
		"channels":  chans,
		"audiences": audiences,
		"divisions": divs,
		// The voice channel's calls by outcome and what each account bills.
		"calls": callCounts(p.Calls),
		// Counties and townships whose 值班表 had nobody on duty when the
		// warning arrived: their role holders were asked instead.
		"duty_fallback": s.dutyFallback(c, p.DutyFallback),
	})
}

type namedDivision struct {
	Code string `json:"code"`
	Name string `json:"name"`
}

func (s *server) dutyFallback(c *gin.Context, codes []string) []namedDivision {
	out := []namedDivision{}
	me := principalOf(c)
	for _, code := range codes {
		if d, ok := s.Tree.Get(code); ok && s.covers(me, code) {
			out = append(out, namedDivision{Code: code, Name: d.Name})
		}
	}
	return out
}

// progressFor reads a warning's counters as the caller may see them. A
// caller whose division holds the whole warning sees everything; one whose
// division holds part of it (a township of a county-wide warning) sees the
// counts of its own divisions only, and no per-channel breakdown, which the
// ledger keeps for the whole warning.
func (s *server) progressFor(c *gin.Context, w *warning.Warning) (*ledger.Progress, ledger.Counts, error) {
	p, err := s.Ledger.Progress(c.Request.Context(), w.ID)
	if err != nil {
		return nil, ledger.Counts{}, err
	}
	me := principalOf(c)
	if s.within(me, w.Areas) {
		return p, p.Total(), nil
	}
	var total ledger.Counts
	for code, n := range p.Divisions {
		if s.covers(me, code) {
			total.Add(n)
		} else {
			delete(p.Divisions, code)
		}
	}
	for code := range p.AckDivisions {
		if !s.covers(me, code) {
			delete(p.AckDivisions, code)
		}
	}
	p.Channels, p.Audiences, p.Reasons, p.Billing, p.Acks = nil, nil, nil, nil, nil
	p.Calls = ledger.CallCounts{}
	return p, total, nil
}

func (s *server) decodeWarning(c *gin.Context) (*warning.Warning, bool) {
	body, ok := readBody(c, MaxBody, "a warning body")
	if !ok {
		return nil, false
	}
	req, fields, err := parseWarningRequest(body)
	if err != nil {
		fail(c, http.StatusBadRequest, "malformed_json", "the body is not a JSON object of a warning: "+err.Error(), "")
		return nil, false
	}
	if len(fields) > 0 {
		msgs := make([]string, len(fields))
		for i, f := range fields {
			msgs[i] = f.Field + ": " + f.Message
		}
		fail(c, http.StatusBadRequest, "malformed_json", strings.Join(msgs, "; "), fields[0].Field, fields...)
		return nil, false
	}
	w, err := req.toWarning()
	if err != nil {
		failFields(c, err)
		return nil, false
	}
	return w, true
}

// preview answers what a warning would reach, sending nothing.
func (s *server) preview(c *gin.Context) {
	w, ok := s.decodeWarning(c)
	if !ok || !s.areasInside(c, w.Areas) {
		return
	}
	s.previewOf(c, w, s.needsApproval(principalOf(c), w.Level))
}

// storedPreview answers what a stored warning reaches, or would once
// approved: what its approver releases.
func (s *server) storedPreview(c *gin.Context) {
	if w := s.loadWarning(c); w != nil {
		s.previewOf(c, w, w.State == warning.StateAwaitingApproval)
	}
}

func (s *server) previewOf(c *gin.Context, w *warning.Warning, needsApproval bool) {
	sum, err := s.Dispatcher.Preview(w)
	if err != nil {
		failFields(c, err)
		return
	}
	type cell struct {
		Channel  string `json:"channel"`
		Audience string `json:"audience"`
		County   string `json:"county"`
		Name     string `json:"county_name"`
		Count    int64  `json:"count"`
	}
	byKey := map[[3]string]int64{}
	channelsTotal := map[string]int64{}
	audiences := map[string]int64{}
	for g, n := range sum.Planned {
		county := g.Division
		if d, ok := s.Tree.Ancestor(g.Division, region.County); ok {
			county = d.Code
		}
		byKey[[3]string{string(g.Channel), string(g.Audience), county}] += n
		channelsTotal[string(g.Channel)] += n
		audiences[string(g.Audience)] += n
	}
	cells := make([]cell, 0, len(byKey))
	for k, n := range byKey {
		name := ""
		if d, ok := s.Tree.Get(k[2]); ok {
			name = d.Name
		}
		cells = append(cells, cell{Channel: k[0], Audience: k[1], County: k[2], Name: name, Count: n})
	}
	slices.SortFunc(cells, func(a, b cell) int {
		return strings.Compare(a.County+a.Channel+a.Audience, b.County+b.Channel+b.Audience)
	})
	noAddr := map[string]map[string]int64{}
	for ch, m := range sum.NoAddress {
		noAddr[string(ch)] = map[string]int64{}
		for a, n := range m {
			noAddr[string(ch)][string(a)] = n
		}
	}
	unreachable := map[string]int64{}
	for a, n := range sum.Unreachable {
		unreachable[string(a)] = n
	}
	c.JSON(http.StatusOK, gin.H{"rule": sum.Rule, "total": sum.Total(), "batches": sum.Batches,
		"channels": channelsTotal, "audiences": audiences, "cells": cells, "no_address": noAddr, "unreachable": unreachable,
		"needs_approval": needsApproval, "calls": callsView(sum.Calls),
		"sms": gin.H{"resident": sum.SMS.Resident, "official": sum.SMS.Official, "messages": sum.SMS.Messages, "parts": sum.SMS.Parts,
			"official_parts": sum.SMS.OfficialParts}})
}

// callCounts shows a warning's calls: per outcome, with its Chinese
// name, and what each provider account bills; nil when nobody was called.
func callCounts(cc ledger.CallCounts) gin.H {
	var total int64
	outcomes := map[string]int64{}
	for o, n := range cc.Outcomes {
		total += n
		outcomes[string(o)] = n
	}
	if total == 0 {
		return nil
	}
	return gin.H{"total": total, "outcomes": outcomes, "billing": cc.Billing}
}

// callsView is a plan's voice step: who is called, when the first call
// goes after the message (0: with it) and how often they are called until
// they confirm; nil when nobody is called.
func callsView(p *policy.CallPlan) gin.H {
	if p == nil {
		return nil
	}
	var n int64
	auds := map[string]int64{}
	for a, k := range p.Officials {
		n += k
		auds[string(a)] = k
	}
	return gin.H{"officials": n, "audiences": auds, "after_seconds": int64(p.After / time.Second),
		"tries": p.Tries, "interval_seconds": int64(p.Interval / time.Second)}
}

// smsText answers what a warning's SMS would say to a resident and to an
// official, and the characters and parts each is billed as, while the
// warning is being written: only its text and status matter, nothing is
// checked. An official's link is masked.
func (s *server) smsText(c *gin.Context) {
	body, ok := readBody(c, MaxBody, "a warning body")
	if !ok {
		return
	}
	req, fields, err := parseWarningRequest(body)
	if err != nil || len(fields) > 0 {
		fail(c, http.StatusBadRequest, "malformed_json", "the body is not a JSON object of a warning", "")
		return
	}
	w := &warning.Warning{Headline: strings.TrimSpace(req.Headline), Description: strings.TrimSpace(req.Description),
		Instruction: strings.TrimSpace(req.Instruction), Expires: time.Now().Add(24 * time.Hour)}
	w.Status, _ = warning.ParseStatus(req.Status)
	if t, err := time.Parse(time.RFC3339, req.Expires); err == nil {
		w.Expires = t
	}
	me := principalOf(c)
	for _, a := range req.Areas {
		if s.covers(me, a) {
			w.Areas = []string{a}
			break
		}
	}
	c.JSON(http.StatusOK, gin.H{"resident": s.Dispatcher.SMSSample(w, false), "official": s.Dispatcher.SMSSample(w, true)})
}

func (s *server) approve(c *gin.Context) {
	w, err := s.Dispatcher.Approve(c.Request.Context(), c.Param("id"), actorOf(c))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
	case errors.Is(err, dispatcher.ErrSelfApproval):
		fail(c, http.StatusForbidden, "self_approval", "签发人不能审批自己签发的预警，请由另一位审批人审批 (the issuer cannot approve their own warning)", "")
	case errors.Is(err, ledger.ErrState):
		fail(c, http.StatusConflict, "wrong_state", err.Error(), "")
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	default:
		c.JSON(http.StatusOK, s.warningView(w))
	}
}

func (s *server) cancel(c *gin.Context) {
	w, err := s.Dispatcher.Cancel(c.Request.Context(), c.Param("id"), actorOf(c))
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
	case errors.Is(err, ledger.ErrState):
		fail(c, http.StatusConflict, "wrong_state", err.Error(), "")
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	default:
		c.JSON(http.StatusOK, s.warningView(w))
	}
}

// update replaces a live warning: the body is the whole new version.
func (s *server) update(c *gin.Context) {
	w, ok := s.decodeWarning(c)
	if !ok || !s.areasInside(c, w.Areas) {
		return
	}
	nw, err := s.Dispatcher.Update(c.Request.Context(), c.Param("id"), w, dispatcher.SubmitOptions{
		By: actorOf(c), NeedsApproval: s.needsApproval(principalOf(c), w.Level),
		IdempotencyKey: c.GetHeader("Idempotency-Key"),
	})
	switch {
	case errors.Is(err, dispatcher.ErrInvalid):
		failFields(c, err)
	case failKeyReused(c, err, c.GetHeader("Idempotency-Key")):
	case errors.Is(err, ledger.ErrNotFound):
		fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
	case errors.Is(err, ledger.ErrState):
		fail(c, http.StatusConflict, "wrong_state", err.Error(), "")
	case err != nil:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	default:
		c.Header("Location", "/api/v1/warnings/"+nw.ID)
		c.JSON(http.StatusAccepted, s.warningView(nw))
	}
}
