package api_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warngate/api"
	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/internal/link"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

const token = "test-token"

type gateway struct {
	url    string
	ledger *ledger.Ledger
	d      *dispatcher.Dispatcher
	roster region.Roster
	links  *link.Signer
	sim    *sim.Provider
}

func newGateway(t *testing.T, workers bool) *gateway {
	t.Helper()
	return newGatewayWith(t, workers, region.DemoOptions{ResidentsPerVillage: 4, HouseholdsPerVillage: 2})
}

// newGatewayWith is newGateway on a demo roster of the shape given.
func newGatewayWith(t testing.TB, workers bool, demo region.DemoOptions) *gateway {
	t.Helper()
	return buildGateway(t, workers, demo, nil)
}

// buildGateway is newGatewayWith with the API's options edited last.
func buildGateway(t testing.TB, workers bool, demo region.DemoOptions, edit func(*api.Options)) *gateway {
	t.Helper()
	rdb := redistest.Client(t, redistest.DBAPI)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tree := region.Kunming()
	roster := region.Demo(tree, demo)
	l := ledger.New(rdb, "wg", nil)
	reg := prometheus.NewRegistry()
	var d *dispatcher.Dispatcher
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	// Officials who are called answer at once and press no key: calls are
	// delivered, and confirmations are the tests' own.
	p := sim.New(sim.Config{CallbackURL: srv.URL + "/callbacks/sim", Secret: "sim-secret", Track: true,
		Voice: sim.VoiceConfig{NoAnswer: -1, Silent: true, KeyDelay: 10 * time.Millisecond}}, srv.Client(), log)
	notifiers := map[warning.Channel]channels.Notifier{}
	for _, ch := range warning.Channels {
		notifiers[ch] = p
	}
	links, _ := link.New([]byte("test-link-key-0123456789"), nil)
	ackURL := func(w *warning.Warning, ref warning.Ref) string {
		return srv.URL + "/a/" + links.Token(ref, w.Expires.Add(time.Hour))
	}
	d = dispatcher.New(dispatcher.Config{AckURL: ackURL}, dispatcher.Deps{Redis: rdb, Ledger: l, Policy: policy.Default(), Tree: tree, Roster: roster,
		Checklists: policy.DefaultChecklists(), Notifiers: notifiers, Metrics: dispatcher.NewMetrics(reg), Log: log})
	opts := api.Options{Dispatcher: d, Ledger: l, Tree: tree, Roster: roster,
		Receivers: []api.ReportReceiver{&sim.Receiver{Secret: "sim-secret"}}, AdminToken: token, AdminTokenBypass: []warning.Level{warning.Orange, warning.Red},
		Registry: reg, Log: log, Ready: l.Ping, Links: links}
	if edit != nil {
		edit(&opts)
	}
	handler = api.New(opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if workers {
		go func() { d.Run(ctx); close(done) }()
	} else {
		close(done)
	}
	t.Cleanup(func() { cancel(); <-done; p.Close(); srv.Close() })
	return &gateway{url: srv.URL, ledger: l, d: d, roster: roster, links: links, sim: p}
}

func (g *gateway) do(t testing.TB, method, path, tok, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, g.url+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil && resp.Header.Get("Content-Type") == "application/json; charset=utf-8" {
		t.Fatalf("%s %s: body is not JSON: %s", method, path, b)
	}
	return resp.StatusCode, out
}

func warningBody(edit func(m map[string]any)) string {
	m := map[string]any{
		"hazard": "rainstorm", "level": "red", "areas": []string{"530102000000"},
		"headline": "五华区暴雨红色预警", "description": "预计未来3小时将出现特大暴雨。", "instruction": "停止户外活动。",
		"status": "actual", "expires": time.Now().Add(6 * time.Hour).Format(time.RFC3339),
	}
	if edit != nil {
		edit(m)
	}
	b, _ := json.Marshal(m)
	return string(b)
}

func TestIssueAndWatchProgress(t *testing.T) {
	g := newGateway(t, true)
	code, w := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) { m["level"] = "Ⅰ" }))
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	if w["level"] != "red" || w["level_name"] != "暴雨红色预警（Ⅰ级/特别严重）" {
		t.Errorf("level shown as %v / %v", w["level"], w["level_name"])
	}
	var prog map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, prog = g.do(t, "GET", "/api/v1/warnings/"+id+"/progress", token, "")
		if prog["complete"] == true {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if prog["complete"] != true {
		t.Fatalf("progress never complete: %v", prog["total"])
	}
	total := prog["total"].(map[string]any)
	if total["planned"].(float64) == 0 || total["delivered"] != total["planned"] {
		t.Fatalf("total %v", total)
	}
	divs := prog["divisions"].([]any)
	if len(divs) != 11 {
		t.Errorf("progress lists %d townships, want 五华区's 11", len(divs))
	}
	// By county, with the officials' confirmations, for the map.
	_, acks := g.do(t, "GET", "/api/v1/warnings/"+id+"/acks", token, "")
	_, byCounty := g.do(t, "GET", "/api/v1/warnings/"+id+"/progress?level=county", token, "")
	counties := byCounty["divisions"].([]any)
	if len(counties) != 1 {
		t.Fatalf("by county: %v", counties)
	}
	wh := counties[0].(map[string]any)
	if ak, _ := wh["acks"].(map[string]any); wh["code"] != "530102000000" || wh["planned"] != total["planned"] || ak == nil ||
		ak["expected"] != acks["counts"].(map[string]any)["expected"] || ak["waiting"] != ak["expected"] {
		t.Errorf("五华区 by county: %v; acks %v", wh, acks["counts"])
	}
	chans := prog["channels"].(map[string]any)
	for _, ch := range []string{"wecom", "sms", "wechat", "broadcast", "screen", "calllist"} {
		c, ok := chans[ch].(map[string]any)
		if !ok || c["planned"].(float64) == 0 || c["pending"].(float64) != 0 {
			t.Errorf("channel %s: %v", ch, chans[ch])
		}
	}
	c := g.roster.Counts("530102000000")
	res := prog["audiences"].(map[string]any)["residents"].(map[string]any)
	if want := float64(c.Residents + c.WeChatFollowers); res["planned"] != want {
		t.Errorf("residents planned %v, want %v (sms + wechat)", res["planned"], want)
	}
	code, got := g.do(t, "GET", "/api/v1/warnings/"+id, token, "")
	if code != 200 || got["state"] != "active" {
		t.Errorf("GET warning: %d %v", code, got)
	}
	code, list := g.do(t, "GET", "/api/v1/warnings", token, "")
	if code != 200 || len(list["warnings"].([]any)) != 1 {
		t.Errorf("list: %d %v", code, list)
	}
}

