package api

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/accounts"
	"warngate/dispatcher"
	"warngate/internal/link"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
)

// cheapHash is a password hash of the configured form with few iterations,
// so that tests under -race do not spend seconds on PBKDF2.
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	h, _ := pbkdf2.Key(sha256.New, pw, salt, 1000, 32)
	return "pbkdf2-sha256$1000$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(h)
}

var testKey = []byte("console-test-session-key-0123456789")

// testUsers is a user store with the duty officer (issuer) and the leader
// (approver) of the whole city as bootstrap users.
func testUsers(t *testing.T, rdb redis.UniversalClient, tree *region.Tree) *accounts.Store {
	t.Helper()
	s, err := accounts.New(rdb, []accounts.User{
		{Name: "duty", DisplayName: "值班员", Roles: []Role{RoleIssuer}, PasswordHash: cheapHash("duty-password")},
		{Name: "leader", DisplayName: "带班领导", Roles: []Role{RoleApprover}, PasswordHash: cheapHash("leader-password")},
	}, accounts.Options{Key: testKey, FailDelay: time.Millisecond, MaxPerAddress: 100, MaxPerUser: 100, Iterations: 1000,
		Covers: func(a, b string) bool { return a == "" || tree.Covers(a, b) }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// consoleGateway serves the API with the console, on Redis, without workers.
type consoleGateway struct {
	url    string
	ledger *ledger.Ledger
	users  *accounts.Store
	tree   *region.Tree
	roster region.Roster
	links  *link.Signer
}

func newConsoleGateway(t *testing.T) *consoleGateway {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBAPI)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 2, HouseholdsPerVillage: 1})
	l := ledger.New(rdb, "wg", nil)
	reg := prometheus.NewRegistry()
	d := dispatcher.New(dispatcher.Config{}, dispatcher.Deps{Redis: rdb, Ledger: l, Policy: policy.Default(), Tree: tree, Roster: roster,
		Checklists: policy.DefaultChecklists(), Metrics: dispatcher.NewMetrics(reg), Log: log})
	users := testUsers(t, rdb, tree)
	links, _ := link.New([]byte("console-test-link-key-0123"), nil)
	o := Options{Dispatcher: d, Ledger: l, Tree: tree, Roster: roster, AdminToken: "test-token", Accounts: users,
		Registry: reg, Log: log, Ready: l.Ping, Links: links}
	srv := httptest.NewServer(New(o))
	t.Cleanup(srv.Close)
	return &consoleGateway{url: srv.URL, ledger: l, users: users, tree: tree, roster: roster, links: links}
}

type browser struct {
	t  *testing.T
	c  *http.Client
	gw *consoleGateway
}

func (g *consoleGateway) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, gw: g, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.gw.url+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

