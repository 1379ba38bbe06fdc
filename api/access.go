package api

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"warngate/accounts"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// Who may call what. Every route the gateway serves has one row in
// routeAccess; authorize reads it for every request, before any handler
// runs, and a route without a row answers 500 (TestAccessMatrix fails the
// build's tests first). Handlers never check roles; where the division an
// action touches is only known from the body (the areas of a new warning,
// the person confirmed for, the user created), the row says so and the
// handler asks s.inside.

// Role and Principal are the accounts package's; the API speaks of them often.
type (
	Role      = accounts.Role
	Principal = accounts.Principal
)

// Roles.
const (
	RoleViewer    = accounts.RoleViewer
	RoleIssuer    = accounts.RoleIssuer
	RoleApprover  = accounts.RoleApprover
	RoleResponder = accounts.RoleResponder
	RoleAdmin     = accounts.RoleAdmin
)

// gate is how a route's caller proves who it is.
type gate int

const (
	// gatePublic: anyone; nothing personal is served.
	gatePublic gate = iota
	// gateProvider: a provider's callback, authenticated by the receiver
	// (signature, token or address allow-list).
	gateProvider
	// gateLink: an official's signed link, checked by the handler.
	gateLink
	// gateSignIn: the console's sign-in and sign-out forms, which check
	// their own CSRF token and origin.
	gateSignIn
	// gateConsole: a console page; without a session the browser is sent
	// to the sign-in page.
	gateConsole
	// gateAPI: a bearer token or a console session holding one of the
	// row's roles (any role when none are named).
	gateAPI
)

// scope says which divisions a call touches, to be checked against the
// caller's division. Several may be combined.
type scope uint16

const (
	// scopeWarningTouches: the :id warning reaches into the caller's
	// division (one of its areas lies inside it or covers it); else 404,
	// so that other divisions' warnings are not even known to exist.
	// What the handler lists is cut to the caller's division.
	scopeWarningTouches scope = 1 << iota
	// scopeWarningWithin: every area of the :id warning lies inside the
	// caller's division (an action on the whole warning); else 403.
	scopeWarningWithin
	// scopeDivisionParam: the :division parameter lies inside; else 403.
	scopeDivisionParam
	// scopeHouseholdParam: the :hid household's village lies inside; else 403.
	scopeHouseholdParam
	// scopeDivisionQuery: ?division= and ?village=, when given, lie inside; else 403.
	scopeDivisionQuery
	// scopeBody: the handler checks the divisions its body names with s.inside.
	scopeBody
)

// access is one row of the table.
type access struct {
	gate  gate
	roles []Role // for gateAPI and gateConsole: any of these; none means any principal
	scope scope
}

func public() access   { return access{gate: gatePublic} }
func provider() access { return access{gate: gateProvider} }
func official() access { return access{gate: gateLink} }
func signIn() access   { return access{gate: gateSignIn} }
func consolePage(sc scope, roles ...Role) access {
	return access{gate: gateConsole, roles: roles, scope: sc}
}
func api(sc scope, roles ...Role) access { return access{gate: gateAPI, roles: roles, scope: sc} }

