package api

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/accounts"
	"warngate/ledger"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
)

// The bureau's web console and the public warning page. Pages are rendered
// here with what they need to start; their scripts (web/console/console.js)
// then talk to /api/v1 with the session cookie, like any API client. The
// console issues, approves, updates and cancels only through that API, which
// audits those actions; the console audits what only it does: signing in and out.

var consolePages = template.Must(template.New("").Funcs(pageFuncs).Funcs(template.FuncMap{
	"pct": func(n, of int64) int64 {
		if of <= 0 {
			return 0
		}
		return n * 100 / of
	},
}).ParseFS(webFS, "web/console/*.html"))

type console struct {
	*server
	mapOnce sync.Once
	cmap    *countyMap
}

const (
	consoleCSRF = "warngate.console.csrf"
	langCookie  = "warngate_lang"
)

// mountConsole adds the console (/console/…) and the public page (/public/).
func mountConsole(r *gin.Engine, s *server) {
	c := &console{server: s}
	g := r.Group("/console", pageHeaders)
	g.GET("/login", c.loginPage)
	g.POST("/login", c.login)
	g.GET("/logout", c.logoutPage)
	g.POST("/logout", c.logout)
	g.GET("/", c.list)
	g.GET("/new", c.newPage)
	g.GET("/approvals", c.approvals)
	g.GET("/w/:id", c.watch)
	g.GET("/roster", c.rosterPage)
	r.GET("/public/", pageHeaders, c.public)
}

// page is what every console template gets.
type page struct {
	Lang     string
	T        map[string]string
	User     Principal
	CSRF     string
	Page     string // names the page for its script and the navigation
	Title    string
	LangURL  string // this page in the other language
	Embedded bool
	Error    string
	Flash    string
	Status   int

	Next      string
	Login     string // the name typed at a failed sign-in
	Rows      []listRow
	Pending   []approvalRow
	W         *warningView
	AreaNames string
	Hazards   []option
	Levels    []option
	Statuses  []option
	Expires   string
	Area      *region.Division
	AreaPath  []*region.Division
	Children  []*region.Division
	Found     []*region.Division
	Query     string
	Roster    rosterSummary
	Map       *countyMap
	// Data goes to the page's script as JSON, in Boot.
	Data any
	Boot any

	names func(actor string) string
}

// LevelName names a warning's hazard and level in the page's language:
// 暴雨红色预警（Ⅰ级/特别严重）, Rainstorm warning · Red (I) · Extreme.
func (p *page) LevelName(w *warning.Warning) string { return levelName(p.Lang, w.Hazard, w.Level) }

// UserName is how the page names the user an actor is: the display name
// (值班员) in Chinese, the user name in English.
func (p *page) UserName(actor string) string { return p.names(actor) }

// Level names a level in the page's language.
func (p *page) Level(l warning.Level) string { return levelLabel(p.Lang, l) }

// Hazard names a hazard in the page's language.
func (p *page) Hazard(h warning.Hazard) string { return hazardLabel(p.Lang, h) }

// State names a warning state in the page's language.
func (p *page) State(s warning.State) string { return p.T["st_"+string(s)] }

type option struct {
	Value, Label string
	Checked      bool
}

// pageHeaders are the security headers of every page the gateway serves:
// the console, the public page and officials' pages.
func pageHeaders(ctx *gin.Context) {
	h := ctx.Writer.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
}

// lang picks a page's language: ?lang=en or ?lang=zh sets a cookie;
// Chinese first.
func (s *server) lang(ctx *gin.Context) string {
	if l := ctx.Query("lang"); l == "en" || l == "zh" {
		http.SetCookie(ctx.Writer, &http.Cookie{Name: langCookie, Value: l, Path: "/", MaxAge: 365 * 24 * 3600, SameSite: http.SameSiteLaxMode})
		return l
	}
	if ck, err := ctx.Cookie(langCookie); err == nil && ck == "en" {
		return "en"
	}
	return "zh"
}

