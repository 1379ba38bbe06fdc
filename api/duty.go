package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/duty"
	"warngate/region"
)

// Duty: the 值班表 of each division, imported with the same dry run as the
// roster, overrides for swaps, and who is on duty at a time. Admins and
// responders set the duty of their division; anyone of a division may ask
// who is on duty in it.

func (s *server) noDuty(c *gin.Context) bool {
	if s.Duty == nil {
		fail(c, http.StatusServiceUnavailable, "no_duty_store", "this gateway keeps no duty schedules", "")
		return true
	}
	return false
}

// importDuty applies (or with dry_run, only checks) a 值班表: 200 with the
// shifts and every problem; with problems and dry_run=false, 422 with the
// same body and nothing stored.
func (s *server) importDuty(c *gin.Context) {
	if s.noDuty(c) {
		return
	}
	dry, ok := boolParam(c, "dry_run", true)
	if !ok {
		return
	}
	body, f, ok := upload(c)
	if !ok {
		return
	}
	res, err := s.Duty.Import(c.Request.Context(), body, f, duty.ImportOptions{DryRun: dry, Allowed: s.allowedFor(c), By: principalOf(c).Actor()})
	if err != nil {
		failUpload(c, err)
		return
	}
	if res.ErrorsTotal > 0 && !dry {
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{
			"dry_run": false, "shifts": res.Shifts, "replaced": res.Replaced, "divisions": res.Divisions,
			"errors": res.Errors, "errors_total": res.ErrorsTotal,
			"error": apiError{Code: "invalid_sheet", Message: fmt.Sprintf("%d problems; nothing was stored: %s", res.ErrorsTotal, res.Errors[0].Error()), Field: res.Errors[0].Column},
		})
		return
	}
	if !dry {
		s.auditAccount(c, "duty_import", "", "", fmt.Sprintf("%s: %d shifts in %d divisions, replacing %d", f, res.Shifts, res.Divisions, res.Replaced))
	}
	c.JSON(http.StatusOK, res)
}

type officerView struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role,omitempty"`
	Phone    string `json:"phone,omitempty"`
	Division string `json:"division,omitempty"`
}

func officerOf(p region.Person) officerView {
	return officerView{ID: p.ID, Name: p.Name, Role: string(p.Role), Phone: p.Phone, Division: p.Division}
}

// timeQuery reads an RFC 3339 time (or 2026-12-04 20:00, Beijing time) from
// the query; def when absent.
func timeQuery(c *gin.Context, name string, def time.Time) (time.Time, bool) {
	v := c.Query(name)
	if v == "" {
		return def, true
	}
	t, err := duty.ParseTime(v, false)
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_query", name+": "+err.Error(), name)
		return time.Time{}, false
	}
	return t, true
}

// divisionQuery reads the required ?division= of a duty question.
func (s *server) divisionQuery(c *gin.Context) (string, bool) {
	d := c.Query("division")
	if d == "" {
		fail(c, http.StatusBadRequest, "invalid_query", "division: give the 12-digit code of the division whose duty you ask for", "division")
		return "", false
	}
	if _, ok := s.Tree.Get(d); !ok {
		fail(c, http.StatusBadRequest, "invalid_query", fmt.Sprintf("division: unknown division %q", d), "division")
		return "", false
	}
	return d, true
}

// dutyNow says who is on duty in a division now, or at ?at=.
func (s *server) dutyNow(c *gin.Context) {
	if s.noDuty(c) {
		return
	}
	division, ok := s.divisionQuery(c)
	if !ok {
		return
	}
	at, ok := timeQuery(c, "at", time.Now())
	if !ok {
		return
	}
	leader, officers, sh, found, err := s.Duty.OnDuty(c.Request.Context(), division, at)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	if !found {
		fail(c, http.StatusNotFound, "no_shift", fmt.Sprintf("nobody is on duty in %s at %s: no shift of its 值班表 covers that time; import the 值班表", s.divisionName(division), at.In(duty.Beijing).Format("2006-01-02 15:04")), "division")
		return
	}
	dv := make([]officerView, len(officers))
	for i, p := range officers {
		dv[i] = officerOf(p)
	}
	c.JSON(http.StatusOK, gin.H{"division": division, "division_name": s.divisionName(division), "at": at,
		"leader": officerOf(leader), "duty": dv,
		"shift": gin.H{"start": sh.Start, "end": sh.End, "source": sh.Source, "by": sh.By, "reason": sh.Reason}})
}

