package screen_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/screen"
	"warngate/channels/screen/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	appKey    = "ak-2026-kunming"
	appSecret = "as-0123456789abcdef-secret"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func config(endpoint string) screen.Config {
	c := screen.DefaultConfig()
	c.Endpoint, c.AppKey, c.AppSecret, c.Timeout = endpoint, appKey, appSecret, 2*time.Second
	return c
}

// testBatch is the sample warning's batch for the screens players.
func testBatch(players ...string) *channels.Batch {
	return channeltest.ChannelBatch(warning.Screen, warning.Screens, players...)
}

// serve starts the fake cloud, closed when t ends, and returns it with
// its server.
func serve(t *testing.T, cfg fake.Config, hc *http.Client) (*fake.Server, *httptest.Server) {
	t.Helper()
	cfg.AppKey, cfg.AppSecret = appKey, appSecret
	f := fake.New(cfg, hc, quiet())
	t.Cleanup(f.Close)
	return f, channeltest.Serve(t, f)
}

func TestScreenWithFake(t *testing.T) {
	s := &channeltest.Sink{Provider: "screen", AwaitIndex: true}
	rc, err := screen.NewReceiver(config("https://unused.example"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	cb := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rc.ServeReports(w, r, s) }))
	f, srv := serve(t, fake.Config{Players: []string{"p1", "p2", "p3", "p4"}, Offline: []string{"p3"}, FailPlay: []string{"p4"},
		CallbackURL: cb.URL + "/callbacks/screen", ReportDelay: 10 * time.Millisecond, Record: true}, cb.Client())

	sc, err := screen.New(config(srv.URL), srv.Client(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if sc.Provider() != "screen" {
		t.Errorf("provider %s", sc.Provider())
	}
	b := testBatch("p1", "p2", "p3", "p4", "p404", "")
	rs, retry, err := sc.Notify(context.Background(), b)
	if err != nil {
		t.Fatalf("%v %v", err, retry)
	}
	task := screen.TaskID(b)
	channeltest.CheckReceipts(t, rs, "SSFSFF", map[int]string{2: "屏幕离线", 4: "设备不存在", 5: "设备不存在"})
	for _, rc := range rs {
		if rc.State == warning.Sent && rc.ProviderID != task+":"+b.Recipients[rc.Index].Address {
			t.Errorf("provider id %q", rc.ProviderID)
		}
	}
	ins := f.Insertions()
	if len(ins) != 1 {
		t.Fatalf("insertions %+v", ins)
	}
	want := fake.Insertion{Task: task, Players: []string{"p1", "p2", "p4"}, DurationMS: 1800000, BackgroundColor: "#FF0000", SpotsType: "IMMEDIATELY",
		Lines: []string{"五华区暴雨红色预警", "暴雨红色预警（Ⅰ级/特别严重）", "预计未来3小时五华区将出现100毫米以上降雨。", "防御指引：停止户外活动，远离河道和低洼地带。"}}
	if !reflect.DeepEqual(ins[0], want) {
		t.Errorf("insertion\n%+v\nwant\n%+v", ins[0], want)
	}
	s.Index(b, rs)
	channeltest.WaitFor(t, "play logs", func() bool { return len(s.Reports()) == 3 })
	by := s.ByRef()
	if by[b.Ref(0)].State != warning.Delivered || by[b.Ref(1)].State != warning.Delivered {
		t.Errorf("reports %+v", by)
	}
	if r := by[b.Ref(3)]; r.State != warning.Failed || r.Reason != "模组故障" {
		t.Errorf("failed play %+v", r)
	}

	if retry, err := sc.Cancel(context.Background(), []string{"p1", "p2"}); err != nil {
		t.Fatalf("cancel %v %v", retry, err)
	}
	if !f.Insertions()[0].Cancelled {
		t.Error("insertion not cancelled")
	}
	if retry, err := sc.Cancel(context.Background(), []string{"p3"}); err == nil || !retry {
		t.Errorf("cancel on an offline player: %v %v", retry, err)
	}
}

// TestDuration is cut at the warning's expiry; an expired warning shows nothing.
func TestDuration(t *testing.T) {
	f, srv := serve(t, fake.Config{Record: true}, http.DefaultClient)
	sc, _ := screen.New(config(srv.URL), srv.Client(), quiet())
	b := testBatch("p1")
	b.Warning.Expires = time.Now().Add(10 * time.Minute)
	b.Warning.Level = warning.Yellow
	if _, _, err := sc.Notify(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	ins := f.Insertions()[0]
	if ins.DurationMS > 600000 || ins.DurationMS < 590000 || ins.BackgroundColor != "#FFD700" {
		t.Errorf("insertion %+v", ins)
	}
	b.Warning.Expires = time.Now().Add(-time.Minute)
	if _, retry, err := sc.Notify(context.Background(), b); err == nil || retry {
		t.Errorf("expired warning: %v %v", err, retry)
	}
}

// TestRequest checks path, headers and body independently of the adapter.
func TestRequest(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var bodies []map[string]any
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		h := r.Header
		if r.URL.Path != "/v2/player/emergency-program/page" || r.Method != "POST" || h.Get("AppKey") != appKey ||
			h.Get("CheckSum") != fake.CheckSum(appSecret, h.Get("Nonce"), h.Get("CurTime")) || h.Get("Content-Type") != "application/json" {
			t.Errorf("request %s %s %v", r.Method, r.URL.Path, h)
		}
		if cur, _ := strconv.ParseInt(h.Get("CurTime"), 10, 64); time.Since(time.Unix(cur, 0)).Abs() > time.Minute {
			t.Errorf("CurTime %s", h.Get("CurTime"))
		}
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		bodies = append(bodies, m)
		mu.Unlock()
		ids := m["playerIds"].([]any)
		json.NewEncoder(w).Encode(map[string]any{"success": ids, "fail": []string{}})
	}))
	sc, _ := screen.New(config(srv.URL+"/"), srv.Client(), quiet())
	players := make([]string, 250)
	for i := range players {
		players[i] = fmt.Sprintf("player%03d", i)
	}
	rs, _, err := sc.Notify(context.Background(), testBatch(players...))
	if err != nil || len(rs) != 250 {
		t.Fatalf("%d receipts %v", len(rs), err)
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls for 250 players, want 3", calls.Load())
	}
	first := bodies[0]
	if n := len(first["playerIds"].([]any)); n != 100 {
		t.Errorf("first call has %d players", n)
	}
	attr := first["attribute"].(map[string]any)
	if attr["spotsType"] != "IMMEDIATELY" || attr["normalProgramStatus"] != "PAUSE" || attr["duration"] != 1800000.0 || attr["backgroundColor"] != "#FF0000" {
		t.Errorf("attribute %v", attr)
	}
	pg := first["page"].(map[string]any)
	wd := pg["widgets"].([]any)[0].(map[string]any)
	line0 := wd["lines"].([]any)[0].(map[string]any)["textAttributes"].([]any)[0].(map[string]any)
	if pg["name"] != screen.TaskID(testBatch("x")) || wd["type"] != "ARCH_TEXT" || wd["displayType"] != "STATIC" ||
		line0["content"] != "五华区暴雨红色预警" || line0["textColor"] != "#FFFFFF" || line0["isBold"] != true {
		t.Errorf("page %v", pg)
	}
	if lay := wd["layout"].(map[string]any); lay["width"] != "100%" || lay["height"] != "100%" {
		t.Errorf("layout %v", lay)
	}
}