func TestBadInputIsRefusedAndNothingEnqueued(t *testing.T) {
	g := newGateway(t, false)
	tests := []struct {
		name, tok, body string
		status          int
		code, field     string
	}{
		{"no token", "", warningBody(nil), 401, "unauthenticated", "Authorization"},
		{"wrong token", "nope", warningBody(nil), 401, "unauthenticated", "Authorization"},
		{"malformed json", token, `{"hazard":`, 400, "malformed_json", ""},
		{"unknown field", token, warningBody(func(m map[string]any) { m["colour"] = "red" }), 400, "malformed_json", "colour"},
		{"wrong type", token, warningBody(func(m map[string]any) { m["areas"] = "530102000000" }), 400, "malformed_json", "areas"},
		{"unknown hazard", token, warningBody(func(m map[string]any) { m["hazard"] = "volcano" }), 422, "invalid_warning", "hazard"},
		{"unknown level", token, warningBody(func(m map[string]any) { m["level"] = "purple" }), 422, "invalid_warning", "level"},
		{"unknown area", token, warningBody(func(m map[string]any) { m["areas"] = []string{"530102999000"} }), 422, "invalid_warning", "areas[0]"},
		{"short area", token, warningBody(func(m map[string]any) { m["areas"] = []string{"5301"} }), 422, "invalid_warning", "areas[0]"},
		{"past expiry", token, warningBody(func(m map[string]any) { m["expires"] = "2020-01-01T00:00:00+08:00" }), 422, "invalid_warning", "expires"},
		{"bad expiry", token, warningBody(func(m map[string]any) { m["expires"] = "tomorrow" }), 422, "invalid_warning", "expires"},
		{"bad status", token, warningBody(func(m map[string]any) { m["status"] = "maybe" }), 422, "invalid_warning", "status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := g.do(t, "POST", "/api/v1/warnings", tt.tok, tt.body)
			if code != tt.status {
				t.Fatalf("status %d, want %d: %v", code, tt.status, body)
			}
			e, ok := body["error"].(map[string]any)
			if !ok || e["code"] != tt.code || e["message"] == "" {
				t.Fatalf("error %v, want code %s", body, tt.code)
			}
			if tt.field != "" && e["field"] != tt.field {
				t.Fatalf("field %v, want %s (message: %v)", e["field"], tt.field, e["message"])
			}
		})
	}
	// Every problem at once.
	_, body := g.do(t, "POST", "/api/v1/warnings", token, warningBody(func(m map[string]any) {
		m["level"] = "purple"
		m["headline"] = ""
		m["expires"] = "2020-01-01T00:00:00Z"
	}))
	fields := body["error"].(map[string]any)["fields"].([]any)
	if len(fields) != 3 {
		t.Errorf("want level, headline and expires reported together, got %v", fields)
	}
	ids, _ := g.ledger.Warnings(context.Background(), 0, 10)
	n, _ := g.d.Backlog(context.Background())
	if len(ids) != 0 || n != 0 {
		t.Fatalf("refused warnings left %d warnings and %d tasks", len(ids), n)
	}
}

