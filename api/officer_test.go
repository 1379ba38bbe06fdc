package api_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/callsheet"
	"warngate/channels"
	"warngate/region"
	"warngate/warning"
)

// noRedirect keeps a form post's answer visible.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func (g *gateway) page(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (g *gateway) form(t *testing.T, u string, v url.Values) *http.Response {
	t.Helper()
	resp, err := noRedirect.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// An official opens the link from their message, confirms, ticks their
// checklist and, as a grid worker, marks a household.
func TestOfficerLink(t *testing.T) {
	g := newGateway(t, true)
	var mu sync.Mutex
	links := map[string]string{} // person → the link their SMS carried
	g.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		if b.Channel != warning.SMS {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		for _, r := range b.Recipients {
			text := channels.Compose(b, r).Plain()
			if i := strings.Index(text, g.url+"/a/"); i >= 0 {
				links[r.ID] = strings.Fields(text[i:])[0]
			}
		}
	})
	village := "530102001001"
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["areas"] = []string{village} }))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	var gridWorker, officer region.Person
	g.roster.People(village, func(p region.Person) bool {
		switch p.Role {
		case region.GridWorker:
			if gridWorker.ID == "" {
				gridWorker = p
			}
		case region.VillageOfficer:
			officer = p
		}
		return true
	})
	deadline := time.Now().Add(20 * time.Second)
	var link string
	for time.Now().Before(deadline) {
		mu.Lock()
		link = links[gridWorker.ID]
		mu.Unlock()
		if link != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if link == "" {
		t.Fatal("the grid worker's SMS carried no link")
	}
	mu.Lock()
	if l := links[officer.ID]; l == "" || l == link {
		t.Fatalf("each official needs their own link: %q vs %q", l, link)
	}
	for id := range links {
		if p, _ := g.roster.Person(id); !p.Role.Audience().Official() {
			t.Errorf("resident %s was sent a confirmation link", id)
		}
	}
	mu.Unlock()

	// Wait until the fan-out, call list included, is done.
	for time.Now().Before(deadline) {
		if _, p := g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, ""); p["complete"] == true {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	status, body := g.page(t, link)
	if status != 200 || !strings.Contains(body, "确认收到") || !strings.Contains(body, gridWorker.Name) || !strings.Contains(body, "响应清单") {
		t.Fatalf("officer page: %d\n%s", status, body)
	}
	resp := g.form(t, link+"/ack", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirm: %d", resp.StatusCode)
	}
	_, body = g.page(t, link+"?ok=ack")
	if !strings.Contains(body, "已确认收到") {
		t.Fatalf("page after confirming does not say so:\n%s", body)
	}
	code, acks := g.do(t, "GET", "/api/v1/warnings/"+id+"/acks?state=confirmed", token, "")
	officials := acks["officials"].([]any)
	if code != 200 || len(officials) != 1 || officials[0].(map[string]any)["person_id"] != gridWorker.ID || officials[0].(map[string]any)["method"] != "link" {
		t.Fatalf("confirmed list: %d %v", code, acks)
	}

	// The checklist of the grid worker's village, one item ticked.
	_, cl := g.do(t, "GET", "/api/v1/warnings/"+id+"/checklists?division="+village, token, "")
	items := cl["items"].([]any)
	first := items[0].(map[string]any)["id"].(string)
	resp = g.form(t, link+"/checklist/"+first, url.Values{"status": {"done"}, "note": {"已巡查河道"}})
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), "err=") {
		t.Fatalf("tick: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, cl = g.do(t, "GET", "/api/v1/warnings/"+id+"/checklists?division="+village, token, "")
	if it := cl["items"].([]any)[0].(map[string]any); it["status"] != "done" || it["note"] != "已巡查河道" || it["by"] != gridWorker.ID {
		t.Fatalf("item after tick: %v", it)
	}
	_, sum := g.do(t, "GET", "/api/v1/warnings/"+id+"/checklists", token, "")
	if tot := sum["total"].(map[string]any); tot["done"] != float64(1) {
		t.Fatalf("summary: %v", tot)
	}

	// A household of this grid worker, reached.
	var hh region.Household
	g.roster.Households(village, func(h region.Household) bool {
		if h.GridWorker == gridWorker.ID {
			hh = h
			return false
		}
		return true
	})
	resp = g.form(t, link+"/households/"+hh.ID, url.Values{"reached": {"yes"}, "method": {"phone"}})
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), "err=") {
		t.Fatalf("mark: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	_, list := g.do(t, "GET", "/api/v1/warnings/"+id+"/households?village="+village, token, "")
	found := false
	for _, r := range list["households"].([]any) {
		row := r.(map[string]any)
		if row["id"] == hh.ID {
			found = row["mark"].(map[string]any)["method"] == "phone"
		}
	}
	if !found {
		t.Fatalf("household mark not listed: %v", list)
	}
	entries, _ := g.ledger.AuditLog(context.Background(), id, 10)
	if len(entries) < 3 {
		t.Fatalf("audit trail has %d entries, want confirm, checklist and call list", len(entries))
	}
}

func TestBadLinks(t *testing.T) {
	g := newGateway(t, false)
	ref := warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: "o1"}
	good := g.links.Token(ref, time.Now().Add(time.Hour))
	tests := []struct {
		name, tok string
		status    int
		says      string
	}{
		{"forged", strings.Replace(good, ".o1.", ".o2.", 1), 403, "不是本平台签发"},
		{"expired", g.links.Token(ref, time.Now().Add(-time.Minute)), 410, "已过期"},
		{"cut", good[:8], 400, "不完整"},
	}
	for _, tt := range tests {
		status, body := g.page(t, g.url+"/a/"+tt.tok)
		if status != tt.status || !strings.Contains(body, tt.says) {
			t.Errorf("%s: %d %s", tt.name, status, body)
		}
		if resp := g.form(t, g.url+"/a/"+tt.tok+"/ack", nil); resp.StatusCode != tt.status {
			t.Errorf("%s confirm: %d", tt.name, resp.StatusCode)
		}
	}
}

