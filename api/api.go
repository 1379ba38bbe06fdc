// Package api is warngate's HTTP face: the bureau's JSON API, provider
// callbacks, health and metrics. Every error leaves through one function,
// in one JSON shape. Handlers decode, check and hand over: they neither plan
// nor send.
package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"warngate/accounts"
	"warngate/channels"
	"warngate/dispatcher"
	"warngate/duty"
	"warngate/internal/link"
	"warngate/ledger"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
)

// ReportReceiver turns a provider's callback into delivery reports; each
// provider adapter implements it (channels.ReportReceiver).
type ReportReceiver interface {
	Name() string
	ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink)
}

// Options are what the API serves.
type Options struct {
	Dispatcher *dispatcher.Dispatcher
	Ledger     *ledger.Ledger
	Tree       *region.Tree
	// Roster answers lookups not tied to a warning: the newest roster.
	Roster region.Roster
	// Rosters is the live roster's store, for imports, exports and edits;
	// nil answers 503 on those routes.
	Rosters *roster.Store
	// Duty keeps duty shifts; nil answers 503 on the duty routes.
	Duty      *duty.Store
	Receivers []ReportReceiver
	// Replies receive SMS replies from phones (Kannel's MO), at /callbacks/{name}/mo.
	Replies []channels.ReplyReceiver
	// Links checks officials' links.
	Links *link.Signer
	// AdminToken is the bootstrap bearer token; it may do everything.
	AdminToken string
	// AdminTokenBypass are the levels (orange, red) whose warnings from the
	// bootstrap token need no second person; others wait for an approver.
	AdminTokenBypass []warning.Level
	// Accounts are the bureau's users, sessions and API tokens; nil means
	// nobody signs in and only the bootstrap token works.
	Accounts *accounts.Store
	Registry *prometheus.Registry
	Log      *slog.Logger
	// Ready reports whether the gateway can take warnings (Redis answers).
	Ready func(context.Context) error
	// Embedded marks the in-memory mode; /readyz and / say so.
	Embedded bool
	// Simulator says that channels without a provider go to the built-in
	// simulator, which notifies nobody; /readyz says so.
	Simulator bool
	// PublicURL is how the outside reaches the gateway, for feed links.
	PublicURL string
	// TrustedProxies may set X-Forwarded-For; nil trusts none, so audit
	// entries and sign-in limits see the real peer address.
	TrustedProxies []string
}

type server struct {
	Options
	callbacks *prometheus.CounterVec
}

// noStoreAPI keeps the API's answers out of caches: they carry people's
// names, phones and addresses (the roster, duty, call lists, coverage) and
// the state of the moment, never something to serve again.
func noStoreAPI(c *gin.Context) {
	if strings.HasPrefix(c.Request.URL.Path, "/api/") {
		c.Header("Cache-Control", "no-store")
	}
}