// dutyShifts lists a division's shifts and overrides between ?from= and
// ?to= (default: today and the next 31 days).
func (s *server) dutyShifts(c *gin.Context) {
	if s.noDuty(c) {
		return
	}
	division, ok := s.divisionQuery(c)
	if !ok {
		return
	}
	now := time.Now().In(duty.Beijing)
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, duty.Beijing)
	from, ok := timeQuery(c, "from", today)
	if !ok {
		return
	}
	to, ok := timeQuery(c, "to", today.AddDate(0, 0, 31))
	if !ok {
		return
	}
	if !to.After(from) || to.Sub(from) > 92*24*time.Hour {
		fail(c, http.StatusBadRequest, "invalid_query", "to: give a time after from, at most 92 days later", "to")
		return
	}
	shifts, err := s.Duty.Shifts(c.Request.Context(), division, from, to)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	if shifts == nil {
		shifts = []duty.Shift{}
	}
	c.JSON(http.StatusOK, gin.H{"division": division, "from": from, "to": to, "shifts": shifts})
}

type overrideRequest struct {
	Division string `json:"division"`
	Start    string `json:"start"`
	End      string `json:"end"`
	Leader   struct {
		ID string `json:"id"`
	} `json:"leader"`
	Duty []struct {
		ID string `json:"id"`
	} `json:"duty"`
	Reason string `json:"reason"`
}

// setOverride records a swap or an override for one window of a division,
// which wins over the schedule; one for the same window replaces it.
func (s *server) setOverride(c *gin.Context) {
	if s.noDuty(c) {
		return
	}
	var req overrideRequest
	if !decodeStrict(c, &req) {
		return
	}
	var fields []fieldError
	o := duty.Override{Division: req.Division, LeaderID: req.Leader.ID, Reason: req.Reason, By: principalOf(c).Actor()}
	for _, t := range []struct {
		name string
		v    string
		dst  *time.Time
	}{{"start", req.Start, &o.Start}, {"end", req.End, &o.End}} {
		if t.v == "" {
			continue // named below, with the rest
		}
		v, err := duty.ParseTime(t.v, false)
		if err != nil {
			fields = append(fields, fieldError{Field: t.name, Message: err.Error()})
			continue
		}
		*t.dst = v
	}
	for _, d := range req.Duty {
		o.DutyIDs = append(o.DutyIDs, d.ID)
	}
	if _, known := s.Tree.Get(req.Division); known && !s.inside(c, req.Division, "division") {
		return
	}
	sh, errs, err := s.Duty.SetOverride(c.Request.Context(), o, s.allowedFor(c))
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	for _, e := range errs {
		if e.Outside {
			fail(c, http.StatusForbidden, "outside_division", e.Message, e.Field)
			return
		}
	}
	for _, e := range errs {
		if (e.Field == "start" || e.Field == "end") && hasField(fields, e.Field) {
			continue
		}
		fields = append(fields, fieldError{Field: e.Field, Message: e.Message})
	}
	if len(fields) > 0 {
		msg := ""
		for i, f := range fields {
			if i > 0 {
				msg += "; "
			}
			msg += f.Field + ": " + f.Message
		}
		fail(c, http.StatusUnprocessableEntity, "invalid_override", msg, fields[0].Field, fields...)
		return
	}
	names := ""
	for i, d := range sh.Duty {
		if i > 0 {
			names += ","
		}
		names += d.ID
	}
	s.auditAccount(c, "duty_override", sh.Division, "", fmt.Sprintf("%s–%s: leader %s, duty %s; %s",
		sh.Start.In(duty.Beijing).Format("2006-01-02 15:04"), sh.End.In(duty.Beijing).Format("2006-01-02 15:04"), sh.Leader.ID, names, sh.Reason))
	c.JSON(http.StatusOK, sh)
}

func hasField(fields []fieldError, name string) bool {
	for _, f := range fields {
		if f.Field == name {
			return true
		}
	}
	return false
}