func TestCallListSpreadsheetRoundTrip(t *testing.T) {
	g := newGateway(t, true)
	village := "530102001001"
	_, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["areas"] = []string{village} }))
	id := w["id"].(string)
	for i := 0; i < 500; i++ {
		if _, p := g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, ""); p["complete"] == true {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	req, _ := http.NewRequest("GET", g.url+"/api/v1/warnings/"+id+"/calllist.xlsx?village="+village, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(x) < 1000 {
		t.Fatalf("export: %d, %d bytes", resp.StatusCode, len(x))
	}
	sh, errs := callsheet.Read(bytes.NewReader(x))
	if len(errs) > 0 || len(sh.Rows) == 0 || sh.WarningID != id {
		t.Fatalf("exported sheet: %v %+v", errs, sh)
	}
	// A grid worker fills in the first household and it goes back up.
	yes := true
	sh.Rows[0].Reached, sh.Rows[0].Method, sh.Rows[0].Note = &yes, "上门", "已告知转移"
	var up bytes.Buffer
	if err := callsheet.Write(&up, sh); err != nil {
		t.Fatal(err)
	}
	req, _ = http.NewRequest("POST", g.url+"/api/v1/warnings/"+id+"/calllist.xlsx", &up)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("import: %d", resp.StatusCode)
	}
	marks, _ := g.ledger.Marks(context.Background(), id)
	if m := marks[sh.Rows[0].HouseholdID]; !m.Reached || m.Method != "visit" || m.Note != "已告知转移" {
		t.Fatalf("mark after import: %+v", m)
	}
	// Garbage is refused with a clear error.
	req, _ = http.NewRequest("POST", g.url+"/api/v1/warnings/"+id+"/calllist.xlsx", strings.NewReader("not a spreadsheet"))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 422 {
		t.Fatalf("garbage upload: %d", resp.StatusCode)
	}
}

// A forwarded-for header from an untrusted peer does not change the address
// the audit trail records.
func TestForwardedForIsNotBelieved(t *testing.T) {
	g := newGateway(t, true)
	village := "530102001001"
	_, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["areas"] = []string{village} }))
	id := w["id"].(string)
	var officer string
	for i := 0; i < 500 && officer == ""; i++ {
		if _, a := g.do(t, "GET", "/api/v1/warnings/"+id+"/acks", token, ""); len(a["officials"].([]any)) > 0 {
			officer = a["officials"].([]any)[0].(map[string]any)["person_id"].(string)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tok := g.links.Token(warning.Ref{WarningID: id, Channel: warning.SMS, RecipientID: officer}, time.Now().Add(time.Hour))
	req, _ := http.NewRequest("POST", g.url+"/a/"+tok+"/ack", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	entries, _ := g.ledger.AuditLog(context.Background(), id, 10)
	for _, e := range entries {
		if e.Action == "acknowledge" {
			if e.From != "127.0.0.1" {
				t.Fatalf("audit recorded %q, want the peer 127.0.0.1", e.From)
			}
			return
		}
	}
	t.Fatalf("no acknowledgement audited: %+v", entries)
}
