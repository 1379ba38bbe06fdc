package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"warngate/callsheet"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// deliverTo records an SMS to each resident, delivered or failed, as the
// workers and the providers' reports would.
func deliverTo(t *testing.T, l *ledger.Ledger, wid string, people []region.Person, delivered func(i int) bool) {
	t.Helper()
	ctx := context.Background()
	entries := make([]ledger.Entry, len(people))
	for i, p := range people {
		entries[i] = ledger.Entry{RecipientID: p.ID, Audience: warning.Residents, Division: p.Division}
	}
	hold, err := l.Lock(ctx, wid, warning.SMS, 1, "t", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	chunk, err := l.Begin(ctx, hold, entries, false)
	if err != nil {
		t.Fatal(err)
	}
	outs := make([]ledger.Outcome, len(entries))
	var reports []warning.Report
	for i, e := range entries {
		outs[i] = ledger.Outcome{Entry: e, State: warning.Sent}
		st := warning.Failed
		if delivered(i) {
			st = warning.Delivered
		}
		reports = append(reports, warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: e.RecipientID}, State: st, Reason: "用户关机"})
	}
	if _, err := l.Record(ctx, wid, warning.SMS, chunk.Gen, outs); err != nil {
		t.Fatal(err)
	}
	// Delivered twice, by SMS and again: still once.
	for range 2 {
		if _, err := l.ApplyReports(ctx, reports); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCoverageAddsUpAndListsTheUnreached(t *testing.T) {
	g := newGateway(t, false)
	ctx := context.Background()
	tree := region.Kunming()
	const county, township = "530102000000", "530102001000"
	w, _, err := g.d.Submit(ctx, &warning.Warning{Hazard: warning.Rainstorm, Level: warning.Red, Areas: []string{county},
		Headline: "五华区暴雨红色预警", Description: "特大暴雨。", Instruction: "停止户外活动。", Expires: time.Now().Add(6 * time.Hour)},
		dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Every resident of 五华区; every third not reached.
	var people []region.Person
	tree.Walk(county, func(d *region.Division) bool {
		g.roster.People(d.Code, func(p region.Person) bool {
			if p.Role == region.Resident {
				people = append(people, p)
			}
			return true
		})
		return true
	})
	reachedIdx := func(i int) bool { return i%3 != 0 }
	deliverTo(t, g.ledger, w.ID, people, reachedIdx)
	wantReached := map[string]int64{}
	wantPeople := map[string]int64{}
	var unreached []string
	for i, p := range people {
		wantPeople[p.Division]++
		if reachedIdx(i) {
			wantReached[p.Division]++
		} else {
			unreached = append(unreached, p.ID)
		}
	}

	code, out := g.do(t, "GET", "/api/v1/warnings/"+w.ID+"/coverage", token, "")
	if code != http.StatusOK {
		t.Fatalf("coverage: %d %v", code, out)
	}
	num := func(m map[string]any, k string) int64 { f, _ := m[k].(float64); return int64(f) }
	if out["division"] != "530100000000" || num(out, "people") != int64(len(people)) || num(out, "reached") != int64(len(people)-len(unreached)) ||
		num(out, "unreached") != int64(len(unreached)) {
		t.Fatalf("city: %v people, %v reached, %v unreached; want %d, %d, %d", out["people"], out["reached"], out["unreached"], len(people), len(people)-len(unreached), len(unreached))
	}
	villages := out["villages"].([]any)
	var sumPeople, sumReached int64
	byTownship := map[string][2]int64{}
	for _, v := range villages {
		v := v.(map[string]any)
		c := v["code"].(string)
		if num(v, "people") != wantPeople[c] || num(v, "reached") != wantReached[c] || num(v, "unreached") != wantPeople[c]-wantReached[c] {
			t.Errorf("village %s: %v; want %d people, %d reached", c, v, wantPeople[c], wantReached[c])
		}
		sumPeople += num(v, "people")
		sumReached += num(v, "reached")
		s := byTownship[v["township"].(string)]
		byTownship[v["township"].(string)] = [2]int64{s[0] + num(v, "people"), s[1] + num(v, "reached")}
	}
	if sumPeople != num(out, "people") || sumReached != num(out, "reached") || len(villages) != len(wantPeople) {
		t.Errorf("villages add up to %d people, %d reached in %d villages; the city says %d, %d (%d villages)", sumPeople, sumReached, len(villages), num(out, "people"), num(out, "reached"), len(wantPeople))
	}
	townships := out["townships"].([]any)
	if len(townships) != len(byTownship) {
		t.Errorf("%d townships, want %d", len(townships), len(byTownship))
	}
	for _, tw := range townships {
		tw := tw.(map[string]any)
		s := byTownship[tw["code"].(string)]
		if num(tw, "people") != s[0] || num(tw, "reached") != s[1] || num(tw, "unreached") != s[0]-s[1] || tw["name"] == "" {
			t.Errorf("township %v: want %d people, %d reached, as its villages", tw, s[0], s[1])
		}
	}

	// One township, with its unreached listed; one put on the call list.
	var inTownship []string
	for _, p := range people {
		if tree.Covers(township, p.Division) && slices.Contains(unreached, p.ID) {
			inTownship = append(inTownship, p.ID)
		}
	}
	first, _ := g.roster.Person(inTownship[0])
	if _, err := g.ledger.AddFallback(ctx, w.ID, []ledger.FallbackEntry{{PersonID: first.ID, Name: first.Name, Village: first.Division, Reasons: []string{"用户关机", "无微信"}}}); err != nil {
		t.Fatal(err)
	}
	code, out = g.do(t, "GET", "/api/v1/warnings/"+w.ID+"/coverage?division="+township+"&list=unreached", token, "")
	if code != http.StatusOK {
		t.Fatalf("coverage of a township: %d %v", code, out)
	}
	listed := out["unreached_people"].([]any)
	var ids []string
	for _, u := range listed {
		u := u.(map[string]any)
		ids = append(ids, u["id"].(string))
		p, _ := g.roster.Person(u["id"].(string))
		if u["village"] != p.Division || u["name"] != p.Name || u["phone"] != p.Phone[:3]+"****"+p.Phone[7:] {
			t.Errorf("unreached %v: want village %s, name %s and the phone masked", u, p.Division, p.Name)
		}
		reasons := fmt.Sprint(u["reasons"])
		if onList := u["on_call_list"] == true; onList != (p.ID == first.ID) || !strings.Contains(reasons, "用户关机") {
			t.Errorf("unreached %v: on_call_list should be %v, reasons should name 用户关机", u, p.ID == first.ID)
		}
	}
	slices.Sort(ids)
	slices.Sort(inTownship)
	if !slices.Equal(ids, inTownship) || num(out, "unreached") != int64(len(inTownship)) {
		t.Errorf("listed %v (unreached %v); want %v", ids, out["unreached"], inTownship)
	}

	// The call list of the village shows the resident put on it.
	code, out = g.do(t, "GET", "/api/v1/warnings/"+w.ID+"/households?village="+first.Division, token, "")
	if code != http.StatusOK {
		t.Fatalf("households: %d %v", code, out)
	}
	found := false
	for _, h := range out["households"].([]any) {
		h := h.(map[string]any)
		if h["id"] == first.ID {
			found = h["source"] == "fallback" && h["head"] == first.Name
		} else if h["source"] != "roster" {
			t.Errorf("household %v: source should be roster", h)
		}
	}
	if !found {
		t.Errorf("the resident put on the list is not on %s's call list with source fallback: %v", first.Division, out["households"])
	}

	// The printable call list says where each row comes from (the plan did
	// not run: no household of the roster is on it).
	req, _ := http.NewRequest("GET", g.url+"/api/v1/warnings/"+w.ID+"/calllist.xlsx?village="+first.Division, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sheet, errs := callsheet.Read(resp.Body)
	resp.Body.Close()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	sources := map[string]string{}
	for _, r := range sheet.Rows {
		sources[r.HouseholdID] = r.Source
	}
	if sources[first.ID] != callsheet.SourceFallback {
		t.Errorf("the call list's sources %v; want %s from the fallback", sources, first.ID)
	}
	for id, src := range sources {
		if id != first.ID && src != callsheet.SourceRoster {
			t.Errorf("%s's source is %q, want roster", id, src)
		}
	}

	// The grid worker it is assigned to sees them on their page, and marks
	// them reached through it: they count as reached.
	other, _ := g.roster.Person(inTownship[1])
	var gw region.Person
	g.roster.People(other.Division, func(p region.Person) bool {
		if p.Role == region.GridWorker {
			gw = p
			return false
		}
		return true
	})
	if n, err := g.ledger.AddFallback(ctx, w.ID, []ledger.FallbackEntry{{PersonID: other.ID, Name: other.Name, Village: other.Division, GridWorker: gw.ID, Reasons: []string{"用户关机"}}}); err != nil || n != 1 {
		t.Fatalf("added %d, %v", n, err)
	}
	link := g.url + "/a/" + g.links.Token(warning.Ref{WarningID: w.ID, Channel: warning.SMS, RecipientID: gw.ID}, time.Now().Add(time.Hour))
	status, body := g.page(t, link)
	if status != http.StatusOK || !strings.Contains(body, other.Name) || !strings.Contains(body, "未覆盖居民（补访）") {
		t.Errorf("the grid worker's page (%d) does not list %s, put on their list:\n%s", status, other.Name, body)
	}
	resp = g.form(t, link+"/households/"+other.ID, url.Values{"reached": {"yes"}, "method": {"visit"}})
	if resp.StatusCode != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), "err=") {
		t.Fatalf("mark through the link: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if cov, _ := g.ledger.Coverage(ctx, w.ID); cov[other.Division].Reached != wantReached[other.Division]+1 {
		t.Errorf("%s reached %d after a visit, want %d", other.Division, cov[other.Division].Reached, wantReached[other.Division]+1)
	}

	// A division outside the warning has nobody; a code that is none is refused.
	if code, out = g.do(t, "GET", "/api/v1/warnings/"+w.ID+"/coverage?division=530103000000", token, ""); code != http.StatusOK || num(out, "people") != 0 {
		t.Errorf("盘龙区: %d %v; want nobody", code, out)
	}
	if code, _ = g.do(t, "GET", "/api/v1/warnings/"+w.ID+"/coverage?division=123", token, ""); code != http.StatusBadRequest {
		t.Errorf("division=123: %d, want 400", code)
	}
}

// BenchmarkCoverageCity asks for the coverage of a city-wide warning for the
// whole city: 1,000,000 residents (576 in each of 1,738 villages), nine in
// ten reached.
func BenchmarkCoverageCity(b *testing.B) {
	g := newGatewayWith(b, false, region.DemoOptions{ResidentsPerVillage: 576, HouseholdsPerVillage: 2})
	ctx := context.Background()
	tree := region.Kunming()
	const city = "530100000000"
	w, _, err := g.d.Submit(ctx, &warning.Warning{Hazard: warning.Rainstorm, Level: warning.Red, Areas: []string{city},
		Headline: "昆明市暴雨红色预警", Description: "特大暴雨。", Instruction: "停止户外活动。", Expires: time.Now().Add(6 * time.Hour)},
		dispatcher.SubmitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var batch []ledger.Entry
	flush := func() {
		if err := g.ledger.Cover(ctx, w.ID, time.Now(), batch); err != nil {
			b.Fatal(err)
		}
		batch = batch[:0]
	}
	n := 0
	tree.Walk(city, func(d *region.Division) bool {
		g.roster.People(d.Code, func(p region.Person) bool {
			if p.Role != region.Resident {
				return true
			}
			if n++; n%10 != 0 {
				batch = append(batch, ledger.Entry{RecipientID: p.ID, Audience: warning.Residents, Division: p.Division})
			}
			if len(batch) == 10000 {
				flush()
			}
			return true
		})
		return true
	})
	flush()
	if n < 1_000_000 {
		b.Fatalf("%d residents, want a million", n)
	}
	b.ResetTimer()
	for b.Loop() {
		code, out := g.do(b, "GET", "/api/v1/warnings/"+w.ID+"/coverage?division="+city, token, "")
		if code != http.StatusOK || int(out["people"].(float64)) != n {
			b.Fatalf("coverage: %d, %v people; want %d", code, out["people"], n)
		}
	}
}
