package e2e_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// 五华区's administrator imports a 通讯录 in the console: the dry run names
// the bad row and column and nothing may be applied; the fixed file is
// checked and applied; the new person is found, edited and saved.
func TestConsoleRoster(t *testing.T) {
	exe := chromium(t)
	g := startGateway(t)
	os.MkdirAll("artifacts", 0o755)
	dir := t.TempDir()
	bad := filepath.Join(dir, "通讯录.csv")
	good := filepath.Join(dir, "通讯录-改.csv")
	header := "编号,姓名,手机号,角色,区划代码\n"
	os.WriteFile(bad, []byte(header+"cx-zhang,张新,13988880001,村（社区）干部,530102001001\ncx-li,李新,1398888000,网格员,530102001001\n"), 0o644)
	os.WriteFile(good, []byte(header+"cx-zhang,张新,13988880001,村（社区）干部,530102001001\ncx-li,李新,13988880002,网格员,530102001001\n"), 0o644)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel := context.WithTimeout(browserCtx, 90*time.Second)
	defer cancel()
	admin := &ui{t: t, ctx: ctx, name: "admin"}

	admin.do("open the roster", chromedp.Navigate(g.url+"/console/roster"))
	admin.signIn("wh-admin", adminPassword)
	admin.do("the roster page", chromedp.WaitVisible(chromedp.ID("import-form")))
	admin.do("mode merge", chromedp.SetValue(chromedp.ID("import-mode"), "merge"))
	admin.do("a sheet with a bad row",
		chromedp.SetUploadFiles(`#import-file`, []string{bad}),
		chromedp.Click(chromedp.ID("import-dry")),
		chromedp.WaitVisible(chromedp.ID("import-errors")),
	)
	if s := admin.text("#import-errors tbody"); !strings.Contains(s, "3") || !strings.Contains(s, "手机号") || !strings.Contains(s, "1398888000") {
		t.Errorf("errors table: %q", s)
	}
	if on, _ := chromedp.Run(ctx, chromedp.Evaluate[bool](`!document.getElementById("import-apply").disabled`)); on {
		t.Error("a sheet with problems may be applied")
	}
	admin.shot("20-roster-import-errors-desktop")
	admin.do("the fixed sheet",
		chromedp.SetUploadFiles(`#import-file`, []string{good}),
		chromedp.Click(chromedp.ID("import-dry")),
		chromedp.WaitVisible(chromedp.ID("import-ok")),
	)
	if s := admin.text("#import-counts"); !strings.Contains(s, "新增 2") {
		t.Errorf("dry run counts: %q", s)
	}
	admin.do("apply", chromedp.Click(chromedp.ID("import-apply")))
	admin.waitJS("the import", `(document.getElementById("import-ok") || {textContent: ""}).textContent.indexOf("已导入") >= 0`, 20*time.Second)
	if _, ok := g.roster.Person("cx-li"); !ok {
		t.Fatal("the imported person is not in the roster")
	}

	admin.do("find the new person",
		chromedp.SendKeys(chromedp.ID("search-q"), "张新"),
		chromedp.Click(chromedp.ID("search-btn")),
		chromedp.WaitVisible(chromedp.ID("edit-cx-zhang")),
		chromedp.Click(chromedp.ID("edit-cx-zhang")),
		chromedp.WaitVisible(chromedp.ID("ef-phone")),
		chromedp.SetValue(chromedp.ID("ef-phone"), "13988889999"),
		chromedp.Click(chromedp.ID("edit-save")),
	)
	admin.waitJS("the edit", `document.getElementById("edit-msg").textContent.indexOf("已保存") >= 0`, 10*time.Second)
	if p, _ := g.roster.Person("cx-zhang"); p.Phone != "13988889999" {
		t.Errorf("after the edit: %+v", p)
	}
	admin.do("a bad phone",
		chromedp.SetValue(chromedp.ID("ef-phone"), "12"),
		chromedp.Click(chromedp.ID("edit-save")),
		chromedp.WaitVisible(chromedp.CSS(`.field-error[data-for="phone"]`)),
	)
	admin.shot("21-roster-edit-desktop")
}