func TestErrorClassification(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    bool
		retry  bool
	}{
		{"ok", 200, `{"success":["p1"],"fail":[]}`, false, false},
		{"500", 500, `{"status":500}`, true, true},
		{"503", 503, ``, true, true},
		{"429", 429, ``, true, true},
		{"401", 401, `{"status":401,"message":"CheckSum verification failed"}`, true, false},
		{"400", 400, `{"status":400,"message":"playerIds"}`, true, false},
		{"2xx garbage is taken as sent", 200, `oops`, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := channeltest.Serve(t, channeltest.Answer(tt.status, tt.body))
			sc, _ := screen.New(config(srv.URL), srv.Client(), quiet())
			rs, retry, err := sc.Notify(context.Background(), testBatch("p1"))
			if (err != nil) != tt.err || retry != tt.retry {
				t.Fatalf("err %v retry %v", err, retry)
			}
			if !tt.err && (len(rs) != 1 || rs[0].State != warning.Sent || rs[0].ProviderID == "") {
				t.Errorf("receipts %+v", rs)
			}
			if err != nil && strings.Contains(err.Error(), appSecret) {
				t.Errorf("secret in error: %v", err)
			}
		})
	}
}

// TestPartialChunks returns the receipts of chunks sent before a failure.
func TestPartialChunks(t *testing.T) {
	var n atomic.Int32
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ PlayerIDs []string }
		json.NewDecoder(r.Body).Decode(&m)
		if n.Add(1) == 2 {
			w.WriteHeader(502)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"success": m.PlayerIDs, "fail": []string{}})
	}))
	sc, _ := screen.New(config(srv.URL), srv.Client(), quiet())
	players := make([]string, 150)
	for i := range players {
		players[i] = fmt.Sprintf("player%03d", i)
	}
	rs, retry, err := sc.Notify(context.Background(), testBatch(players...))
	if err == nil || !retry || len(rs) != 100 {
		t.Errorf("%d receipts, retry %v, err %v", len(rs), retry, err)
	}
}

