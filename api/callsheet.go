package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/callsheet"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
)

// MaxSheet bounds an uploaded call list.
const MaxSheet = 8 << 20

// exportSheet downloads a village's call list as .xlsx: ?village=CODE.
func (s *server) exportSheet(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	village := c.Query("village")
	d, ok := s.Tree.Get(village)
	if !ok || d.Level != region.Village {
		fail(c, http.StatusBadRequest, "invalid_query", "village: give a village's 12-digit code", "village")
		return
	}
	rows, err := s.callList(c, w, village)
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	sh := callsheet.Sheet{WarningID: w.ID, Title: w.Title(), Level: w.Level.Colour() + "预警（" + w.Level.Roman() + "级/" + w.Level.Grade() + "）",
		Village: d.Name, VillageCode: d.Code, Issued: w.Issued}
	for _, r := range rows {
		row := callsheet.Row{HouseholdID: r.ID, Head: r.Head, Address: r.Address, Phone: r.Phone, Category: r.Category, GridWorker: r.GridWorker, Source: r.Source}
		if r.Mark != nil {
			reached := r.Mark.Reached
			row.Reached, row.Method, row.At, row.Note = &reached, callsheet.MethodName(r.Mark.Method), r.Mark.At, r.Mark.Note
		}
		sh.Rows = append(sh.Rows, row)
	}
	var buf bytes.Buffer
	if err := callsheet.Write(&buf, sh); err != nil {
		fail(c, http.StatusInternalServerError, "callsheet", err.Error(), "")
		return
	}
	name := fmt.Sprintf("calllist-%s-%s.xlsx", w.ID, village)
	c.Header("Content-Disposition", `attachment; filename="`+name+`"`)
	c.Data(http.StatusOK, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", buf.Bytes())
}

// importSheet takes a call list back with results filled in by hand. Every
// problem of the file is reported at once and nothing is recorded then:
// the file is read, then every row to record is checked (its household is
// on the warning's list, the caller may mark it), and only a file with no
// problem is recorded, all of it. A call list for a warning no longer in
// force is refused as a whole (409), as a mark is: for a version an update
// replaced, naming the current version, whose own call list is to be
// filled in.
func (s *server) importSheet(c *gin.Context) {
	w := s.loadWarning(c)
	if w == nil {
		return
	}
	body, ok := readBody(c, MaxSheet, "a call list")
	if !ok {
		return
	}
	sh, errs := callsheet.Read(bytes.NewReader(body))
	if len(errs) == 0 && sh.WarningID != "" && sh.WarningID != w.ID {
		errs = append(errs, fmt.Errorf("this call list is for warning %s, not %s", sh.WarningID, w.ID))
	}
	if len(errs) > 0 {
		fields := make([]fieldError, len(errs))
		for i, e := range errs {
			fields[i] = fieldError{Field: "file", Message: e.Error()}
			var ce *callsheet.CellError
			if errors.As(e, &ce) {
				fields[i].Field = fmt.Sprintf("row %d, %s", ce.Row, ce.Label)
			}
		}
		fail(c, http.StatusUnprocessableEntity, "invalid_sheet", errors.Join(errs...).Error(), fields[0].Field, fields...)
		return
	}
	for i, r := range sh.Rows {
		if div, ok := s.callListDivision(c, w, r.HouseholdID); ok && !s.inside(c, div, fmt.Sprintf("rows[%d]", i)) {
			return
		}
	}
	ctx := c.Request.Context()
	if s.refuseNotInForce(c, s.Dispatcher.InForce(ctx, w)) {
		return
	}
	actor := actorOf(c)
	// Every row is checked before any is recorded.
	var fields []fieldError
	var rowErrs []error
	for i, r := range sh.Rows {
		if r.Reached == nil {
			continue
		}
		err := s.Dispatcher.CheckMark(ctx, w, actor, r.HouseholdID)
		if err == nil {
			continue
		}
		if !errors.Is(err, ledger.ErrNotFound) && !errors.Is(err, dispatcher.ErrForbidden) {
			fail(c, http.StatusServiceUnavailable, "unavailable", err.Error()+": nothing was recorded", "")
			return
		}
		e := fmt.Errorf("household %s (%s): %w", r.HouseholdID, r.Head, err)
		rowErrs = append(rowErrs, e)
		fields = append(fields, fieldError{Field: fmt.Sprintf("rows[%d]", i), Message: e.Error()})
	}
	if len(fields) > 0 {
		fail(c, http.StatusUnprocessableEntity, "invalid_sheet",
			fmt.Sprintf("%d rows cannot be recorded, nothing was recorded: %v", len(fields), errors.Join(rowErrs...)), fields[0].Field, fields...)
		return
	}
	recorded := 0
	for _, r := range sh.Rows {
		if r.Reached == nil {
			continue
		}
		m := ledger.Mark{Reached: *r.Reached, Method: callsheet.MethodCode(r.Method), At: r.At, Note: r.Note}
		if m.At.IsZero() {
			m.At = time.Now()
		}
		if m.Reached && m.Method == "" {
			m.Method = "other"
		}
		if err := s.Dispatcher.MarkHousehold(ctx, w, actor, r.HouseholdID, m); err != nil {
			// Only a failure of the ledger, or the warning lifted or
			// updated meanwhile, stops a call list that was checked.
			s.Log.Error("call list recorded in part", "warning_id", w.ID, "recorded", recorded, "rows", len(sh.Rows), "err", err)
			status, code := http.StatusServiceUnavailable, "unavailable"
			if errors.Is(err, dispatcher.ErrNotLive) {
				status, code = http.StatusConflict, "closed"
			}
			fail(c, status, code, fmt.Sprintf("household %s: %v (%d rows recorded before it)", r.HouseholdID, err, recorded), "file")
			return
		}
		recorded++
	}
	c.JSON(http.StatusOK, gin.H{"recorded": recorded, "rows": len(sh.Rows)})
}