// routeAccess is the table, by "METHOD /path" as gin names routes. The
// README's "Who may call what" is this table in words: keep them in step.
var routeAccess = map[string]access{
	"GET /healthz":                     public(),
	"GET /readyz":                      public(),
	"GET /metrics":                     public(),
	"GET /":                            public(),
	"GET /favicon.ico":                 public(),
	"GET /static/*filepath":            public(),
	"HEAD /static/*filepath":           public(),
	"GET /public/":                     public(),
	"GET /public/warnings.json":        public(),
	"GET /public/warnings.atom":        public(),
	"GET /public/warnings/:id/cap.xml": public(),

	"GET /a/:token":                     official(),
	"POST /a/:token/ack":                official(),
	"POST /a/:token/households/:hid":    official(),
	"POST /a/:token/checklist/:item":    official(),
	"GET /console/login":                signIn(),
	"POST /console/login":               signIn(),
	"GET /console/logout":               signIn(),
	"POST /console/logout":              signIn(),
	"GET /console/":                     consolePage(0),
	"GET /console/new":                  consolePage(0, RoleIssuer),
	"GET /console/approvals":            consolePage(0),
	"GET /console/w/:id":                consolePage(scopeWarningTouches),
	"GET /console/roster":               consolePage(0, RoleAdmin, RoleResponder),
	"POST /api/v1/warnings":             api(scopeBody, RoleIssuer),
	"POST /api/v1/warnings/preview":     api(scopeBody, RoleIssuer),
	"POST /api/v1/warnings/sms":         api(0, RoleIssuer),
	"GET /api/v1/warnings":              api(0),
	"GET /api/v1/warnings/:id":          api(scopeWarningTouches),
	"POST /api/v1/warnings/:id/approve": api(scopeWarningTouches|scopeWarningWithin, RoleApprover),
	"POST /api/v1/warnings/:id/update":  api(scopeWarningTouches|scopeWarningWithin|scopeBody, RoleIssuer),
	"POST /api/v1/warnings/:id/cancel":  api(scopeWarningTouches|scopeWarningWithin, RoleIssuer),
	"POST /api/v1/warnings/:id/resend":  api(scopeWarningTouches|scopeWarningWithin, RoleIssuer),
	"GET /api/v1/warnings/:id/progress": api(scopeWarningTouches),
	"GET /api/v1/warnings/:id/preview":  api(scopeWarningTouches | scopeWarningWithin),
	"GET /api/v1/warnings/:id/report":   api(scopeWarningTouches),
	"GET /api/v1/warnings/:id/cap":      api(scopeWarningTouches),
	"POST /api/v1/cap":                  api(scopeBody, RoleIssuer),

	"GET /api/v1/warnings/:id/acks":                       api(scopeWarningTouches | scopeDivisionQuery),
	"POST /api/v1/warnings/:id/acks":                      api(scopeWarningTouches|scopeBody, RoleResponder, RoleIssuer),
	"GET /api/v1/warnings/:id/unreached":                  api(scopeWarningTouches),
	"GET /api/v1/warnings/:id/escalations":                api(scopeWarningTouches),
	"GET /api/v1/warnings/:id/checklists":                 api(scopeWarningTouches | scopeDivisionQuery),
	"PUT /api/v1/warnings/:id/checklists/:division/:item": api(scopeWarningTouches|scopeDivisionParam, RoleResponder),
	"GET /api/v1/warnings/:id/coverage":                   api(scopeWarningTouches | scopeDivisionQuery),
	"GET /api/v1/warnings/:id/households":                 api(scopeWarningTouches | scopeDivisionQuery),
	"PUT /api/v1/warnings/:id/households/:hid":            api(scopeWarningTouches|scopeHouseholdParam, RoleResponder),
	"GET /api/v1/warnings/:id/calllist.xlsx":              api(scopeWarningTouches | scopeDivisionQuery),
	"POST /api/v1/warnings/:id/calllist.xlsx":             api(scopeWarningTouches|scopeBody, RoleResponder),
	"GET /api/v1/audit":                                   api(scopeDivisionQuery, RoleAdmin, RoleApprover),
	"GET /api/v1/regions":                                 api(0),
	"GET /api/v1/regions/:code":                           api(0),
	"GET /api/v1/me":                                      api(0),
	"GET /api/v1/users":                                   api(0, RoleAdmin),
	"POST /api/v1/users":                                  api(scopeBody, RoleAdmin),
	"GET /api/v1/users/:name":                             api(scopeBody, RoleAdmin),
	"PUT /api/v1/users/:name":                             api(scopeBody, RoleAdmin),
	"DELETE /api/v1/users/:name":                          api(scopeBody, RoleAdmin),
	"DELETE /api/v1/users/:name/sessions":                 api(scopeBody, RoleAdmin),
	"GET /api/v1/tokens":                                  api(0),
	"POST /api/v1/tokens":                                 api(scopeBody),
	"DELETE /api/v1/tokens/:id":                           api(scopeBody),

	// The roster: rows outside the caller's division are refused by row on
	// import, cut from exports and searches, and unknown (404) to reads
	// and edits.
	"GET /api/v1/roster":                   api(0, RoleAdmin, RoleResponder),
	"POST /api/v1/roster/import":           api(scopeBody, RoleAdmin),
	"GET /api/v1/roster/export.xlsx":       api(scopeDivisionQuery, RoleAdmin),
	"GET /api/v1/roster/people":            api(scopeDivisionQuery, RoleAdmin, RoleResponder),
	"GET /api/v1/roster/people/:id":        api(scopeBody, RoleAdmin, RoleResponder),
	"PUT /api/v1/roster/people/:id":        api(scopeBody, RoleAdmin),
	"DELETE /api/v1/roster/people/:id":     api(scopeBody, RoleAdmin),
	"GET /api/v1/roster/devices":           api(scopeDivisionQuery, RoleAdmin, RoleResponder),
	"GET /api/v1/roster/devices/:id":       api(scopeBody, RoleAdmin, RoleResponder),
	"PUT /api/v1/roster/devices/:id":       api(scopeBody, RoleAdmin),
	"DELETE /api/v1/roster/devices/:id":    api(scopeBody, RoleAdmin),
	"GET /api/v1/roster/households":        api(scopeDivisionQuery, RoleAdmin, RoleResponder),
	"GET /api/v1/roster/households/:id":    api(scopeBody, RoleAdmin, RoleResponder),
	"PUT /api/v1/roster/households/:id":    api(scopeBody, RoleAdmin),
	"DELETE /api/v1/roster/households/:id": api(scopeBody, RoleAdmin),
	// Duty: a division's admins and responders set it; anyone of the
	// division may ask who is on duty.
	"POST /api/v1/duty/import":   api(scopeBody, RoleAdmin, RoleResponder),
	"PUT /api/v1/duty/overrides": api(scopeBody, RoleAdmin, RoleResponder),
	"GET /api/v1/duty/now":       api(scopeDivisionQuery),
	"GET /api/v1/duty/shifts":    api(scopeDivisionQuery),
}

