package api_test

import (
	"context"
	"net/http"
	"testing"

	"warngate/accounts"
	"warngate/dispatcher"
)

// What the API answers is kept out of caches (a shared proxy, the
// browser's disk): the roster, duty and the call list carry people's
// names, phones and addresses.
func TestAPIAnswersAreNotCached(t *testing.T) {
	g := newAccessGateway(t)
	admin := g.user(t, "city-admin", "", accounts.RoleAdmin, accounts.RoleResponder, accounts.RoleIssuer)
	w, _, err := g.d.Submit(context.Background(), redWarning(huashan), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/api/v1/roster/people?q=1",
		"/api/v1/duty/now?division=" + huashan,
		"/api/v1/warnings/" + w.ID + "/calllist.xlsx",
		"/api/v1/warnings/" + w.ID + "/unreached",
		"/api/v1/no-such-thing",
	} {
		req, _ := http.NewRequest(http.MethodGet, g.url+path, nil)
		req.Header.Set("Authorization", "Bearer "+admin.bearer)
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("GET %s (%d): Cache-Control %q, want no-store", path, resp.StatusCode, got)
		}
	}
}
