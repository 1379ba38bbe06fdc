package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/channels"
	"warngate/internal/sheet"
	"warngate/roster"
)

// The live roster: imports of the sheets bureaus keep, exports in the same
// layout, and edits of one person, device or household. An admin works
// inside their division: rows elsewhere are refused by row, exports are cut
// to it, and a row outside it does not exist for them (404). Every change
// is audited with the versions before and after, phones masked.

// Upload limits. A CSV of a million people is about 80 MiB; an .xlsx is read
// whole into memory and unzips to several times its size.
const (
	MaxRosterCSV  = 256 << 20
	MaxRosterXLSX = 64 << 20
)

func (s *server) noRosters(c *gin.Context) bool {
	if s.Rosters == nil {
		fail(c, http.StatusServiceUnavailable, "no_roster_store", "this gateway serves a fixed roster: it has no roster store", "")
		return true
	}
	return false
}

// kindParam reads ?kind= (people by default for the console's forms).
func kindParam(c *gin.Context, v string) (roster.Kind, bool) {
	k, err := roster.ParseKind(v)
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_query", "kind: "+err.Error(), "kind")
		return "", false
	}
	return k, true
}

// boolParam reads a query flag: true, false, 1, 0; def when absent.
func boolParam(c *gin.Context, name string, def bool) (bool, bool) {
	v, ok := c.GetQuery(name)
	if !ok || v == "" {
		return def, true
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_query", fmt.Sprintf("%s: %q is neither true nor false", name, v), name)
		return false, false
	}
	return b, true
}

// allowedFor limits a change to the caller's division.
func (s *server) allowedFor(c *gin.Context) func(string) bool {
	p := principalOf(c)
	return func(code string) bool { return s.covers(p, code) }
}

// upload reads a sheet upload's format from its Content-Type and first
// bytes, bounded by the format's limit; it answers and returns false when
// it cannot.
func upload(c *gin.Context) (io.Reader, sheet.Format, bool) {
	br := bufio.NewReaderSize(c.Request.Body, 4096)
	head, _ := br.Peek(4)
	f, err := sheet.FormatOf(c.GetHeader("Content-Type"), head)
	if err != nil {
		fail(c, http.StatusUnsupportedMediaType, "unsupported_media_type", err.Error(), "Content-Type")
		return nil, 0, false
	}
	limit := int64(MaxRosterCSV)
	if f == sheet.XLSX {
		limit = MaxRosterXLSX
	}
	if c.Request.ContentLength > limit {
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("a %s upload may be at most %d MiB", f, limit>>20), "")
		return nil, 0, false
	}
	// A large import outlives the server's usual read and write deadlines.
	rc := http.NewResponseController(c.Writer)
	rc.SetReadDeadline(time.Now().Add(10 * time.Minute))
	rc.SetWriteDeadline(time.Now().Add(12 * time.Minute))
	return http.MaxBytesReader(c.Writer, io.NopCloser(br), limit), f, true
}

// failUpload answers an error reading an upload: too large, a refused
// sheet, or the store.
func failUpload(c *gin.Context, err error) {
	var tooLarge *http.MaxBytesError
	var ref *sheet.Refusal
	switch {
	case errors.As(err, &tooLarge):
		fail(c, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the upload is larger than %d MiB: split it by division", tooLarge.Limit>>20), "")
	case errors.As(err, &ref):
		rows := make([]gin.H, len(ref.Problems))
		for i, p := range ref.Problems {
			rows[i] = gin.H{"row": p.Row, "column": p.Column, "message": p.Message}
		}
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{"errors": rows,
			"error": apiError{Code: "invalid_sheet", Message: ref.Error(), Field: "file"}})
	case errors.Is(err, roster.ErrBusy):
		c.Header("Retry-After", "5")
		fail(c, http.StatusConflict, "busy", err.Error(), "")
	default:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	}
}

