package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"warngate/accounts"
	"warngate/ledger"
	"warngate/region"
)

// Users and API tokens, managed at run time. An admin manages the users of
// their own division; anyone makes tokens for themselves, with some of their
// roles, inside their division. Every change is audited, with the state
// before and after (never a password or a token's secret).

type userView struct {
	Name         string          `json:"name"`
	DisplayName  string          `json:"display_name"`
	Roles        []accounts.Role `json:"roles"`
	Division     string          `json:"division"`
	DivisionName string          `json:"division_name"`
	Disabled     bool            `json:"disabled"`
	Source       string          `json:"source"` // config or runtime
	Created      time.Time       `json:"created,omitzero"`
	Updated      time.Time       `json:"updated,omitzero"`
	UpdatedBy    string          `json:"updated_by,omitempty"`
}

func (s *server) userView(u accounts.User) userView {
	v := userView{Name: u.Name, DisplayName: u.DisplayName, Roles: u.Roles, Division: u.Division, DivisionName: s.divisionName(u.Division),
		Disabled: u.Disabled, Source: "runtime", Created: u.Created, Updated: u.Updated, UpdatedBy: u.UpdatedBy}
	if u.Bootstrap {
		v.Source = "config"
	}
	return v
}

// me answers who the caller is, for scripts and the console.
func (s *server) me(c *gin.Context) {
	p := principalOf(c)
	c.JSON(http.StatusOK, gin.H{"name": p.Name, "display_name": p.Display, "kind": p.Kind, "roles": p.Roles,
		"division": p.Division, "division_name": s.divisionName(p.Division), "token": p.TokenName})
}

// decodeStrict reads a small JSON body, refusing unknown fields.
func decodeStrict(c *gin.Context, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err != nil {
		fail(c, http.StatusRequestEntityTooLarge, "too_large", "the body may be at most 64 KiB", "")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		field := ""
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field = te.Field
		} else if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			field = strings.Trim(name, `"`)
		}
		fail(c, http.StatusBadRequest, "malformed_json", "the body is not valid: "+err.Error(), field)
		return false
	}
	return true
}

// failAccount answers an accounts error: field problems as 422, the rest by kind.
func (s *server) failAccount(c *gin.Context, code string, err error) {
	var fields []fieldError
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *accounts.FieldError
		if errors.As(e, &fe) {
			fields = append(fields, fieldError{Field: fe.Field, Message: fe.Message})
		}
	}
	walk(err)
	switch {
	case len(fields) > 0:
		msgs := make([]string, len(fields))
		for i, f := range fields {
			msgs[i] = f.Field + ": " + f.Message
		}
		fail(c, http.StatusUnprocessableEntity, code, strings.Join(msgs, "; "), fields[0].Field, fields...)
	case errors.Is(err, accounts.ErrNoUser), errors.Is(err, accounts.ErrNoToken):
		fail(c, http.StatusNotFound, "not_found", err.Error(), "")
	case errors.Is(err, accounts.ErrUserExists):
		fail(c, http.StatusConflict, "user_exists", err.Error(), "name")
	case errors.Is(err, accounts.ErrBootstrapUser):
		fail(c, http.StatusConflict, "bootstrap_user", err.Error(), "name")
	case errors.Is(err, accounts.ErrConflict):
		fail(c, http.StatusConflict, "conflict", err.Error(), "")
	default:
		fail(c, http.StatusServiceUnavailable, "unavailable", err.Error(), "")
	}
}

// checkDivision checks a division a request gives a user or a token: a
// known code at city level or below, inside the caller's division. It
// answers and returns false when it is not.
func (s *server) checkDivision(c *gin.Context, code, field string) bool {
	if code == "" {
		if principalOf(c).Division != "" {
			fail(c, http.StatusForbidden, "outside_division", "give a division inside yours ("+s.divisionName(principalOf(c).Division)+"); only the city may give the whole jurisdiction", field)
			return false
		}
		return true
	}
	d, ok := s.Tree.Get(code)
	if !ok || d.Level == region.Province {
		fail(c, http.StatusUnprocessableEntity, "invalid_division", fmt.Sprintf("%q is not a division of this gateway: give a 12-digit code of the city, a county, a township or a village", code), field)
		return false
	}
	return s.inside(c, code, field)
}

// userInScope loads a user the caller may manage, or answers 404: an admin
// does not learn of users outside their division.
func (s *server) userInScope(c *gin.Context) (accounts.User, bool) {
	u, err := s.Accounts.User(c.Request.Context(), c.Param("name"))
	if err == nil && (u.Division == "" && principalOf(c).Division != "" || !s.covers(principalOf(c), u.Division) && u.Division != "") {
		err = fmt.Errorf("user %q: %w", c.Param("name"), accounts.ErrNoUser)
	}
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return accounts.User{}, false
	}
	return u, true
}

