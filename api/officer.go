package api

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
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

// officerPage is what an official sees when opening their link.
type officerPage struct {
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

var methodNames = map[string]string{"visit": "上门", "phone": "电话", "loudspeaker": "广播", "other": "其他"}

// linkError renders the page for a link that cannot be used.
func (s *server) linkError(c *gin.Context, status int, zh, en string) {
	c.Status(status)
	c.Header("Content-Type", "text/html; charset=utf-8")
	pages.ExecuteTemplate(c.Writer, "error.html", map[string]string{"Message": zh, "English": en})
	c.Abort()
}

// officer resolves the link of the request to the official and warning.
func (s *server) officer(c *gin.Context) (*warning.Warning, region.Person, warning.Ref, bool) {
	ref, err := s.Links.Check(c.Param("token"))
	switch {
	case errors.Is(err, link.ErrExpired):
		s.linkError(c, http.StatusGone, "此链接已过期，请联系值班室获取新的链接。", err.Error())
		return nil, region.Person{}, ref, false
	case errors.Is(err, link.ErrForged):
		s.linkError(c, http.StatusForbidden, "此链接无效：不是本平台签发的链接。", err.Error())
		return nil, region.Person{}, ref, false
	case err != nil:
		s.linkError(c, http.StatusBadRequest, "此链接不完整，请从短信或企业微信中打开完整链接。", err.Error())
		return nil, region.Person{}, ref, false
	}
	w, err := s.Ledger.Warning(c.Request.Context(), ref.WarningID)
	if err != nil {
		s.linkError(c, http.StatusNotFound, "找不到该预警。", err.Error())
		return nil, region.Person{}, ref, false
	}
	p, ok := s.rosterOf(c, w).Person(ref.RecipientID)
	if !ok {
		s.linkError(c, http.StatusNotFound, "名册中找不到您的信息，请联系值班室。", "person not in the roster")
		return nil, region.Person{}, ref, false
	}
	return w, p, ref, true
}

func (s *server) officerGet(c *gin.Context) {
	w, p, _, ok := s.officer(c)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	page := officerPage{Token: c.Param("token"), Warning: w, Person: p, RoleName: p.Role.Chinese(),
		LevelName: w.Hazard.Chinese() + w.Level.Colour() + "预警 · " + w.Level.Roman() + "级（" + w.Level.Grade() + "）"}
	if d, ok := s.Tree.Get(p.Division); ok {
		page.DivisionName = d.Name
	}
	switch c.Query("ok") {
	case "ack":
		page.Flash = "已确认收到，谢谢。"
	case "item":
		page.Flash = "响应清单已更新。"
	case "hh":
		page.Flash = "传递情况已记录。"
	}
	if e := c.Query("err"); e != "" {
		page.Error = e
	}
	if o, err := s.Ledger.OfficialState(ctx, w.ID, p.ID); err == nil {
		page.Official, page.Acked = o, o.State == ledger.AckConfirmed
	}
	if entries, err := s.Dispatcher.Checklist(ctx, w, p.Division); err == nil {
		page.Checklist = entries
	}
	page.Households = s.householdsFor(c, w, p)
	if wantsJSON(c) {
		c.JSON(http.StatusOK, gin.H{"warning": s.warningView(w), "person": gin.H{"id": p.ID, "name": p.Name, "role": p.Role, "division": p.Division},
			"acknowledgement": gin.H{"state": page.Official.State.String(), "acked_at": page.Official.AckedAt, "tries": page.Official.Tries},
			"checklist":       page.Checklist, "households": page.Households})
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
func (s *server) householdsFor(c *gin.Context, w *warning.Warning, p region.Person) []householdView {
	if p.Role != region.GridWorker && p.Role != region.VillageOfficer && p.Role != region.InfoOfficer {
		return nil
	}
	ctx := c.Request.Context()
	marks, _ := s.Ledger.Marks(ctx, w.ID)
	var out []householdView
	s.rosterOf(c, w).Households(p.Division, func(h region.Household) bool {
		if p.Role == region.GridWorker && h.GridWorker != p.ID {
			return true
		}
		d, err := s.Ledger.Delivery(ctx, warning.Ref{WarningID: w.ID, Channel: warning.CallList, RecipientID: h.ID})
		if err != nil || (d.State == warning.Queued && d.Audience == "") {
			return true // not on this warning's list
		}
		v := householdView{Household: h, Category: h.Category.Chinese()}
		if m, ok := marks[h.ID]; ok {
			v.Marked, v.Reached, v.MethodName, v.At, v.Note = true, m.Reached, methodNames[m.Method], m.At, m.Note
		}
		out = append(out, v)
		return true
	})
	return out
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
		target += "?err=" + template.URLQueryEscaper(err.Error())
	} else {
		target += "?ok=" + ok
	}
	c.Redirect(http.StatusSeeOther, target)
}

func (s *server) officerAck(c *gin.Context) {
	w, p, _, ok := s.officer(c)
	if !ok {
		return
	}
	_, err := s.Dispatcher.Acknowledge(c.Request.Context(), w.ID, p.ID, "link", dispatcher.Actor{PersonID: p.ID, From: c.ClientIP()})
	if errors.Is(err, ledger.ErrNotAddressed) {
		err = errors.New("您不在本预警的确认名单中，无需确认")
	}
	s.back(c, "ack", err)
}

func (s *server) officerMark(c *gin.Context) {
	w, p, _, ok := s.officer(c)
	if !ok {
		return
	}
	m, err := markFromForm(c.PostForm("reached"), c.PostForm("method"), c.PostForm("note"))
	if err == nil {
		err = s.Dispatcher.MarkHousehold(c.Request.Context(), w, dispatcher.Actor{PersonID: p.ID, From: c.ClientIP()}, c.Param("hid"), m)
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
		return m, errors.New("reached: answer yes or no")
	}
	if m.Reached {
		if _, ok := methodNames[method]; !ok {
			return m, errors.New("method: use visit, phone, loudspeaker or other")
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
