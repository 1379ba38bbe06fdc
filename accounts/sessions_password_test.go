package accounts_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"warngate/accounts"
	"warngate/internal/redistest"
)

// A user of the configuration file (often the city's admin) whose password
// is changed there keeps no session made with the old one once the gateway
// starts again: a copied cookie is useless at once, as after a reset
// through the API.
func TestConfiguredPasswordChangeEndsSessions(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Date(2026, 7, 1, 20, 0, 0, 0, time.UTC)}
	prefix := redistest.Prefix(t, "pwchange")
	configured := func(pw string) *accounts.Store {
		s, err := accounts.New(rdb, []accounts.User{{Name: "chief", Roles: []accounts.Role{accounts.RoleAdmin}, PasswordHash: cheapHash(pw)}},
			accounts.Options{Prefix: prefix, Key: key, FailDelay: time.Millisecond, Iterations: 1000, Covers: covers, Now: c.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := configured("old-password-123")
	p, err := before.SignIn(ctx, "chief", "old-password-123", "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	ck, err := before.StartSession(ctx, p, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := before.Session(request(http.MethodGet, ck)); !ok {
		t.Fatal("a fresh session is no session")
	}
	// The same password configured again (a restart) keeps the session.
	if _, _, ok := configured("old-password-123").Session(request(http.MethodGet, ck)); !ok {
		t.Error("a restart with the same password ended the session")
	}
	if pr, _, ok := configured("new-password-456").Session(request(http.MethodGet, ck)); ok {
		t.Errorf("a session made with the old password works after the password changed: %s", pr.Name)
	}
}
