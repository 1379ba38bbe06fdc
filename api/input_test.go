package api_test

import (
	"encoding/xml"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/warning"
	"warngate/warning/cap"
)

// fieldMessages maps each field of an error answer to its message.
func fieldMessages(body map[string]any) map[string]string {
	out := map[string]string{}
	e, _ := body["error"].(map[string]any)
	fields, _ := e["fields"].([]any)
	for _, f := range fields {
		m := f.(map[string]any)
		out[m["field"].(string)] = m["message"].(string)
	}
	return out
}

// Control characters and bidirectional overrides are refused, each named
// with its field and position; the line breaks a paste brings are made LF.
func TestTextThatCannotBeSent(t *testing.T) {
	g := newGateway(t, false)
	code, body := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["headline"] = "五华区暴雨红\u202e色预警"
		m["description"] = "预计未来\x003小时"
		m["instruction"] = "停止\x1b[31m户外活动\a"
	}))
	got := fieldMessages(body)
	if code != http.StatusUnprocessableEntity || body["error"].(map[string]any)["code"] != "invalid_warning" || len(got) != 3 ||
		got["headline"] != "character 7 is U+202E (right-to-left override), which cannot be sent; remove it" ||
		got["description"] != "character 5 is U+0000 (null, a control character), which cannot be sent; remove it" ||
		got["instruction"] != "character 3 is U+001B (escape, a control character), which cannot be sent; remove it" {
		t.Fatalf("%d %v", code, body)
	}
	code, body = g.do(t, "POST", "/api/v1/warnings/preview", token, warningBody(func(m map[string]any) { m["headline"] = "预警\u2066" }))
	if code != http.StatusUnprocessableEntity || fieldMessages(body)["headline"] == "" {
		t.Errorf("preview: %d %v", code, body)
	}

	// A Word paste: vertical tab and form feed, Windows line ends.
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["description"] = "第一段\v第二段\f第三段\r\n第四段\r第五段"
	}))
	if code != http.StatusAccepted || w["description"] != "第一段\n第二段\n第三段\n第四段\n第五段" {
		t.Fatalf("%d %q", code, w["description"])
	}
	stored, err := g.ledger.Warning(t.Context(), w["id"].(string))
	if err != nil || stored.Description != w["description"] {
		t.Fatalf("stored %q %v", stored.Description, err)
	}
	doc := getBody(t, g.url+"/api/v1/warnings/"+stored.ID+"/cap", token, http.StatusOK)
	validCAP(t, doc)

	// The same rules for CAP documents: XML carries a right-to-left
	// override, the gateway does not send it.
	src := &warning.Warning{ID: "met-rlo", Hazard: warning.Lightning, Level: warning.Yellow, Status: warning.StatusActual,
		Areas: []string{"530102000000"}, Headline: "雷电黄色‮预警", Issued: time.Now(), Expires: time.Now().Add(time.Hour),
		Translations: []warning.Translation{{Language: "en-US", Headline: "Lightning‭ warning"}}}
	capDoc, err := cap.Encode(src, cap.EncodeOptions{Sender: "kmqx@cma", IdentifierPrefix: "KMQX-"})
	if err != nil {
		t.Fatal(err)
	}
	code, body = g.postCAP(t, capDoc)
	got = fieldMessages(body)
	if code != http.StatusUnprocessableEntity || got["headline"] != "character 5 is U+202E (right-to-left override), which cannot be sent; remove it" ||
		got["translations[0].headline"] != "character 10 is U+202D (left-to-right override), which cannot be sent; remove it" {
		t.Fatalf("CAP import: %d %v", code, body)
	}
}

