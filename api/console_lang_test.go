package api

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"golang.org/x/net/html"

	"warngate/accounts"
	"warngate/region"
	"warngate/warning"
)

// One language a page: every word a person reads in the Chinese pages is
// Chinese, every word of the English pages English. Words in the other
// language must be data marked as such — a place, a person's name, a
// warning's own text — by the element's lang (lang="zh-CN" in an English
// page) or translate="no" (names). The console's words come from the
// catalogue (dict); this test renders every page in both languages and
// fails on any word outside it.
func TestPagesSpeakOneLanguage(t *testing.T) {
	g := newConsoleGateway(t)
	duty := g.browser(t)
	duty.signIn("duty", "duty-password")
	leader := g.browser(t)
	leader.signIn("leader", "leader-password")
	anon := g.browser(t)
	id := g.issue(t, duty, "530102001000")
	token := g.links.Token(warning.Ref{WarningID: id, Channel: warning.SMS, RecipientID: g.official(t, "530102001001").ID}, time.Now().Add(time.Hour))
	places := placeNames(g.tree)

	for _, tc := range []struct {
		b    *browser
		path string
	}{
		{anon, "/console/login"},
		{duty, "/console/"},
		{duty, "/console/new"},
		{duty, "/console/approvals"},
		{leader, "/console/approvals"},
		{duty, "/console/w/" + id},
		{leader, "/console/w/" + id},
		{duty, "/console/w/nope"},
		{duty, "/console/roster"},
		{duty, "/console/logout"},
		{anon, "/public/?area=530102000000"},
		{anon, "/public/?q=" + "华山"},
		{anon, "/a/" + token},
		{anon, "/a/" + token[:len(token)-3] + "xyz"},
		{anon, "/a/not-a-link"},
	} {
		for _, lang := range []string{"zh", "en"} {
			path := tc.path + "?lang=" + lang
			if strings.Contains(tc.path, "?") {
				path = tc.path + "&lang=" + lang
			}
			resp, page := tc.b.do("GET", path, nil)
			if resp.StatusCode >= 500 || !strings.Contains(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
				continue
			}
			doc, err := html.Parse(strings.NewReader(page))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			for _, bad := range foreignWords(doc, lang, places) {
				t.Errorf("%s: %q is not %s", path, bad, map[string]string{"zh": "Chinese", "en": "English"}[lang])
			}
		}
	}
}

// issue makes a red warning for area from a signed-in issuer; it awaits approval.
func (g *consoleGateway) issue(t *testing.T, b *browser, area string) string {
	t.Helper()
	_, page := b.do("GET", "/console/new", nil)
	body := `{"hazard":"rainstorm","level":"red","areas":["` + area + `"],"headline":"华山街道暴雨红色预警","description":"预计未来3小时有大暴雨。","instruction":"停止户外活动。","status":"actual","expires":"` +
		time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`
	req, _ := http.NewRequest("POST", g.url+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set(accounts.CSRFHeader, csrfField.FindStringSubmatch(page)[1])
	resp, err := b.c.Do(req)
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("issue: %v %v", resp.StatusCode, err)
	}
	defer resp.Body.Close()
	var w struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&w)
	return w.ID
}

// official is an official of a village of the test roster.
func (g *consoleGateway) official(t *testing.T, village string) region.Person {
	t.Helper()
	var found region.Person
	g.roster.People(village, func(p region.Person) bool {
		if p.Role.Audience().Official() {
			found = p
			return false
		}
		return true
	})
	if found.ID == "" {
		t.Fatalf("no official in %s", village)
	}
	return found
}

// placeNames are the names of the city's divisions, long ones first: data
// an English page may show in Chinese.
func placeNames(tree *region.Tree) []string {
	var names []string
	tree.Walk(tree.Root().Code, func(d *region.Division) bool {
		names = append(names, d.Name)
		return true
	})
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	return names
}

var (
	latinWord = regexp.MustCompile(`[A-Za-z]{2,}`)
	urlText   = regexp.MustCompile(`https?://\S+`)
	// allowedLatin are tokens a Chinese page may hold: file types, the
	// names of formats and accounts that have no Chinese name.
	allowedLatin = map[string]bool{"xlsx": true, "csv": true, "UTF": true, "openid": true}
)

// isCJK reports Chinese characters and the full-width punctuation that
// goes with them.
func isCJK(r rune) bool {
	return unicode.Is(unicode.Han, r) || (r >= 0x3000 && r <= 0x303f) || (r >= 0xff00 && r <= 0xffef)
}