// accessFor finds a route's row. Provider callbacks are mounted per
// configured receiver, at /callbacks/<name> and /callbacks/<name>/mo: they
// share one row.
func accessFor(method, path string) (access, bool) {
	if strings.HasPrefix(path, "/callbacks/") && (method == http.MethodGet || method == http.MethodPost) {
		return provider(), true
	}
	a, ok := routeAccess[method+" "+path]
	return a, ok
}

const (
	ctxPrincipal = "warngate.principal"
	ctxWarning   = "warngate.warning"
	ctxRoster    = "warngate.roster"
)

// rosterOf is the roster a request about a warning looks people up in: the
// version the warning was planned with (the current one before its plan,
// or for no warning). It is read once per request.
func (s *server) rosterOf(c *gin.Context, w *warning.Warning) region.Roster {
	if r, ok := c.Value(ctxRoster).(region.Roster); ok {
		return r
	}
	r := s.Roster
	if w != nil && s.Dispatcher != nil {
		r = s.Dispatcher.RosterFor(c.Request.Context(), w)
	}
	c.Set(ctxRoster, r)
	return r
}

// callListDivision is the division of an entry of a warning's call lists:
// a household of the roster, or a resident put on the list because no
// channel reached them (a person of the warning's roster version).
func (s *server) callListDivision(c *gin.Context, w *warning.Warning, id string) (string, bool) {
	r := s.rosterOf(c, w)
	if h, ok := r.Household(id); ok {
		return h.Division, true
	}
	if p, ok := r.Person(id); ok {
		return p.Division, true
	}
	return "", false
}

