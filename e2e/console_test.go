package e2e_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// attr reads an attribute of the first element sel finds, "" when none.
func (u *ui) attr(sel, name string) string {
	u.t.Helper()
	return eval[string](u, `(function () { var n = document.querySelector(`+strconv.Quote(sel)+`); return n ? (n.getAttribute(`+strconv.Quote(name)+`) || '') : ''; })()`)
}

// number reads an attribute as an integer.
func (u *ui) number(sel, name string) int {
	u.t.Helper()
	n, err := strconv.Atoi(u.attr(sel, name))
	if err != nil {
		u.t.Fatalf("%s: %s of %s: %v", u.name, name, sel, err)
	}
	return n
}

// The bureau's duty operator issues a red warning through the console at
// 1280 pixels, choosing its area on the map and seeing its SMS counted as
// the provider bills them; the leader approves it knowing its reach and
// text; the watch page follows the fan-out on the map, by delivery and by
// 叫应; a grid worker confirms from the link in their SMS on a 360-pixel
// phone; the pages fit a phone and speak one language; no page logs an
// error.
func TestConsoleIssueApproveWatch(t *testing.T) {
	g := startGateway(t)
	resp, err := http.Get(g.url + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /console/login: %s: api.New must mount the console (mountConsole)", resp.Status)
	}
	b := newBrowser(t)
	duty := b.person("duty", 1280, 900, false)
	leader := b.person("leader", 1280, 900, false)
	phone := b.person("phone", 360, 740, true)

	// Sign in as the duty operator.
	duty.do("open the console", chromedp.Navigate(g.url+"/console/"))
	duty.do("login page", chromedp.WaitVisible(chromedp.ID("login-form")))
	duty.oneLanguage("zh")
	duty.shot("01-login-desktop")
	duty.signIn("duty", dutyPassword)
	duty.shot("02-list-empty-desktop")

	// Issue a red warning for 五华区, picked by search; a township of 西山区
	// marks its county as partly chosen on the map until it is removed.
	duty.do("issue page",
		chromedp.Navigate(g.url+"/console/new"),
		chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)),
		chromedp.WaitVisible(chromedp.ID("cmap-svg")),
		chromedp.SetValue(chromedp.ID("hazard"), "rainstorm"),
		chromedp.Click(chromedp.ID("level-red")),
		chromedp.SendKeys(chromedp.ID("area-q"), "五华"),
		chromedp.WaitVisible(chromedp.CSS(`#area-results button.pick[data-code="530102000000"]`)),
		chromedp.Click(chromedp.CSS(`#area-results button.pick[data-code="530102000000"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#area-chosen li[data-code="530102000000"]`)),
	)
	eval[string](duty, `document.getElementById("area-q").value = ""`)
	duty.do("a township of 西山区",
		chromedp.SendKeys(chromedp.ID("area-q"), "马街"),
		chromedp.WaitVisible(chromedp.CSS(`#area-results button.pick[data-code^="530112"]`)),
		chromedp.Click(chromedp.CSS(`#area-results button.pick[data-code^="530112"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#area-chosen li[data-code^="530112"]`)),
	)
	if st := duty.attr("#county-530102000000", "data-state"); st != "full" {
		t.Errorf("五华区 on the map: %q, want full", st)
	}
	if st, title := duty.attr("#county-530112000000", "data-state"), duty.text("#county-530112000000 title"); st != "part" || !strings.Contains(title, "已选其中 1 处") {
		t.Errorf("西山区 on the map: %q %q, want partly chosen", st, title)
	}
	if cls := duty.attr("#county-530112000000", "class"); !strings.Contains(cls, "p-part") {
		t.Errorf("西山区's class %q", cls)
	}
	duty.do("remove 西山区's township",
		chromedp.Click(chromedp.CSS(`#area-chosen li[data-code^="530112"] button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#area-chosen li[data-code^="530112"]`)),
		chromedp.SendKeys(chromedp.ID("headline"), "五华区暴雨红色预警"),
		chromedp.SendKeys(chromedp.ID("description"), "预计未来3小时五华区将出现100毫米以上降雨，局地伴有雷电和短时大风。"),
		chromedp.SendKeys(chromedp.ID("instruction"), "停止户外活动，远离河道和低洼地带，危险区域人员立即转移。"),
	)
	if st := duty.attr("#county-530112000000", "data-state"); st != "none" {
		t.Errorf("西山区 after its township was removed: %q", st)
	}
	duty.waitJS("the SMS counter", `document.getElementById("sms-resident").textContent.indexOf("计 2 条") >= 0`, 10*time.Second)
	if sms := duty.text("#sms-resident"); !regexp.MustCompile(`居民短信 \d+ 字，计 2 条`).MatchString(sms) {
		t.Errorf("SMS counter says %q, want two parts", sms)
	}
	officialParts := duty.number("#sms-official", "data-parts")
	if officialParts < 2 {
		t.Errorf("an official's SMS, with its link, in %d parts", officialParts)
	}
	duty.oneLanguage("zh")
	duty.shot("03-issue-desktop")
	duty.do("preview", chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("preview-total")))
	total := duty.number("#preview-total", "data-total")
	if total == 0 {
		t.Fatal("the preview reaches nobody")
	}
	if s := duty.text("#preview-counties"); !strings.Contains(s, "五华区") {
		t.Errorf("preview by county: %q", s)
	}
	if s := duty.text("#preview-channels"); !strings.Contains(s, "应急广播") || !strings.Contains(s, "人工传递") {
		t.Errorf("preview by channel lacks loudspeakers or call lists: %q", s)
	}
	if duty.number("#preview-sms-resident", "data-parts") != 2 || duty.number("#preview-sms-official", "data-parts") != officialParts {
		t.Errorf("the preview's SMS disagree with the counter: %s / %s", duty.text("#preview-sms-resident"), duty.text("#preview-sms-official"))
	}
	if s := duty.text("#preview-sms-resident p"); !strings.HasPrefix(s, "【昆明市应急管理局】五华区暴雨红色预警：预计未来3小时") {
		t.Errorf("a resident's SMS as the phone shows it: %q", s)
	}
	smsMessages, smsParts := duty.number("#preview-sms-total", "data-messages"), duty.number("#preview-sms-total", "data-parts")
	duty.oneLanguage("zh")
	duty.shot("04-issue-preview-desktop")
	duty.do("send",
		chromedp.Click(chromedp.ID("send-btn")),
		chromedp.WaitVisible(chromedp.ID("awaiting-note")),
	)
	loc, _ := chromedp.Run(duty.ctx, chromedp.Location())
	id := loc[strings.LastIndex(loc, "/")+1:]
	if !strings.Contains(loc, "/console/w/") || id == "" {
		t.Fatalf("after sending the page is %s", loc)
	}
	duty.shot("05-watch-awaiting-desktop")

	// The leader, in another browser, sees what they release and approves.
	leader.do("approvals page", chromedp.Navigate(g.url+"/console/approvals"))
	leader.signIn("leader", leaderPassword)
	leader.do("the approval card", chromedp.WaitVisible(chromedp.ID("approve-"+id)))
	leader.waitJS("the reach", `document.getElementById("ap-preview-`+id+`").dataset.ready === "true"`, 20*time.Second)
	if n := leader.number("#ap-"+id+"-total", "data-total"); n != total {
		t.Errorf("the approval card says %d deliveries, the preview %d", n, total)
	}
	if s := leader.text("#ap-" + id + "-counties"); !strings.Contains(s, "五华区") {
		t.Errorf("the approval card by county: %q", s)
	}
	if s := leader.text("#ap-" + id + "-sms-resident p"); !strings.HasPrefix(s, "【昆明市应急管理局】五华区暴雨红色预警") {
		t.Errorf("the approval card's SMS: %q", s)
	}
	if s := leader.text("#ap-" + id + " .witem-meta"); !strings.Contains(s, "签发人 值班员") {
		t.Errorf("the approval card names the issuer as %q", s)
	}
	leader.oneLanguage("zh")
	leader.shot("06-approvals-desktop")
	leader.do("approve", chromedp.Click(chromedp.ID("approve-"+id)))
	leader.waitJS("the approval", `document.getElementById("ap-msg-`+id+`").textContent.indexOf("已审批") >= 0`, 10*time.Second)

	// The watch page follows the fan-out to the end, on the map too, and
	// bills what the preview said.
	duty.waitJS("100%", `document.getElementById("overall-pct").dataset.complete === "true"`, 40*time.Second)
	if pct := duty.text("#overall-pct"); pct != "100%" {
		t.Errorf("complete at %s", pct)
	}
	if s := duty.text("#state"); s != "发布中" {
		t.Errorf("state shown %q after approval", s)
	}
	if s := duty.text(".watch-banner"); !strings.Contains(s, "签发人 值班员") || !strings.Contains(s, "审批人 带班领导") {
		t.Errorf("the banner names %q", s)
	}
	planned := duty.text("#progress-state")
	planned = planned[strings.LastIndex(planned, "/")+1:]
	if cls := duty.attr("#county-530102000000", "class"); !strings.Contains(cls, "d-100") {
		t.Errorf("五华区 coloured %q, want d-100", cls)
	}
	if title := duty.text("#county-530102000000 title"); !strings.Contains(title, "送达 "+planned+"/"+planned+"（100%）") || !strings.Contains(title, "未叫应 0") {
		t.Errorf("五华区's title %q, want %s of %s delivered", title, planned, planned)
	}
	if cls, title := duty.attr("#county-530112000000", "class"), duty.text("#county-530112000000 title"); !strings.Contains(cls, "out") || !strings.Contains(title, "不在预警范围") {
		t.Errorf("西山区 %q %q, want outside", cls, title)
	}
	if s := duty.text("#cr-530102000000"); !strings.Contains(s, planned+"/"+planned) {
		t.Errorf("the county table: %q", s)
	}
	if m, p := duty.number("#bill-sms-default", "data-messages"), duty.number("#bill-sms-default", "data-segments"); m != smsMessages || p != smsParts {
		t.Errorf("billed %d SMS in %d parts; the preview said %d in %d", m, p, smsMessages, smsParts)
	}
	before := duty.text("#ack-confirmed")
	duty.oneLanguage("zh")
	duty.shot("07-watch-complete-desktop")
	duty.shotOf("readme-watch-map", "#by-area")

	// Coloured by 叫应: patterns, markers in words and a legend.
	duty.do("colour by 叫应", chromedp.Click(chromedp.ID("colour-acks")), chromedp.WaitVisible(chromedp.ID("legend-acks")))
	if cls, fig := duty.attr("#county-530102000000", "class"), duty.text("#fig-530102000000"); !strings.Contains(cls, "a-wait") || !strings.HasPrefix(fig, "○ 0/") {
		t.Errorf("五华区 by 叫应: %q %q", cls, fig)
	}
	if fill := eval[string](duty, `getComputedStyle(document.getElementById("county-530102000000")).fill`); !strings.Contains(fill, "pat-wait") {
		t.Errorf("五华区 by 叫应 filled %q, want the waiting pattern", fill)
	}
	row := `#township-rows tr[data-state="wait"]`
	if s := duty.text(row + " .ack-mark"); s != "○ 有待确认" {
		t.Errorf("a waiting township's marker: %q", s)
	}
	if b := eval[string](duty, `(function () { var c = getComputedStyle(document.querySelector('`+row+` > th')); return c.borderLeftWidth + ' ' + c.borderLeftStyle; })()`); b != "6px dashed" {
		t.Errorf("a waiting township's first cell has border %q", b)
	}
	duty.do("a county's townships", chromedp.Click(chromedp.CSS(`#cr-530102000000 button`)), chromedp.WaitVisible(chromedp.ID("tw-all")))
	if s := duty.text("#tw-h"); s != "五华区 · 乡镇（街道）" {
		t.Errorf("townships heading %q", s)
	}
	duty.shot("08-watch-acks-desktop")
	// Sending again to those not reached goes to the API: here nobody is left.
	if _, err := chromedp.Run(duty.ctx, chromedp.Evaluate[bool](`window.confirm = function () { return true; }; true`)); err != nil {
		t.Fatal(err)
	}
	duty.do("send again", chromedp.Click(chromedp.ID("resend-btn")))
	duty.waitJS("the answer to sending again", `document.getElementById("action-msg").textContent.indexOf("没有需要重发的对象") >= 0`, 10*time.Second)

	// A grid worker opens the link of their SMS on a phone.
	gw, ok := g.gridWorker("530102000000")
	if !ok {
		t.Fatal("no grid worker with households in 五华区's demo roster")
	}
	link := g.link(gw.ID)
	if link == "" {
		t.Fatalf("no SMS with a link reached grid worker %s", gw.ID)
	}
	phone.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("ack")))
	phone.oneLanguage("zh")
	phone.noSideScroll("the official's page")
	phone.shot("09-officer-mobile")
	phone.do("confirm", chromedp.Click(chromedp.ID("ack")), chromedp.WaitVisible(chromedp.ID("ack-state")))
	phone.save("readme-officer", chromedp.CaptureScreenshot())
	phone.do("checklist item",
		chromedp.Click(chromedp.CSS(`ul.checklist li.item button[value="done"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.checklist li.item.status-done`)),
	)
	phone.do("household",
		chromedp.Click(chromedp.CSS(`ul.households li.household button[value="yes"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.households li.household.reached`)),
	)
	phone.oneLanguage("zh")
	phone.shot("10-officer-mobile-done")
	phone.do("in English", chromedp.Navigate(link+"?lang=en"), chromedp.WaitVisible(chromedp.ID("ack-state")))
	phone.oneLanguage("en")
	phone.shot("11-officer-mobile-en")

	// The bureau sees the confirmation.
	duty.waitJS("the acknowledgement", fmt.Sprintf(`Number(document.getElementById("ack-confirmed").textContent) > %s`, before), 10*time.Second)
	duty.shot("12-watch-acked-desktop")

	// The same pages on a 360-pixel phone: nothing hidden sideways.
	duty.viewport(360, 740, true)
	duty.do("watch on a phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("overall-pct")))
	duty.waitJS("the watch page's data", `document.getElementById("overall-pct").dataset.complete === "true" && document.querySelector("#county-rows tr") !== null`, 10*time.Second)
	duty.noSideScroll("the watch page")
	duty.oneLanguage("zh")
	duty.shot("13-watch-mobile")
	duty.do("issue page on a phone", chromedp.Navigate(g.url+"/console/new"), chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)))
	duty.noSideScroll("the issue page")
	duty.shot("14-issue-mobile")
	duty.do("list on a phone", chromedp.Navigate(g.url+"/console/"), chromedp.WaitVisible(chromedp.ID("row-"+id)))
	duty.noSideScroll("the list")
	duty.shot("15-list-mobile")
	duty.do("public page on a phone", chromedp.Navigate(g.url+"/public/?area=530102001000"), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	duty.noSideScroll("the public page")
	duty.oneLanguage("zh")
	duty.shot("16-public-mobile")

	// In English, at 1280 pixels: the tables fit, and every word is English.
	duty.viewport(1280, 900, false)
	duty.do("list in English", chromedp.Navigate(g.url+"/console/?lang=en"), chromedp.WaitVisible(chromedp.ID("row-"+id)))
	if s := duty.text("#row-" + id); !strings.Contains(s, "Active") || !strings.Contains(s, "Red (I)") {
		t.Errorf("English list row: %q", s)
	}
	duty.oneLanguage("en")
	duty.shot("17-list-en-desktop")
	duty.do("watch in English", chromedp.Navigate(g.url+"/console/w/"+id), chromedp.WaitVisible(chromedp.ID("overall-pct")))
	duty.waitJS("the watch page's data", `document.getElementById("overall-pct").dataset.complete === "true" && document.querySelector("#county-rows tr") !== null`, 10*time.Second)
	duty.noSideScroll("the English watch page")
	duty.oneLanguage("en")
	duty.shot("18-watch-en-desktop")
	duty.viewport(360, 740, true)
	duty.do("watch in English on a phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("overall-pct")))
	duty.waitJS("the watch page's data", `document.querySelector("#county-rows tr") !== null`, 10*time.Second)
	duty.noSideScroll("the English watch page on a phone")
	duty.viewport(1280, 900, false)
	duty.do("issue page in English", chromedp.Navigate(g.url+"/console/new"), chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)))
	duty.waitJS("the SMS counter", `document.getElementById("sms-count").dataset.ready === "true"`, 10*time.Second)
	duty.oneLanguage("en")
	leader.do("approvals in English", chromedp.Navigate(g.url+"/console/approvals?lang=en"), chromedp.WaitVisible(chromedp.ID("approvals")))
	leader.oneLanguage("en")
	duty.do("public page", chromedp.Navigate(g.url+"/public/?area=530102000000"), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	duty.oneLanguage("en")
	duty.do("public page in Chinese", chromedp.Navigate(g.url+"/public/?area=530102000000&lang=zh"), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	duty.shot("19-public-desktop")
	b.checkConsole()
}
