// Package accounts knows who may act in the bureau's name: users (the
// configuration's bootstrap users and the ones an administrator adds at run
// time), their server-side console sessions, their API tokens, and how fast
// sign-ins may be tried. Users, sessions and tokens live in Redis, so every
// API process sees a change at once.
//
// It answers "who is this?" and "what roles and division do they hold?"; what
// a role may do on which route is decided in package api, from one table.
// It must not import the ledger, the queue or any channel.
package accounts

import (
	"fmt"
	"slices"
	"strings"
)

// Role is what a bureau user may do. Every role may also view what lies in
// its holder's division.
type Role string

// Roles. An issuer composes, updates, lifts and re-sends warnings; an
// approver releases orange and red warnings issued by someone else; a
// responder acts for the officials of its division (confirms receipt on
// their behalf, ticks checklists, marks call-list households, keeps the duty
// schedule); an admin manages users, tokens and the roster; a viewer watches.
const (
	RoleViewer    Role = "viewer"
	RoleIssuer    Role = "issuer"
	RoleApprover  Role = "approver"
	RoleResponder Role = "responder"
	RoleAdmin     Role = "admin"
)

// Roles lists every role, in the order pages show them.
var Roles = []Role{RoleIssuer, RoleApprover, RoleResponder, RoleAdmin, RoleViewer}

// ParseRole checks a role name.
func ParseRole(s string) (Role, error) {
	if r := Role(s); slices.Contains(Roles, r) {
		return r, nil
	}
	names := make([]string, len(Roles))
	for i, r := range Roles {
		names[i] = string(r)
	}
	return "", fmt.Errorf("unknown role %q: use %s", s, strings.Join(names, ", "))
}

// Chinese names the role as pages show it.
func (r Role) Chinese() string {
	switch r {
	case RoleViewer:
		return "查看"
	case RoleIssuer:
		return "签发"
	case RoleApprover:
		return "审批"
	case RoleResponder:
		return "响应"
	case RoleAdmin:
		return "管理"
	}
	return string(r)
}

// Kind says how a principal proved who it is.
type Kind string

// Kinds of principal.
const (
	// KindUser signed in to the console and holds a session.
	KindUser Kind = "user"
	// KindToken presented an API token made by (or for) a user.
	KindToken Kind = "token"
	// KindBootstrap presented the configuration's admin token.
	KindBootstrap Kind = "bootstrap"
)

// Principal is who a request acts for.
type Principal struct {
	Kind Kind
	// Name is the user's name; for a token, the name of the user it acts for
	// ("admin" for tokens the bootstrap token made).
	Name    string
	Display string // shown in pages, e.g. 值班员
	Roles   []Role
	// Division is the 12-digit code of the division the principal answers
	// for; empty means the whole jurisdiction.
	Division string
	// TokenID and TokenName name the API token of a KindToken principal.
	TokenID, TokenName string
}

// Can reports whether the principal holds a role; every principal can view.
func (p Principal) Can(r Role) bool { return r == RoleViewer || slices.Contains(p.Roles, r) }

// Actor is how the audit trail names the principal: the user name, with the
// token that acted when it was one ("duty/token:cap-feed"), or "admin" for
// the bootstrap token.
func (p Principal) Actor() string {
	switch p.Kind {
	case KindToken:
		return p.Name + "/token:" + p.TokenName
	case KindBootstrap:
		return "admin"
	}
	return p.Name
}

// Bootstrap is the principal of the configuration's admin token: every
// role, everywhere.
var Bootstrap = Principal{Kind: KindBootstrap, Name: "admin", Display: "系统管理员",
	Roles: []Role{RoleIssuer, RoleApprover, RoleResponder, RoleAdmin, RoleViewer}}