// Every export answers for every stored warning, whatever its text: one
// stored before the text was checked holds what XML cannot carry, and a
// reference to a warning the ledger does not have.
func TestExportsOfAnyStoredWarning(t *testing.T) {
	g := newGateway(t, false)
	now := time.Now()
	w := &warning.Warning{
		ID: "old-0001", Hazard: warning.Rainstorm, Level: warning.Orange, Status: warning.StatusActual, MsgType: warning.MsgUpdate,
		Areas: []string{"530102000000"}, References: []string{"gone-0001"},
		Headline:     "五华区\x00暴雨\a橙色\x1b预警\v\u202e",
		Description:  "预计\f未来\x7f3小时\uffff有\x01暴雨\xff。",
		Instruction:  "停止\x08户外活动。",
		Translations: []warning.Translation{{Language: "en-US", Headline: "Orange\x0b rainstorm\x00 warning"}},
		Issued:       now, Expires: now.Add(6 * time.Hour), Accepted: now,
	}
	if _, _, err := g.ledger.CreateWarning(t.Context(), w, ""); err != nil {
		t.Fatal(err)
	}
	doc := getBody(t, g.url+"/api/v1/warnings/"+w.ID+"/cap", token, http.StatusOK)
	validCAP(t, doc)
	if !strings.Contains(string(doc), "<headline>五华区暴雨橙色预警\u202e</headline>") {
		t.Errorf("the headline lost more than XML cannot carry:\n%s", doc)
	}
	validCAP(t, getBody(t, g.url+"/public/warnings/"+w.ID+"/cap.xml", "", http.StatusOK))
	atom := getBody(t, g.url+"/public/warnings.atom", "", http.StatusOK)
	if err := xml.Unmarshal(atom, new(struct{})); err != nil || !strings.Contains(string(atom), w.ID) {
		t.Errorf("atom feed: %v\n%s", err, atom)
	}
	if code, pub := g.do(t, "GET", "/public/warnings.json", "", ""); code != 200 || len(pub["warnings"].([]any)) != 1 {
		t.Errorf("json feed: %d %v", code, pub)
	}

	// Lifted, it exports as its Cancel just as well.
	if _, err := g.d.Cancel(t.Context(), w.ID, dispatcher.Actor{User: "admin"}); err != nil {
		t.Fatal(err)
	}
	validCAP(t, getBody(t, g.url+"/public/warnings/"+w.ID+"/cap.xml", "", http.StatusOK))
}

// getBody GETs url with the bearer token (when not "") and returns the body,
// failing unless the status is want.
func getBody(t *testing.T, url, tok string, want int) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("GET %s: %d, want %d: %s", url, resp.StatusCode, want, b)
	}
	return b
}

// The province is outside the city; an area named twice is kept once; an
// expiry beyond seven days is refused, naming the limit.
func TestAreasAndLifetime(t *testing.T) {
	g := newGateway(t, false)
	code, body := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["areas"] = []string{"530102000000", "530000000000", "530102999000"}
	}))
	got := fieldMessages(body)
	if code != http.StatusUnprocessableEntity || len(got) != 2 || !strings.Contains(got["areas[1]"], "530000000000 is 云南省, the province: outside 昆明市 (530100000000)") ||
		!strings.Contains(got["areas[2]"], "530102999000 is not a division of 昆明市 (530100000000)") {
		t.Fatalf("%d %v", code, body)
	}
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["areas"] = []string{"530102000000", "530103000000", "530102000000"}
	}))
	if areas, _ := w["areas"].([]any); code != http.StatusAccepted || len(areas) != 2 || areas[0] != "530102000000" || areas[1] != "530103000000" {
		t.Fatalf("areas named twice: %d %v", code, w)
	}
	code, body = g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["expires"] = time.Now().Add(8 * 24 * time.Hour).Format(time.RFC3339)
	}))
	if code != http.StatusUnprocessableEntity || !strings.Contains(fieldMessages(body)["expires"], "a warning lasts at most 7 days") {
		t.Fatalf("eight days: %d %v", code, body)
	}
	if code, body := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["expires"] = time.Now().Add(7*24*time.Hour - time.Minute).Format(time.RFC3339)
	})); code != http.StatusAccepted {
		t.Fatalf("seven days: %d %v", code, body)
	}

	// A CAP alert for the province (CPEAS 530000) is not Kunming's.
	src := &warning.Warning{ID: "yn-001", Hazard: warning.Rainstorm, Level: warning.Yellow, Status: warning.StatusActual,
		Areas: []string{"530000000000"}, Headline: "云南省暴雨黄色预警", Issued: time.Now(), Expires: time.Now().Add(time.Hour)}
	doc, err := cap.Encode(src, cap.EncodeOptions{Sender: "ynqx@cma", IdentifierPrefix: "YN-"})
	if err != nil {
		t.Fatal(err)
	}
	if code, body := g.postCAP(t, doc); code != http.StatusUnprocessableEntity || body["error"].(map[string]any)["code"] != "out_of_jurisdiction" {
		t.Fatalf("CAP for the province: %d %v", code, body)
	}
}

