package api_test

import (
	"fmt"
	"testing"
	"time"

	"warngate/accounts"
	"warngate/duty"
	"warngate/region"
)

// firstPerson is the first person of the roster under code who is ok.
func firstPerson(t *testing.T, g *accessGateway, code string, ok func(region.Person) bool) region.Person {
	t.Helper()
	var out region.Person
	g.tree.Walk(code, func(d *region.Division) bool {
		g.roster.People(d.Code, func(p region.Person) bool {
			if ok(p) {
				out = p
				return false
			}
			return true
		})
		return out.ID == ""
	})
	if out.ID == "" {
		t.Fatalf("no such person under %s", code)
	}
	return out
}

func official(p region.Person) bool { return p.Role.Audience().Official() }

// A township's duty room may put only its own officials on duty: putting
// someone on duty sends them the township's warnings and escalations and
// hands their phone to whoever asks who is on duty.
func TestDutyNamesOnlyOfficialsOfTheCallersDivision(t *testing.T) {
	g := newAccessGateway(t)
	room := g.user(t, "hs-duty-room", huashan, accounts.RoleResponder)
	outsider := firstPerson(t, g, panlong, official)
	insider := firstPerson(t, g, huashan, official)
	now := time.Now().In(duty.Beijing)
	override := func(leader, officer string) string {
		return fmt.Sprintf(`{"division":%q,"start":%q,"end":%q,"leader":{"id":%q},"duty":[{"id":%q}],"reason":"换班"}`,
			huashan, now.Add(-time.Hour).Format(time.RFC3339), now.Add(time.Hour).Format(time.RFC3339), leader, officer)
	}

	for _, body := range []string{override(outsider.ID, insider.ID), override(insider.ID, outsider.ID)} {
		code, out := g.call(t, "PUT", "/api/v1/duty/overrides", room.bearer, body)
		if code != 403 || errCode(out) != "outside_division" {
			t.Errorf("an override naming %s of 盘龙区: %d %v, want 403 outside_division", outsider.ID, code, out)
		}
	}
	if code, out := g.call(t, "GET", "/api/v1/duty/now?division="+huashan, room.bearer, ""); code != 404 {
		t.Errorf("after refused overrides, who is on duty: %d %v, want 404 no_shift", code, out)
	}

	night := now.Truncate(time.Hour)
	sheet := fmt.Sprintf("区划代码,开始时间,结束时间,带班领导编号,值班员编号\n%s,%s,%s,%s,%s\n", huashan,
		night.Add(-time.Hour).Format("2006-01-02 15:04"), night.Add(11*time.Hour).Format("2006-01-02 15:04"), outsider.ID, insider.ID)
	code, out := g.upload(t, "/api/v1/duty/import?dry_run=false", room.bearer, "text/csv", []byte(sheet))
	if code != 422 {
		t.Fatalf("a 值班表 naming %s of 盘龙区: %d %v, want 422", outsider.ID, code, out)
	}
	errs, _ := out["errors"].([]any)
	if len(errs) != 1 || errs[0].(map[string]any)["field"] != "leader_id" {
		t.Errorf("the sheet's problems: %v, want one, on leader_id", out["errors"])
	}
	if code, _ := g.call(t, "GET", "/api/v1/duty/now?division="+huashan, room.bearer, ""); code != 404 {
		t.Errorf("after a refused sheet, who is on duty: %d, want 404", code)
	}

	// Their own officials they may name.
	if code, out := g.call(t, "PUT", "/api/v1/duty/overrides", room.bearer, override(insider.ID, insider.ID)); code != 200 {
		t.Errorf("an override naming their own official: %d %v", code, out)
	}
}

