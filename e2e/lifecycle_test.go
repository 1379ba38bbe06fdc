package e2e_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"warngate/policy"
	"warngate/warning"
)

// On a 360-pixel phone the duty operator issues a yellow warning by
// tapping its county on the map. Officials who do not confirm within the
// (shortened) deadline are unreached, which the map, the township table
// and the escalation log show without colour alone. Back at a desk the
// operator extends the warning, updates its text and lifts it, and sees
// the lifted notices go out; another warning, upgraded, waits for approval.
func TestConsoleLifecycle(t *testing.T) {
	g := startGateway(t, func(p *policy.Policy) {
		for i := range p.Rules {
			if slices.Contains(p.Rules[i].Levels, warning.Yellow) {
				p.Rules[i].AckDeadline, p.Rules[i].AckTries, p.Rules[i].Escalate = policy.Duration(3*time.Second), 1, true
			}
		}
	})
	b := newBrowser(t)
	duty := b.person("duty", 360, 740, true)

	duty.do("the issue page", chromedp.Navigate(g.url+"/console/new"))
	duty.signIn("duty", dutyPassword)
	duty.do("the map", chromedp.WaitVisible(chromedp.ID("cmap-svg")), chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)),
		chromedp.ScrollIntoView(chromedp.ID("cmap-svg")))
	// Where 五华区's name is drawn lies inside it; a finger taps there.
	at := eval[[]float64](duty, `(function () {
		var r = document.querySelector('#fig-530102000000').parentNode.querySelector('.cm-name').getBoundingClientRect();
		return [r.left + r.width / 2, r.top + r.height / 2];
	})()`)
	duty.do("tap 五华区", chromedp.MouseClickXY(at[0], at[1]), chromedp.WaitVisible(chromedp.CSS(`#area-chosen li[data-code="530102000000"]`)))
	if st := duty.attr("#county-530102000000", "data-state"); st != "full" {
		t.Errorf("五华区 tapped on the map: %q", st)
	}
	duty.do("the warning",
		chromedp.Click(chromedp.ID("level-yellow")),
		chromedp.SendKeys(chromedp.ID("headline"), "五华区大风黄色预警"),
		chromedp.SetValue(chromedp.ID("hazard"), "gale"),
		chromedp.SendKeys(chromedp.ID("description"), "预计今天下午五华区有8级以上大风。"),
		chromedp.SendKeys(chromedp.ID("instruction"), "加固临时搭建物。"),
	)
	duty.waitJS("the SMS counter", `document.getElementById("sms-count").dataset.ready === "true"`, 10*time.Second)
	duty.noSideScroll("the issue page")
	duty.oneLanguage("zh")
	duty.shot("30-issue-mobile")
	duty.do("preview", chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("preview-total")))
	duty.noSideScroll("the issue page's preview")
	duty.shot("31-issue-preview-mobile")
	duty.do("send", chromedp.Click(chromedp.ID("send-btn")), chromedp.WaitVisible(chromedp.ID("overall-pct")))
	id := duty.here()
	actionsAt := eval[float64](duty, actionsTop)

	// Nobody confirms: after the deadline the officials are unreached.
	duty.waitJS("the fan-out", `document.getElementById("overall-pct").dataset.complete === "true"`, 40*time.Second)
	duty.waitJS("unreached officials", `Number(document.getElementById("ack-unreached").textContent) > 0 && document.querySelector('#township-rows tr[data-state="bad"]') !== null`, 30*time.Second)
	duty.do("colour by 叫应", chromedp.Click(chromedp.ID("colour-acks")), chromedp.WaitVisible(chromedp.ID("legend-acks")))
	duty.waitJS("五华区 unreached on the map", `document.getElementById("county-530102000000").classList.contains("a-bad")`, 10*time.Second)
	if fig := duty.text("#fig-530102000000"); !strings.HasPrefix(fig, "✗ ") {
		t.Errorf("五华区's figure %q, want the unreached marker", fig)
	}
	if fill := eval[string](duty, `getComputedStyle(document.getElementById("county-530102000000")).fill`); !strings.Contains(fill, "pat-bad") {
		t.Errorf("五华区 unreached, filled %q", fill)
	}
	bad := `#township-rows tr[data-state="bad"]`
	if s := duty.text(bad + " .ack-mark"); s != "✗ 有未叫应" {
		t.Errorf("an unreached township's marker %q", s)
	}
	if s := duty.text("#unreached"); s == "无" {
		t.Error("the 未叫应 list is empty")
	}
	duty.waitJS("the escalation log", `document.querySelector("#steps tr.step-escalate") !== null`, 10*time.Second)
	if s := duty.text("#steps tr.step-escalate"); !strings.Contains(s, "上报上级") {
		t.Errorf("an escalation step: %q", s)
	}
	// The page grew while it refreshed (the 未叫应 list, the escalation log);
	// the buttons that change the warning stayed where a finger found them.
	if at := eval[float64](duty, actionsTop); at != actionsAt {
		t.Errorf("the watch page's actions moved from %.0f px to %.0f px down the page while it refreshed", actionsAt, at)
	}
	if below := eval[[]string](duty, `(function () {
		var a = document.getElementById("actions"), out = [];
		["unreached", "escalations", "channel-rows", "county-rows", "township-rows", "cov-township-rows", "cov-list"].forEach(function (id) {
			var e = document.getElementById(id);
			if (e && (a.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_PRECEDING)) { out.push(id); }
		});
		return out;
	})()`); len(below) > 0 {
		t.Errorf("the actions come after parts of the page that grow: %v", below)
	}
	duty.noSideScroll("the watch page")
	duty.oneLanguage("zh")
	duty.shot("32-watch-unreached-mobile")

	// At a desk: extend, update, lift.
	duty.viewport(1280, 900, false)
	expires := duty.text("#w-expires")
	duty.do("extend", chromedp.Click(chromedp.ID("extend-btn")), chromedp.WaitVisible(chromedp.ID("change-form")), chromedp.Click(chromedp.ID("ch-submit")))
	id = duty.moved(id)
	if s := duty.text("#w-expires"); s == expires {
		t.Errorf("extended, the warning still ends at %s", s)
	}
	duty.do("update", chromedp.Click(chromedp.ID("update-btn")), chromedp.WaitVisible(chromedp.ID("change-form")),
		chromedp.SetValue(chromedp.ID("ch-description"), "预计今天下午到夜间五华区有8至10级大风。"), chromedp.Click(chromedp.ID("ch-submit")))
	id = duty.moved(id)
	if s := eval[string](duty, `document.querySelector(".wtext").textContent`); !strings.Contains(s, "8至10级") {
		t.Errorf("the updated text: %q", s)
	}
	duty.waitJS("the new version's fan-out", `document.getElementById("overall-pct").dataset.complete === "true"`, 40*time.Second)
	eval[bool](duty, `window.confirm = function () { return true; }; true`) // the operator answers yes
	duty.do("lift", chromedp.Click(chromedp.ID("cancel-btn")))
	duty.waitJS("lifted", `document.getElementById("state").textContent === "已解除"`, 10*time.Second)
	duty.waitJS("the lifted notices", `document.querySelector("#steps tr.step-lifted") !== null`, 20*time.Second)
	if s := duty.text("#steps tr.step-lifted"); !strings.Contains(s, "解除通知") || !strings.Contains(s, "已发出解除通知") {
		t.Errorf("a lifted notice in the log: %q", s)
	}
	if n := eval[int](duty, `document.querySelectorAll("#steps tr.step-lifted").length`); n < 2 {
		t.Errorf("lifted notices went out on %d channels", n)
	}
	duty.oneLanguage("zh")
	duty.shot("33-watch-lifted-desktop")
	duty.do("lifted, in English", chromedp.Navigate(g.url+"/console/w/"+id+"?lang=en"), chromedp.WaitVisible(chromedp.CSS("#steps tr.step-lifted")))
	duty.oneLanguage("en")
	duty.noSideScroll("the English watch page")
	duty.do("back to Chinese", chromedp.Navigate(g.url+"/console/w/"+id+"?lang=zh"), chromedp.WaitVisible(chromedp.ID("state")))

	// Upgrade another warning: orange from a person waits for a second one.
	other := g.issue(t, `{"hazard":"gale","level":"yellow","areas":["530103000000"],"headline":"盘龙区大风黄色预警","description":"有大风。","status":"actual","expires":"`+
		time.Now().Add(3*time.Hour).Format(time.RFC3339)+`"}`)
	duty.do("the other warning", chromedp.Navigate(g.url+"/console/w/"+other), chromedp.WaitVisible(chromedp.ID("upgrade-btn")),
		chromedp.Click(chromedp.ID("upgrade-btn")), chromedp.WaitVisible(chromedp.ID("change-form")))
	if on := eval[bool](duty, `document.getElementById("ch-level-orange").checked`); !on {
		t.Error("upgrading a yellow warning does not offer orange")
	}
	duty.do("upgrade", chromedp.Click(chromedp.ID("ch-submit")))
	duty.moved(other)
	duty.waitJS("awaiting approval", `document.getElementById("state").textContent === "待审批" && !document.getElementById("awaiting-note").hidden`, 10*time.Second)
	if s := duty.text(".watch-banner .banner-level"); !strings.Contains(s, "橙色") {
		t.Errorf("upgraded: %q", s)
	}
	duty.shot("34-watch-upgraded-desktop")
	b.checkConsole()
}