// begin starts the page called name for the request's language and user.
func (c *console) begin(ctx *gin.Context, name string) *page {
	lang := c.lang(ctx)
	p := &page{Lang: lang, T: dict[lang], Page: name, Embedded: c.Embedded, Status: http.StatusOK}
	q := ctx.Request.URL.Query()
	q.Set("lang", "en")
	if lang == "en" {
		q.Set("lang", "zh")
	}
	p.LangURL = ctx.Request.URL.Path + "?" + q.Encode()
	if v, ok := ctx.Get(ctxPrincipal); ok {
		p.User = v.(Principal)
		p.CSRF = ctx.GetString(consoleCSRF)
	}
	p.Title = p.T["title_"+name]
	known := map[string]string{}
	p.names = func(actor string) string {
		if n, ok := known[actor]; ok {
			return n
		}
		n := c.displayName(ctx.Request.Context(), actor)
		if user, _, _ := strings.Cut(actor, "/token:"); lang == "en" || n == accounts.Bootstrap.Display {
			n = user
			if user == accounts.Bootstrap.Name {
				n = p.T["admin_name"]
			}
		}
		known[actor] = n
		return n
	}
	return p
}

func (c *console) render(ctx *gin.Context, name string, p *page) {
	levels, hazards := map[string]string{}, map[string]string{}
	for _, l := range warning.Levels {
		levels[l.String()] = levelLabel(p.Lang, l)
	}
	for _, h := range hazardOrder {
		hazards[string(h)] = hazardLabel(p.Lang, h)
	}
	p.Boot = gin.H{"page": name, "lang": p.Lang, "csrf": p.CSRF, "t": p.T, "levels": levels, "hazards": hazards, "data": p.Data}
	ctx.Header("Content-Type", "text/html; charset=utf-8")
	ctx.Status(p.Status)
	if err := consolePages.ExecuteTemplate(ctx.Writer, name+".html", p); err != nil {
		c.Log.Error("console page", "page", name, "err", err)
	}
}

// localNext keeps a redirect after sign-in inside the console.
func localNext(s string) string {
	if strings.HasPrefix(s, "/console/") && !strings.HasPrefix(s, "/console//") && !strings.ContainsAny(s, "\\\r\n") &&
		!strings.HasPrefix(s, "/console/login") && !strings.HasPrefix(s, "/console/logout") {
		return s
	}
	return "/console/"
}

func (c *console) loginPage(ctx *gin.Context) {
	next := localNext(ctx.Query("next"))
	if _, _, ok := c.session(ctx); ok {
		ctx.Redirect(http.StatusSeeOther, next)
		return
	}
	p := c.begin(ctx, "login")
	p.Next = next
	if c.Accounts == nil {
		p.Error = p.T["no_users"]
	}
	if ctx.Query("bye") != "" {
		p.Flash = p.T["signed_out"]
	}
	c.render(ctx, "login", p)
}

func (c *console) login(ctx *gin.Context) {
	p := c.begin(ctx, "login")
	p.Next = localNext(ctx.PostForm("next"))
	name := strings.TrimSpace(ctx.PostForm("name"))
	switch {
	case c.Accounts == nil:
		p.Error, p.Status = p.T["no_users"], http.StatusServiceUnavailable
	case !accounts.SameOrigin(ctx.Request):
		p.Error, p.Status = p.T["bad_origin"], http.StatusForbidden
	}
	if p.Error != "" {
		c.render(ctx, "login", p)
		return
	}
	rctx := ctx.Request.Context()
	who, err := c.Accounts.SignIn(rctx, name, ctx.PostForm("password"), ctx.ClientIP())
	var cookie *http.Cookie
	if err == nil {
		cookie, err = c.Accounts.StartSession(rctx, who, ctx.ClientIP())
	}
	if err != nil {
		detail := "wrong password"
		switch {
		case errors.Is(err, accounts.ErrThrottled):
			detail, p.Error, p.Status = "throttled", p.T["throttled"], http.StatusTooManyRequests
		case errors.Is(err, accounts.ErrBusy):
			detail, p.Error, p.Status = "busy", p.T["signin_busy"], http.StatusTooManyRequests
			ctx.Header("Retry-After", "2")
		case errors.Is(err, accounts.ErrBadCredentials) && !c.Accounts.Known(rctx, name):
			detail, p.Error, p.Status = "unknown user", p.T["bad_login"], http.StatusUnauthorized
		case errors.Is(err, accounts.ErrBadCredentials):
			p.Error, p.Status = p.T["bad_login"], http.StatusUnauthorized
		default:
			detail, p.Error, p.Status = "unavailable", p.T["unavailable"], http.StatusServiceUnavailable
		}
		c.audit(ctx, ledger.AuditEntry{Who: auditName(name), Action: "sign_in_failed", Detail: detail})
		p.Login = name
		c.render(ctx, "login", p)
		return
	}
	http.SetCookie(ctx.Writer, cookie)
	c.audit(ctx, ledger.AuditEntry{Who: who.Name, Action: "sign_in", Detail: "console"})
	ctx.Redirect(http.StatusSeeOther, p.Next)
}

