package api

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/dispatcher"
	"warngate/internal/link"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

//go:embed web
var webFS embed.FS

var cst = time.FixedZone("CST", 8*3600)

var pageFuncs = template.FuncMap{
	"fill": fill,
	"fmtTime": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.In(cst).Format("01-02 15:04")
	},
}

var pages = template.Must(template.New("").Funcs(pageFuncs).ParseFS(webFS, "web/*.html"))

func staticFS() http.FileSystem {
	sub, _ := fs.Sub(webFS, "web")
	return http.FS(sub)
}

// officerPage is what an official sees when opening their link, in
// Chinese unless they ask for English (?lang=en).
type officerPage struct {
	Lang, Other  string // the page's language, and the other one
	T            map[string]string
	Token        string
	Warning      *warning.Warning
	LevelName    string
	Person       region.Person
	RoleName     string
	DivisionName string
	Official     ledger.Official
	Acked        bool
	Flash, Error string
	Checklist    []dispatcher.ChecklistEntry
	Households   []householdView
}

type householdView struct {
	region.Household
	Category   string
	Marked     bool
	Reached    bool
	MethodName string
	At         time.Time
	Note       string
}

// methods are the ways a household is told.
var methods = []string{"visit", "phone", "loudspeaker", "other"}

// linkError renders the page for a link that cannot be used; why is a
// catalogue key (link_expired).
func (s *server) linkError(c *gin.Context, status int, why string) {
	lang := s.lang(c)
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	pages.ExecuteTemplate(c.Writer, "error.html", map[string]any{"Lang": lang, "T": dict[lang], "Message": dict[lang][why]})
	c.Abort()
}

// officer resolves the link of the request to the official and warning.
func (s *server) officer(c *gin.Context) (*warning.Warning, region.Person, warning.Ref, bool) {
	ref, err := s.Links.Check(c.Param("token"))
	switch {
	case errors.Is(err, link.ErrExpired):
		s.linkError(c, http.StatusGone, "link_expired")
		return nil, region.Person{}, ref, false
	case errors.Is(err, link.ErrForged):
		s.linkError(c, http.StatusForbidden, "link_forged")
		return nil, region.Person{}, ref, false
	case err != nil:
		s.linkError(c, http.StatusBadRequest, "link_malformed")
		return nil, region.Person{}, ref, false
	}
	w, err := s.Ledger.Warning(c.Request.Context(), ref.WarningID)
	if err != nil {
		s.linkError(c, http.StatusNotFound, "link_no_warning")
		return nil, region.Person{}, ref, false
	}
	p, ok := s.rosterOf(c, w).Person(ref.RecipientID)
	if !ok {
		s.linkError(c, http.StatusNotFound, "link_not_in_roster")
		return nil, region.Person{}, ref, false
	}
	return w, p, ref, true
}

