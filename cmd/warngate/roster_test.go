package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xuri/excelize/v2"

	"warngate/accounts"
	"warngate/config"
	"warngate/duty"
	"warngate/internal/sheet"
)

// The roster and duty, end to end, with an API process and a worker process
// on a real Redis: a roster sheet with a bad row is refused by row and
// column, the fixed sheet applies, and a warning issued next reaches the
// official it added through the worker that was running all along; a 值班表
// says who is on duty tonight; a county's issuer cannot warn another
// county's township, and a township's viewer cannot read another
// township's 未叫应 list.
func TestRosterAndDutyScenario(t *testing.T) {
	redisURL, _ := realRedis(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	common := fmt.Sprintf(`
redis: {url: %q}
roster: {demo: {residents_per_village: 2, households_per_village: 1}}
simulator: {enabled: true, secret: s3cret-sim, report_delay: 0s, failure_rate: 0}
`, redisURL) + automation
	env := []string{"WARNGATE_ADMIN_TOKEN=t0ken", "WARNGATE_LINK_KEY=0123456789abcdef0123", "WARNGATE_PUBLIC_URL=" + base,
		"WARNGATE_SESSION_KEY=scenario-session-key-0123456789abcdef"}
	start(t, dir, env, "serve", "--no-workers", "--listen", addr, "--config", writeConfig(t, dir, "api.yaml", common))
	waitHTTP(t, base+"/readyz")
	start(t, dir, env, "worker", "--metrics", "", "--config", writeConfig(t, dir, "worker.yaml", common))

	const (
		wuhua     = "530102000000"
		huashan   = "530102001000" // 华山街道
		cuihuxilu = "530102001001" // 翠湖西路社区, in 华山街道
		huguo     = "530102002000" // 护国街道
		panlongTS = "530103001000" // a township of 盘龙区
	)
	// The 通讯录 as a bureau keeps it, with one official to add and a bad row.
	book := func(phone string) []byte {
		f := excelize.NewFile()
		f.SetSheetName("Sheet1", "通讯录")
		rows := [][]any{
			{"编号", "姓名", "手机号", "企业微信账号", "角色", "区划代码"},
			{"cx-zhang", "张新", "13988880001", "zhangxin", "村（社区）干部", cuihuxilu},
			{"cx-li", "李新", phone, "", "网格员", cuihuxilu},
		}
		for i, r := range rows {
			f.SetSheetRow("通讯录", fmt.Sprintf("A%d", i+1), &r)
		}
		var buf bytes.Buffer
		f.WriteTo(&buf)
		return buf.Bytes()
	}
	post := func(path, tok, ctype string, body []byte) (int, map[string]any) {
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &out)
		return resp.StatusCode, out
	}
	code, out := post("/api/v1/roster/import?kind=people&mode=merge&dry_run=false", "t0ken", sheet.XLSXType, book("1398888000"))
	errs, _ := out["errors"].([]any)
	if code != 422 || len(errs) != 1 {
		t.Fatalf("a sheet with a bad row: %d %v", code, out)
	}
	if e := errs[0].(map[string]any); e["row"] != float64(3) || e["column"] != "手机号" || !strings.Contains(e["message"].(string), "not an 11-digit mainland mobile number") {
		t.Errorf("the bad row is named %v, want row 3, column 手机号", e)
	}
	code, out = post("/api/v1/roster/import?kind=people&mode=merge&dry_run=false", "t0ken", sheet.XLSXType, book("13988880002"))
	if code != 200 || out["added"] != float64(2) || out["version"] != float64(1) {
		t.Fatalf("the fixed sheet: %d %v", code, out)
	}

	// The worker has run since before the import: the warning it plans now
	// reaches the new official.
	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"`+cuihuxilu+`"`))
	if code != 202 {
		t.Fatalf("POST warning: %d %v", code, w)
	}
	id := w["id"].(string)
	deadline := time.Now().Add(30 * time.Second)
	var reached bool
	for !reached && time.Now().Before(deadline) {
		_, acks := call(t, "GET", base+"/api/v1/warnings/"+id+"/acks", "t0ken", "")
		for _, o := range asList(acks["officials"]) {
			if o["person_id"] == "cx-zhang" && o["name"] == "张新" {
				reached = true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !reached {
		t.Fatal("the official added to the roster is not among the warning's officials")
	}

	// Tonight's 值班表 of 华山街道.
	today := time.Now().In(duty.Beijing)
	night := time.Date(today.Year(), today.Month(), today.Day(), 20, 0, 0, 0, duty.Beijing)
	_, leaders := call(t, "GET", base+"/api/v1/roster/people?division="+huashan, "t0ken", "")
	var leader, officer string
	for _, p := range asList(leaders["people"]) {
		switch p["role"] {
		case "township_leader":
			leader = p["id"].(string)
		case "township_duty":
			officer = p["id"].(string)
		}
	}
	schedule := fmt.Sprintf("区划代码,开始时间,结束时间,带班领导编号,值班员编号\n%s,%s,%s,%s,%s\n%s,%s,%s,%s,%s\n",
		huashan, night.Add(-12*time.Hour).Format("2006-01-02 15:04"), night.Format("2006-01-02 15:04"), leader, officer,
		huashan, night.Format("2006-01-02 15:04"), night.Add(12*time.Hour).Format("2006-01-02 15:04"), leader, "cx-zhang")
	if code, out := post("/api/v1/duty/import?dry_run=false", "t0ken", "text/csv", []byte(schedule)); code != 200 || out["shifts"] != float64(2) {
		t.Fatalf("值班表: %d %v", code, out)
	}
	_, now := call(t, "GET", base+"/api/v1/duty/now?division="+huashan+"&at="+url.QueryEscape(night.Add(3*time.Hour).Format(time.RFC3339)), "t0ken", "")
	if d := asList(now["duty"]); len(d) != 1 || d[0]["id"] != "cx-zhang" || d[0]["phone"] != "13988880001" || now["leader"].(map[string]any)["id"] != leader {
		t.Errorf("on duty tonight: %v", now)
	}

	// Who is on duty now is who is asked to confirm: the grid worker added
	// above stands in as 华山街道's duty officer for the next hours.
	nowBJ := time.Now().In(duty.Beijing)
	override := fmt.Sprintf(`{"division":%q,"start":%q,"end":%q,"leader":{"id":%q},"duty":[{"id":"cx-li"}],"reason":"顶班"}`,
		huashan, nowBJ.Add(-time.Hour).Format(time.RFC3339), nowBJ.Add(3*time.Hour).Format(time.RFC3339), leader)
	if code, out := call(t, "PUT", base+"/api/v1/duty/overrides", "t0ken", override); code != 200 {
		t.Fatalf("override: %d %v", code, out)
	}
	code, w = call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"`+cuihuxilu+`"`))
	if code != 202 {
		t.Fatalf("POST warning: %d %v", code, w)
	}
	onDutyID := w["id"].(string)
	var row map[string]any
	roleHolderAsked := false
	for deadline := time.Now().Add(30 * time.Second); row == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, acks := call(t, "GET", base+"/api/v1/warnings/"+onDutyID+"/acks", "t0ken", "")
		for _, o := range asList(acks["officials"]) {
			switch o["person_id"] {
			case "cx-li":
				row = o
			case officer:
				roleHolderAsked = true
			}
		}
	}
	if row == nil || row["from"] != "duty" || row["role"] != "township_duty" || row["division"] != huashan {
		t.Errorf("the officer on duty now, as 叫应 shows them: %v", row)
	}
	if roleHolderAsked {
		t.Errorf("%s, 华山街道's duty officer by the roster but not on duty, was asked to confirm", officer)
	}

	// Users of a county and of a township.
	for _, u := range []string{
		`{"name":"wh-issuer","password":"wh-issuer-pw-1","roles":["issuer"],"division":"` + wuhua + `"}`,
		`{"name":"hg-viewer","password":"hg-viewer-pw-1","roles":["viewer"],"division":"` + huguo + `"}`,
	} {
		if code, out := call(t, "POST", base+"/api/v1/users", "t0ken", u); code != 201 {
			t.Fatalf("user: %d %v", code, out)
		}
	}
	issuer, csrf := signIn(t, base, "wh-issuer", "wh-issuer-pw-1")
	req, _ := http.NewRequest("POST", base+"/api/v1/warnings", strings.NewReader(redBody(`"`+panlongTS+`"`)))
	req.Header.Set(accounts.CSRFHeader, csrf)
	req.Header.Set("Origin", base)
	resp, err := issuer.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(b), "outside_division") {
		t.Errorf("a county's issuer warns another county's township: %d %s", resp.StatusCode, b)
	}
	viewer, _ := signIn(t, base, "hg-viewer", "hg-viewer-pw-1")
	for _, path := range []string{"/unreached", "/acks?division=" + huashan} {
		resp, err := viewer.Get(base + "/api/v1/warnings/" + id + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 && resp.StatusCode != 403 {
			t.Errorf("another township's viewer reads %s: %d %s", path, resp.StatusCode, b)
		}
	}
}