func (s *server) noAccounts(c *gin.Context) bool {
	if s.Accounts == nil {
		fail(c, http.StatusServiceUnavailable, "no_accounts", "this gateway has no user store", "")
		return true
	}
	return false
}

func (s *server) listUsers(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	all, err := s.Accounts.Users(c.Request.Context())
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return
	}
	p := principalOf(c)
	out := []userView{}
	for _, u := range all {
		if p.Division == "" || (u.Division != "" && s.covers(p, u.Division)) {
			out = append(out, s.userView(u))
		}
	}
	c.JSON(http.StatusOK, gin.H{"users": out})
}

func (s *server) getUser(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	if u, ok := s.userInScope(c); ok {
		c.JSON(http.StatusOK, s.userView(u))
	}
}

type userRequest struct {
	Name        string          `json:"name"`
	DisplayName string          `json:"display_name"`
	Password    string          `json:"password"`
	Roles       []accounts.Role `json:"roles"`
	Division    string          `json:"division"`
}

func (s *server) createUser(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	var req userRequest
	if !decodeStrict(c, &req) || !s.checkDivision(c, req.Division, "division") {
		return
	}
	u, err := s.Accounts.CreateUser(c.Request.Context(), accounts.NewUser{Name: req.Name, DisplayName: req.DisplayName,
		Password: req.Password, Roles: req.Roles, Division: req.Division}, principalOf(c).Actor())
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return
	}
	s.auditAccount(c, "user_create", u.Name, "", describeUser(u))
	c.Header("Location", "/api/v1/users/"+u.Name)
	c.JSON(http.StatusCreated, s.userView(u))
}

type userChangeRequest struct {
	DisplayName *string          `json:"display_name"`
	Password    *string          `json:"password"`
	Roles       *[]accounts.Role `json:"roles"`
	Division    *string          `json:"division"`
	Disabled    *bool            `json:"disabled"`
}

func (s *server) updateUser(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	if _, ok := s.userInScope(c); !ok {
		return
	}
	var req userChangeRequest
	if !decodeStrict(c, &req) {
		return
	}
	if req.Division != nil && !s.checkDivision(c, *req.Division, "division") {
		return
	}
	before, after, err := s.Accounts.UpdateUser(c.Request.Context(), c.Param("name"), accounts.UserChange{
		DisplayName: req.DisplayName, Password: req.Password, Roles: req.Roles, Division: req.Division, Disabled: req.Disabled,
	}, principalOf(c).Actor())
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return
	}
	detail := describeUser(before) + " → " + describeUser(after)
	if req.Password != nil {
		detail += "; password reset, sessions ended"
	}
	s.auditAccount(c, "user_update", after.Name, "", detail)
	c.JSON(http.StatusOK, s.userView(after))
}

func (s *server) deleteUser(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	if _, ok := s.userInScope(c); !ok {
		return
	}
	u, err := s.Accounts.DeleteUser(c.Request.Context(), c.Param("name"))
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return
	}
	s.auditAccount(c, "user_delete", u.Name, "", describeUser(u)+"; sessions ended, tokens revoked")
	c.JSON(http.StatusOK, gin.H{"deleted": u.Name})
}

// revokeSessions ends every console session of a user, on every API process.
func (s *server) revokeSessions(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	u, ok := s.userInScope(c)
	if !ok {
		return
	}
	n, err := s.Accounts.RevokeSessions(c.Request.Context(), u.Name)
	if err != nil {
		s.failAccount(c, "invalid_user", err)
		return
	}
	s.auditAccount(c, "sessions_revoke", u.Name, "", fmt.Sprintf("%d sessions ended", n))
	c.JSON(http.StatusOK, gin.H{"user": u.Name, "sessions_ended": n})
}

func describeUser(u accounts.User) string {
	roles := make([]string, len(u.Roles))
	for i, r := range u.Roles {
		roles[i] = string(r)
	}
	d := "roles=" + strings.Join(roles, ",") + " division=" + u.Division
	if u.Disabled {
		d += " disabled"
	}
	return d
}

func (s *server) auditAccount(c *gin.Context, action, target, warningID, detail string) {
	e := ledger.AuditEntry{Who: principalOf(c).Actor(), Action: action, Target: target, WarningID: warningID, Detail: detail, From: c.ClientIP()}
	if err := s.Ledger.Audit(c.Request.Context(), e); err != nil {
		s.Log.Warn("audit not written", "action", action, "err", err)
	}
}