// importRoster applies (or with dry_run, only checks) a roster sheet:
// 200 with the difference and every problem; with problems and
// dry_run=false, 422 with the same body and nothing applied.
func (s *server) importRoster(c *gin.Context) {
	if s.noRosters(c) {
		return
	}
	k, ok := kindParam(c, c.Query("kind"))
	if !ok {
		return
	}
	dry, ok := boolParam(c, "dry_run", true)
	if !ok {
		return
	}
	ch := roster.Change{Kind: k, DryRun: dry, Allowed: s.allowedFor(c), By: principalOf(c).Actor()}
	switch c.DefaultQuery("mode", "replace") {
	case "replace":
	case "merge":
		ch.Merge = true
	default:
		fail(c, http.StatusBadRequest, "invalid_query", "mode: use replace (the sheet is the complete list of its divisions) or merge (add and change only)", "mode")
		return
	}
	if sc := c.Query("scope"); sc != "" {
		if ch.Merge {
			fail(c, http.StatusBadRequest, "invalid_query", "scope: a merge retires nobody, so it takes no scope", "scope")
			return
		}
		if _, known := s.Tree.Get(sc); !known {
			fail(c, http.StatusBadRequest, "invalid_query", fmt.Sprintf("scope: unknown division %q", sc), "scope")
			return
		}
		if !s.inside(c, sc, "scope") {
			return
		}
		ch.Scope = sc
	}
	body, f, ok := upload(c)
	if !ok {
		return
	}
	ch.Note = fmt.Sprintf("import %s (%s)", k, f)
	res, err := s.Rosters.Import(c.Request.Context(), body, f, ch)
	if err != nil {
		failUpload(c, err)
		return
	}
	if res.ErrorsTotal > 0 && !dry {
		msg := fmt.Sprintf("%d problems; nothing was applied: %s", res.ErrorsTotal, res.Errors[0].Error())
		c.AbortWithStatusJSON(http.StatusUnprocessableEntity, gin.H{
			"kind": res.Kind, "dry_run": false, "added": res.Added, "changed": res.Changed, "retired": res.Retired, "unchanged": res.Unchanged,
			"errors": res.Errors, "errors_total": res.ErrorsTotal, "base_version": res.Base, "version": res.Version,
			"error": apiError{Code: "invalid_sheet", Message: msg, Field: res.Errors[0].Column},
		})
		return
	}
	if !dry && res.Version != res.Base {
		s.auditAccount(c, "roster_import", string(k), "", fmt.Sprintf("%s by %s: %d added, %d changed, %d retired in %d divisions; version %d → %d%s",
			f, k, res.Added, res.Changed, res.Retired, res.Divisions, res.Base, res.Version, idSample(res)))
	}
	c.JSON(http.StatusOK, res)
}

// idSample names the first ids of an import's changes for the audit trail;
// the versions before and after hold the rows.
func idSample(res *roster.Result) string {
	var b strings.Builder
	for _, part := range []struct {
		what string
		ids  []string
		n    int
	}{{"added", res.AddedIDs, res.Added}, {"changed", res.ChangedIDs, res.Changed}, {"retired", res.RetiredIDs, res.Retired}} {
		if part.n == 0 {
			continue
		}
		shown := part.ids[:min(20, len(part.ids))]
		fmt.Fprintf(&b, "; %s: %s", part.what, strings.Join(shown, ","))
		if part.n > len(shown) {
			fmt.Fprintf(&b, " and %d more", part.n-len(shown))
		}
	}
	return b.String()
}

// exportRoster writes the caller's division (or ?division= inside it) as
// an .xlsx in the layout imports read; header=zh writes the Chinese headers.
func (s *server) exportRoster(c *gin.Context) {
	if s.noRosters(c) {
		return
	}
	k, ok := kindParam(c, c.Query("kind"))
	if !ok {
		return
	}
	within := principalOf(c).Division
	if d := c.Query("division"); d != "" {
		if _, known := s.Tree.Get(d); !known {
			fail(c, http.StatusBadRequest, "invalid_query", fmt.Sprintf("division: unknown division %q", d), "division")
			return
		}
		within = d
	}
	zh := c.Query("header") == "zh"
	c.Header("Content-Type", sheet.XLSXType)
	name := k.SheetName()
	if within != "" {
		name += "-" + within
	}
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.xlsx"; filename*=UTF-8''%s.xlsx`, string(k)+"-"+within, urlEscape(name)))
	c.Header("Cache-Control", "no-store")
	if err := s.Rosters.Export(c.Request.Context(), c.Writer, k, within, zh); err != nil {
		s.Log.Error("roster export", "kind", k, "err", err)
		if !c.Writer.Written() {
			fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		}
	}
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// rosterInfo describes the current version.
func (s *server) rosterInfo(c *gin.Context) {
	if s.noRosters(c) {
		return
	}
	if _, _, err := s.Rosters.Current(c.Request.Context()); err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return
	}
	info := s.Rosters.Info()
	out := gin.H{"version": info.Number, "at": info.At, "by": info.By, "note": info.Note}
	if info.Number == 0 {
		out["note"] = "nothing imported yet: the roster served is the configured base (the demo roster, or none)"
	}
	me := principalOf(c).Division
	if me == "" {
		me = s.Tree.Root().Code
	}
	out["counts"] = s.Roster.Counts(me)
	out["division"] = me
	c.JSON(http.StatusOK, out)
}