// auditName keeps what someone typed as a user name printable and short.
func auditName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
	if r := []rune(s); len(r) > 64 {
		s = string(r[:64])
	}
	if s == "" {
		return "?"
	}
	return s
}

func (c *console) audit(ctx *gin.Context, e ledger.AuditEntry) {
	e.From = ctx.ClientIP()
	if err := c.Ledger.Audit(ctx.Request.Context(), e); err != nil {
		c.Log.Warn("audit not written", "action", e.Action, "err", err)
	}
}

func (c *console) logoutPage(ctx *gin.Context) {
	pr, csrf, ok := c.session(ctx)
	if !ok {
		ctx.Redirect(http.StatusSeeOther, "/console/login")
		return
	}
	ctx.Set(ctxPrincipal, pr)
	ctx.Set(consoleCSRF, csrf)
	c.render(ctx, "logout", c.begin(ctx, "logout"))
}

// logout ends the session on the server, so that a copy of the cookie
// stops working too, and in the browser.
func (c *console) logout(ctx *gin.Context) {
	pr, _, ok := c.session(ctx)
	if !ok {
		ctx.Redirect(http.StatusSeeOther, "/console/login")
		return
	}
	if !accounts.SameOrigin(ctx.Request) || !c.Accounts.CheckCSRF(ctx.Request, ctx.PostForm("csrf")) {
		p := c.begin(ctx, "logout")
		p.Error, p.Status = p.T["bad_origin"], http.StatusForbidden
		c.render(ctx, "logout", p)
		return
	}
	if err := c.Accounts.EndSession(ctx.Request.Context(), ctx.Request); err != nil {
		p := c.begin(ctx, "logout")
		p.Error, p.Status = p.T["unavailable"], http.StatusServiceUnavailable
		c.render(ctx, "logout", p)
		return
	}
	http.SetCookie(ctx.Writer, c.Accounts.ClearCookie())
	c.audit(ctx, ledger.AuditEntry{Who: pr.Name, Action: "sign_out", Detail: "console"})
	ctx.Redirect(http.StatusSeeOther, "/console/login?bye=1")
}

// refused is the refusal authorize left for a page to render, if any.
func refused(ctx *gin.Context) string { return ctx.GetString(ctxRefused) }

// listRow is one warning in the list, with its progress at a glance.
type listRow struct {
	W         warningView
	Areas     string
	StateName string
	Counts    ledger.Counts
	Done      int64 // delivered, failed or expired
	Complete  bool
}

func (c *console) areaNames(areas []string) string {
	names := make([]string, 0, len(areas))
	for i, a := range areas {
		if i == 6 {
			names = append(names, "…")
			break
		}
		if d, ok := c.Tree.Get(a); ok {
			names = append(names, d.Name)
		} else {
			names = append(names, a)
		}
	}
	return strings.Join(names, "、")
}

// recent reads the newest warnings the user may see, at most n.
func (c *console) recent(ctx *gin.Context, n int) ([]*warning.Warning, error) {
	return c.visibleWarnings(ctx, 0, n)
}

func (c *console) list(ctx *gin.Context) {
	p := c.begin(ctx, "list")
	ws, err := c.recent(ctx, 50)
	if err != nil {
		p.Error, p.Status = p.T["unavailable"], http.StatusServiceUnavailable
	}
	for _, w := range ws {
		r := listRow{W: c.warningView(w), Areas: c.areaNames(w.Areas), StateName: p.T["st_"+string(w.State)]}
		if pr, err := c.Ledger.Progress(ctx.Request.Context(), w.ID); err == nil {
			r.Counts = pr.Total()
			r.Done = r.Counts.Delivered + r.Counts.Failed + r.Counts.Expired
			r.Complete = !pr.PlannedAt.IsZero() && r.Counts.Pending == 0
		}
		p.Rows = append(p.Rows, r)
	}
	c.render(ctx, "list", p)
}