type tokenView struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Owner    string          `json:"owner"`
	Roles    []accounts.Role `json:"roles"`
	Division string          `json:"division"`
	Expires  time.Time       `json:"expires"`
	Created  time.Time       `json:"created"`
	LastUsed *time.Time      `json:"last_used"`
}

func tokenViewOf(t accounts.Token) tokenView {
	v := tokenView{ID: t.ID, Name: t.Name, Owner: t.Owner, Roles: t.Roles, Division: t.Division, Expires: t.Expires, Created: t.Created}
	if !t.LastUsed.IsZero() {
		v.LastUsed = &t.LastUsed
	}
	return v
}

type tokenRequest struct {
	Name     string          `json:"name"`
	Roles    []accounts.Role `json:"roles"`
	Division *string         `json:"division"`
	Expires  string          `json:"expires"`
}

// createToken makes a token for the caller; its secret is in this answer only.
func (s *server) createToken(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	var req tokenRequest
	if !decodeStrict(c, &req) {
		return
	}
	p := principalOf(c)
	division := p.Division
	if req.Division != nil {
		division = *req.Division
		if !s.checkDivision(c, division, "division") {
			return
		}
	}
	var expires time.Time
	if req.Expires != "" {
		t, err := time.Parse(time.RFC3339, req.Expires)
		if err != nil {
			fail(c, http.StatusUnprocessableEntity, "invalid_token", fmt.Sprintf("expires: %q is not an RFC 3339 time such as 2027-03-01T00:00:00+08:00", req.Expires), "expires")
			return
		}
		expires = t
	}
	t, secret, err := s.Accounts.CreateToken(c.Request.Context(), p, accounts.TokenRequest{Name: req.Name, Roles: req.Roles, Division: division, Expires: expires})
	if err != nil {
		s.failAccount(c, "invalid_token", err)
		return
	}
	roles := make([]string, len(t.Roles))
	for i, r := range t.Roles {
		roles[i] = string(r)
	}
	s.auditAccount(c, "token_create", t.ID, "", fmt.Sprintf("%s for %s: roles=%s division=%s expires=%s", t.Name, t.Owner, strings.Join(roles, ","), t.Division, t.Expires.Format(time.RFC3339)))
	c.JSON(http.StatusCreated, gin.H{"token": secret, "shown_once": true, "id": t.ID, "name": t.Name, "owner": t.Owner,
		"roles": t.Roles, "division": t.Division, "expires": t.Expires})
}

// tokensOf lists the tokens the caller may see: their own, and an admin's
// every token inside their division.
func (s *server) tokensOf(c *gin.Context) ([]accounts.Token, error) {
	all, err := s.Accounts.Tokens(c.Request.Context())
	if err != nil {
		return nil, err
	}
	p := principalOf(c)
	return slices.DeleteFunc(all, func(t accounts.Token) bool {
		mine := t.Owner == p.Name
		managed := p.Can(RoleAdmin) && (p.Division == "" || t.Division != "" && s.covers(p, t.Division))
		return !mine && !managed
	}), nil
}

func (s *server) listTokens(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	ts, err := s.tokensOf(c)
	if err != nil {
		s.failAccount(c, "invalid_token", err)
		return
	}
	out := make([]tokenView, len(ts))
	for i, t := range ts {
		out[i] = tokenViewOf(t)
	}
	c.JSON(http.StatusOK, gin.H{"tokens": out})
}

func (s *server) revokeToken(c *gin.Context) {
	if s.noAccounts(c) {
		return
	}
	ts, err := s.tokensOf(c)
	if err != nil {
		s.failAccount(c, "invalid_token", err)
		return
	}
	i := slices.IndexFunc(ts, func(t accounts.Token) bool { return t.ID == c.Param("id") })
	if i < 0 {
		fail(c, http.StatusNotFound, "not_found", "no token "+c.Param("id")+" of yours", "id")
		return
	}
	if err := s.Accounts.RevokeToken(c.Request.Context(), ts[i].ID); err != nil {
		s.failAccount(c, "invalid_token", err)
		return
	}
	s.auditAccount(c, "token_revoke", ts[i].ID, "", ts[i].Name+" of "+ts[i].Owner)
	c.JSON(http.StatusOK, gin.H{"revoked": ts[i].ID})
}

// favicon is the gateway's icon, for browsers that ask for /favicon.ico.
func (s *server) favicon(c *gin.Context) {
	b, err := webFS.ReadFile("web/favicon.svg")
	if err != nil {
		c.Status(http.StatusNotFound)
		return
	}
	c.Header("Cache-Control", "public, max-age=86400")
	c.Data(http.StatusOK, "image/svg+xml", b)
}