// principalOf is the caller of an API or console request.
func principalOf(c *gin.Context) Principal {
	p, _ := c.Get(ctxPrincipal)
	pr, _ := p.(Principal)
	return pr
}

// authorize runs before every handler: it finds the route's row, checks
// the caller against it, and loads the warning a scoped row needs.
func (s *server) authorize(c *gin.Context) {
	path := c.FullPath()
	if path == "" {
		c.Next() // no such route: NoRoute or NoMethod answers
		return
	}
	a, ok := accessFor(c.Request.Method, path)
	if !ok {
		s.Log.Error("route without an access rule", "method", c.Request.Method, "path", path)
		fail(c, http.StatusInternalServerError, "no_access_rule", "this route has no access rule; nobody may call it until it has one", "")
		return
	}
	switch a.gate {
	case gateLink:
		pageHeaders(c) // an official's page is a page like the console's
		c.Next()
		return
	case gatePublic, gateProvider, gateSignIn:
		c.Next()
		return
	case gateConsole:
		p, csrf, ok := s.session(c)
		if !ok {
			c.Redirect(http.StatusSeeOther, "/console/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
			c.Abort()
			return
		}
		c.Set(ctxPrincipal, p)
		c.Set(consoleCSRF, csrf)
	case gateAPI:
		p, ok := s.authenticate(c)
		if !ok {
			return
		}
		c.Set(ctxPrincipal, p)
	}
	p := principalOf(c)
	if len(a.roles) > 0 && !slices.ContainsFunc(a.roles, p.Can) {
		s.refuse(c, a)
		return
	}
	if !s.checkScope(c, p, a.scope) {
		return
	}
	c.Next()
}

// refuse answers a caller without the row's role, in its language.
func (s *server) refuse(c *gin.Context, a access) {
	names := make([]string, len(a.roles))
	zh := make([]string, len(a.roles))
	for i, r := range a.roles {
		names[i], zh[i] = string(r), r.Chinese()
	}
	msg := "需要" + strings.Join(zh, "或") + "权限 (this needs the " + strings.Join(names, " or ") + " role)"
	if a.gate == gateConsole {
		c.Set(ctxRefused, msg)
		c.Next() // the page renders its own refusal, in the page's language
		return
	}
	fail(c, http.StatusForbidden, "forbidden", msg, "")
}

const ctxRefused = "warngate.refused"

// authenticate identifies an API caller: the bootstrap admin token, an API
// token, or a console session.
func (s *server) authenticate(c *gin.Context) (Principal, bool) {
	if tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok && tok != "" && s.AdminToken != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) == 1 {
		return accounts.Bootstrap, true
	}
	if s.Accounts != nil {
		if p, ok := s.Accounts.Authenticate(c.Request); ok {
			return p, true
		}
	}
	if c.GetHeader("Authorization") == "" {
		c.Header("WWW-Authenticate", `Bearer realm="warngate"`)
		fail(c, http.StatusUnauthorized, "unauthenticated", "send Authorization: Bearer <token>, or sign in", "Authorization")
		return Principal{}, false
	}
	fail(c, http.StatusUnauthorized, "unauthenticated", "the bearer token is not valid (unknown, expired or revoked)", "Authorization")
	return Principal{}, false
}

// session is the console session of a request, if any.
func (s *server) session(c *gin.Context) (Principal, string, bool) {
	if s.Accounts == nil {
		return Principal{}, "", false
	}
	return s.Accounts.Session(c.Request)
}