// Every field of the wrong JSON type is named, and every unknown one, not
// only the first.
func TestWrongJSONTypesNamedTogether(t *testing.T) {
	g := newGateway(t, false)
	for _, tt := range []struct {
		name, body string
		want       map[string]string
	}{
		{"the issue's example", `{"areas":"530102000000","level":3,"headline":7}`, map[string]string{
			"level":    `want a string such as "red" or "Ⅰ", got a number`,
			"areas":    `want an array of division codes such as ["530102000000"], got a string`,
			"headline": "want a string, got a number",
		}},
		{"every kind", `{"hazard":["rainstorm"],"areas":["530102000000",530103000000,null],"description":{},"status":true,
			"expires":1751364000,"Colour":"red","instruction":null,"sender":"kmqx"}`, map[string]string{
			"hazard":      `want a string such as "rainstorm" or "暴雨", got an array`,
			"areas[1]":    `want a division code as a string such as "530102000000", got a number`,
			"areas[2]":    `want a division code as a string such as "530102000000", got null`,
			"description": "want a string, got an object",
			"status":      `want a string: "actual", "exercise" or "test", got a boolean`,
			"expires":     `want a string: RFC 3339 with offset such as "2026-07-01T18:00:00+08:00", got a number`,
			"Colour":      "unknown field; a warning has hazard, level, areas, headline, description, instruction, status, expires and sender",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := g.do(t, "POST", "/api/v1/warnings", token, tt.body)
			got := fieldMessages(body)
			if code != http.StatusBadRequest || body["error"].(map[string]any)["code"] != "malformed_json" || len(got) != len(tt.want) {
				t.Fatalf("%d %v", code, body)
			}
			for f, m := range tt.want {
				if got[f] != m {
					t.Errorf("%s: %q, want %q", f, got[f], m)
				}
			}
		})
	}
	// Field names match in any case, as before; not JSON at all is one error.
	if code, w := g.do(t, "POST", "/api/v1/warnings", token, strings.Replace(warningBody(nil), `"headline"`, `"Headline"`, 1)); code != http.StatusAccepted || w["headline"] != "五华区暴雨红色预警" {
		t.Errorf("Headline: %d %v", code, w)
	}
	if code, body := g.do(t, "POST", "/api/v1/warnings", token, `["a warning"]`); code != http.StatusBadRequest || body["error"].(map[string]any)["code"] != "malformed_json" {
		t.Errorf("an array: %d %v", code, body)
	}
}