// rowView is a roster row as JSON, by its columns, with names for people.
func (s *server) rowView(k roster.Kind, row roster.Row) gin.H {
	out := gin.H{}
	for i, col := range k.Columns() {
		out[col] = row[i]
	}
	if d, ok := s.Tree.Get(row.Division(k)); ok {
		out["division_name"] = d.Name
	}
	return out
}

// searchRoster lists rows of a kind in the caller's division (or under
// ?division=) whose id, name or phone contains ?q=.
func (s *server) searchRoster(k roster.Kind) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.noRosters(c) {
			return
		}
		limit, err := strconv.Atoi(c.DefaultQuery("limit", "50"))
		if err != nil || limit < 1 || limit > 500 {
			fail(c, http.StatusBadRequest, "invalid_query", "limit must be 1 to 500", "limit")
			return
		}
		within := principalOf(c).Division
		if d := c.Query("division"); d != "" {
			within = d
		}
		rows, err := s.Rosters.Search(c.Request.Context(), k, within, c.Query("q"), limit)
		if err != nil {
			fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
			return
		}
		out := make([]gin.H, len(rows))
		for i, r := range rows {
			out[i] = s.rowView(k, r)
		}
		c.JSON(http.StatusOK, gin.H{"kind": k, "version": s.Rosters.Info().Number, string(k): out})
	}
}

// rowInScope finds a row the caller may see, or answers 404: a row outside
// the caller's division is not theirs to know of.
func (s *server) rowInScope(c *gin.Context, k roster.Kind) (roster.Row, bool) {
	row, found, err := s.Rosters.Get(c.Request.Context(), k, c.Param("id"))
	if err != nil {
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
		return nil, false
	}
	if !found || !s.covers(principalOf(c), row.Division(k)) {
		return nil, false
	}
	return row, true
}

func notInRoster(c *gin.Context, k roster.Kind) {
	fail(c, http.StatusNotFound, "not_found", fmt.Sprintf("no %s with id %s in your division's roster", strings.TrimSuffix(string(k), "s"), c.Param("id")), "id")
}

func (s *server) getRosterRow(k roster.Kind) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.noRosters(c) {
			return
		}
		row, ok := s.rowInScope(c, k)
		if !ok {
			if !c.IsAborted() {
				notInRoster(c, k)
			}
			return
		}
		out := s.rowView(k, row)
		out["version"] = s.Rosters.Info().Number
		c.JSON(http.StatusOK, out)
	}
}

