package e2e_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// A yellow warning for one township reaches residents on WeChat only:
// those without WeChat are not reached, and after fallback_after (2 s here)
// they go on their village's call list. The watch page shows the
// township's coverage (reached / in the area) and unreached count, and,
// opened, its villages and the 未覆盖 list, who is on the visit list, in
// Chinese and in English; the public page shows none of it.
func TestConsoleShowsCoverage(t *testing.T) {
	g := startGateway(t, func(p *policy.Policy) {
		for i := range p.Rules {
			if slices.Contains(p.Rules[i].Levels, warning.Yellow) {
				p.Rules[i].FallbackAfter = policy.Duration(2 * time.Second)
			}
		}
	})
	const township = "530102001000"
	id := g.issue(t, `{"hazard":"rainstorm","level":"yellow","areas":["`+township+`"],"headline":"华山街道暴雨黄色预警","description":"有暴雨。","status":"actual","expires":"`+
		time.Now().Add(6*time.Hour).Format(time.RFC3339)+`"}`)
	people, withWeChat := 0, 0
	var firstVillage string
	g.tree.Walk(township, func(d *region.Division) bool {
		g.roster.People(d.Code, func(p region.Person) bool {
			if p.Role == region.Resident {
				people++
				if p.WeChatOpenID != "" {
					withWeChat++
				}
				if firstVillage == "" && p.WeChatOpenID == "" {
					firstVillage = p.Division
				}
			}
			return true
		})
		return true
	})
	if people == withWeChat || withWeChat == 0 {
		t.Fatalf("want some of %s's %d residents with WeChat and some without, %d have it", township, people, withWeChat)
	}

	b := newBrowser(t)
	duty := b.person("duty", 1280, 900, false)
	duty.do("the watch page", chromedp.Navigate(g.url+"/console/w/"+id))
	duty.signIn("duty", dutyPassword)
	duty.do("coverage", chromedp.WaitVisible(chromedp.CSS(`#cov-township-rows tr`)))
	duty.waitJS("every WeChat follower reached", `document.getElementById("cov-reached").textContent === "`+strconv.Itoa(withWeChat)+`"`, 30*time.Second)
	if n := duty.text("#cov-people"); n != strconv.Itoa(people) {
		t.Errorf("the page says %s residents in the area, the roster %d", n, people)
	}
	if n := duty.text("#cov-unreached"); n != strconv.Itoa(people-withWeChat) {
		t.Errorf("the page says %s not reached, want %d", n, people-withWeChat)
	}
	if s := duty.text("#cov-" + township); !strings.Contains(s, strconv.Itoa(withWeChat)+"/"+strconv.Itoa(people)) {
		t.Errorf("the township's row %q, want %d/%d", s, withWeChat, people)
	}
	duty.do("the township's villages",
		chromedp.Click(chromedp.CSS(`#cov-`+township+` button`)),
		chromedp.WaitVisible(chromedp.ID("cov-village-rows")),
		chromedp.WaitVisible(chromedp.CSS(`#covl-`+firstVillage+` li`)))
	duty.waitJS("the unreached on the visit list", `document.querySelectorAll('#cov-list li[data-listed="true"]').length === `+strconv.Itoa(people-withWeChat), 30*time.Second)
	if s := duty.text("#covl-" + firstVillage); !strings.Contains(s, "无微信") || !strings.Contains(s, "已列入补访") {
		t.Errorf("the 未覆盖 list of %s: %q, want the reason and the visit", firstVillage, s)
	}
	if s := duty.text("#cov-v-h"); !strings.Contains(s, "各村（社区）覆盖") {
		t.Errorf("the villages' heading %q", s)
	}
	duty.oneLanguage("zh")
	duty.shotOf("readme-watch-coverage", "#coverage")
	duty.shot("41-watch-coverage-page-desktop")

	duty.do("in English", chromedp.Navigate(g.url+"/console/w/"+id+"?lang=en"), chromedp.WaitVisible(chromedp.CSS(`#cov-township-rows tr`)))
	duty.do("the township's villages in English", chromedp.Click(chromedp.CSS(`#cov-`+township+` button`)),
		chromedp.WaitVisible(chromedp.CSS(`#covl-`+firstVillage+` li`)))
	if s := duty.text("#covl-" + firstVillage); !strings.Contains(s, "no WeChat") || !strings.Contains(s, "on the visit list") {
		t.Errorf("the English 未覆盖 list: %q", s)
	}
	duty.oneLanguage("en")
	duty.shotOf("42-watch-coverage-en-desktop", "#coverage")

	duty.do("the public page", chromedp.Navigate(g.url+"/public/?area="+township), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	if n := eval[int](duty, `document.querySelectorAll('#coverage, [id^="cov-"]').length`); n != 0 {
		t.Errorf("the public page shows coverage (%d elements)", n)
	}
	b.checkConsole()
}
