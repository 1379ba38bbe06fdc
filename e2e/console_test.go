package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds the browser, or skips the test; with
// WARNGATE_TEST_BROWSER_REQUIRED set (as in CI) a missing browser fails it.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("WARNGATE_TEST_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "no Chromium: install it (apt-get install -y chromium) or set WARNGATE_TEST_CHROMIUM to its path"
	if os.Getenv("WARNGATE_TEST_BROWSER_REQUIRED") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping the browser tests")
	return ""
}

// ui runs browser steps for one person, each bounded by the test's deadline.
type ui struct {
	t      *testing.T
	ctx    context.Context
	name   string
	mobile bool
}

func (u *ui) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	if err := chromedp.Do(u.ctx, steps...); err != nil {
		u.shot("failed-" + u.name)
		u.t.Fatalf("%s: %s: %v", u.name, what, err)
	}
}

func (u *ui) text(sel string) string {
	u.t.Helper()
	s, err := chromedp.Run(u.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		u.t.Fatalf("%s: text of %s: %v", u.name, sel, err)
	}
	return strings.TrimSpace(s)
}

// waitJS waits until a JavaScript expression is true.
func (u *ui) waitJS(what, expr string, timeout time.Duration) {
	u.t.Helper()
	_, err := chromedp.Run(u.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		u.shot("failed-" + u.name)
		u.t.Fatalf("%s: waiting for %s: %v", u.name, what, err)
	}
}

// shot saves a screenshot of the whole page to e2e/artifacts/NAME.png and,
// for a phone, of its first screen to NAME-screen.png.
func (u *ui) shot(name string) {
	u.t.Helper()
	u.save(name, chromedp.FullScreenshot(100))
	if u.mobile {
		u.save(name+"-screen", chromedp.CaptureScreenshot())
	}
}

func (u *ui) save(name string, a chromedp.Action[[]byte]) {
	buf, err := chromedp.Run(u.ctx, a)
	if err == nil {
		err = os.WriteFile(filepath.Join("artifacts", name+".png"), buf, 0o644)
	}
	if err != nil {
		u.t.Logf("screenshot %s: %v", name, err)
	}
}

func (u *ui) viewport(w, h int64, mobile bool) {
	u.t.Helper()
	opts := []chromedp.EmulateViewportOption{}
	if mobile {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulatePortrait)
	}
	u.do("viewport", chromedp.EmulateViewport(w, h, opts...))
	u.mobile = mobile
}

func (u *ui) signIn(name, password string) {
	u.t.Helper()
	u.do("sign in as "+name,
		chromedp.WaitVisible(chromedp.ID("name")),
		chromedp.SendKeys(chromedp.ID("name"), name),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.ID("login-btn")),
		chromedp.WaitVisible(chromedp.ID("who")),
	)
}

