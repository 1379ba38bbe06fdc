package e2e_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"warngate/region"
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

// browser is one Chromium for a test. Each person it opens has a browser
// context of their own (their own cookies, as on separate machines), and
// what any page writes to its console as an error, or throws, is kept:
// checkConsole fails the test on it.
type browser struct {
	t    *testing.T
	root context.Context

	mu   sync.Mutex
	errs []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	exe := chromium(t)
	os.MkdirAll("artifacts", 0o755)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("lang", "zh-CN"),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	root, cancelRoot := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancelRoot(); cancelAlloc() })
	if err := chromedp.Do(root); err != nil { // starts the browser, with no deadline
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, root: root}
}

// person opens a browser context for someone, at a window of w by h
// pixels (a phone's when mobile), its console watched.
func (b *browser) person(name string, w, h int64, mobile bool) *ui {
	b.t.Helper()
	pctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(pctx); err != nil {
		b.t.Fatalf("open a browser context: %v", err)
	}
	go func() {
		for m, err := range chromedp.Console(pctx) {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				b.mu.Lock()
				b.errs = append(b.errs, name+": "+m.String()+" ("+m.URL+")")
				b.mu.Unlock()
			}
		}
	}()
	ctx, cancelT := context.WithTimeout(pctx, 3*time.Minute)
	b.t.Cleanup(cancelT)
	u := &ui{t: b.t, ctx: ctx, name: name}
	u.viewport(w, h, mobile)
	return u
}

// checkConsole fails the test for each error a page logged or threw.
func (b *browser) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errs {
		b.t.Errorf("console: %s", e)
	}
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

// text is the text of the first element sel finds (an SVG element's too).
func (u *ui) text(sel string) string {
	u.t.Helper()
	return strings.TrimSpace(eval[string](u, `(function () {
		var n = document.querySelector(`+strconv.Quote(sel)+`);
		if (!n) { throw new Error("no element " + `+strconv.Quote(sel)+`); }
		return n.innerText === undefined ? n.textContent : n.innerText;
	})()`))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](u *ui, expr string) T {
	u.t.Helper()
	v, err := chromedp.Run(u.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		u.shot("failed-" + u.name)
		u.t.Fatalf("%s: %s: %v", u.name, expr, err)
	}
	return v
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

// shotOf saves a screenshot of one element.
func (u *ui) shotOf(name, sel string) {
	u.t.Helper()
	u.save(name, chromedp.Screenshot(chromedp.CSS(sel)))
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

// noSideScroll fails the test when the page, or a table in it, is wider
// than the window: something a person needs would be hidden sideways.
func (u *ui) noSideScroll(where string) {
	u.t.Helper()
	wide := eval[[]string](u, `(function () {
		var out = [], s = document.scrollingElement;
		if (s.scrollWidth > s.clientWidth) { out.push('page ' + s.scrollWidth + ' > ' + s.clientWidth); }
		document.querySelectorAll('.table-wrap').forEach(function (w) {
			if (w.offsetParent !== null && w.scrollWidth > w.clientWidth + 1) {
				var t = w.querySelector('table');
				out.push((t && t.id || 'table') + ' ' + w.scrollWidth + ' > ' + w.clientWidth);
			}
		});
		return out;
	})()`)
	for _, w := range wide {
		u.t.Errorf("%s: %s scrolls sideways: %s", u.name, where, w)
	}
}

// oneLanguage fails the test for every word the page shows that is not in
// lang ("zh", "en"): in its text and in what people read of its attributes
// (title, aria-label, placeholder, alt; an SVG <title>), outside elements
// marked as data of another language (lang) or as names (translate="no").
// Chinese pages may hold codes, ids, links and numbers; English pages the
// city's place names.
func (u *ui) oneLanguage(lang string) {
	u.t.Helper()
	places, _ := json.Marshal(placeNames())
	bad := eval[[]string](u, `(function (lang, places) {
		var bad = [], CJK = /[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]/, allowed = {xlsx: 1, csv: 1, UTF: 1, openid: 1};
		function check(s) {
			s = String(s || '').trim();
			if (!s) { return; }
			if (lang === 'en') {
				var rest = s;
				places.forEach(function (p) { rest = rest.split(p).join(''); });
				if (CJK.test(rest)) { bad.push(s); }
				return;
			}
			var toks = s.replace(/https?:\/\/\S+/g, ' ').split(/[\s\u00b7|,;:()\[\]"'\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+/);
			for (var i = 0; i < toks.length; i++) {
				var tok = toks[i];
				if (!tok || tok.indexOf('://') >= 0 || tok[0] === '/' || tok[0] === '.' || /[0-9]/.test(tok)) { continue; }
				var words = tok.match(/[A-Za-z]{2,}/g) || [];
				for (var j = 0; j < words.length; j++) { if (!allowed[words[j]]) { bad.push(s); return; } }
			}
		}
		function walk(n, skip) {
			if (n.nodeType === 1) {
				var tag = n.tagName.toLowerCase();
				if (tag === 'script' || tag === 'style' || tag === 'noscript') { return; }
				if (tag === 'title' && n.namespaceURI === 'http://www.w3.org/2000/svg') { if (!skip) { check(n.textContent); } return; }
				if (n.hidden || (n.namespaceURI !== 'http://www.w3.org/2000/svg' && getComputedStyle(n).display === 'none')) { return; }
				if (n.getAttribute('translate') === 'no') { skip = true; }
				var l = n.getAttribute('lang');
				if (l !== null) { skip = l.indexOf(lang) !== 0; }
				if (!skip) {
					['title', 'aria-label', 'placeholder', 'alt'].forEach(function (a) { if (n.hasAttribute(a)) { check(n.getAttribute(a)); } });
					if (tag === 'input' && (n.type === 'submit' || n.type === 'button')) { check(n.value); }
				}
			}
			if (n.nodeType === 3 && !skip && n.parentNode.tagName !== 'TEXTAREA') { check(n.data); }
			for (var c = n.firstChild; c; c = c.nextSibling) { walk(c, skip); }
		}
		var other = document.documentElement.lang.indexOf(lang) !== 0;
		if (!other) { check(document.title); }
		walk(document.body, other);
		return bad;
	})(`+"`"+lang+"`"+`, `+string(places)+`)`)
	loc, _ := chromedp.Run(u.ctx, chromedp.Location())
	for _, s := range bad {
		u.t.Errorf("%s: %s shows %q, not %s", u.name, loc, s, map[string]string{"zh": "Chinese", "en": "English"}[lang])
	}
}

// placeNames are the names of the city's divisions, long ones first.
var placeNames = sync.OnceValue(func() []string {
	tree := region.Kunming()
	var names []string
	tree.Walk(tree.Root().Code, func(d *region.Division) bool {
		names = append(names, d.Name)
		return true
	})
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	return names
})