func (s *server) officerGet(c *gin.Context) {
	w, p, ref, ok := s.officer(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	lang := s.lang(c)
	T := dict[lang]
	// A link to a version an update replaced opens the version in force:
	// that is the one the official is to read and confirm.
	inForce := s.Dispatcher.InForce(ctx, w)
	var sup *dispatcher.SupersededError
	if errors.As(inForce, &sup) && sup.Current != nil && s.Dispatcher.InForce(ctx, sup.Current) == nil && !wantsJSON(c) {
		q := "ok=updated"
		if l := c.Query("lang"); l == "en" || l == "zh" {
			q += "&lang=" + l
		}
		s.toCurrent(c, ref, w, sup.Current, q)
		return
	}
	page := officerPage{Lang: lang, Other: "en", T: T, Token: c.Param("token"), Warning: w, Person: p, RoleName: T["role_"+string(p.Role)],
		LevelName: levelName(lang, w.Hazard, w.Level)}
	if lang == "en" {
		page.Other = "zh"
	}
	if d, ok := s.Tree.Get(p.Division); ok {
		page.DivisionName = d.Name
	}
	if o, err := s.Ledger.OfficialState(ctx, w.ID, p.ID); err == nil {
		page.Official, page.Acked = o, o.State == ledger.AckConfirmed
	}
	switch ok := c.Query("ok"); ok {
	case "ack", "item", "hh":
		page.Flash = T["of_ok_"+ok]
	case "updated":
		page.Flash = T["of_ok_updated"]
	}
	switch e := c.Query("err"); e {
	case "":
	case "not_addressed", "forbidden", "closed", "invalid", "updating", "superseded_hh":
		page.Error = T["of_err_"+e]
	case "superseded":
		// Sent here from an old version's page: their tap confirmed nothing.
		page.Error = T["of_err_superseded"]
	default:
		page.Error = T["of_err_failed"]
	}
	if c.Query("ok") == "updated" || c.Query("err") == "superseded" {
		switch {
		case page.Acked:
			page.Flash, page.Error = T["of_updated_acked"], ""
		case page.Official.PersonID == "":
			page.Flash, page.Error = T["of_updated_none"], ""
		}
	}
	// A warning no longer in force is not to be confirmed: the page says so
	// and offers no button (it still shows a confirmation made in time).
	if inForce != nil {
		page.Error = T[closedKey(inForce)]
		if page.Flash == T["of_ok_updated"] {
			page.Flash = ""
		}
		if !page.Acked && !wantsJSON(c) {
			page.Official = ledger.Official{}
		}
	}
	if entries, err := s.Dispatcher.Checklist(ctx, w, p.Division); err == nil {
		page.Checklist = entries
	}
	page.Households = s.householdsFor(c, w, p, T)
	if wantsJSON(c) {
		c.JSON(http.StatusOK, gin.H{"warning": s.warningView(w), "person": gin.H{"id": p.ID, "name": p.Name, "role": p.Role, "division": p.Division},
			"in_force": inForce == nil, "acknowledgement": gin.H{"state": page.Official.State.String(), "acked_at": page.Official.AckedAt, "tries": page.Official.Tries},
			"checklist": page.Checklist, "households": page.Households})
		return
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Header("Cache-Control", "no-store")
	if err := pages.ExecuteTemplate(c.Writer, "officer.html", page); err != nil {
		s.Log.Error("officer page", "err", err)
	}
}

// householdsFor lists the call-list households a person works on for a
// warning: a grid worker's own, or all of a village officer's village.
func (s *server) householdsFor(c *gin.Context, w *warning.Warning, p region.Person, T map[string]string) []householdView {
	if p.Role != region.GridWorker && p.Role != region.VillageOfficer && p.Role != region.InfoOfficer {
		return nil
	}
	ctx := c.Request.Context()
	marks, _ := s.Ledger.Marks(ctx, w.ID)
	var out []householdView
	var hs []region.Household
	s.rosterOf(c, w).Households(p.Division, func(h region.Household) bool {
		if p.Role != region.GridWorker || h.GridWorker == p.ID {
			hs = append(hs, h)
		}
		return true
	})
	dvs, err := s.callListDeliveries(ctx, w, hs)
	if err != nil {
		hs = nil // the page shows no list rather than a wrong one
	}
	for i, h := range hs {
		if d := dvs[i]; d.State == warning.Queued && d.Audience == "" {
			continue // not on this warning's list
		}
		v := householdView{Household: h, Category: T["cat_"+string(h.Category)]}
		if m, ok := marks[h.ID]; ok {
			v.Marked, v.Reached, v.MethodName, v.At, v.Note = true, m.Reached, T["method_"+m.Method], m.At, m.Note
		}
		out = append(out, v)
	}
	// Residents no channel reached, put on the village's list: a grid
	// worker's own, or all of the village for its officers.
	listed, _ := s.Ledger.Fallback(ctx, w.ID)
	var extra []householdView
	for id, e := range listed {
		if e.Village != p.Division || (p.Role == region.GridWorker && e.GridWorker != p.ID) {
			continue
		}
		v := householdView{Household: region.Household{ID: id, Head: e.Name, Phone: e.Phone, Division: e.Village, GridWorker: e.GridWorker}, Category: T["cat_fallback"]}
		if m, ok := marks[id]; ok {
			v.Marked, v.Reached, v.MethodName, v.At, v.Note = true, m.Reached, T["method_"+m.Method], m.At, m.Note
		}
		extra = append(extra, v)
	}
	slices.SortFunc(extra, func(a, b householdView) int { return strings.Compare(a.ID, b.ID) })
	return append(out, extra...)
}

func wantsJSON(c *gin.Context) bool {
	return strings.Contains(c.GetHeader("Accept"), "application/json")
}

// back answers a form post: a redirect to the page for browsers, JSON for programs.
func (s *server) back(c *gin.Context, ok string, err error) {
	if wantsJSON(c) {
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, dispatcher.ErrForbidden) {
				status = http.StatusForbidden
			}
			fail(c, status, "refused", err.Error(), "")
			return
		}
		c.JSON(http.StatusOK, gin.H{"ok": true})
		return
	}
	target := "/a/" + c.Param("token")
	if err != nil {
		target += "?err=" + officerErr(err)
	} else {
		target += "?ok=" + ok
	}
	c.Redirect(http.StatusSeeOther, target)
}

// officerErr names what went wrong for the official's page, which says it
// in the page's language.
func officerErr(err error) string {
	switch {
	case errors.Is(err, ledger.ErrNotAddressed):
		return "not_addressed"
	case errors.Is(err, dispatcher.ErrForbidden):
		return "forbidden"
	case errors.Is(err, ledger.ErrState):
		return "closed"
	}
	var fe formError
	if errors.As(err, &fe) {
		return "invalid"
	}
	return "failed"
}

// formError is a form filled in wrong; it says how to fill it.
type formError string

func (e formError) Error() string { return string(e) }