// New returns the HTTP handler.
func New(o Options) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	s := &server{Options: o}
	s.callbacks = promauto.With(o.Registry).NewCounterVec(prometheus.CounterOpts{
		Namespace: "warngate", Name: "callbacks_total",
		Help: "Provider callbacks by provider and outcome (ok, rejected, error).",
	}, []string{"provider", "outcome"})

	r := gin.New()
	r.HandleMethodNotAllowed = true
	if err := r.SetTrustedProxies(o.TrustedProxies); err != nil {
		o.Log.Error("trusted_proxies ignored", "err", err)
		r.SetTrustedProxies(nil)
	}
	r.Use(s.drainBody, s.recover, s.accessLog, noStoreAPI, s.authorize)
	r.NoRoute(func(c *gin.Context) {
		fail(c, http.StatusNotFound, "not_found", "no such endpoint: "+c.Request.Method+" "+c.Request.URL.Path+"; see the README for the API", "")
	})
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path, "")
	})

	r.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	r.GET("/readyz", s.readyz)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry})))
	r.GET("/", s.index)

	for _, rc := range o.Receivers {
		r.POST("/callbacks/"+rc.Name(), s.callback(rc))
		r.GET("/callbacks/"+rc.Name(), s.callback(rc)) // Kannel and some push services call with GET
	}
	for _, rr := range o.Replies {
		h := s.replies(rr)
		r.GET("/callbacks/"+rr.Name()+"/mo", h)
		r.POST("/callbacks/"+rr.Name()+"/mo", h)
	}
	r.StaticFS("/static", staticFS())
	r.GET("/public/warnings.json", s.publicJSON)
	r.GET("/public/warnings.atom", s.publicAtom)
	r.GET("/public/warnings/:id/cap.xml", s.publicCAP)
	r.GET("/favicon.ico", s.favicon)
	if o.Links != nil {
		r.GET("/a/:token", s.officerGet)
		r.POST("/a/:token/ack", s.officerAck)
		r.POST("/a/:token/households/:hid", s.officerMark)
		r.POST("/a/:token/checklist/:item", s.officerItem)
	}

	v1 := r.Group("/api/v1")
	v1.POST("/warnings", s.createWarning)
	v1.POST("/warnings/preview", s.preview)
	v1.POST("/warnings/sms", s.smsText)
	v1.POST("/warnings/:id/approve", s.approve)
	v1.GET("/warnings", s.listWarnings)
	v1.GET("/warnings/:id", s.getWarning)
	v1.GET("/warnings/:id/progress", s.progress)
	v1.GET("/warnings/:id/preview", s.storedPreview)
	v1.POST("/cap", s.importCAP)
	v1.GET("/warnings/:id/cap", s.exportCAP)
	v1.POST("/warnings/:id/cancel", s.cancel)
	v1.POST("/warnings/:id/update", s.update)
	v1.POST("/warnings/:id/resend", s.resend)
	v1.GET("/warnings/:id/report", s.report)
	v1.GET("/warnings/:id/acks", s.acks)
	v1.POST("/warnings/:id/acks", s.confirmByAPI)
	v1.GET("/warnings/:id/unreached", s.unreached)
	v1.GET("/warnings/:id/escalations", s.escalations)
	v1.GET("/warnings/:id/checklists", s.checklists)
	v1.PUT("/warnings/:id/checklists/:division/:item", s.setItem)
	v1.GET("/warnings/:id/coverage", s.coverage)
	v1.GET("/warnings/:id/households", s.households)
	v1.GET("/warnings/:id/calllist.xlsx", s.exportSheet)
	v1.POST("/warnings/:id/calllist.xlsx", s.importSheet)
	v1.PUT("/warnings/:id/households/:hid", s.markHousehold)
	v1.GET("/audit", s.audit)
	v1.GET("/regions", s.searchRegions)
	v1.GET("/regions/:code", s.getRegion)
	v1.GET("/me", s.me)
	v1.GET("/users", s.listUsers)
	v1.POST("/users", s.createUser)
	v1.GET("/users/:name", s.getUser)
	v1.PUT("/users/:name", s.updateUser)
	v1.DELETE("/users/:name", s.deleteUser)
	v1.DELETE("/users/:name/sessions", s.revokeSessions)
	v1.GET("/tokens", s.listTokens)
	v1.POST("/tokens", s.createToken)
	v1.DELETE("/tokens/:id", s.revokeToken)
	v1.GET("/roster", s.rosterInfo)
	v1.POST("/roster/import", s.importRoster)
	v1.GET("/roster/export.xlsx", s.exportRoster)
	for _, k := range roster.Kinds {
		v1.GET("/roster/"+string(k), s.searchRoster(k))
		v1.GET("/roster/"+string(k)+"/:id", s.getRosterRow(k))
		v1.PUT("/roster/"+string(k)+"/:id", s.putRosterRow(k))
		v1.DELETE("/roster/"+string(k)+"/:id", s.deleteRosterRow(k))
	}
	v1.POST("/duty/import", s.importDuty)
	v1.GET("/duty/now", s.dutyNow)
	v1.GET("/duty/shifts", s.dutyShifts)
	v1.PUT("/duty/overrides", s.setOverride)
	mountConsole(r, s)
	return r
}