func (b *browser) signIn(name, pw string) {
	b.t.Helper()
	resp, body := b.do("POST", "/console/login", url.Values{"name": {name}, "password": {pw}, "next": {"/console/new"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/new" {
		b.t.Fatalf("sign-in as %s: %d %s %s", name, resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestConsoleSignInOut(t *testing.T) {
	g := newConsoleGateway(t)
	b := g.browser(t)
	resp, _ := b.do("GET", "/console/w/x1?lang=en", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/login?next="+url.QueryEscape("/console/w/x1?lang=en") {
		t.Fatalf("signed out: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, page := b.do("GET", "/console/login", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `id="login-form"`) || !strings.Contains(page, "值班登录") {
		t.Fatalf("login page: %d %s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}

	// Wrong password and unknown user answer alike.
	r1, p1 := b.do("POST", "/console/login", url.Values{"name": {"duty"}, "password": {"nope"}})
	r2, p2 := b.do("POST", "/console/login", url.Values{"name": {"dutx"}, "password": {"nope"}})
	if r1.StatusCode != 401 || r2.StatusCode != 401 || strings.Replace(p2, "dutx", "duty", -1) != p1 {
		t.Errorf("wrong password %d and unknown user %d answer differently", r1.StatusCode, r2.StatusCode)
	}
	if !strings.Contains(p1, "用户名或密码错误") {
		t.Errorf("no error shown: %s", p1)
	}
	// Sign-in from another site is refused.
	r3, _ := b.do("POST", "/console/login", url.Values{"name": {"duty"}, "password": {"duty-password"}}, "Origin", "https://evil.example")
	if r3.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site sign-in: %d", r3.StatusCode)
	}

	b.signIn("duty", "duty-password")
	resp, page = b.do("GET", "/console/new", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `id="issue-form"`) || !strings.Contains(page, "值班员") {
		t.Fatalf("issue page: %d", resp.StatusCode)
	}
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	// The API takes the session, and POSTs need the token.
	body := `{"hazard":"rainstorm","level":"blue","areas":["530102000000"],"headline":"t","description":"d","status":"exercise","expires":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`
	req, _ := http.NewRequest("POST", g.url+"/api/v1/warnings/preview", strings.NewReader(body))
	if resp, err := b.c.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("preview without the CSRF token: %v %v", resp.StatusCode, err)
	}
	req, _ = http.NewRequest("POST", g.url+"/api/v1/warnings/preview", strings.NewReader(body))
	req.Header.Set(accounts.CSRFHeader, m[1])
	resp, err := b.c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("preview with the token: %v %v %s", resp.StatusCode, err, b)
	}
	var pv struct {
		Total int64 `json:"total"`
	}
	json.NewDecoder(resp.Body).Decode(&pv)
	resp.Body.Close()
	if pv.Total == 0 {
		t.Error("preview counts nothing")
	}

	// Sign-out needs the token too.
	if resp, _ := b.do("POST", "/console/logout", url.Values{"csrf": {"forged"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out with a forged token: %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", "/console/logout", url.Values{"csrf": {m[1]}}); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("sign-out: %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", "/console/", nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after sign-out the console answers %d", resp.StatusCode)
	}

	entries, err := g.ledger.AuditLog(context.Background(), "", 20)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+":"+e.Who+":"+e.Detail)
	}
	want := []string{"sign_out:duty:console", "sign_in:duty:console", "sign_in_failed:dutx:unknown user", "sign_in_failed:duty:wrong password"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("audit trail:\n got %v\nwant %v", got, want)
	}
}

func TestConsolePages(t *testing.T) {
	g := newConsoleGateway(t)
	duty := g.browser(t)
	duty.signIn("duty", "duty-password")
	leader := g.browser(t)
	leader.signIn("leader", "leader-password")

	if resp, page := leader.do("GET", "/console/new", nil); resp.StatusCode != http.StatusForbidden || strings.Contains(page, `id="issue-form"`) {
		t.Errorf("approver on the issue page: %d", resp.StatusCode)
	}
	_, page := duty.do("GET", "/console/new", nil)
	csrf := csrfField.FindStringSubmatch(page)[1]
	body := `{"hazard":"暴雨","level":"red","areas":["530102001000"],"headline":"五华区暴雨红色预警","description":"d","status":"actual","expires":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`
	req, _ := http.NewRequest("POST", g.url+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set(accounts.CSRFHeader, csrf)
	resp, err := duty.c.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("issue: %v %v", resp.StatusCode, err)
	}
	var w struct{ ID, State string }
	json.NewDecoder(resp.Body).Decode(&w)
	resp.Body.Close()
	if w.State != "awaiting_approval" {
		t.Fatalf("a red warning by a person is %s", w.State)
	}

	for _, tc := range []struct {
		b          *browser
		path       string
		want, dont []string
	}{
		{duty, "/console/", []string{`id="row-` + w.ID, "红色Ⅰ级", "待审批", "五华区暴雨红色预警"}, nil},
		{duty, "/console/?lang=en", []string{"Red (I)", "Awaiting approval", `lang="en"`}, []string{"待审批"}},
		{duty, "/console/approvals?lang=zh", []string{`id="ap-` + w.ID, "您签发的预警须由另一位审批人审批"}, []string{`id="approve-` + w.ID}},
		{leader, "/console/approvals", []string{`id="approve-` + w.ID}, nil},
		{leader, "/console/w/" + w.ID, []string{`id="approve-btn"`, "level-red", "华山街道"}, []string{`id="cancel-btn"`, `id="resend-btn"`}},
		{duty, "/console/w/" + w.ID, []string{`id="cancel-btn"`, `id="resend-btn"`, "重发未送达", `id="awaiting-note"`}, nil},
	} {
		resp, page := tc.b.do("GET", tc.path, nil)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", tc.path, resp.StatusCode)
		}
		for _, s := range tc.want {
			if !strings.Contains(page, s) {
				t.Errorf("%s lacks %q", tc.path, s)
			}
		}
		for _, s := range tc.dont {
			if strings.Contains(page, s) {
				t.Errorf("%s has %q", tc.path, s)
			}
		}
	}
	if resp, _ := duty.do("GET", "/console/w/nope", nil); resp.StatusCode != 404 {
		t.Errorf("unknown warning: %d", resp.StatusCode)
	}

	// The public page needs no sign-in and names no person.
	anon := g.browser(t)
	resp, page = anon.do("GET", "/public/?area=530102000000", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "五华区") || !strings.Contains(page, `href="/public/?area=530102001000"`) {
		t.Errorf("public page: %d", resp.StatusCode)
	}
	page = pageData.ReplaceAllString(page, "") // the catalogue names roles such as county_duty
	if strings.Contains(page, "duty") || strings.Contains(page, "值班员") {
		t.Error("public page shows who issued")
	}
	resp, page = anon.do("GET", "/public/?q="+url.QueryEscape("华山"), nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `id="public-found"`) || !strings.Contains(page, "华山街道") {
		t.Errorf("public search: %d", resp.StatusCode)
	}
}

// pageData is the script element that carries a page's catalogue and data.
var pageData = regexp.MustCompile(`(?s)<script type="application/json" id="page-data">.*?</script>`)

func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/w/1": "/console/w/1", "": "/console/", "https://evil.example/": "/console/",
		"//evil.example/": "/console/", "/console//evil.example": "/console/", "/console/logout": "/console/",
		"/console/\\evil": "/console/",
	} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}