// hazardOrder puts the hazards Kunming warns of most often first.
var hazardOrder = []warning.Hazard{
	warning.Rainstorm, warning.GeoHazard, warning.FlashFlood, warning.Flood, warning.ForestFire, warning.Earthquake,
	warning.Gale, warning.Lightning, warning.Hail, warning.Heat, warning.Drought, warning.ColdWave, warning.Frost,
	warning.Snowstorm, warning.RoadIcing, warning.Fog, warning.Haze, warning.Sandstorm, warning.Typhoon, warning.OtherHazard,
}

// levelLabel is how the console names a level: 红色Ⅰ级, or Red (I).
func levelLabel(lang string, l warning.Level) string {
	if lang == "en" {
		return strings.ToUpper(l.String()[:1]) + l.String()[1:] + " (" + map[warning.Level]string{warning.Blue: "IV", warning.Yellow: "III", warning.Orange: "II", warning.Red: "I"}[l] + ")"
	}
	return l.Colour() + l.Roman() + "级"
}

// levelName is a warning's hazard and level as its banner names them.
func levelName(lang string, h warning.Hazard, l warning.Level) string {
	return fill(dict[lang]["level_name"], "h", hazardLabel(lang, h), "c", l.Colour(), "r", l.Roman(), "l", levelLabel(lang, l),
		"g", dict[lang]["grade_"+l.String()])
}

// fill puts values into a catalogue text: fill("{n} 人", "n", 3).
func fill(text string, kv ...any) string {
	for i := 0; i+1 < len(kv); i += 2 {
		text = strings.ReplaceAll(text, "{"+fmt.Sprint(kv[i])+"}", fmt.Sprint(kv[i+1]))
	}
	return text
}

func hazardLabel(lang string, h warning.Hazard) string {
	if lang == "en" {
		return hazardEnglish[h]
	}
	return h.Chinese()
}

func (c *console) newPage(ctx *gin.Context) {
	p := c.begin(ctx, "new")
	if refused(ctx) != "" {
		p.Error, p.Status = p.T["need_issuer"], http.StatusForbidden
		c.render(ctx, "new", p)
		return
	}
	for _, h := range hazardOrder {
		p.Hazards = append(p.Hazards, option{Value: string(h), Label: hazardLabel(p.Lang, h), Checked: h == warning.Rainstorm})
	}
	for _, l := range []warning.Level{warning.Blue, warning.Yellow, warning.Orange, warning.Red} {
		p.Levels = append(p.Levels, option{Value: l.String(), Label: levelLabel(p.Lang, l)}) // no default: the issuer chooses
	}
	for _, s := range []warning.Status{warning.StatusActual, warning.StatusExercise, warning.StatusTest} {
		p.Statuses = append(p.Statuses, option{Value: string(s), Label: p.T["status_"+string(s)], Checked: s == warning.StatusActual})
	}
	p.Expires = time.Now().In(cst).Add(6 * time.Hour).Truncate(time.Minute).Format("2006-01-02T15:04")
	p.Map = c.countyMap()
	p.Data = gin.H{"home": c.home().Code}
	c.render(ctx, "new", p)
}

// home is the division the pickers start at: below the root while there is
// only one way down (云南省 → 昆明市).
func (c *console) home() *region.Division {
	d := c.Tree.Root()
	for len(d.Children) == 1 && d.Level != region.County {
		d = d.Children[0]
	}
	return d
}

type approvalRow struct {
	W     warningView
	Areas string
	Mine  bool
	Reach bool // the user may see the whole warning's reach
}

func (c *console) approvals(ctx *gin.Context) {
	p := c.begin(ctx, "approvals")
	ws, err := c.recent(ctx, 500)
	if err != nil {
		p.Error, p.Status = p.T["unavailable"], http.StatusServiceUnavailable
	}
	for _, w := range ws {
		if w.State == warning.StateAwaitingApproval {
			p.Pending = append(p.Pending, approvalRow{W: c.warningView(w), Areas: c.areaNames(w.Areas), Mine: w.IssuedBy == p.User.Name,
				Reach: c.within(p.User, w.Areas)})
		}
	}
	c.render(ctx, "approvals", p)
}