// apiError is the one error shape: {"error": {...}}.
type apiError struct {
	Code    string       `json:"code"`
	Message string       `json:"message"`
	Field   string       `json:"field,omitempty"`
	Fields  []fieldError `json:"fields,omitempty"`
}

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// fail writes the error and stops the chain.
func fail(c *gin.Context, status int, code, msg, field string, fields ...fieldError) {
	c.AbortWithStatusJSON(status, gin.H{"error": apiError{Code: code, Message: msg, Field: field, Fields: fields}})
}

// failFields turns a joined set of *warning.FieldError into one answer.
func failFields(c *gin.Context, err error) {
	var fields []fieldError
	var walk func(error)
	walk = func(e error) {
		var fe *warning.FieldError
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(e, &fe) {
			fields = append(fields, fieldError{Field: fe.Field, Message: fe.Message})
		}
	}
	walk(err)
	if len(fields) == 0 {
		fail(c, http.StatusBadRequest, "invalid_request", err.Error(), "")
		return
	}
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	fail(c, http.StatusUnprocessableEntity, "invalid_warning", strings.Join(msgs, "; "), fields[0].Field, fields...)
}

func (s *server) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			s.Log.Error("handler panicked", "path", redactPath(c.Request.URL.Path), "panic", v)
			fail(c, http.StatusInternalServerError, "internal", "the gateway hit an internal error; nothing was lost that it had acknowledged; try again", "")
		}
	}()
	c.Next()
}

func (s *server) accessLog(c *gin.Context) {
	start := time.Now()
	c.Next()
	if c.Request.URL.Path == "/metrics" || c.Request.URL.Path == "/healthz" || strings.HasPrefix(c.Request.URL.Path, "/callbacks/") {
		return
	}
	s.Log.Info("http", "method", c.Request.Method, "path", redactPath(c.Request.URL.Path), "status", c.Writer.Status(),
		"took", time.Since(start).Round(time.Microsecond), "remote", c.ClientIP())
}

// redactPath keeps an official's link out of the logs: the token in
// /a/<token> is a credential, so only its first characters are written.
func redactPath(p string) string {
	rest, ok := strings.CutPrefix(p, "/a/")
	if !ok {
		return p
	}
	tok, tail, _ := strings.Cut(rest, "/")
	if len(tok) > 6 {
		tok = tok[:6] + "…"
	}
	if tail != "" {
		return "/a/" + tok + "/" + tail
	}
	return "/a/" + tok
}

func (s *server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	if err := s.Ready(ctx); err != nil {
		fail(c, http.StatusServiceUnavailable, "not_ready", "Redis does not answer: "+err.Error(), "")
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "embedded": s.Embedded, "simulator": s.Simulator})
}

func (s *server) replies(rr channels.ReplyReceiver) gin.HandlerFunc {
	return func(c *gin.Context) {
		sw := &statusWriter{ResponseWriter: c.Writer, status: http.StatusOK}
		rr.ServeReplies(sw, c.Request, s.Dispatcher.HandleReply)
		outcome := "ok"
		if sw.status >= 400 {
			outcome = "rejected"
		}
		s.callbacks.WithLabelValues(rr.Name()+"_mo", outcome).Inc()
	}
}

// statusWriter remembers the status a receiver wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (s *server) callback(rc ReportReceiver) gin.HandlerFunc {
	return func(c *gin.Context) {
		sw := &statusWriter{ResponseWriter: c.Writer, status: http.StatusOK}
		rc.ServeReports(sw, c.Request, s.Dispatcher)
		outcome := "ok"
		switch {
		case sw.status >= 500:
			outcome = "error"
		case sw.status >= 400:
			outcome = "rejected"
			s.Log.Warn("callback rejected", "provider", rc.Name(), "status", sw.status, "remote", c.ClientIP())
		}
		s.callbacks.WithLabelValues(rc.Name(), outcome).Inc()
	}
}
