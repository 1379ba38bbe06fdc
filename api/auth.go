package api

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

// Role is what a bureau user may do.
type Role string

// Roles. An issuer composes and sends warnings; an approver releases orange
// and red warnings issued by someone else; a viewer watches.
const (
	RoleIssuer   Role = "issuer"
	RoleApprover Role = "approver"
	RoleViewer   Role = "viewer"
)

// Principal is who a request acts for.
type Principal struct {
	Name    string // user name, recorded in the audit trail
	Display string // shown in pages, e.g. 张三
	Roles   []Role
	// NeedsApproval: orange and red warnings this principal issues wait for
	// a second person. True for people, false for the bootstrap token.
	NeedsApproval bool
}

// Can reports whether the principal holds a role; every role can view.
func (p Principal) Can(r Role) bool { return r == RoleViewer || slices.Contains(p.Roles, r) }

// Users authenticates bureau users by bearer token or console session.
type Users interface {
	// Authenticate returns the principal behind a request, if any.
	Authenticate(r *http.Request) (Principal, bool)
}

const principalKey = "warngate.principal"

func principalOf(c *gin.Context) Principal {
	p, _ := c.Get(principalKey)
	pr, _ := p.(Principal)
	return pr
}

var admin = Principal{Name: "admin", Display: "系统管理员", Roles: []Role{RoleIssuer, RoleApprover, RoleViewer}}

// auth identifies the caller: the bootstrap token, or a user.
func (s *server) auth(c *gin.Context) {
	if tok, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer "); ok && tok != "" && s.AdminToken != "" &&
		subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) == 1 {
		c.Set(principalKey, admin)
		c.Next()
		return
	}
	if s.Users != nil {
		if p, ok := s.Users.Authenticate(c.Request); ok {
			c.Set(principalKey, p)
			c.Next()
			return
		}
	}
	if c.GetHeader("Authorization") == "" {
		c.Header("WWW-Authenticate", `Bearer realm="warngate"`)
		fail(c, http.StatusUnauthorized, "unauthenticated", "send Authorization: Bearer <token>, or sign in", "Authorization")
		return
	}
	fail(c, http.StatusUnauthorized, "unauthenticated", "the bearer token is not valid", "Authorization")
}

// require refuses callers without a role.
func (s *server) require(r Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !principalOf(c).Can(r) {
			fail(c, http.StatusForbidden, "forbidden", "this needs the "+string(r)+" role", "")
			return
		}
		c.Next()
	}
}