// actionsTop is where the watch page's actions begin, down the page.
const actionsTop = `document.getElementById("actions").getBoundingClientRect().top + window.scrollY`

// here is the warning the watch page shows.
func (u *ui) here() string {
	u.t.Helper()
	loc, err := chromedp.Run(u.ctx, chromedp.Location())
	if err != nil || !strings.Contains(loc, "/console/w/") {
		u.t.Fatalf("%s: not on a watch page: %s %v", u.name, loc, err)
	}
	return strings.TrimSuffix(loc[strings.LastIndex(loc, "/")+1:], "?")
}

// moved waits for the watch page of the version that replaced id, and
// returns its id.
func (u *ui) moved(id string) string {
	u.t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for deadline := time.Now().Add(10 * time.Second); ; {
		// A page that is navigating answers nothing: ask again.
		loc, err := chromedp.Run(u.ctx, chromedp.Location())
		if err == nil && strings.Contains(loc, "/console/w/") && !strings.Contains(loc, "/console/w/"+id) {
			break
		}
		if time.Now().After(deadline) {
			u.shot("failed-" + u.name)
			u.t.Fatalf("%s: still on %s (%v), want the version that replaced %s", u.name, loc, err, id)
		}
		<-tick.C
	}
	u.do("the new version's page", chromedp.WaitVisible(chromedp.ID("overall-pct")))
	return u.here()
}

// issue sends a warning with the admin token and returns its id.
func (g *gateway) issue(t *testing.T, body string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", g.url+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer e2e-admin-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var w struct{ ID, State string }
	json.NewDecoder(resp.Body).Decode(&w)
	if resp.StatusCode != http.StatusAccepted || w.State == "awaiting_approval" {
		t.Fatalf("issue: %s %+v", resp.Status, w)
	}
	return w.ID
}