// A township's admin may not give a household a grid worker of another
// division: the grid worker would mark it, from their link, outside theirs.
func TestHouseholdGridWorkerOfTheCallersDivision(t *testing.T) {
	g := newAccessGateway(t)
	admin := g.user(t, "hs-admin", huashan, accounts.RoleAdmin)
	gridWorker := func(p region.Person) bool { return p.Role == region.GridWorker }
	outsider := firstPerson(t, g, panlong, gridWorker)
	insider := firstPerson(t, g, huashan, gridWorker)
	body := func(gw string) string {
		return fmt.Sprintf(`{"head":"张三","address":"华山南路1号","phone":"","category":"elderly_alone","division":%q,"grid_worker":%q}`, insider.Division, gw)
	}
	code, out := g.call(t, "PUT", "/api/v1/roster/households/hs-new-1", admin.bearer, body(outsider.ID))
	if code != 422 || errCode(out) != "invalid_roster_row" {
		t.Fatalf("a household given %s, a grid worker of 盘龙区: %d %v, want 422", outsider.ID, code, out)
	}
	if code, _ := g.call(t, "GET", "/api/v1/roster/households/hs-new-1", admin.bearer, ""); code != 404 {
		t.Errorf("the refused household was stored: %d", code)
	}
	if code, out := g.call(t, "PUT", "/api/v1/roster/households/hs-new-1", admin.bearer, body(insider.ID)); code != 201 {
		t.Errorf("a household given their own grid worker: %d %v", code, out)
	}
}

// A township's duty room imports the 值班表 of its own township only: a row
// for another county's township is refused by row, and nothing is stored.
func TestDutySheetOfAnotherDivisionIsRefused(t *testing.T) {
	g := newAccessGateway(t)
	room := g.user(t, "hs-duty-room", huashan, accounts.RoleResponder)
	insider := firstPerson(t, g, huashan, official)
	night := time.Now().In(duty.Beijing).Truncate(time.Hour)
	row := func(division string) string {
		return fmt.Sprintf("%s,%s,%s,%s,%s\n", division, night.Add(-time.Hour).Format("2006-01-02 15:04"),
			night.Add(11*time.Hour).Format("2006-01-02 15:04"), insider.ID, insider.ID)
	}
	sheet := "区划代码,开始时间,结束时间,带班领导编号,值班员编号\n" + row(huashan) + row(panlong)
	code, out := g.upload(t, "/api/v1/duty/import?dry_run=false", room.bearer, "text/csv", []byte(sheet))
	errs, _ := out["errors"].([]any)
	if code != 422 || len(errs) != 1 || errs[0].(map[string]any)["field"] != "division" || errs[0].(map[string]any)["row"] != float64(3) {
		t.Fatalf("a 值班表 with a row for 盘龙区: %d %v, want 422 with row 3's division", code, out)
	}
	if code, _ := g.call(t, "GET", "/api/v1/duty/now?division="+huashan, room.bearer, ""); code != 404 {
		t.Errorf("a refused sheet's own rows were stored: %d", code)
	}
}

// A county's admin cannot move a user of theirs out of the county, nor
// make one city-wide.
func TestUserMovedOutsideTheAdminsDivisionIsRefused(t *testing.T) {
	g := newAccessGateway(t)
	admin := g.user(t, "wh-admin", wuhua, accounts.RoleAdmin)
	if code, out := g.call(t, "POST", "/api/v1/users", admin.bearer, `{"name":"hs","password":"hs-password-1","roles":["viewer"],"division":"`+huashan+`"}`); code != 201 {
		t.Fatalf("create: %d %v", code, out)
	}
	for _, division := range []string{panlong, ""} {
		code, out := g.call(t, "PUT", "/api/v1/users/hs", admin.bearer, `{"division":"`+division+`"}`)
		if code != 403 {
			t.Errorf("moving a user to %q: %d %v, want 403", division, code, out)
		}
	}
	if code, out := g.call(t, "GET", "/api/v1/users/hs", admin.bearer, ""); code != 200 || out["division"] != huashan {
		t.Errorf("after refused moves: %d %v", code, out)
	}
}