// The bureau's duty operator issues a red warning through the console, the
// leader approves it, the watch page follows the fan-out to 100%, and a
// grid worker confirms, ticks a checklist item and marks a household from
// the link in their SMS on a 360-pixel phone, which the bureau sees.
func TestConsoleIssueApproveWatch(t *testing.T) {
	exe := chromium(t)
	g := startGateway(t)
	os.MkdirAll("artifacts", 0o755)
	resp, err := http.Get(g.url + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /console/login: %s: api.New must mount the console (mountConsole)", resp.Status)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser, with no deadline
		t.Fatalf("start chromium: %v", err)
	}
	deadline, cancel := context.WithTimeout(browserCtx, 90*time.Second)
	defer cancel()
	duty := &ui{t: t, ctx: deadline, name: "duty"}

	// Another browser context for the leader and one for the phone: their
	// own cookies, as on separate machines.
	leaderCtx, cancelLeader := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelLeader()
	phoneCtx, cancelPhone := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	defer cancelPhone()
	for _, c := range []context.Context{leaderCtx, phoneCtx} {
		if err := chromedp.Do(c); err != nil {
			t.Fatalf("open a browser context: %v", err)
		}
	}
	lctx, cancelL := context.WithTimeout(leaderCtx, 90*time.Second)
	defer cancelL()
	pctx, cancelP := context.WithTimeout(phoneCtx, 90*time.Second)
	defer cancelP()
	leader := &ui{t: t, ctx: lctx, name: "leader"}
	phone := &ui{t: t, ctx: pctx, name: "phone"}

	// Sign in as the duty operator.
	duty.do("open the console", chromedp.Navigate(g.url+"/console/"))
	duty.do("login page", chromedp.WaitVisible(chromedp.ID("login-form")))
	duty.shot("01-login-desktop")
	duty.signIn("duty", dutyPassword)
	duty.shot("02-list-empty-desktop")

	// Issue a red warning for 五华区, picked by search.
	duty.do("issue page",
		chromedp.Navigate(g.url+"/console/new"),
		chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)),
		chromedp.SetValue(chromedp.ID("hazard"), "rainstorm"),
		chromedp.Click(chromedp.ID("level-red")),
		chromedp.SendKeys(chromedp.ID("area-q"), "五华"),
		chromedp.WaitVisible(chromedp.CSS(`#area-results button.pick[data-code="530102000000"]`)),
		chromedp.Click(chromedp.CSS(`#area-results button.pick[data-code="530102000000"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#area-chosen li[data-code="530102000000"]`)),
		chromedp.SendKeys(chromedp.ID("headline"), "五华区暴雨红色预警"),
		chromedp.SendKeys(chromedp.ID("description"), "预计未来3小时五华区将出现100毫米以上降雨，局地伴有雷电和短时大风。"),
		chromedp.SendKeys(chromedp.ID("instruction"), "停止户外活动，远离河道和低洼地带，危险区域人员立即转移。"),
	)
	if sms := duty.text("#sms-count"); !regexp.MustCompile(`短信 \d+ 字（含签名），计 2 条`).MatchString(sms) {
		t.Errorf("SMS counter says %q, want two parts", sms)
	}
	duty.do("preview", chromedp.Click(chromedp.ID("preview-btn")), chromedp.WaitVisible(chromedp.ID("preview-total")))
	total, err := chromedp.Run(duty.ctx, chromedp.AttributeValue(chromedp.ID("preview-total"), "data-total"))
	if n, _ := strconv.Atoi(total.Value); err != nil || n == 0 {
		t.Fatalf("preview total %q: %v", total.Value, err)
	}
	if s := duty.text("#preview-counties"); !strings.Contains(s, "五华区") {
		t.Errorf("preview by county: %q", s)
	}
	if s := duty.text("#preview-channels"); !strings.Contains(s, "应急广播") || !strings.Contains(s, "人工传递") {
		t.Errorf("preview by channel lacks loudspeakers or call lists: %q", s)
	}
	duty.shot("03-issue-preview-desktop")
	duty.do("send",
		chromedp.Click(chromedp.ID("send-btn")),
		chromedp.WaitVisible(chromedp.ID("awaiting-note")),
	)
	loc, _ := chromedp.Run(duty.ctx, chromedp.Location())
	id := loc[strings.LastIndex(loc, "/")+1:]
	if !strings.Contains(loc, "/console/w/") || id == "" {
		t.Fatalf("after sending the page is %s", loc)
	}
	duty.shot("04-watch-awaiting-desktop")

	// The leader, in another browser, approves.
	leader.do("approvals page", chromedp.Navigate(g.url+"/console/approvals"))
	leader.signIn("leader", leaderPassword)
	leader.do("approve",
		chromedp.WaitVisible(chromedp.ID("approve-"+id)),
	)
	leader.shot("05-approvals-desktop")
	leader.do("approve", chromedp.Click(chromedp.ID("approve-"+id)))
	leader.waitJS("the approval", `document.getElementById("ap-msg-`+id+`").textContent.indexOf("已审批") >= 0`, 10*time.Second)

	// The watch page follows the fan-out to the end.
	duty.waitJS("100%", `document.getElementById("overall-pct").dataset.complete === "true"`, 40*time.Second)
	if pct := duty.text("#overall-pct"); pct != "100%" {
		t.Errorf("complete at %s", pct)
	}
	if s := duty.text("#state"); s != "发布中" {
		t.Errorf("state shown %q after approval", s)
	}
	before := duty.text("#ack-confirmed")
	duty.shot("06-watch-complete-desktop")

	// A grid worker opens the link of their SMS on a phone.
	gw, ok := g.gridWorker("530102000000")
	if !ok {
		t.Fatal("no grid worker with households in 五华区's demo roster")
	}
	link := g.link(gw.ID)
	if link == "" {
		t.Fatalf("no SMS with a link reached grid worker %s", gw.ID)
	}
	phone.viewport(360, 740, true)
	phone.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("ack")))
	phone.shot("07-officer-mobile")
	phone.do("confirm", chromedp.Click(chromedp.ID("ack")), chromedp.WaitVisible(chromedp.ID("ack-state")))
	phone.do("checklist item",
		chromedp.Click(chromedp.CSS(`ul.checklist li.item button[value="done"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.checklist li.item.status-done`)),
	)
	phone.do("household",
		chromedp.Click(chromedp.CSS(`ul.households li.household button[value="yes"]`)),
		chromedp.WaitVisible(chromedp.CSS(`ul.households li.household.reached`)),
	)
	phone.shot("08-officer-mobile-done")

	// The bureau sees the confirmation.
	duty.waitJS("the acknowledgement", fmt.Sprintf(`Number(document.getElementById("ack-confirmed").textContent) > %s`, before), 10*time.Second)
	duty.shot("09-watch-acked-desktop")

	// The same pages on a 360-pixel phone, in Chinese and English, and the public page.
	duty.viewport(360, 740, true)
	duty.do("watch on a phone", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("overall-pct")))
	duty.waitJS("the watch page's data", `document.getElementById("overall-pct").dataset.complete === "true"`, 10*time.Second)
	duty.shot("10-watch-mobile")
	duty.do("issue page on a phone", chromedp.Navigate(g.url+"/console/new"), chromedp.WaitVisible(chromedp.CSS(`#area-tree button.pick`)))
	duty.shot("11-issue-mobile")
	duty.do("list on a phone", chromedp.Navigate(g.url+"/console/"), chromedp.WaitVisible(chromedp.ID("row-"+id)))
	duty.shot("12-list-mobile")
	duty.do("public page on a phone", chromedp.Navigate(g.url+"/public/?area=530102001000"), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	duty.shot("13-public-mobile")
	duty.viewport(1280, 900, false)
	duty.do("list in English", chromedp.Navigate(g.url+"/console/?lang=en"), chromedp.WaitVisible(chromedp.ID("row-"+id)))
	if s := duty.text("#row-" + id); !strings.Contains(s, "Active") || !strings.Contains(s, "Red (I)") {
		t.Errorf("English list row: %q", s)
	}
	duty.shot("14-list-en-desktop")
	duty.do("public page", chromedp.Navigate(g.url+"/public/?area=530102000000&lang=zh"), chromedp.WaitVisible(chromedp.ID("pub-"+id)))
	duty.shot("15-public-desktop")
}