// foreignWords lists what a page in lang shows in the other language, in
// its text and in the attributes people read (title, aria-label,
// placeholder, alt, a button's value), outside elements marked as data.
func foreignWords(doc *html.Node, lang string, places []string) []string {
	var bad []string
	check := func(s string) {
		if s = strings.TrimSpace(s); s == "" {
			return
		}
		if lang == "en" {
			for _, p := range places {
				s = strings.ReplaceAll(s, p, "")
			}
			if strings.ContainsFunc(s, isCJK) {
				bad = append(bad, s)
			}
			return
		}
		for _, tok := range strings.FieldsFunc(urlText.ReplaceAllString(s, " "), func(r rune) bool {
			return unicode.IsSpace(r) || isCJK(r) || strings.ContainsRune("·|,;:()[]“”\"'", r)
		}) {
			switch {
			case strings.Contains(tok, "://"), strings.HasPrefix(tok, "/"), strings.HasPrefix(tok, "."), strings.ContainsAny(tok, "0123456789"):
				continue // a link, a path, a file type, a code or an id
			}
			for _, w := range latinWord.FindAllString(tok, -1) {
				if !allowedLatin[w] {
					bad = append(bad, s)
					return
				}
			}
		}
	}
	var walk func(n *html.Node, skip bool)
	walk = func(n *html.Node, skip bool) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "script", "style", "noscript":
				return
			}
			for _, a := range n.Attr {
				switch {
				case a.Key == "hidden":
					return // not shown; the script shows it in the page's language
				case a.Key == "translate" && a.Val == "no":
					skip = true
				case a.Key == "lang":
					skip = !strings.HasPrefix(a.Val, lang)
				}
			}
			if !skip {
				for _, a := range n.Attr {
					switch a.Key {
					case "title", "aria-label", "placeholder", "alt":
						check(a.Val)
					case "value": // a button's is sent, not shown
						if n.Data == "input" && (attr(n, "type") == "submit" || attr(n, "type") == "button") {
							check(a.Val)
						}
					}
				}
			}
		}
		if n.Type == html.TextNode && !skip && n.Parent != nil && n.Parent.Data != "textarea" {
			check(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, skip)
		}
	}
	walk(doc, false)
	return bad
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// The console's script shows no words of its own: every text it puts in a
// page comes from the catalogue it is given (boot.t).
func TestConsoleScriptHasNoWords(t *testing.T) {
	src, err := os.ReadFile("web/console/console.js")
	if err != nil {
		t.Fatal(err)
	}
	code := regexp.MustCompile(`(?m)^\s*//.*$`).ReplaceAllString(string(src), "")
	literal := regexp.MustCompile(`'((?:[^'\\\n]|\\.)*)'`)
	prose := regexp.MustCompile(`\b[A-Z][a-z]+ [a-z]+|[a-z]+ [a-z]+ [a-z]+`)
	for _, m := range literal.FindAllStringSubmatchIndex(code, -1) {
		s := code[m[2]:m[3]]
		before := strings.TrimRight(code[max(0, m[0]-8):m[0]], " ")
		switch {
		case strings.ContainsFunc(s, isCJK):
			t.Errorf("console.js shows %q: put it in the catalogue (console_i18n.go)", s)
		case prose.MatchString(s):
			t.Errorf("console.js shows %q: put it in the catalogue (console_i18n.go)", s)
		case strings.HasSuffix(before, "text:") && latinWord.MatchString(s):
			t.Errorf("console.js shows %q: put it in the catalogue (console_i18n.go)", s)
		}
	}
}

// Both languages of the catalogue have the same words, and the names of
// roles and household categories are the ones the roster uses.
func TestCatalogueComplete(t *testing.T) {
	for k := range dict["zh"] {
		if _, ok := dict["en"][k]; !ok {
			t.Errorf("%q has no English", k)
		}
	}
	for k := range dict["en"] {
		if _, ok := dict["zh"][k]; !ok {
			t.Errorf("%q has no Chinese", k)
		}
	}
	for _, r := range []region.Role{region.CountyLeader, region.CountyDuty, region.TownshipLeader, region.TownshipDuty,
		region.VillageOfficer, region.InfoOfficer, region.GridWorker, region.Resident} {
		if dict["zh"]["role_"+string(r)] != r.Chinese() {
			t.Errorf("role %s: %q in the catalogue, %q in the roster", r, dict["zh"]["role_"+string(r)], r.Chinese())
		}
	}
	for _, c := range []region.HouseholdCategory{region.ElderlyAlone, region.DangerZone, region.NoPhone, region.Disabled} {
		if dict["zh"]["cat_"+string(c)] != c.Chinese() {
			t.Errorf("category %s: %q in the catalogue, %q in the roster", c, dict["zh"]["cat_"+string(c)], c.Chinese())
		}
	}
}