func TestIdempotencyKey(t *testing.T) {
	g := newGateway(t, false)
	body := warningBody(nil)
	c1, w1 := g.do(t, "POST", "/api/v1/warnings", token, body, "Idempotency-Key", "bureau-2026-0001")
	c2, w2 := g.do(t, "POST", "/api/v1/warnings", token, body, "Idempotency-Key", "bureau-2026-0001")
	if c1 != 202 || c2 != 200 || w1["id"] != w2["id"] {
		t.Fatalf("first %d %v, second %d %v", c1, w1["id"], c2, w2["id"])
	}
	ids, _ := g.ledger.Warnings(context.Background(), 0, 10)
	if len(ids) != 1 {
		t.Fatalf("%d warnings stored, want 1", len(ids))
	}
}

func TestRegions(t *testing.T) {
	g := newGateway(t, false)
	code, r := g.do(t, "GET", "/api/v1/regions/530102000000", token, "")
	if code != 200 {
		t.Fatalf("%d %v", code, r)
	}
	if n := len(r["children"].([]any)); n != 11 {
		t.Errorf("五华区 has %d children, want 11", n)
	}
	counts := r["division"].(map[string]any)["counts"].(map[string]any)
	if counts["loudspeakers"] != float64(101) {
		t.Errorf("counts %v", counts)
	}
	if code, _ := g.do(t, "GET", "/api/v1/regions/530102999999", token, ""); code != 404 {
		t.Errorf("unknown code: %d", code)
	}
	code, s := g.do(t, "GET", "/api/v1/regions?q=五华", token, "")
	if code != 200 || len(s["divisions"].([]any)) == 0 {
		t.Errorf("search: %d %v", code, s)
	}
}