func (c *console) watch(ctx *gin.Context) {
	p := c.begin(ctx, "watch")
	w, _ := ctx.Value(ctxWarning).(*warning.Warning)
	if w == nil { // not found, or not in the user's division: the same page
		p.Error, p.Status = p.T["no_warning"], http.StatusNotFound
		c.render(ctx, "watch", p)
		return
	}
	v := c.named(ctx.Request.Context(), c.warningView(w))
	p.W, p.AreaNames = &v, c.areaNames(w.Areas)
	if p.Lang == "zh" { // the warning's own words; an English tab says what the page is
		p.Title = w.Title()
	}
	p.Map = c.countyMap()
	for _, l := range []warning.Level{warning.Blue, warning.Yellow, warning.Orange, warning.Red} {
		p.Levels = append(p.Levels, option{Value: l.String(), Label: levelLabel(p.Lang, l), Checked: l == w.Level})
	}
	p.Expires = w.Expires.In(cst).Format("2006-01-02T15:04")
	p.Data = gin.H{
		"id": w.ID, "warning": v, "townships": c.townships(w.Areas),
		"can_issue": p.User.Can(RoleIssuer) && c.within(p.User, w.Areas), "can_approve": p.User.Can(RoleApprover) && c.within(p.User, w.Areas),
		"me": p.User.Name,
	}
	c.render(ctx, "watch", p)
}

// townships names every township under or above a warning's areas, for the
// acknowledgement table.
func (c *console) townships(areas []string) map[string]string {
	out := map[string]string{}
	for _, a := range areas {
		if t, ok := c.Tree.Ancestor(a, region.Township); ok {
			out[t.Code] = t.Name
		}
		c.Tree.Walk(a, func(d *region.Division) bool {
			if d.Level == region.Township {
				out[d.Code] = d.Name
			}
			return true
		})
	}
	return out
}

// public shows the warnings in force for a division chosen from the tree,
// without sign-in and without personal data: the page holds only the tree,
// and its script reads /public/warnings.json.
func (c *console) public(ctx *gin.Context) {
	if pr, csrf, ok := c.session(ctx); ok { // a signed-in operator keeps the console's navigation
		ctx.Set(ctxPrincipal, pr)
		ctx.Set(consoleCSRF, csrf)
	}
	p := c.begin(ctx, "public")
	area := c.home()
	if d, ok := c.Tree.Get(ctx.Query("area")); ok {
		area = d
	}
	p.Area = area
	for _, d := range c.Tree.Path(area.Code) {
		if d != area && d.Level != region.Province {
			p.AreaPath = append(p.AreaPath, d)
		}
	}
	p.Children = area.Children
	if q := strings.TrimSpace(ctx.Query("q")); q != "" {
		p.Query = q
		p.Found = slices.DeleteFunc(c.Tree.Search(q, 30), func(d *region.Division) bool { return d.Level == region.Province })
	}
	p.Data = gin.H{"area": area.Code}
	c.render(ctx, "public", p)
}

// rosterSummary is the roster page's heading: the version served.
type rosterSummary struct {
	Ready bool // the caller may use the page and a roster store is there
	roster.Info
}

// rosterPage searches, edits and retires people, devices and households of
// the caller's division, and imports and exports roster sheets, through
// the API; responders see, admins change.
func (c *console) rosterPage(ctx *gin.Context) {
	p := c.begin(ctx, "roster")
	switch {
	case refused(ctx) != "":
		p.Error, p.Status = p.T["need_roster"], http.StatusForbidden
	case c.Rosters == nil:
		p.Error, p.Status = p.T["no_roster_store"], http.StatusServiceUnavailable
	default:
		if _, _, err := c.Rosters.Current(ctx.Request.Context()); err != nil {
			p.Error, p.Status = p.T["unavailable"], http.StatusServiceUnavailable
			break
		}
		p.Roster = rosterSummary{Ready: true, Info: c.Rosters.Info()}
		cols := map[string][]string{}
		for _, k := range roster.Kinds {
			cols[string(k)] = k.Columns()
		}
		p.Data = gin.H{"columns": cols, "can_edit": p.User.Can(RoleAdmin),
			"values": gin.H{"role": []string{"county_leader", "county_duty", "township_leader", "township_duty", "village_officer", "info_officer", "grid_worker", "resident"},
				"kind": []string{"loudspeaker", "screen"}, "category": []string{"elderly_alone", "danger_zone", "no_phone", "disabled"}}}
	}
	c.render(ctx, "roster", p)
}
