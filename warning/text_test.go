package warning

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTextProblem(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"plain", "五华区暴雨红色预警", ""},
		{"tab and line breaks", "第一行\r\n第二行\n\t第三行\r", ""},
		{"vertical tab and form feed from a paste", "第一段\v第二段\f第三段", ""},
		{"right-to-left override", "五华区暴雨红\u202e色预警", "character 7 is U+202E (right-to-left override), which cannot be sent; remove it"},
		{"null", "\x00预警", "character 1 is U+0000 (null, a control character), which cannot be sent; remove it"},
		{"bell", "预警\a", "character 3 is U+0007 (bell, a control character), which cannot be sent; remove it"},
		{"escape", "预\x1b[31m警", "character 2 is U+001B (escape, a control character), which cannot be sent; remove it"},
		{"other C0", "a\x01", "character 2 is U+0001 (a control character), which cannot be sent; remove it"},
		{"delete", "ab\x7f", "character 3 is U+007F (delete, a control character), which cannot be sent; remove it"},
		{"C1", "a\u0085b", "character 2 is U+0085 (a C1 control character), which cannot be sent; remove it"},
		{"isolate", "\u2067عربي\u2069", "character 1 is U+2067 (right-to-left isolate), which cannot be sent; remove it"},
		{"pop directional formatting", "x\u202c", "character 2 is U+202C (pop directional formatting), which cannot be sent; remove it"},
		{"noncharacter", "预警\uffff", "character 3 is U+FFFF (a noncharacter), which cannot be sent; remove it"},
		{"not UTF-8", "预警\xff", "character 3 is not valid UTF-8; send the text as UTF-8"},
		{"the first of several", "\u202e\x00", "character 1 is U+202E (right-to-left override), which cannot be sent; remove it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, ok := TextProblem(tt.text)
			if ok != (tt.want != "") || msg != tt.want {
				t.Errorf("TextProblem(%q) = %q, %v; want %q", tt.text, msg, ok, tt.want)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	if got := NormalizeText("a\r\nb\rc\vd\fe\n\tf"); got != "a\nb\nc\nd\ne\n\tf" {
		t.Errorf("NormalizeText: %q", got)
	}
	w := &Warning{
		Headline: "五华区\v暴雨", Description: "一\r\n二", Instruction: "三\f四",
		Translations: []Translation{{Language: "en", Headline: "a\r\nb", Description: "c\vd", Instruction: "e\rf"}},
		Areas:        []string{"530102000000", "530103000000", "530102000000", "530103000000", "530111000000"},
	}
	w.Normalize()
	if w.Headline != "五华区\n暴雨" || w.Description != "一\n二" || w.Instruction != "三\n四" {
		t.Errorf("text %q %q %q", w.Headline, w.Description, w.Instruction)
	}
	if tr := w.Translations[0]; tr.Headline != "a\nb" || tr.Description != "c\nd" || tr.Instruction != "e\nf" {
		t.Errorf("translation %+v", tr)
	}
	if !slices.Equal(w.Areas, []string{"530102000000", "530103000000", "530111000000"}) {
		t.Errorf("areas %v", w.Areas)
	}
}

// Validate names every field whose text cannot be sent, translations too,
// and refuses an expiry beyond MaxLifetime from the issue.
func TestValidateTextAndLifetime(t *testing.T) {
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	w := &Warning{
		Hazard: Rainstorm, Level: Red, Status: StatusActual, Areas: []string{"530102000000"},
		Headline: "五华区暴雨红\u202e色预警", Description: "预计\x07未来", Instruction: "停止\x1b户外活动",
		Translations: []Translation{{Language: "en", Headline: "Red\u0085"}},
		Issued:       now, Expires: now.Add(MaxLifetime + time.Minute),
	}
	err := w.Validate(now)
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		"headline: character 7 is U+202E (right-to-left override), which cannot be sent; remove it",
		"description: character 3 is U+0007 (bell, a control character)",
		"instruction: character 3 is U+001B (escape, a control character)",
		"translations[0].headline: character 4 is U+0085 (a C1 control character)",
		"expires: 2026-07-08T08:01:00+08:00 is more than 7 days after the warning is issued (2026-07-01T08:00:00+08:00); a warning lasts at most 7 days",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
	ok := &Warning{Hazard: Rainstorm, Level: Red, Status: StatusActual, Areas: []string{"530102000000"},
		Headline: "五华区暴雨红色预警", Description: "第一段\v第二段\r\n", Expires: now.Add(MaxLifetime)}
	if err := ok.Validate(now); err != nil {
		t.Errorf("seven days exactly, text with a paste's line breaks: %v", err)
	}
}

// A fingerprint ignores how a warning was spelt and who sent it when, and
// changes with anything it says.
func TestFingerprint(t *testing.T) {
	now := time.Date(2026, 7, 1, 8, 0, 0, 0, time.FixedZone("CST", 8*3600))
	base := func() *Warning {
		return &Warning{ID: "a", Hazard: Rainstorm, Level: Red, Status: StatusActual, MsgType: MsgAlert,
			Areas: []string{"530102000000", "530103000000"}, Headline: "五华区暴雨红色预警", Description: "一\n二",
			Instruction: "停止户外活动", Sender: "kmqx", Expires: now.Add(time.Hour), Issued: now, Accepted: now}
	}
	fp := base().Fingerprint()
	for name, edit := range map[string]func(w *Warning){
		"other id, issuer, state and times": func(w *Warning) {
			w.ID, w.IssuedBy, w.State, w.Issued, w.Accepted = "b", "duty", StateActive, now.Add(time.Minute), now.Add(time.Minute)
		},
		"areas in another order, one twice": func(w *Warning) { w.Areas = []string{"530103000000", "530102000000", "530103000000"} },
		"expiry in UTC":                     func(w *Warning) { w.Expires = w.Expires.UTC() },
		"expiry within the same second":     func(w *Warning) { w.Expires = w.Expires.Add(300 * time.Millisecond) },
		"CRLF and surrounding space":        func(w *Warning) { w.Description, w.Headline = " 一\r\n二\n", "五华区暴雨红色预警 " },
		"message type and status defaults":  func(w *Warning) { w.MsgType, w.Status = "", "" },
	} {
		w := base()
		edit(w)
		if got := w.Fingerprint(); got != fp {
			t.Errorf("%s: fingerprint changed", name)
		}
	}
	for name, edit := range map[string]func(w *Warning){
		"hazard":      func(w *Warning) { w.Hazard = Gale },
		"level":       func(w *Warning) { w.Level = Orange },
		"status":      func(w *Warning) { w.Status = StatusExercise },
		"update":      func(w *Warning) { w.MsgType, w.References = MsgUpdate, []string{"a"} },
		"target":      func(w *Warning) { w.References = []string{"z"} },
		"areas":       func(w *Warning) { w.Areas = w.Areas[:1] },
		"headline":    func(w *Warning) { w.Headline += "！" },
		"description": func(w *Warning) { w.Description = "一二" },
		"instruction": func(w *Warning) { w.Instruction = "" },
		"expiry":      func(w *Warning) { w.Expires = w.Expires.Add(time.Second) },
		"sender":      func(w *Warning) { w.Sender = "other" },
		"translation": func(w *Warning) { w.Translations = []Translation{{Language: "en", Headline: "Red"}} },
	} {
		w := base()
		edit(w)
		if w.Fingerprint() == fp {
			t.Errorf("%s changed, fingerprint did not", name)
		}
	}
}