// The same Idempotency-Key with the same warning, however spelt, answers
// the first; with another warning it is refused, naming the key and the
// first warning, and nothing more is stored.
func TestIdempotencyKeyWithAnotherBody(t *testing.T) {
	g := newGateway(t, false)
	expires := time.Now().Add(6 * time.Hour).Truncate(time.Second)
	first := `{"hazard":"rainstorm","level":"red","areas":["530102000000","530103000000"],"headline":"五华区暴雨红色预警",
		"description":"预计未来3小时将出现特大暴雨。","status":"actual","expires":"` + expires.Format(time.RFC3339) + `"}`
	code, w1 := g.do(t, "POST", "/api/v1/warnings", token, first, "Idempotency-Key", "kmqx-0701-01")
	if code != http.StatusAccepted {
		t.Fatalf("first: %d %v", code, w1)
	}
	id := w1["id"].(string)
	// Other spacing, field order, area order and an area twice; the same
	// instant in UTC; 暴雨 for rainstorm, Ⅰ for red.
	same := `{ "expires": "` + expires.UTC().Format(time.RFC3339) + `", "status": "actual",
		"description": "预计未来3小时将出现特大暴雨。", "headline": " 五华区暴雨红色预警 ",
		"areas": ["530103000000", "530102000000", "530103000000"], "level": "Ⅰ", "hazard": "暴雨" }`
	if code, w2 := g.do(t, "POST", "/api/v1/warnings", token, same, "Idempotency-Key", "kmqx-0701-01"); code != http.StatusOK || w2["id"] != id {
		t.Fatalf("the same warning again: %d %v", code, w2)
	}
	other := strings.Replace(first, `"530102000000","530103000000"`, `"530111000000"`, 1)
	code, body := g.do(t, "POST", "/api/v1/warnings", token, other, "Idempotency-Key", "kmqx-0701-01")
	e, _ := body["error"].(map[string]any)
	if code != http.StatusUnprocessableEntity || e["code"] != "idempotency_key_reused" || e["field"] != "Idempotency-Key" ||
		!strings.Contains(e["message"].(string), `Idempotency-Key "kmqx-0701-01" was first used for warning `+id+", and this body differs") {
		t.Fatalf("another warning under the key: %d %v", code, body)
	}
	// An update under the key of the warning it updates says something
	// else too (it updates a warning).
	code, body = g.do(t, "POST", "/api/v1/warnings/"+id+"/update", token, first, "Idempotency-Key", "kmqx-0701-01")
	if e, _ := body["error"].(map[string]any); code != http.StatusUnprocessableEntity || e["code"] != "idempotency_key_reused" {
		t.Fatalf("update under the alert's key: %d %v", code, body)
	}
	ids, _ := g.ledger.Warnings(t.Context(), 0, 10)
	if len(ids) != 1 {
		t.Fatalf("%d warnings stored, want the first only", len(ids))
	}
	if w, _ := g.ledger.Warning(t.Context(), id); w.State != warning.StateAccepted {
		t.Fatalf("the first warning is %s", w.State)
	}
}

// A CAP sender's identifier sent again with the same alert answers the
// warning it became; with another alert it is refused, not dropped.
func TestCAPIdentifierReused(t *testing.T) {
	g := newGateway(t, false)
	src := &warning.Warning{ID: "met-002", Hazard: warning.Lightning, Level: warning.Yellow, Status: warning.StatusActual,
		MsgType: warning.MsgAlert, Areas: []string{"530102000000"}, Headline: "昆明市气象台发布雷电黄色预警",
		Description: "预计未来6小时五华区将出现雷电活动。", Issued: time.Now(), Expires: time.Now().Add(6 * time.Hour)}
	doc, err := cap.Encode(src, cap.EncodeOptions{Sender: "kmqx@cma", IdentifierPrefix: "KMQX-"})
	if err != nil {
		t.Fatal(err)
	}
	code, w := g.postCAP(t, doc)
	if code != http.StatusAccepted {
		t.Fatalf("import: %d %v", code, w)
	}
	if code, again := g.postCAP(t, doc); code != http.StatusOK || again["id"] != w["id"] {
		t.Fatalf("the same document again: %d %v", code, again)
	}
	changed := strings.Replace(string(doc), "雷电黄色预警", "雷电橙色预警", 1)
	code, body := g.postCAP(t, []byte(changed))
	e, _ := body["error"].(map[string]any)
	if code != http.StatusUnprocessableEntity || e["code"] != "identifier_reused" || e["field"] != "alert/identifier" ||
		!strings.Contains(e["message"].(string), "kmqx@cma already sent identifier KMQX-met-002, which became warning "+w["id"].(string)) {
		t.Fatalf("another document under the identifier: %d %v", code, body)
	}
	ids, _ := g.ledger.Warnings(t.Context(), 0, 10)
	if len(ids) != 1 {
		t.Fatalf("%d warnings stored, want 1", len(ids))
	}
}