func TestForgedCallbackChangesNothing(t *testing.T) {
	g := newGateway(t, false)
	body := "w1/sms/r1\tdelivered\tx\t0\t\n"
	resp, err := http.Post(g.url+"/callbacks/sim", "text/tab-separated-values", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged callback: %d", resp.StatusCode)
	}
	p, _ := g.ledger.Progress(context.Background(), "w1")
	if len(p.Channels) != 0 {
		t.Fatalf("forged callback changed progress: %v", p.Channels)
	}
	mresp, _ := http.Get(g.url + "/metrics")
	m, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(m), `warngate_callbacks_total{outcome="rejected",provider="sim"} 1`) {
		t.Errorf("rejected callback not counted")
	}
}

func TestHealthAndErrors(t *testing.T) {
	g := newGateway(t, false)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := g.do(t, "GET", path, "", ""); code != 200 {
			t.Errorf("%s: %d", path, code)
		}
	}
	code, body := g.do(t, "GET", "/api/v1/nothing", token, "")
	if code != 404 || body["error"].(map[string]any)["code"] != "not_found" {
		t.Errorf("unknown path: %d %v", code, body)
	}
	code, _ = g.do(t, "GET", "/api/v1/warnings/nope", token, "")
	if code != 404 {
		t.Errorf("unknown warning: %d", code)
	}
}

// What the preview says a warning's SMS cost is what /progress bills once
// they went out: the same text (signature, instruction, an official's
// link), its parts counted per recipient. The issue form's counter gives
// the same text for a resident and an official.
func TestPreviewedSMSIsWhatIsBilled(t *testing.T) {
	g := newGateway(t, true)
	body := warningBody(func(m map[string]any) {
		m["description"] = "预计未来3小时五华区将出现100毫米以上降雨，局地伴有雷电和短时大风。"
		m["instruction"] = "停止户外活动，远离河道和低洼地带，危险区域人员立即转移。"
	})
	code, pv := g.do(t, "POST", "/api/v1/warnings/preview", token, body)
	if code != http.StatusOK {
		t.Fatalf("preview: %d %v", code, pv)
	}
	sms := pv["sms"].(map[string]any)
	resident, official := sms["resident"].(map[string]any), sms["official"].(map[string]any)
	if !strings.HasPrefix(resident["text"].(string), "【昆明市应急管理局】五华区暴雨红色预警：") || resident["parts"] != 2.0 ||
		resident["chars"].(float64) != float64(len([]rune(resident["text"].(string)))) {
		t.Errorf("a resident's SMS: %v", resident)
	}
	if text := official["text"].(string); !strings.Contains(text, g.url+"/a/***") || strings.ContainsAny(text[strings.Index(text, "/a/"):], ".") ||
		official["parts"].(float64) <= resident["parts"].(float64) {
		t.Errorf("an official's SMS, its link masked: %v", official)
	}
	code, counter := g.do(t, "POST", "/api/v1/warnings/sms", token, body)
	if code != http.StatusOK || counter["resident"].(map[string]any)["text"] != resident["text"] ||
		counter["official"].(map[string]any)["parts"] != official["parts"] {
		t.Errorf("the form's counter: %d %v; the preview: %v", code, counter, sms)
	}

	code, w := g.do(t, "POST", "/api/v1/warnings", token, body)
	if code != http.StatusAccepted {
		t.Fatalf("POST: %d %v", code, w)
	}
	var prog map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, prog = g.do(t, "GET", "/api/v1/warnings/"+w["id"].(string)+"/progress", token, "")
		if prog["complete"] == true {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	bill := prog["channels"].(map[string]any)["sms"].(map[string]any)["billing"].(map[string]any)["default"].(map[string]any)
	if bill["messages"] != sms["messages"] || bill["segments"] != sms["parts"] || sms["parts"].(float64) < 2*sms["messages"].(float64) {
		t.Errorf("billed %v; the preview said %v messages in %v parts", bill, sms["messages"], sms["parts"])
	}
}
