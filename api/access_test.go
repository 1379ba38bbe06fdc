package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/accounts"
	"warngate/api"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/duty"
	"warngate/internal/link"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
	"warngate/warning/cap"
)

// Divisions of the matrix: 五华区 and two of its townships, and 盘龙区 beside it.
const (
	wuhua   = "530102000000"
	huashan = "530102001000" // 华山街道, in 五华区
	huguo   = "530102002000" // 护国街道, in 五华区
	panlong = "530103000000"
)

// caller is one principal of the matrix: roles in a division (empty: the
// whole city), or one of the special callers.
type caller struct {
	name     string
	roles    []accounts.Role
	division string
	bearer   string // what the caller sends as Authorization: Bearer
}

func (c caller) can(r accounts.Role) bool {
	return c.name == "bootstrap" || slices.Contains(c.roles, r)
}

// holds reports whether the caller's division holds a division.
func (c caller) holds(tree *region.Tree, code string) bool {
	return c.name == "bootstrap" || c.division == "" || tree.Covers(c.division, code)
}

// authed reports whether the caller is a bureau principal at all.
func (c caller) authed() bool { return c.name != "none" && c.name != "official_link" }

type accessGateway struct {
	url      string
	h        *gin.Engine
	rdb      *redis.Client
	ledger   *ledger.Ledger
	d        *dispatcher.Dispatcher
	tree     *region.Tree
	roster   region.Roster
	rosters  *roster.Store
	duty     *duty.Store
	accounts *accounts.Store
	links    *link.Signer
	logs     *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newAccessGateway(t *testing.T) *accessGateway {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBAPI)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	tree := region.Kunming()
	demo := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 2, HouseholdsPerVillage: 2})
	rosters := roster.New(rdb, roster.Options{Prefix: "wg", Tree: tree, Base: demo})
	roster := rosters.Live()
	duties := duty.New(rdb, duty.Options{Prefix: "wg", Tree: tree, Roster: func(ctx context.Context) (region.Roster, error) {
		r, _, err := rosters.Current(ctx)
		return r, err
	}})
	l := ledger.New(rdb, "wg", nil)
	reg := prometheus.NewRegistry()
	links, _ := link.New([]byte("access-link-key-0123456789"), nil)
	d := dispatcher.New(dispatcher.Config{}, dispatcher.Deps{Redis: rdb, Ledger: l, Policy: policy.Default(), Tree: tree, Roster: roster, Rosters: rosters,
		Checklists: policy.DefaultChecklists(), Metrics: dispatcher.NewMetrics(reg), Log: log})
	store, err := accounts.New(rdb, nil, accounts.Options{Key: testKey, FailDelay: time.Millisecond, Iterations: 1000, MaxPerAddress: 1000, MaxPerUser: 1000,
		Covers: func(a, b string) bool { return a == "" || tree.Covers(a, b) }})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Options{Dispatcher: d, Ledger: l, Tree: tree, Roster: roster, Rosters: rosters, Duty: duties, AdminToken: "boot-token",
		Receivers: []api.ReportReceiver{&sim.Receiver{Secret: "sim-secret"}}, Accounts: store, Links: links,
		Registry: reg, Log: log, Ready: l.Ping}).(*gin.Engine)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &accessGateway{url: srv.URL, h: h, rdb: rdb, ledger: l, d: d, tree: tree, roster: roster, rosters: rosters, duty: duties, accounts: store, links: links, logs: logs}
}

var testKey = []byte("access-test-session-key-0123456789")