func asList(v any) []map[string]any {
	var out []map[string]any
	l, _ := v.([]any)
	for _, x := range l {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// signIn signs in to the console and returns a client holding the session
// and the session's CSRF token.
func signIn(t *testing.T, base, name, password string) (*http.Client, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(base+"/console/login", url.Values{"name": {name}, "password": {password}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in of %s: %v %v", name, err, resp.Status)
	}
	resp.Body.Close()
	resp, err = c.Get(base + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the console page of %s", name)
	}
	return c, string(m[1])
}

// Roster files are the first import only: the first start stores them as
// version 1, and a later start with other files keeps what Redis holds.
func TestRosterFilesAreTheFirstImport(t *testing.T) {
	redisURL, _ := realRedis(t)
	dir := t.TempDir()
	people := writeConfig(t, dir, "people.csv", "id,name,phone,wechat_openid,wecom_userid,role,division\nhs-duty,刘洋,15100000004,,,township_duty,530102001000\n")
	open := func() *app {
		cfg := config.Default()
		cfg.Redis.URL = redisURL
		cfg.LinkKey = "0123456789abcdef0123"
		cfg.AdminToken = "t0ken"
		cfg.Simulator.Secret = "s3cret"
		on := true
		cfg.Simulator.Enabled = &on
		cfg.Roster.People = people
		if err := cfg.Finish(); err != nil {
			t.Fatal(err)
		}
		w, err := preflight(cfg, roleServe, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := newApp(cfg, w, newLogger(cfg.Log, io.Discard))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := open()
	if info := a.rosters.Info(); info.Number != 1 || info.People != 1 {
		t.Fatalf("first start: %+v", info)
	}
	entries, _ := a.ledger.AuditLog(t.Context(), "", 5)
	if len(entries) == 0 || entries[0].Action != "roster_import" || entries[0].Who != "system" {
		t.Errorf("the first import is not audited: %+v", entries)
	}
	a.close()
	writeConfig(t, dir, "people.csv", "id,name,phone,wechat_openid,wecom_userid,role,division\nother,别人,15100000099,,,township_duty,530102001000\n")
	a = open()
	defer a.close()
	if _, ok := a.roster.Person("other"); ok || a.rosters.Info().Number != 1 {
		t.Errorf("a second start imported the files again: %+v", a.rosters.Info())
	}
	if _, ok := a.roster.Person("hs-duty"); !ok {
		t.Error("the roster in Redis was lost")
	}
}
