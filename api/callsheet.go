package api

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/callsheet"
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
// problem of the file is reported at once and nothing is recorded then.
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
	actor := actorOf(c)
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
		if err := s.Dispatcher.MarkHousehold(c.Request.Context(), w, actor, r.HouseholdID, m); err != nil {
			fail(c, http.StatusUnprocessableEntity, "invalid_sheet", fmt.Sprintf("household %s: %v (%d rows recorded before it)", r.HouseholdID, err, recorded), "file")
			return
		}
		recorded++
	}
	c.JSON(http.StatusOK, gin.H{"recorded": recorded, "rows": len(sh.Rows)})
}
