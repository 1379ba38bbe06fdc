package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"warngate/callsheet"
	"warngate/dispatcher"
	"warngate/region"
	"warngate/warning"
)

// markVillage is the village whose call list these tests mark.
const markVillage = "530102001001"

// waitComplete waits until a warning's fan-out, call list included, is done.
func (g *gateway) waitComplete(t *testing.T, id string) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, p := g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, ""); p["complete"] == true {
			return
		}
	}
	t.Fatalf("fan-out of %s not complete", id)
}

// gridHousehold is a household of markVillage on a grid worker's list.
func (g *gateway) gridHousehold(t *testing.T) region.Household {
	t.Helper()
	var hh region.Household
	g.roster.Households(markVillage, func(h region.Household) bool {
		if h.GridWorker != "" {
			hh = h
			return false
		}
		return true
	})
	if hh.ID == "" {
		t.Fatalf("no household of %s has a grid worker", markVillage)
	}
	return hh
}

// issueAndUpdate issues a red warning to markVillage and updates it,
// returning the superseded version (reloaded) and the current one.
func (g *gateway) issueAndUpdate(t *testing.T) (old, cur *warning.Warning) {
	t.Helper()
	ctx := context.Background()
	old, _, err := g.d.Submit(ctx, redWarning(markVillage), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, old.ID)
	nw := redWarning(markVillage)
	nw.Description = "更新：降雨量将超过150毫米。"
	cur, err = g.d.Update(ctx, old.ID, nw, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, cur.ID)
	if old, err = g.ledger.Warning(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	return old, cur
}

// noMarks fails the test if any call-list mark is recorded on the warnings.
func (g *gateway) noMarks(t *testing.T, what string, ws ...*warning.Warning) {
	t.Helper()
	for _, w := range ws {
		if marks, _ := g.ledger.Marks(context.Background(), w.ID); len(marks) != 0 {
			t.Errorf("%s: marks recorded on %s: %+v", what, w.ID, marks)
		}
	}
}

// apiError is the error of a JSON answer.
func apiErrorOf(out map[string]any) (code, msg string) {
	e, _ := out["error"].(map[string]any)
	code, _ = e["code"].(string)
	msg, _ = e["message"].(string)
	return code, msg
}

// A grid worker marks a household through the link of the first message
// after the warning was updated: nothing is recorded on either version,
// and their page opens on the current version, which says the mark was not
// recorded and lists the household to mark there. A program asking for
// JSON is answered 409 with the current version's link.
func TestMarkThroughAnOldLinkAfterAnUpdateOpensTheCurrentVersion(t *testing.T) {
	g := newGateway(t, true)
	hh := g.gridHousehold(t)
	old, cur := g.issueAndUpdate(t)
	link := g.officialLink(old, hh.GridWorker)

	resp := g.form(t, link+"/households/"+hh.ID, url.Values{"reached": {"yes"}, "method": {"visit"}})
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/a/"+cur.ID+".") || !strings.HasSuffix(loc, "?err=superseded_hh") {
		t.Fatalf("mark on the old version: %d to %q; want the current version's page (%s) saying the mark was not recorded", resp.StatusCode, loc, cur.ID)
	}
	g.noMarks(t, "mark through the old link", old, cur)
	code, body := g.page(t, g.url+loc)
	if code != 200 || !strings.Contains(body, "您刚才标记的传递情况未记录") || !strings.Contains(body, `id="hh-`+hh.ID+`"`) {
		t.Fatalf("current version's page after the mark: %d; want it to say the mark was not recorded and list %s:\n%s", code, hh.ID, body)
	}
	if _, body := g.page(t, g.url+loc+"&lang=en"); !strings.Contains(body, "your mark was not recorded") {
		t.Errorf("current version's page in English does not say the mark was not recorded:\n%s", body)
	}

	// Marking on the current version's page records it there.
	curLink := g.url + strings.TrimSuffix(loc, "?err=superseded_hh")
	resp = g.form(t, curLink+"/households/"+hh.ID, url.Values{"reached": {"yes"}, "method": {"visit"}})
	if l := resp.Header.Get("Location"); !strings.HasSuffix(l, "?ok=hh") {
		t.Fatalf("mark on the current version: %d %q", resp.StatusCode, l)
	}
	if marks, _ := g.ledger.Marks(context.Background(), cur.ID); !marks[hh.ID].Reached {
		t.Errorf("mark on the current version not recorded: %+v", marks)
	}

	// A program is told where the current version is.
	req, _ := http.NewRequest("POST", link+"/households/"+hh.ID, strings.NewReader("reached=no"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	jr, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(jr.Body).Decode(&out)
	jr.Body.Close()
	if c, msg := apiErrorOf(out); jr.StatusCode != http.StatusConflict || c != "superseded" || !strings.Contains(msg, "/a/"+cur.ID+".") {
		t.Errorf("JSON mark on the old version: %d %v; want 409 superseded with the current version's link", jr.StatusCode, out)
	}
	g.noMarks(t, "JSON mark through the old link", old)
}

// A mark through the link of a lifted warning records nothing, and the
// page says the warning is no longer in force.
func TestMarkOnALiftedWarningRecordsNothing(t *testing.T) {
	g := newGateway(t, true)
	ctx := context.Background()
	hh := g.gridHousehold(t)
	w, _, err := g.d.Submit(ctx, redWarning(markVillage), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, w.ID)
	if w, err = g.d.Cancel(ctx, w.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	link := g.officialLink(w, hh.GridWorker)
	resp := g.form(t, link+"/households/"+hh.ID, url.Values{"reached": {"yes"}, "method": {"phone"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(loc, "?err=closed") {
		t.Errorf("mark on a lifted warning: %d to %q; want the page saying it is no longer in force", resp.StatusCode, loc)
	}
	if _, body := g.page(t, link+"?err=closed"); !strings.Contains(body, "该预警已解除或已过期") {
		t.Errorf("page after the mark does not say the warning is lifted:\n%s", body)
	}
	code, out := g.do(t, "PUT", "/api/v1/warnings/"+w.ID+"/households/"+hh.ID, token, `{"reached":true,"method":"visit"}`)
	if c, _ := apiErrorOf(out); code != http.StatusConflict || c != "closed" {
		t.Errorf("bureau mark on a lifted warning: %d %v; want 409 closed", code, out)
	}
	g.noMarks(t, "marks on a lifted warning", w)
}

// The bureau's mark on a superseded version is refused with 409 naming the
// current version; nothing is recorded.
func TestBureauMarkOnASupersededVersionIsRefused(t *testing.T) {
	g := newGateway(t, true)
	hh := g.gridHousehold(t)
	old, cur := g.issueAndUpdate(t)
	code, out := g.do(t, "PUT", "/api/v1/warnings/"+old.ID+"/households/"+hh.ID, token, `{"reached":true,"method":"phone"}`)
	if c, msg := apiErrorOf(out); code != http.StatusConflict || c != "superseded" || !strings.Contains(msg, cur.ID) {
		t.Errorf("bureau mark on superseded %s: %d %v; want 409 superseded naming %s", old.ID, code, out, cur.ID)
	}
	g.noMarks(t, "bureau mark on the superseded version", old, cur)
}

// exportSheet downloads a warning's call list for markVillage.
func (g *gateway) exportSheet(t *testing.T, id string) callsheet.Sheet {
	t.Helper()
	req, _ := http.NewRequest("GET", g.url+"/api/v1/warnings/"+id+"/calllist.xlsx?village="+markVillage, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sh, errs := callsheet.Read(bytes.NewReader(x))
	if resp.StatusCode != 200 || len(errs) > 0 || len(sh.Rows) < 2 {
		t.Fatalf("export of %s: %d %v, %d rows", id, resp.StatusCode, errs, len(sh.Rows))
	}
	return sh
}

// importSheet uploads a call list for a warning and returns the answer.
func (g *gateway) importSheet(t *testing.T, id string, sh callsheet.Sheet) (int, map[string]any) {
	t.Helper()
	var up bytes.Buffer
	if err := callsheet.Write(&up, sh); err != nil {
		t.Fatal(err)
	}
	return g.do(t, "POST", "/api/v1/warnings/"+id+"/calllist.xlsx", token, up.String())
}

// A call list filled in for a version an update then replaced, or for a
// warning then lifted, is refused as a whole: 409 naming the current
// version, or saying it was lifted; nothing is recorded.
func TestCallSheetForAWarningNoLongerInForceIsRefused(t *testing.T) {
	g := newGateway(t, true)
	ctx := context.Background()
	w, _, err := g.d.Submit(ctx, redWarning(markVillage), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, w.ID)
	sh := g.exportSheet(t, w.ID)
	yes := true
	for i := range sh.Rows {
		sh.Rows[i].Reached, sh.Rows[i].Method = &yes, "上门"
	}
	cur, err := g.d.Update(ctx, w.ID, redWarning(markVillage), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, cur.ID)
	code, out := g.importSheet(t, w.ID, sh)
	if c, msg := apiErrorOf(out); code != http.StatusConflict || c != "superseded" || !strings.Contains(msg, cur.ID) {
		t.Errorf("call list for superseded %s: %d %v; want 409 superseded naming %s", w.ID, code, out, cur.ID)
	}
	g.noMarks(t, "call list for a superseded version", w, cur)

	if _, err := g.d.Cancel(ctx, cur.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	sh.WarningID = cur.ID
	code, out = g.importSheet(t, cur.ID, sh)
	if c, msg := apiErrorOf(out); code != http.StatusConflict || c != "closed" || !strings.Contains(msg, "nothing was recorded") {
		t.Errorf("call list for a lifted warning: %d %v; want 409 closed", code, out)
	}
	g.noMarks(t, "call list for a lifted warning", cur)
}

// A call list with rows that cannot be recorded (households not on the
// warning's list) records none of its rows, good ones included, and names
// every bad row; fixed, it records them all.
func TestCallSheetWithABadRowRecordsNothing(t *testing.T) {
	g := newGateway(t, true)
	w, _, err := g.d.Submit(context.Background(), redWarning(markVillage), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g.waitComplete(t, w.ID)
	sh := g.exportSheet(t, w.ID)
	yes := true
	for i := range sh.Rows {
		sh.Rows[i].Reached, sh.Rows[i].Method = &yes, "电话"
	}
	good := sh.Rows[0].HouseholdID
	bad := sh
	bad.Rows = append([]callsheet.Row(nil), sh.Rows...)
	bad.Rows = append(bad.Rows, callsheet.Row{HouseholdID: "hh-gone-1", Head: "甲", Reached: &yes, Method: "上门"},
		callsheet.Row{HouseholdID: "hh-gone-2", Head: "乙", Reached: &yes, Method: "上门"})
	code, out := g.importSheet(t, w.ID, bad)
	e, _ := out["error"].(map[string]any)
	fields, _ := e["fields"].([]any)
	_, msg := apiErrorOf(out)
	if code != http.StatusUnprocessableEntity || len(fields) != 2 || !strings.Contains(msg, "hh-gone-1") || !strings.Contains(msg, "hh-gone-2") {
		t.Errorf("call list with two unknown households: %d %v; want 422 naming both", code, out)
	}
	g.noMarks(t, "call list with bad rows", w)

	code, out = g.importSheet(t, w.ID, sh)
	if code != 200 || out["recorded"] != float64(len(sh.Rows)) {
		t.Fatalf("call list fixed: %d %v; want all %d rows recorded", code, out, len(sh.Rows))
	}
	if marks, _ := g.ledger.Marks(context.Background(), w.ID); !marks[good].Reached || len(marks) != len(sh.Rows) {
		t.Errorf("marks after the fixed call list: %+v", marks)
	}
}