// user adds a run-time user and returns a caller holding a token of theirs.
func (g *accessGateway) user(t *testing.T, name, division string, roles ...accounts.Role) caller {
	t.Helper()
	ctx := context.Background()
	u, err := g.accounts.CreateUser(ctx, accounts.NewUser{Name: name, Password: name + "-password", Roles: roles, Division: division}, "test")
	if err != nil {
		t.Fatal(err)
	}
	_, secret, err := g.accounts.CreateToken(ctx, u.Principal(), accounts.TokenRequest{Name: "matrix", Roles: roles, Division: division, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return caller{name: name, roles: roles, division: division, bearer: secret}
}

func (g *accessGateway) call(t *testing.T, method, path, bearer, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if strings.HasPrefix(body, "<") {
		req.Header.Set("Content-Type", "application/cap+xml")
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func (g *accessGateway) auditLen(t *testing.T) int64 {
	n, err := g.rdb.XLen(context.Background(), "wg:audit").Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func redWarning(areas ...string) *warning.Warning {
	return &warning.Warning{Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual, Areas: areas,
		Headline: "暴雨红色预警", Description: "预计未来3小时将出现特大暴雨。", Expires: time.Now().Add(6 * time.Hour)}
}

func warningJSON(areas ...string) string {
	b, _ := json.Marshal(map[string]any{"hazard": "rainstorm", "level": "red", "areas": areas, "headline": "暴雨红色预警",
		"description": "d", "status": "exercise", "expires": time.Now().Add(6 * time.Hour).Format(time.RFC3339)})
	return string(b)
}

// TestAccessMatrix calls every route the gateway serves as every kind of
// caller — no credential, an official's link, the bootstrap token, and each
// role in the city, in 五华区, in two of its townships and in 盘龙区 — and
// checks each answer against this test's own statement of who may do what.
// A route without a statement here fails the test, and so does a route that
// answers a caller it should refuse; a refused call writes nothing to the
// audit trail.
func TestAccessMatrix(t *testing.T) {
	g := newAccessGateway(t)
	ctx := context.Background()
	tree := g.tree
	R := func(rs ...accounts.Role) []accounts.Role { return rs }
	callers := []caller{
		{name: "none"},
		{name: "bootstrap", bearer: "boot-token"},
		g.user(t, "city-viewer", "", R(accounts.RoleViewer)...),
		g.user(t, "city-issuer", "", R(accounts.RoleIssuer)...),
		g.user(t, "city-approver", "", R(accounts.RoleApprover)...),
		g.user(t, "city-responder", "", R(accounts.RoleResponder)...),
		g.user(t, "city-admin", "", R(accounts.RoleAdmin)...),
		g.user(t, "wh-issuer", wuhua, R(accounts.RoleIssuer)...),
		g.user(t, "wh-admin", wuhua, R(accounts.RoleAdmin)...),
		g.user(t, "hs-responder", huashan, R(accounts.RoleResponder)...),
		g.user(t, "hg-viewer", huguo, R(accounts.RoleViewer)...),
		g.user(t, "pl-issuer", panlong, R(accounts.RoleIssuer, accounts.RoleApprover, accounts.RoleResponder)...),
		// Every role, in a township of 五华区: the warning reaches into their
		// division but is not wholly theirs.
		g.user(t, "hs-all", huashan, R(accounts.RoleIssuer, accounts.RoleApprover, accounts.RoleResponder, accounts.RoleAdmin)...),
	}

	// The warning the :id routes name covers all of 五华区 and waits for approval.
	w, _, err := g.d.Submit(ctx, redWarning(wuhua), dispatcher.SubmitOptions{By: dispatcher.Actor{User: "someone"}, NeedsApproval: true})
	if err != nil {
		t.Fatal(err)
	}
	var village string
	tree.Walk(huashan, func(d *region.Division) bool {
		if d.Level == region.Village {
			village = d.Code
			return false
		}
		return true
	})
	var official region.Person
	g.roster.People(huashan, func(p region.Person) bool { official = p; return false })
	var household region.Household
	g.roster.Households(village, func(h region.Household) bool { household = h; return false })
	items, err := g.d.Checklist(ctx, w, huashan)
	if err != nil || len(items) == 0 {
		t.Fatalf("checklist of %s: %v", huashan, err)
	}
	linkToken := g.links.Token(warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: official.ID}, time.Now().Add(time.Hour))
	callers = append(callers, caller{name: "official_link", bearer: linkToken})
	capDoc, err := cap.Encode(&warning.Warning{ID: "m1", Hazard: warning.Rainstorm, Level: warning.Yellow, Status: warning.StatusExercise,
		Areas: []string{huashan}, Headline: "暴雨黄色预警", Description: "d", Issued: time.Now(), Expires: time.Now().Add(time.Hour),
		MsgType: warning.MsgAlert}, cap.EncodeOptions{Sender: "met.example", IdentifierPrefix: "X-"})
	if err != nil {
		t.Fatal(err)
	}

	var (
		anyone = func(c caller) bool { return true }
		bureau = func(c caller) bool { return c.authed() }
		role   = func(rs ...accounts.Role) func(caller) bool {
			return func(c caller) bool { return c.authed() && slices.ContainsFunc(rs, c.can) }
		}
		touches = func(c caller) bool { // the warning covers 五华区
			return c.authed() && (c.name == "bootstrap" || c.division == "" || tree.Covers(wuhua, c.division) || tree.Covers(c.division, wuhua))
		}
		within = func(c caller) bool { return c.authed() && c.holds(tree, wuhua) }
		inside = func(code string) func(caller) bool {
			return func(c caller) bool { return c.authed() && c.holds(tree, code) }
		}
		all = func(fs ...func(caller) bool) func(caller) bool {
			return func(c caller) bool {
				for _, f := range fs {
					if !f(c) {
						return false
					}
				}
				return true
			}
		}
		// byGate: the route authenticates its caller itself (a provider's
		// signature, an official's link, a sign-in form), so every caller's
		// bearer token is irrelevant: all get the same answer.
		byGate = func(c caller) bool { return true }
		nobody = func(c caller) bool { return false }
	)

	type row struct {
		allowed func(caller) bool
		same    bool   // byGate: every caller gets one answer
		path    string // with parameters filled in; empty: the route's own
		body    string
		setup   func() string // returns the path, for rows that need a fresh target per call
	}
	id := w.ID
	freshUser := func(prefix string) func() string {
		n := 0
		return func() string {
			n++
			name := fmt.Sprintf("%s-%d", prefix, n)
			if _, err := g.accounts.CreateUser(ctx, accounts.NewUser{Name: name, Password: "0123456789", Roles: R(accounts.RoleViewer), Division: huashan}, "test"); err != nil {
				t.Fatal(err)
			}
			return name
		}
	}
	delUser, revUser := freshUser("gone"), freshUser("revoked")
	var tokenOwner accounts.Principal
	if u, err := g.accounts.CreateUser(ctx, accounts.NewUser{Name: "owner", Password: "0123456789", Roles: R(accounts.RoleViewer), Division: huashan}, "test"); err == nil {
		tokenOwner = u.Principal()
	}
	freshToken := func() string {
		tk, _, err := g.accounts.CreateToken(ctx, tokenOwner, accounts.TokenRequest{Name: "x", Roles: R(accounts.RoleViewer), Division: huashan, Expires: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return "/api/v1/tokens/" + tk.ID
	}
	admins := all(role(accounts.RoleAdmin), inside(huashan))

	// The roster and duty rows name people, devices and households of 华山街道.
	var device region.Device
	g.roster.Devices(village, func(d region.Device) bool { device = d; return false })
	var leader, dutyOfficer region.Person
	g.roster.People(huashan, func(p region.Person) bool {
		switch p.Role {
		case region.TownshipLeader:
			leader = p
		case region.TownshipDuty:
			dutyOfficer = p
		}
		return true
	})
	now := time.Now().In(duty.Beijing)
	if _, errs, err := g.duty.SetOverride(ctx, duty.Override{Division: huashan, Start: now.Add(-time.Hour), End: now.Add(time.Hour), LeaderID: leader.ID, DutyIDs: []string{dutyOfficer.ID}}, nil); err != nil || len(errs) > 0 {
		t.Fatalf("override: %v %v", err, errs)
	}
	rowJSON := func(k roster.Kind, row roster.Row) string {
		m := map[string]string{}
		for i, c := range k.Columns()[1:] {
			m[c] = row[i+1]
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	getRow := func(k roster.Kind, id string) roster.Row {
		row, ok, err := g.rosters.Get(ctx, k, id)
		if !ok || err != nil {
			t.Fatalf("%s %s: %v", k, id, err)
		}
		return row
	}
	freshRow := func(k roster.Kind, fields func(n int) []string) func() string {
		n := 0
		return func() string {
			n++
			f := fields(n)
			if res, err := g.rosters.Put(ctx, f, roster.Change{Kind: k}); err != nil || res.ErrorsTotal > 0 {
				t.Fatalf("fresh %s: %v %+v", k, err, res)
			}
			return "/api/v1/roster/" + string(k) + "/" + f[0]
		}
	}
	freshPerson := freshRow(roster.People, func(n int) []string {
		return []string{fmt.Sprintf("gone-%d", n), "离开", fmt.Sprintf("139%08d", n), "", "", "resident", village}
	})
	freshDevice := freshRow(roster.Devices, func(n int) []string {
		return []string{fmt.Sprintf("gone-d%d", n), "旧广播", "loudspeaker", village, fmt.Sprintf("OLD-%d", n)}
	})
	freshHousehold := freshRow(roster.Households, func(n int) []string {
		return []string{fmt.Sprintf("gone-h%d", n), "旧户", "某处", "", "no_phone", village, household.GridWorker}
	})
	sheetOf := "id,name,phone,wechat_openid,wecom_userid,role,division\n" + official.ID + "," + official.Name + "," + official.Phone + ",," + official.WeComUserID + "," + string(official.Role) + "," + official.Division + "\n"
	dutySheet := "division,start,end,leader_id,duty_id\n" + huashan + "," + now.Add(24*time.Hour).Format("2006-01-02 15:04") + "," + now.Add(36*time.Hour).Format("2006-01-02 15:04") + "," + leader.ID + "," + dutyOfficer.ID + "\n"
	override := `{"division":"` + huashan + `","start":"` + now.Add(48*time.Hour).Format(time.RFC3339) + `","end":"` + now.Add(50*time.Hour).Format(time.RFC3339) + `","leader":{"id":"` + leader.ID + `"},"duty":[{"id":"` + dutyOfficer.ID + `"}],"reason":"换班"}`
	rosterReaders := all(role(accounts.RoleAdmin, accounts.RoleResponder), inside(huashan))

	rows := map[string]row{
		"GET /healthz":                     {allowed: anyone},
		"GET /readyz":                      {allowed: anyone},
		"GET /metrics":                     {allowed: anyone},
		"GET /":                            {allowed: anyone},
		"GET /favicon.ico":                 {allowed: anyone},
		"GET /static/*filepath":            {allowed: anyone, path: "/static/app.css"},
		"HEAD /static/*filepath":           {allowed: anyone, path: "/static/app.css"},
		"GET /public/":                     {allowed: anyone},
		"GET /public/warnings.json":        {allowed: anyone, path: "/public/warnings.json?area=" + wuhua},
		"GET /public/warnings.atom":        {allowed: anyone},
		"GET /public/warnings/:id/cap.xml": {allowed: anyone, path: "/public/warnings/nope/cap.xml"},
		// Unsigned reports are refused whoever sends them.
		"GET /callbacks/sim":  {allowed: nobody, same: true},
		"POST /callbacks/sim": {allowed: nobody, same: true},

		// Officials' pages take the link in the path, not a bearer token.
		"GET /a/:token":                  {allowed: byGate, same: true, path: "/a/" + linkToken},
		"POST /a/:token/ack":             {allowed: byGate, same: true, path: "/a/" + linkToken + "/ack"},
		"POST /a/:token/households/:hid": {allowed: byGate, same: true, path: "/a/" + linkToken + "/households/" + household.ID},
		"POST /a/:token/checklist/:item": {allowed: byGate, same: true, path: "/a/" + linkToken + "/checklist/" + items[0].ID},

		// Console pages want a session: a bearer token is sent to sign in.
		"GET /console/login":     {allowed: byGate, same: true},
		"POST /console/login":    {same: true, body: "name=x&password=y"}, // a wrong password, whoever asks
		"GET /console/logout":    {same: true},
		"POST /console/logout":   {same: true},
		"GET /console/":          {allowed: nobody},
		"GET /console/new":       {allowed: nobody},
		"GET /console/approvals": {allowed: nobody},
		"GET /console/w/:id":     {allowed: nobody, path: "/console/w/" + id},
		"GET /console/roster":    {allowed: nobody},

		"GET /api/v1/warnings":                   {allowed: bureau},
		"GET /api/v1/warnings/:id":               {allowed: touches},
		"GET /api/v1/warnings/:id/progress":      {allowed: touches},
		"GET /api/v1/warnings/:id/preview":       {allowed: all(touches, within)},
		"GET /api/v1/warnings/:id/report":        {allowed: touches},
		"GET /api/v1/warnings/:id/cap":           {allowed: touches},
		"GET /api/v1/warnings/:id/acks":          {allowed: touches},
		"GET /api/v1/warnings/:id/unreached":     {allowed: touches},
		"GET /api/v1/warnings/:id/escalations":   {allowed: touches},
		"GET /api/v1/warnings/:id/checklists":    {allowed: touches},
		"GET /api/v1/warnings/:id/households":    {allowed: all(touches, inside(village)), path: "/api/v1/warnings/" + id + "/households?village=" + village},
		"GET /api/v1/warnings/:id/coverage":      {allowed: all(touches, inside(village)), path: "/api/v1/warnings/" + id + "/coverage?division=" + village + "&list=unreached"},
		"GET /api/v1/warnings/:id/calllist.xlsx": {allowed: all(touches, inside(village)), path: "/api/v1/warnings/" + id + "/calllist.xlsx?village=" + village},
		"GET /api/v1/audit":                      {allowed: role(accounts.RoleAdmin, accounts.RoleApprover)},
		"GET /api/v1/regions":                    {allowed: bureau, path: "/api/v1/regions?q=华山"},
		"GET /api/v1/regions/:code":              {allowed: bureau, path: "/api/v1/regions/" + huashan},
		"GET /api/v1/me":                         {allowed: bureau},
		"GET /api/v1/users":                      {allowed: role(accounts.RoleAdmin)},
		"GET /api/v1/users/:name":                {allowed: admins, path: "/api/v1/users/owner"},
		"GET /api/v1/tokens":                     {allowed: bureau},
		"GET /api/v1/roster":                     {allowed: role(accounts.RoleAdmin, accounts.RoleResponder)},
		"GET /api/v1/roster/export.xlsx":         {allowed: admins, path: "/api/v1/roster/export.xlsx?kind=people&division=" + huashan},
		"GET /api/v1/roster/people":              {allowed: rosterReaders, path: "/api/v1/roster/people?q=&division=" + huashan},
		"GET /api/v1/roster/devices":             {allowed: rosterReaders, path: "/api/v1/roster/devices?division=" + huashan},
		"GET /api/v1/roster/households":          {allowed: rosterReaders, path: "/api/v1/roster/households?division=" + huashan},
		"GET /api/v1/roster/people/:id":          {allowed: rosterReaders, path: "/api/v1/roster/people/" + official.ID},
		"GET /api/v1/roster/devices/:id":         {allowed: rosterReaders, path: "/api/v1/roster/devices/" + device.ID},
		"GET /api/v1/roster/households/:id":      {allowed: rosterReaders, path: "/api/v1/roster/households/" + household.ID},
		"GET /api/v1/duty/now":                   {allowed: all(bureau, inside(huashan)), path: "/api/v1/duty/now?division=" + huashan},
		"GET /api/v1/duty/shifts":                {allowed: all(bureau, inside(huashan)), path: "/api/v1/duty/shifts?division=" + huashan},

		"POST /api/v1/warnings":         {allowed: all(role(accounts.RoleIssuer), inside(huashan)), body: warningJSON(huashan)},
		"POST /api/v1/warnings/preview": {allowed: all(role(accounts.RoleIssuer), inside(huashan)), body: warningJSON(huashan)},
		"POST /api/v1/warnings/sms":     {allowed: role(accounts.RoleIssuer), body: warningJSON(huashan)},
		"POST /api/v1/cap":              {allowed: all(role(accounts.RoleIssuer), inside(huashan)), body: string(capDoc)},
		"POST /api/v1/warnings/:id/acks": {allowed: all(role(accounts.RoleResponder, accounts.RoleIssuer), touches, inside(official.Division)),
			body: `{"person_id":"` + official.ID + `"}`},
		"PUT /api/v1/warnings/:id/checklists/:division/:item": {allowed: all(role(accounts.RoleResponder), touches, inside(huashan)),
			path: "/api/v1/warnings/" + id + "/checklists/" + huashan + "/" + items[0].ID, body: `{"status":"done","note":"巡查完毕"}`},
		"PUT /api/v1/warnings/:id/households/:hid": {allowed: all(role(accounts.RoleResponder), touches, inside(village)),
			path: "/api/v1/warnings/" + id + "/households/" + household.ID, body: `{"reached":true,"method":"visit"}`},
		"POST /api/v1/warnings/:id/calllist.xlsx": {allowed: all(role(accounts.RoleResponder), touches), body: "not a sheet"},
		"POST /api/v1/users":                      {allowed: admins, body: `{"name":"NAME","password":"0123456789","roles":["viewer"],"division":"` + huashan + `"}`},
		"PUT /api/v1/users/:name":                 {allowed: admins, path: "/api/v1/users/owner", body: `{"display_name":"华山街道值班室"}`},
		"DELETE /api/v1/users/:name/sessions":     {allowed: admins, setup: func() string { return "/api/v1/users/" + revUser() + "/sessions" }},
		"DELETE /api/v1/users/:name":              {allowed: admins, setup: func() string { return "/api/v1/users/" + delUser() }},
		"POST /api/v1/tokens":                     {allowed: bureau, body: `{"name":"mine","roles":["viewer"],"expires":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`},
		"DELETE /api/v1/tokens/:id":               {allowed: all(role(accounts.RoleAdmin), inside(huashan)), setup: freshToken},
		// Rows outside the caller's division are refused by row, in a 200 dry run.
		"POST /api/v1/roster/import":           {allowed: role(accounts.RoleAdmin), path: "/api/v1/roster/import?kind=people&dry_run=true&mode=merge", body: sheetOf},
		"PUT /api/v1/roster/people/:id":        {allowed: admins, path: "/api/v1/roster/people/" + official.ID, body: rowJSON(roster.People, getRow(roster.People, official.ID))},
		"PUT /api/v1/roster/devices/:id":       {allowed: admins, path: "/api/v1/roster/devices/" + device.ID, body: rowJSON(roster.Devices, getRow(roster.Devices, device.ID))},
		"PUT /api/v1/roster/households/:id":    {allowed: admins, path: "/api/v1/roster/households/" + household.ID, body: rowJSON(roster.Households, getRow(roster.Households, household.ID))},
		"DELETE /api/v1/roster/people/:id":     {allowed: admins, setup: freshPerson},
		"DELETE /api/v1/roster/devices/:id":    {allowed: admins, setup: freshDevice},
		"DELETE /api/v1/roster/households/:id": {allowed: admins, setup: freshHousehold},
		"POST /api/v1/duty/import":             {allowed: role(accounts.RoleAdmin, accounts.RoleResponder), path: "/api/v1/duty/import?dry_run=true", body: dutySheet},
		"PUT /api/v1/duty/overrides":           {allowed: all(role(accounts.RoleAdmin, accounts.RoleResponder), inside(huashan)), body: override},

		// Actions on the whole warning, last: they change its state.
		"POST /api/v1/warnings/:id/approve": {allowed: all(role(accounts.RoleApprover), within)},
		"POST /api/v1/warnings/:id/update":  {allowed: all(role(accounts.RoleIssuer), within), body: warningJSON(wuhua)},
		"POST /api/v1/warnings/:id/resend":  {allowed: all(role(accounts.RoleIssuer), within)},
		"POST /api/v1/warnings/:id/cancel":  {allowed: all(role(accounts.RoleIssuer), within)},
	}

	// Every route has a row, and every row a route.
	var routes []string
	served := map[string]bool{}
	for _, r := range g.h.Routes() {
		k := r.Method + " " + r.Path
		served[k] = true
		routes = append(routes, k)
		if _, ok := rows[k]; !ok {
			t.Errorf("route %s has no row in this test: say who may call it", k)
		}
	}
	for k := range rows {
		if !served[k] {
			t.Errorf("row %s names no route", k)
		}
	}
	// Reads first, then changes, the actions on the warning last.
	order := func(k string) int {
		switch {
		case strings.HasSuffix(k, "/approve"):
			return 3
		case strings.HasSuffix(k, "/update"):
			return 4
		case strings.HasSuffix(k, "/resend"):
			return 5
		case strings.HasSuffix(k, "/cancel"):
			return 6
		case strings.HasPrefix(k, "GET ") || strings.HasPrefix(k, "HEAD "):
			return 0
		}
		return 1
	}
	sort.SliceStable(routes, func(i, j int) bool { return order(routes[i]) < order(routes[j]) })

	userN := 0
	for _, k := range routes {
		r, ok := rows[k]
		if !ok {
			continue
		}
		method, pattern, _ := strings.Cut(k, " ")
		first := 0
		for _, c := range callers {
			path := r.path
			if path == "" {
				path = strings.ReplaceAll(pattern, ":id", id)
			}
			if r.setup != nil {
				path = r.setup()
			}
			body := r.body
			if strings.Contains(body, `"NAME"`) {
				userN++
				body = strings.Replace(body, "NAME", fmt.Sprintf("made-%d", userN), 1)
			}
			before := g.auditLen(t)
			code, out := g.call(t, method, path, c.bearer, body)
			if r.same {
				if first == 0 {
					first = code
				}
				if code != first {
					t.Errorf("%s as %s: %d, but %d for the first caller: a bearer token changes what this route answers", k, c.name, code, first)
				}
				if r.allowed != nil && r.allowed(c) != (code < 400) {
					t.Errorf("%s as %s: %d; want allowed=%v", k, c.name, code, r.allowed(c))
				}
				continue
			}
			refused := code == 401 || code == 403 || (code == 404 && errCode(out) == "not_found" && strings.HasPrefix(pattern, "/api/v1/")) ||
				(code == http.StatusSeeOther && strings.HasPrefix(pattern, "/console/") && pattern != "/console/login" && pattern != "/console/logout")
			if r.allowed(c) == refused {
				t.Errorf("%s as %s: %d %v; want allowed=%v", k, c.name, code, out["error"], r.allowed(c))
				continue
			}
			if refused && strings.HasPrefix(pattern, "/api/v1/") {
				if after := g.auditLen(t); after != before {
					t.Errorf("%s as %s: refused, yet %d audit entries were written", k, c.name, after-before)
				}
				if c.name == "none" && code != 401 {
					t.Errorf("%s without a credential: %d, want 401", k, code)
				}
			}
		}
	}
}

func errCode(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// A confirmation made for an official by a bureau user names both in the
// audit trail; a viewer's attempt is refused and changes nothing; the
// official's own link names the official.
func TestConfirmationsNameTheRealActor(t *testing.T) {
	g := newAccessGateway(t)
	ctx := context.Background()
	viewer := g.user(t, "watch", "", accounts.RoleViewer)
	responder := g.user(t, "hs-duty", huashan, accounts.RoleResponder)
	w, _, err := g.d.Submit(ctx, redWarning(huashan), dispatcher.SubmitOptions{By: dispatcher.Actor{User: "duty"}})
	if err != nil {
		t.Fatal(err)
	}
	var officials []region.Person
	g.roster.People(huashan, func(p region.Person) bool { officials = append(officials, p); return true })
	if len(officials) < 2 {
		t.Fatal("the demo roster has no two officials in 华山街道")
	}
	regs := []ledger.Official{}
	for _, p := range officials[:2] {
		regs = append(regs, ledger.Official{PersonID: p.ID, Audience: p.Role.Audience(), Division: p.Division})
	}
	if _, err := g.ledger.RegisterOfficials(ctx, w.ID, regs); err != nil {
		t.Fatal(err)
	}
	body := func(p region.Person) string { return `{"person_id":"` + p.ID + `"}` }

	if code, out := g.call(t, "POST", "/api/v1/warnings/"+w.ID+"/acks", viewer.bearer, body(officials[0])); code != 403 {
		t.Fatalf("a viewer confirms for an official: %d %v", code, out)
	}
	os, _ := g.ledger.Officials(ctx, w.ID)
	for _, o := range os {
		if o.State != ledger.AckWaiting {
			t.Fatalf("after a refused confirmation %s is %v", o.PersonID, o.State)
		}
	}
	if code, out := g.call(t, "POST", "/api/v1/warnings/"+w.ID+"/acks", responder.bearer, body(officials[0])); code != 200 {
		t.Fatalf("the township's responder confirms: %d %v", code, out)
	}
	tok := g.links.Token(warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: officials[1].ID}, time.Now().Add(time.Hour))
	if resp := (&accessGateway{}).form(t, g.url+"/a/"+tok+"/ack"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the official's own link: %d", resp.StatusCode)
	}
	entries, _ := g.ledger.AuditLog(ctx, w.ID, 10)
	var got []string
	for _, e := range entries {
		if e.Action == "acknowledge" {
			got = append(got, e.Who+" → "+e.Target+": "+e.Detail)
		}
	}
	want := []string{
		officials[1].ID + " → " + officials[1].ID + ": confirmed by link",
		"hs-duty/token:matrix → " + officials[0].ID + ": confirmed by api on behalf of " + officials[0].ID,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit:\n got %q\nwant %q", got, want)
	}
}

func (*accessGateway) form(t *testing.T, u string) *http.Response {
	t.Helper()
	resp, err := noRedirect.Post(u, "application/x-www-form-urlencoded", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// Officials' links are credentials: the access log keeps only their first
// characters, and their pages carry the console's security headers.
func TestOfficialLinksAreKeptOutOfLogs(t *testing.T) {
	g := newAccessGateway(t)
	ctx := context.Background()
	w, _, err := g.d.Submit(ctx, redWarning(huashan), dispatcher.SubmitOptions{By: dispatcher.Actor{User: "duty"}})
	if err != nil {
		t.Fatal(err)
	}
	var p region.Person
	g.roster.People(huashan, func(x region.Person) bool { p = x; return false })
	tok := g.links.Token(warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: p.ID}, time.Now().Add(time.Hour))
	resp, err := http.Get(g.url + "/a/" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("link page: %d", resp.StatusCode)
	}
	for h, want := range map[string]string{"Content-Security-Policy": "frame-ancestors 'none'", "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"} {
		if !strings.Contains(resp.Header.Get(h), want) {
			t.Errorf("%s: %q, want %q", h, resp.Header.Get(h), want)
		}
	}
	g.form(t, g.url+"/a/"+tok+"/ack")
	logs := g.logs.String()
	if strings.Contains(logs, tok) || strings.Contains(logs, tok[6:20]) {
		t.Errorf("the link's token is in the log:\n%s", logs)
	}
	if !strings.Contains(logs, "/a/"+tok[:6]+"…/ack") {
		t.Errorf("the access log does not show the shortened link:\n%s", logs)
	}
}

// An administrator manages the users of their division at run time; a
// user's own tokens are shown once, listed with their last use, and stop
// working when revoked; every change is audited.
func TestUsersAndTokensThroughTheAPI(t *testing.T) {
	g := newAccessGateway(t)
	admin := g.user(t, "wh-admin", wuhua, accounts.RoleAdmin)

	code, out := g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"x y","password":"short","roles":["king"],"division":"`+huashan+`"}`)
	if code != 422 || errCode(out) != "invalid_user" || len(out["error"].(map[string]any)["fields"].([]any)) != 3 {
		t.Errorf("bad user: %d %v", code, out)
	}
	if code, out := g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"pl","password":"0123456789","roles":["viewer"],"division":"`+panlong+`"}`); code != 403 {
		t.Errorf("a user in another county: %d %v", code, out)
	}
	if code, out := g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"city","password":"0123456789","roles":["viewer"],"division":""}`); code != 403 {
		t.Errorf("a city-wide user made by a county admin: %d %v", code, out)
	}
	code, out = g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"hs","display_name":"华山值班","password":"hs-password-1","roles":["issuer","viewer"],"division":"`+huashan+`"}`)
	if code != 201 || out["division_name"] != "华山街道 "+huashan || out["source"] != "runtime" {
		t.Fatalf("create: %d %v", code, out)
	}
	if _, ok := out["password_hash"]; ok {
		t.Error("the answer carries the password hash")
	}
	if code, _ := g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"hs","password":"0123456789","roles":["viewer"],"division":"`+huashan+`"}`); code != 409 {
		t.Errorf("the same name twice: %d", code)
	}

	// The new user signs in to the console and makes a token.
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.PostForm(g.url+"/console/login", url.Values{"name": {"hs"}, "password": {"hs-password-1"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %v %v", resp.StatusCode, err)
	}
	resp, _ = browser.Get(g.url + "/console/new")
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	req, _ := http.NewRequest("POST", g.url+"/api/v1/tokens", strings.NewReader(`{"name":"feed","roles":["issuer"],"expires":"`+time.Now().Add(time.Hour).Format(time.RFC3339)+`"}`))
	req.Header.Set(accounts.CSRFHeader, string(m[1]))
	resp, err = browser.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("token: %v %v", resp.StatusCode, err)
	}
	var tok struct{ ID, Token, Division string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if tok.Division != huashan || !strings.HasPrefix(tok.Token, "wgt_") {
		t.Fatalf("token %+v", tok)
	}
	if code, out := g.call(t, "GET", "/api/v1/me", tok.Token, ""); code != 200 || out["name"] != "hs" || out["token"] != "feed" {
		t.Errorf("me with the token: %d %v", code, out)
	}
	code, out = g.call(t, "GET", "/api/v1/tokens", admin.bearer, "")
	if code != 200 || !strings.Contains(fmt.Sprint(out["tokens"]), tok.ID) || strings.Contains(fmt.Sprint(out), tok.Token) {
		t.Errorf("the admin's token list: %d %v", code, out)
	}

	// Disabling the user ends their session and their token at once.
	if code, out := g.call(t, "PUT", "/api/v1/users/hs", admin.bearer, `{"disabled":true}`); code != 200 || out["disabled"] != true {
		t.Fatalf("disable: %d %v", code, out)
	}
	if resp, _ := browser.Get(g.url + "/console/"); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("a disabled user's session still works: %d", resp.StatusCode)
	}
	if code, _ := g.call(t, "GET", "/api/v1/me", tok.Token, ""); code != 401 {
		t.Errorf("a disabled user's token still works: %d", code)
	}
	if code, out := g.call(t, "DELETE", "/api/v1/tokens/"+tok.ID, admin.bearer, ""); code != 200 {
		t.Errorf("revoke: %d %v", code, out)
	}
	if code, _ := g.call(t, "PUT", "/api/v1/users/hs", admin.bearer, `{"disabled":false}`); code != 200 {
		t.Fatal("enable")
	}
	if code, _ := g.call(t, "GET", "/api/v1/me", tok.Token, ""); code != 401 {
		t.Errorf("a revoked token works once its user is enabled again: %d", code)
	}

	entries, _ := g.ledger.AuditLog(context.Background(), "", 20)
	var got []string
	for _, e := range entries {
		got = append(got, e.Action+" "+e.Who+" "+e.Target)
	}
	for _, want := range []string{"user_create wh-admin/token:matrix hs", "token_create hs " + tok.ID, "user_update wh-admin/token:matrix hs", "token_revoke wh-admin/token:matrix " + tok.ID} {
		if !slices.Contains(got, want) {
			t.Errorf("audit lacks %q: %q", want, got)
		}
	}
}