// checkScope checks the divisions a call touches; it answers and returns
// false when one lies outside the caller's division.
func (s *server) checkScope(c *gin.Context, p Principal, sc scope) bool {
	if sc&(scopeWarningTouches|scopeWarningWithin) != 0 {
		w, err := s.Ledger.Warning(c.Request.Context(), c.Param("id"))
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			s.notFound(c)
			return false
		case err != nil:
			fail(c, http.StatusServiceUnavailable, "unavailable", "state store unavailable: "+err.Error(), "")
			return false
		case !s.touches(p, w):
			s.notFound(c)
			return false
		case sc&scopeWarningWithin != 0 && !s.within(p, w.Areas):
			fail(c, http.StatusForbidden, "outside_division", "this warning also covers divisions outside yours ("+s.divisionName(p.Division)+"); ask the bureau that issued it", "id")
			return false
		}
		c.Set(ctxWarning, w)
	}
	if sc&scopeDivisionParam != 0 && !s.inside(c, c.Param("division"), "division") {
		return false
	}
	if sc&scopeHouseholdParam != 0 {
		w, _ := c.Value(ctxWarning).(*warning.Warning)
		if div, ok := s.callListDivision(c, w, c.Param("hid")); ok && !s.inside(c, div, "household") {
			return false
		}
	}
	if sc&scopeDivisionQuery != 0 {
		for _, q := range []string{"division", "village"} {
			if v := c.Query(q); v != "" && !s.inside(c, v, q) {
				return false
			}
		}
	}
	return true
}

// notFound answers for a warning that does not exist or is not the caller's to see.
func (s *server) notFound(c *gin.Context) {
	if c.GetString(consoleCSRF) != "" || strings.HasPrefix(c.FullPath(), "/console/") {
		c.Set(ctxRefused, "not_found")
		c.Next()
		return
	}
	fail(c, http.StatusNotFound, "not_found", "no warning with id "+c.Param("id"), "id")
}

// covers reports whether the caller's division holds code; the whole
// jurisdiction holds every code.
func (s *server) covers(p Principal, code string) bool {
	return p.Division == "" || s.Tree.Covers(p.Division, code)
}

// inside checks that a division a call names lies inside the caller's,
// answering 403 and returning false when it does not.
func (s *server) inside(c *gin.Context, code, field string) bool {
	p := principalOf(c)
	if s.covers(p, code) {
		return true
	}
	fail(c, http.StatusForbidden, "outside_division", code+" lies outside your division ("+s.divisionName(p.Division)+")", field)
	return false
}

// areasInside checks that every area a body names lies inside the caller's
// division, answering 403 for the first that does not.
func (s *server) areasInside(c *gin.Context, areas []string) bool {
	p := principalOf(c)
	for i, a := range areas {
		if !s.covers(p, a) {
			fail(c, http.StatusForbidden, "outside_division", a+" lies outside your division ("+s.divisionName(p.Division)+"): you may warn only inside it", fmt.Sprintf("areas[%d]", i))
			return false
		}
	}
	return true
}

// actorOf is the caller as the audit trail names it.
func actorOf(c *gin.Context) dispatcher.Actor {
	p := principalOf(c)
	a := dispatcher.Actor{User: p.Name, From: c.ClientIP()}
	if p.Kind == accounts.KindToken {
		a.Via = "token:" + p.TokenName
	}
	return a
}

// touches reports whether a warning reaches into the caller's division.
func (s *server) touches(p Principal, w *warning.Warning) bool {
	if p.Division == "" {
		return true
	}
	for _, a := range w.Areas {
		if s.Tree.Covers(a, p.Division) || s.Tree.Covers(p.Division, a) {
			return true
		}
	}
	return false
}

// within reports whether every area lies inside the caller's division.
func (s *server) within(p Principal, areas []string) bool {
	for _, a := range areas {
		if !s.covers(p, a) {
			return false
		}
	}
	return true
}

func (s *server) divisionName(code string) string {
	if code == "" {
		return "全市"
	}
	if d, ok := s.Tree.Get(code); ok {
		return d.Name + " " + code
	}
	return code
}

// needsApproval says whether a warning of this level from this caller waits
// for a second person: orange and red from people and their tokens, and
// the levels the bootstrap token is not allowed to release alone.
func (s *server) needsApproval(p Principal, l warning.Level) bool {
	if l < warning.Orange {
		return false
	}
	if p.Kind == accounts.KindBootstrap {
		return !slices.Contains(s.AdminTokenBypass, l)
	}
	return true
}
