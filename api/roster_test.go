package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/accounts"
	"warngate/duty"
	"warngate/internal/sheet"
)

// upload posts a sheet with a Content-Type.
func (g *accessGateway) upload(t *testing.T, path, bearer, contentType string, body []byte) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func rowErrors(out map[string]any) string {
	var s []string
	errs, _ := out["errors"].([]any)
	for _, e := range errs {
		m := e.(map[string]any)
		s = append(s, fmt.Sprintf("%v/%v: %v", m["row"], m["column"], m["message"]))
	}
	return strings.Join(s, "\n")
}

// An admin imports the roster of their county: a sheet with a bad row is
// refused whole, naming the row and column; the fixed sheet applies; rows
// of another county are refused; edits name their fields; a person of
// another county does not exist for them; every change is audited with
// phones masked.
func TestRosterThroughTheAPI(t *testing.T) {
	g := newAccessGateway(t)
	ctx := context.Background()
	admin := g.user(t, "wh-admin", wuhua, accounts.RoleAdmin)
	hsViewer := g.user(t, "hs-viewer", huashan, accounts.RoleViewer)
	plAdmin := g.user(t, "pl-admin", panlong, accounts.RoleAdmin)
	sheetCSV := "id,name,phone,role,division\nn-1,新官员,13900001111,village_officer,530102001001\nn-2,新居民,1390000222,resident,530102001001\n"

	code, out := g.upload(t, "/api/v1/roster/import?kind=people&dry_run=false&mode=merge", admin.bearer, "text/csv", []byte(sheetCSV))
	if code != 422 || rowErrors(out) != `3/phone: phone "1390000222" is not an 11-digit mainland mobile number: write 1[3-9] and 9 more digits, optionally after +86` || out["version"] != float64(0) {
		t.Fatalf("bad sheet: %d %v", code, out)
	}
	if _, n := g.rosters.Latest(); n != 0 {
		t.Fatalf("a refused sheet made version %d", n)
	}
	fixed := strings.Replace(sheetCSV, "1390000222,", "13900002222,", 1)
	code, out = g.upload(t, "/api/v1/roster/import?kind=people&dry_run=true&mode=merge", admin.bearer, "text/csv", []byte(fixed))
	if code != 200 || out["added"] != float64(2) || out["version"] != float64(0) || out["dry_run"] != true {
		t.Fatalf("dry run: %d %v", code, out)
	}
	code, out = g.upload(t, "/api/v1/roster/import?kind=people&dry_run=false&mode=merge", admin.bearer, "text/csv", []byte(fixed))
	if code != 200 || out["added"] != float64(2) || out["version"] != float64(1) {
		t.Fatalf("apply: %d %v", code, out)
	}
	if p, ok := g.roster.Person("n-1"); !ok || p.Phone != "13900001111" {
		t.Errorf("the API's roster lacks n-1: %+v", p)
	}
	// Rows of another county are refused by row.
	code, out = g.upload(t, "/api/v1/roster/import?kind=people&dry_run=true&mode=merge", admin.bearer, "text/csv",
		[]byte("id,name,phone,role,division\npl-1,盘龙人,13900003333,resident,530103001001\n"))
	if code != 200 || !strings.HasPrefix(rowErrors(out), "2/division: 530103001001 lies outside your division") {
		t.Errorf("outside: %d %v", code, out)
	}
	if code, _ := g.upload(t, "/api/v1/roster/import?kind=people&scope="+panlong, admin.bearer, "text/csv", []byte(fixed)); code != 403 {
		t.Errorf("a scope outside: %d", code)
	}

	// Reads and edits.
	if code, out := g.call(t, "GET", "/api/v1/roster/people/n-1", admin.bearer, ""); code != 200 || out["name"] != "新官员" || out["division_name"] == nil {
		t.Errorf("get: %d %v", code, out)
	}
	for _, c := range []caller{plAdmin, hsViewer} {
		if code, _ := g.call(t, "GET", "/api/v1/roster/people/n-1", c.bearer, ""); code != 404 && code != 403 {
			t.Errorf("%s reads 五华区's person: %d", c.name, code)
		}
	}
	if code, _ := g.call(t, "GET", "/api/v1/roster/people/n-1", plAdmin.bearer, ""); code != 404 {
		t.Errorf("another county's admin learns the person exists: %d", code)
	}
	code, out = g.call(t, "PUT", "/api/v1/roster/people/n-1", admin.bearer, `{"name":"新官员","phone":"12","role":"市长","division":"530102001001"}`)
	if code != 422 || errCode(out) != "invalid_roster_row" || fieldsOf(out) != "role,phone" {
		t.Errorf("bad edit: %d %v", code, out)
	}
	if code, _ := g.call(t, "PUT", "/api/v1/roster/people/n-1", admin.bearer, `{"name":"x","phone":"13900001111","role":"resident","division":"530103001001"}`); code != 403 {
		t.Errorf("moved to another county: %d", code)
	}
	if code, _ := g.call(t, "PUT", "/api/v1/roster/people/n-1", plAdmin.bearer, `{"name":"x","phone":"13900001111","role":"resident","division":"530103001001"}`); code != 404 {
		t.Errorf("another county's admin edits the person: %d", code)
	}
	if code, _ := g.call(t, "PUT", "/api/v1/roster/people/n-1", admin.bearer, `{"name":"x","nickname":"y"}`); code != 400 {
		t.Errorf("an unknown field: %d", code)
	}
	code, out = g.call(t, "PUT", "/api/v1/roster/people/n-1", admin.bearer, `{"name":"新官员","phone":"13900009999","role":"村（社区）干部","division":"530102001001"}`)
	if code != 200 || out["version"] != float64(2) || out["phone"] != "13900009999" || out["role"] != "village_officer" {
		t.Fatalf("edit: %d %v", code, out)
	}
	if code, out = g.call(t, "PUT", "/api/v1/roster/people/n-3", admin.bearer, `{"name":"又一人","phone":"13900004444","role":"resident","division":"530102001001"}`); code != 201 {
		t.Errorf("create: %d %v", code, out)
	}
	if code, out = g.call(t, "DELETE", "/api/v1/roster/people/n-2", admin.bearer, ""); code != 200 {
		t.Errorf("retire: %d %v", code, out)
	}
	if _, ok := g.roster.Person("n-2"); ok {
		t.Error("n-2 is still served")
	}
	entries, _ := g.ledger.AuditLog(ctx, "", 20)
	var edit string
	for _, e := range entries {
		if e.Action == "roster_edit" && e.Target == "people/n-1" {
			edit = e.Detail
		}
	}
	if !strings.Contains(edit, "phone=139****1111") || !strings.Contains(edit, "phone=139****9999") || strings.Contains(edit, "13900009999") || !strings.Contains(edit, "version 1 → 2") {
		t.Errorf("audit of the edit: %q", edit)
	}

	// An export of the county imports back unchanged.
	req, _ := http.NewRequest("GET", g.url+"/api/v1/roster/export.xlsx?kind=people&header=zh", nil)
	req.Header.Set("Authorization", "Bearer "+admin.bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != sheet.XLSXType {
		t.Fatalf("export: %v %v", err, resp.Status)
	}
	book, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	code, out = g.upload(t, "/api/v1/roster/import?kind=people&dry_run=true", admin.bearer, sheet.XLSXType, book)
	if code != 200 || out["added"] != float64(0) || out["changed"] != float64(0) || out["retired"] != float64(0) || out["unchanged"].(float64) < 100 {
		t.Errorf("round trip: %d %v", code, out)
	}
	if code, _ := g.call(t, "GET", "/api/v1/roster/export.xlsx?kind=people&division="+panlong, admin.bearer, ""); code != 403 {
		t.Errorf("an export of another county: %d", code)
	}

	// Hostile uploads.
	garbage := make([]byte, 10<<20)
	rand.Read(garbage)
	if code, out := g.upload(t, "/api/v1/roster/import?kind=people&dry_run=false", admin.bearer, sheet.XLSXType, garbage); code != 422 || errCode(out) != "invalid_sheet" {
		t.Errorf("10 MB of garbage: %d %v", code, out)
	}
	if code, _ := g.upload(t, "/api/v1/roster/import?kind=people", admin.bearer, "image/png", []byte("x")); code != 415 {
		t.Errorf("a picture: %d", code)
	}
	if code, _ := g.upload(t, "/api/v1/roster/import?kind=cats", admin.bearer, "text/csv", []byte("x")); code != 400 {
		t.Errorf("an unknown kind: %d", code)
	}
	if _, n := g.rosters.Latest(); n != 4 {
		t.Errorf("version %d after refused uploads, want 4 (an import and three edits)", n)
	}
}

func fieldsOf(out map[string]any) string {
	e, _ := out["error"].(map[string]any)
	fs, _ := e["fields"].([]any)
	var names []string
	for _, f := range fs {
		names = append(names, f.(map[string]any)["field"].(string))
	}
	return strings.Join(names, ",")
}

// A township's 值班表 is imported, asked about, and overridden for a swap.
func TestDutyThroughTheAPI(t *testing.T) {
	g := newAccessGateway(t)
	responder := g.user(t, "hs-duty-room", huashan, accounts.RoleResponder)
	hgViewer := g.user(t, "hg-viewer", huguo, accounts.RoleViewer)
	var leader, officer string
	rows, _ := g.rosters.Search(context.Background(), "people", huashan, "", 10)
	for _, r := range rows {
		switch r[5] {
		case "township_leader":
			leader = r[0]
		case "township_duty":
			officer = r[0]
		}
	}
	night := time.Now().In(duty.Beijing).Truncate(time.Hour)
	sheetCSV := fmt.Sprintf("区划代码,开始时间,结束时间,带班领导编号,值班员编号\n%s,%s,%s,%s,%s\n", huashan,
		night.Add(-time.Hour).Format("2006-01-02 15:04"), night.Add(11*time.Hour).Format("2006-01-02 15:04"), leader, officer)
	code, out := g.upload(t, "/api/v1/duty/import?dry_run=false", responder.bearer, "text/csv", []byte(strings.Replace(sheetCSV, officer, "nobody", 1)))
	if code != 422 || !strings.HasPrefix(rowErrors(out), `2/值班员编号: "nobody" is not in the roster`) {
		t.Fatalf("bad 值班表: %d %v", code, out)
	}
	if code, out = g.upload(t, "/api/v1/duty/import?dry_run=false", responder.bearer, "text/csv", []byte(sheetCSV)); code != 200 || out["shifts"] != float64(1) {
		t.Fatalf("import: %d %v", code, out)
	}
	code, out = g.call(t, "GET", "/api/v1/duty/now?division="+huashan, responder.bearer, "")
	if code != 200 || out["leader"].(map[string]any)["id"] != leader || out["duty"].([]any)[0].(map[string]any)["id"] != officer {
		t.Fatalf("now: %d %v", code, out)
	}
	if code, _ := g.call(t, "GET", "/api/v1/duty/now?division="+huashan, hgViewer.bearer, ""); code != 403 {
		t.Errorf("another township asks: %d", code)
	}
	if code, out := g.call(t, "GET", "/api/v1/duty/now?division="+huashan+"&at="+night.Add(48*time.Hour).Format(time.RFC3339), responder.bearer, ""); code != 404 || errCode(out) != "no_shift" {
		t.Errorf("nobody on duty: %d %v", code, out)
	}
	body := fmt.Sprintf(`{"division":%q,"start":%q,"end":%q,"leader":{"id":%q},"duty":[{"id":%q}],"reason":"换班"}`,
		huashan, night.Format(time.RFC3339), night.Add(2*time.Hour).Format(time.RFC3339), leader, leader)
	if code, out = g.call(t, "PUT", "/api/v1/duty/overrides", responder.bearer, body); code != 200 || out["source"] != "override" {
		t.Fatalf("override: %d %v", code, out)
	}
	code, out = g.call(t, "GET", "/api/v1/duty/now?division="+huashan+"&at="+night.Add(30*time.Minute).Format(time.RFC3339), responder.bearer, "")
	if code != 200 || out["duty"].([]any)[0].(map[string]any)["id"] != leader || out["shift"].(map[string]any)["source"] != "override" {
		t.Errorf("during the swap: %d %v", code, out)
	}
	if code, out = g.call(t, "PUT", "/api/v1/duty/overrides", responder.bearer, `{"division":"`+huguo+`","start":"x","leader":{"id":"nobody"},"duty":[]}`); code != 403 {
		t.Errorf("an override of another township: %d %v", code, out)
	}
	if code, out = g.call(t, "PUT", "/api/v1/duty/overrides", responder.bearer, `{"division":"`+huashan+`","start":"x","leader":{"id":"nobody"},"duty":[]}`); code != 422 || fieldsOf(out) != "start,end,leader.id,duty" {
		t.Errorf("a bad override: %d %v", code, out)
	}
}