// officerAck confirms receipt, of a warning still in force only: a tap on
// a lifted or expired warning's page records nothing and says so; one on a
// version an update replaced records nothing and opens the current
// version's page, which says their confirmation was not recorded and asks
// them to read the new text and confirm it. (Confirming the new version for
// them would end their reminders on a text they have not seen.)
func (s *server) officerAck(c *gin.Context) {
	w, p, ref, ok := s.officer(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	_, err := s.Dispatcher.AcknowledgeOwn(ctx, w.ID, p.ID, "link", dispatcher.Actor{PersonID: p.ID, From: c.ClientIP()})
	if s.notInForce(c, ref, w, err, "superseded", "read and confirm the current version at ") {
		return
	}
	s.back(c, "ack", err)
}

// notInForce answers an official's action on a warning no longer in force
// (err from the dispatcher; false for any other error, left to the caller):
// for a version an update replaced, the current version's page with the
// message of superseded (a catalogue key of_err_…), or 409 naming its link
// after what (JSON); for one lifted or expired, their page saying so, or
// 409.
func (s *server) notInForce(c *gin.Context, ref warning.Ref, w *warning.Warning, err error, superseded, what string) bool {
	var sup *dispatcher.SupersededError
	if errors.As(err, &sup) && sup.Current != nil && s.Dispatcher.InForce(c.Request.Context(), sup.Current) == nil {
		if wantsJSON(c) {
			fail(c, http.StatusConflict, "superseded", "the warning was updated and nothing was recorded: "+what+s.currentLink(c, ref, w, sup.Current), "")
		} else {
			s.toCurrent(c, ref, w, sup.Current, "err="+superseded)
		}
		return true
	}
	if !errors.Is(err, dispatcher.ErrNotLive) {
		return false
	}
	if wantsJSON(c) {
		fail(c, http.StatusConflict, "closed", err.Error()+": nothing was recorded", "")
	} else {
		s.redirectErr(c, closedKey(err))
	}
	return true
}

// closedKey names the page's message for a warning no longer in force
// (InForce's error): being updated when the update awaits approval,
// otherwise lifted or expired.
func closedKey(err error) string {
	var sup *dispatcher.SupersededError
	if errors.As(err, &sup) && sup.Current != nil && sup.Current.State == warning.StateAwaitingApproval {
		return "of_err_updating"
	}
	return "of_err_closed"
}

// redirectErr sends the official back to their page with a message (a
// catalogue key of_err_…).
func (s *server) redirectErr(c *gin.Context, key string) {
	c.Redirect(http.StatusSeeOther, "/a/"+c.Param("token")+"?err="+strings.TrimPrefix(key, "of_err_"))
}

// currentLink is the official's link to the current version of a warning
// an update replaced: the same delivery's, valid as long after the current
// version expires as theirs was after the old one did.
func (s *server) currentLink(c *gin.Context, ref warning.Ref, old, cur *warning.Warning) string {
	validity := time.Duration(0)
	token := c.Param("token")
	if parts := strings.Split(token, "."); len(parts) == 5 {
		if exp, err := strconv.ParseInt(parts[3], 36, 64); err == nil {
			validity = time.Unix(exp, 0).Sub(old.Expires)
		}
	}
	ref.WarningID = cur.ID
	return "/a/" + s.Links.Token(ref, cur.Expires.Add(max(validity, 0)))
}

// toCurrent opens the page of the current version of a warning an update
// replaced, with a message (query).
func (s *server) toCurrent(c *gin.Context, ref warning.Ref, old, cur *warning.Warning, query string) {
	c.Redirect(http.StatusSeeOther, s.currentLink(c, ref, old, cur)+"?"+query)
}

// officerMark records a grid worker's or village officer's mark of a
// household, on a warning still in force only, as officerAck confirms: a
// mark on a lifted or expired warning's page records nothing and says it is
// no longer in force; one on a version an update replaced records nothing
// (the current version's coverage would never see it) and opens the
// current version's page, where the household is to mark, saying the mark
// was not recorded.
func (s *server) officerMark(c *gin.Context) {
	w, p, ref, ok := s.officer(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	m, err := markFromForm(c.PostForm("reached"), c.PostForm("method"), c.PostForm("note"))
	if err == nil {
		err = s.Dispatcher.MarkHousehold(ctx, w, dispatcher.Actor{PersonID: p.ID, From: c.ClientIP()}, c.Param("hid"), m)
	}
	if s.notInForce(c, ref, w, err, "superseded_hh", "mark the household on the current version at ") {
		return
	}
	s.back(c, "hh", err)
}

func markFromForm(reached, method, note string) (ledger.Mark, error) {
	m := ledger.Mark{Note: note}
	switch reached {
	case "yes", "true", "1":
		m.Reached = true
	case "no", "false", "0":
	default:
		return m, formError("reached: answer yes or no")
	}
	if m.Reached {
		if !slices.Contains(methods, method) {
			return m, formError("method: use visit, phone, loudspeaker or other")
		}
		m.Method = method
	}
	return m, nil
}

func (s *server) officerItem(c *gin.Context) {
	w, p, _, ok := s.officer(c)
	if !ok {
		return
	}
	st, err := ledger.ParseItemStatus(c.PostForm("status"))
	if err == nil {
		err = s.Dispatcher.SetChecklistItem(c.Request.Context(), w, dispatcher.Actor{PersonID: p.ID, From: c.ClientIP()}, p.Division, c.Param("item"), st, c.PostForm("note"))
	}
	s.back(c, "item", err)
}