func TestReceiver(t *testing.T) {
	rc, err := screen.NewReceiver(config("https://unused.example"), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if rc.Name() != "screen" {
		t.Errorf("name %s", rc.Name())
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.Screen, RecipientID: "s0"}
	logs := func(status, reason string) string {
		return fmt.Sprintf(`{"logs":[{"playerId":"p1","programName":"wg-t","status":%q,"reason":%q,"timestamp":1782871200000},{"playerId":"px","programName":"wg-t","status":"PLAYED"}]}`, status, reason)
	}
	signed := func(body, key, secret string, age time.Duration, nonce string) *http.Request {
		r := httptest.NewRequest("POST", "/callbacks/screen", strings.NewReader(body))
		cur := strconv.FormatInt(time.Now().Add(-age).Unix(), 10)
		r.Header.Set("AppKey", key)
		r.Header.Set("Nonce", nonce)
		r.Header.Set("CurTime", cur)
		r.Header.Set("CheckSum", fake.CheckSum(secret, nonce, cur))
		return r
	}
	tests := []struct {
		name   string
		req    *http.Request
		code   int
		state  warning.DeliveryState
		reason string
		noSink bool
		fail   error
	}{
		{name: "played", req: signed(logs("PLAYED", ""), appKey, appSecret, 0, "n1"), code: 200, state: warning.Delivered},
		{name: "failed", req: signed(logs("FAILED", "模组故障"), appKey, appSecret, 0, "n2"), code: 200, state: warning.Failed, reason: "模组故障"},
		{name: "failed without reason", req: signed(logs("FAILED", ""), appKey, appSecret, 0, "n3"), code: 200, state: warning.Failed, reason: "播放失败"},
		{name: "playing reports nothing", req: signed(strings.Replace(logs("PLAYING", ""), `"status":"PLAYED"`, `"status":"DOWNLOADING"`, 1), appKey, appSecret, 0, "n4"), code: 200, noSink: true},
		{name: "forged", req: signed(logs("PLAYED", ""), appKey, "guessed-secret", 0, "n5"), code: 403, noSink: true},
		{name: "other account", req: signed(logs("PLAYED", ""), "ak-other", appSecret, 0, "n6"), code: 403, noSink: true},
		{name: "stale", req: signed(logs("PLAYED", ""), appKey, appSecret, time.Hour, "n7"), code: 403, noSink: true},
		{name: "replayed nonce", req: signed(logs("PLAYED", ""), appKey, appSecret, 0, "n1"), code: 403, noSink: true},
		{name: "unsigned", req: httptest.NewRequest("POST", "/callbacks/screen", strings.NewReader(logs("PLAYED", ""))), code: 403, noSink: true},
		{name: "not recorded", req: signed(logs("PLAYED", ""), appKey, appSecret, 0, "n8"), code: 503, fail: errors.New("redis down")},
		{name: "malformed", req: signed(`{"logs":`, appKey, appSecret, 0, "n9"), code: 400, noSink: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &channeltest.Sink{Provider: "screen", IDs: map[string]warning.Ref{"wg-t:p1": ref}, FailRecord: tt.fail}
			w := httptest.NewRecorder()
			rc.ServeReports(w, tt.req, s)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			if tt.noSink && s.Calls() != 0 {
				t.Errorf("sink called %d times", s.Calls())
			}
			var want *warning.Report
			if tt.state != 0 {
				want = &warning.Report{Ref: ref, State: tt.state, Reason: tt.reason, ProviderID: "wg-t:p1", At: time.UnixMilli(1782871200000)}
			}
			s.CheckReport(t, want)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := screen.New(screen.Config{Endpoint: "vnnox", Duration: time.Second, Colors: map[string]string{"red": "red", "green": "#00FF00"}}, http.DefaultClient, quiet())
	channeltest.CheckErrorHas(t, err,
		`screen.endpoint: "vnnox" is not an http(s) URL`,
		"screen.app_key: required",
		"screen.app_secret: required",
		"screen.duration: 1s",
		`screen.colors.red: "red" is not a colour`,
		`unknown level "green"`)
	c := config("https://x")
	channeltest.CheckSecretsHidden(t, "screen", &c, appSecret)
	c.AppSecretFile = "/etc/as"
	_, err = screen.New(c, http.DefaultClient, quiet())
	channeltest.CheckErrorHas(t, err, "give one, not both")
}
