package api

import (
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// Colours people must read, checked against WCAG 2.1 AA: text 4.5:1 on
// its background; the marks of the map's patterns 3:1 on theirs (non-text
// contrast). States of the map and the 叫应 rows differ by more than hue:
// the delivery shares by lightness, the 叫应 states by pattern and marker.
func TestPaletteContrast(t *testing.T) {
	css := readFiles(t, "web/app.css", "web/console/console.css")
	rules := cssRules(css)
	labelText := hexIn(t, rules[".cm-labels text"], "fill")

	checked := 0
	for sel, decls := range rules {
		bg, fg := hexOf(decls, "background"), hexOf(decls, "color")
		if bg == "" {
			bg = hexOf(decls, "background-color")
		}
		switch {
		case bg != "" && fg != "":
			checked++
			if c := contrast(bg, fg); c < 4.5 {
				t.Errorf("%s: text %s on %s is %.2f:1, want 4.5:1", sel, fg, bg, c)
			}
		case bg != "" && strings.HasPrefix(sel, "tr.ack-"): // rows of body text
			checked++
			if c := contrast(bg, "#111111"); c < 4.5 {
				t.Errorf("%s: body text on %s is %.2f:1, want 4.5:1", sel, bg, c)
			}
		case strings.HasPrefix(sel, ".county.") && hexOf(decls, "fill") != "":
			checked++
			if c := contrast(hexOf(decls, "fill"), labelText); c < 4.5 {
				t.Errorf("%s: map labels (%s) on %s are %.2f:1, want 4.5:1", sel, labelText, hexOf(decls, "fill"), c)
			}
		}
	}
	if checked < 30 {
		t.Errorf("only %d colour pairs checked; the stylesheets' rules were not read", checked)
	}

	// The patterns: background under the labels, marks visible on it.
	tpl := readFiles(t, "web/console/map.html")
	pats := regexp.MustCompile(`<pattern id="([^"]+)"[^>]*>(.*?)</pattern>`).FindAllStringSubmatch(tpl, -1)
	if len(pats) < 3 {
		t.Fatalf("%d patterns in map.html", len(pats))
	}
	for _, p := range pats {
		fills := regexp.MustCompile(`fill="(#[0-9a-fA-F]{6})"`).FindAllStringSubmatch(p[2], -1)
		if len(fills) < 2 {
			t.Fatalf("pattern %s: %v", p[1], fills)
		}
		bg := fills[0][1]
		if c := contrast(bg, labelText); c < 4.5 {
			t.Errorf("pattern %s: labels on %s are %.2f:1", p[1], bg, c)
		}
		for _, m := range fills[1:] {
			if c := contrast(bg, m[1]); c < 3 {
				t.Errorf("pattern %s: marks %s on %s are %.2f:1, want 3:1", p[1], m[1], bg, c)
			}
		}
	}
	for _, st := range []string{"a-wait", "a-bad"} {
		if !strings.Contains(rules[".county."+st]["fill"], "url(#pat-") {
			t.Errorf("%s is not patterned", st)
		}
	}

	// Delivery shares step down in lightness, each step told from the next.
	bins := []string{"d-0", "d-50", "d-80", "d-95", "d-100"}
	for i := 1; i < len(bins); i++ {
		a, b := hexIn(t, rules[".county."+bins[i-1]], "fill"), hexIn(t, rules[".county."+bins[i]], "fill")
		if c := contrast(a, b); luminance(a) <= luminance(b) || c < 1.2 {
			t.Errorf("%s %s and %s %s: %.2f:1, want lighter to darker by 1.2:1", bins[i-1], a, bins[i], b, c)
		}
	}
}

func readFiles(t *testing.T, names ...string) string {
	var sb strings.Builder
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
	}
	return sb.String()
}

// cssRules reads a stylesheet's rules, outside and inside @media and
// @container blocks, as selector → property → value; a rule with several
// selectors is listed under each.
func cssRules(css string) map[string]map[string]string {
	css = regexp.MustCompile(`(?s)/\*.*?\*/`).ReplaceAllString(css, "")
	css = regexp.MustCompile(`@[a-z]+[^{]*\{`).ReplaceAllString(css, "")
	out := map[string]map[string]string{}
	for _, m := range regexp.MustCompile(`([^{}]+)\{([^{}]*)\}`).FindAllStringSubmatch(css, -1) {
		decls := map[string]string{}
		for _, d := range strings.Split(m[2], ";") {
			if k, v, ok := strings.Cut(d, ":"); ok {
				decls[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
		for _, sel := range strings.Split(m[1], ",") {
			sel = strings.TrimSpace(sel)
			if out[sel] == nil {
				out[sel] = map[string]string{}
			}
			for k, v := range decls {
				out[sel][k] = v
			}
		}
	}
	return out
}

var hexColour = regexp.MustCompile(`^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)

// hexOf is a declaration's value when it is one hex colour.
func hexOf(decls map[string]string, prop string) string {
	v := decls[prop]
	if !hexColour.MatchString(v) {
		return ""
	}
	if len(v) == 4 {
		v = "#" + strings.Repeat(v[1:2], 2) + strings.Repeat(v[2:3], 2) + strings.Repeat(v[3:4], 2)
	}
	return v
}

func hexIn(t *testing.T, decls map[string]string, prop string) string {
	t.Helper()
	v := hexOf(decls, prop)
	if v == "" {
		t.Fatalf("no %s colour in %v", prop, decls)
	}
	return v
}

// luminance is WCAG 2.1's relative luminance of a #rrggbb colour.
func luminance(hex string) float64 {
	ch := func(i int) float64 {
		n, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(n) / 255
		if c <= 0.04045 {
			return c / 12.92
		}
		return math.Pow((c+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(0) + 0.7152*ch(1) + 0.0722*ch(2)
}

// contrast is WCAG 2.1's contrast ratio of two colours.
func contrast(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	return (max(la, lb) + 0.05) / (min(la, lb) + 0.05)
}