// putRosterRow adds or replaces one row: 201 when new, 200 when changed or
// unchanged; 422 naming every wrong field; 403 for a division outside the
// caller's.
func (s *server) putRosterRow(k roster.Kind) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.noRosters(c) {
			return
		}
		cols := k.Columns()
		var req map[string]string
		body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 16<<10))
		if err != nil {
			fail(c, http.StatusRequestEntityTooLarge, "too_large", "the body may be at most 16 KiB", "")
			return
		}
		if err := jsonStrict(body, &req); err != nil {
			fail(c, http.StatusBadRequest, "malformed_json", `send {"`+strings.Join(cols[1:], `":"…","`)+`":"…"}, every value a string: `+err.Error(), "")
			return
		}
		var unknown []string
		for f := range req {
			if f == "id" || !contains(cols, f) {
				unknown = append(unknown, f)
			}
		}
		if len(unknown) > 0 {
			fail(c, http.StatusBadRequest, "malformed_json", fmt.Sprintf("unknown field %q: use %s (the id is in the path)", unknown[0], strings.Join(cols[1:], ", ")), unknown[0])
			return
		}
		before, existed := s.rowInScope(c, k)
		if c.IsAborted() {
			return
		}
		if !existed {
			// A row of another division with this id stays hidden: the
			// change below refuses it without naming where it is.
			if _, found, _ := s.Rosters.Get(c.Request.Context(), k, c.Param("id")); found {
				notInRoster(c, k)
				return
			}
		}
		fields := make([]string, len(cols))
		fields[0] = c.Param("id")
		for i, col := range cols[1:] {
			fields[i+1] = req[col]
		}
		if d := fields[divisionColumn(k)]; d != "" {
			if _, known := s.Tree.Get(d); known && !s.inside(c, d, "division") {
				return
			}
		}
		res, err := s.Rosters.Put(c.Request.Context(), fields, roster.Change{Kind: k, Allowed: s.allowedFor(c), By: principalOf(c).Actor(), Note: "edit " + string(k) + " " + c.Param("id")})
		if err != nil {
			failUpload(c, err)
			return
		}
		if res.ErrorsTotal > 0 {
			failRowErrors(c, res.Errors)
			return
		}
		after, _, _ := s.Rosters.Get(c.Request.Context(), k, c.Param("id"))
		status := http.StatusOK
		if !existed {
			status = http.StatusCreated
		}
		if res.Version != res.Base {
			s.auditAccount(c, "roster_edit", string(k)+"/"+c.Param("id"), "", fmt.Sprintf("version %d → %d: %s → %s", res.Base, res.Version, describeRow(k, before), describeRow(k, after)))
		}
		out := s.rowView(k, after)
		out["version"] = res.Version
		out["changed"] = res.Version != res.Base
		c.JSON(status, out)
	}
}

// deleteRosterRow retires one row; a grid worker who still visits
// households is refused (409) until they are given to another.
func (s *server) deleteRosterRow(k roster.Kind) gin.HandlerFunc {
	return func(c *gin.Context) {
		if s.noRosters(c) {
			return
		}
		before, ok := s.rowInScope(c, k)
		if !ok {
			if !c.IsAborted() {
				notInRoster(c, k)
			}
			return
		}
		res, err := s.Rosters.Retire(c.Request.Context(), c.Param("id"), roster.Change{Kind: k, Allowed: s.allowedFor(c), By: principalOf(c).Actor(), Note: "retire " + string(k) + " " + c.Param("id")})
		if err != nil {
			failUpload(c, err)
			return
		}
		if res.ErrorsTotal > 0 {
			fail(c, http.StatusConflict, "in_use", res.Errors[0].Message, "id")
			return
		}
		s.auditAccount(c, "roster_edit", string(k)+"/"+c.Param("id"), "", fmt.Sprintf("version %d → %d: %s → retired", res.Base, res.Version, describeRow(k, before)))
		c.JSON(http.StatusOK, gin.H{"retired": c.Param("id"), "version": res.Version})
	}
}

// jsonStrict decodes an edit's body: an object of strings.
func jsonStrict(body []byte, v *map[string]string) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("one JSON object only")
	}
	return nil
}

func divisionColumn(k roster.Kind) int {
	for i, c := range k.Columns() {
		if c == "division" {
			return i
		}
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// failRowErrors answers the field problems of an edit, all at once.
func failRowErrors(c *gin.Context, errs []roster.RowError) {
	fields := make([]fieldError, len(errs))
	msgs := make([]string, len(errs))
	for i, e := range errs {
		fields[i] = fieldError{Field: e.Field, Message: e.Message}
		msgs[i] = e.Field + ": " + e.Message
	}
	fail(c, http.StatusUnprocessableEntity, "invalid_roster_row", strings.Join(msgs, "; "), fields[0].Field, fields...)
}

// describeRow is a row for the audit trail: every column, phones masked.
func describeRow(k roster.Kind, row roster.Row) string {
	if row == nil {
		return "(none)"
	}
	parts := make([]string, 0, len(row))
	for i, col := range k.Columns() {
		v := row[i]
		if col == "phone" && v != "" {
			v = channels.MaskPhone(v)
		}
		if v != "" {
			parts = append(parts, col+"="+v)
		}
	}
	return strings.Join(parts, " ")
}
