package broadcast_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/broadcast"
	"warngate/channels/broadcast/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	platformID = "35301020000000000101"
	key        = "shared-key-0123456789abcdef"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func config(endpoint string) broadcast.Config {
	c := broadcast.DefaultConfig()
	c.Endpoint = endpoint
	c.PlatformID = platformID
	c.Key = key
	c.SenderCode = "53010000000000"
	c.Timeout = 2 * time.Second
	return c
}

// testBatch is an exercise's batch for loudspeakers at devices, in two
// divisions, played three times, in force for three more hours.
func testBatch(devices ...string) *channels.Batch {
	b := channeltest.ChannelBatch(warning.Broadcast, warning.Loudspeakers, devices...)
	b.Warning.Status = warning.StatusExercise
	b.Warning.Expires = time.Now().Add(3 * time.Hour)
	b.Repeat = 3
	b.AckURL = func(r warning.Recipient) string { return "https://x/a/" + r.ID }
	for i := range b.Recipients {
		b.Recipients[i].Division = fmt.Sprintf("5301020010%02d", 1+i%2)
	}
	return b
}

// setup starts a receiver behind a callback server and the fake platform.
func setup(t *testing.T, fc fake.Config) (*fake.Server, *httptest.Server, *channeltest.Sink) {
	t.Helper()
	s := &channeltest.Sink{Provider: "broadcast", AwaitIndex: true}
	rc, err := broadcast.NewReceiver(config("https://unused.example"), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	cb := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rc.ServeReports(w, r, s) }))
	fc.PlatformID, fc.Key, fc.CallbackURL = platformID, key, cb.URL+"/callbacks/broadcast"
	if fc.ReportDelay == 0 {
		fc.ReportDelay = 10 * time.Millisecond
	}
	f := fake.New(fc, cb.Client(), quiet())
	t.Cleanup(f.Close)
	return f, channeltest.Serve(t, f), s
}

func TestBroadcastWithFake(t *testing.T) {
	f, srv, s := setup(t, fake.Config{Devices: []string{"EB-001", "EB-002", "EB-003"}, Offline: []string{"EB-003"}, Record: true})
	p, err := broadcast.New(config(srv.URL+"/api/v1"), srv.Client(), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if p.Provider() != "broadcast" {
		t.Errorf("provider %q", p.Provider())
	}
	b := testBatch("EB-001", "EB-002", "EB-003", "EB-404", "")
	rs, retry, err := p.Notify(context.Background(), b)
	if err != nil {
		t.Fatalf("notify: %v (retry %v)", err, retry)
	}
	channeltest.CheckReceipts(t, rs, "SSSFF", map[int]string{3: "设备不存在", 4: "设备不存在"})
	msgID, _ := broadcast.SplitProviderID(rs[0].ProviderID)
	for i, rc := range rs[:3] {
		if rc.ProviderID != msgID+":"+b.Recipients[i].Address {
			t.Errorf("receipt %d provider id %q", i, rc.ProviderID)
		}
	}
	m := f.Messages()
	if len(m) != 1 {
		t.Fatalf("messages %+v", m)
	}
	got := m[0]
	if got.Severity != 1 || got.EventType != "11B03" || got.PlayTimes != 3 || got.Priority != 1 || got.SenderName != "昆明市应急管理局" ||
		got.AreaCode != "530102001001,530102001002" || got.Title != "【演练】五华区暴雨红色预警" ||
		got.Text != "【演练】五华区暴雨红色预警：预计未来3小时五华区将出现100毫米以上降雨。 防御指引：停止户外活动，远离河道和低洼地带。" {
		t.Errorf("message %+v", got)
	}
	end, err := time.ParseInLocation("2006-01-02 15:04:05", got.EndTime, time.FixedZone("CST", 8*3600))
	if err != nil || end.Sub(b.Warning.Expires).Abs() > time.Second {
		t.Errorf("EndTime %s, warning expires %s", got.EndTime, b.Warning.Expires)
	}

	s.Index(b, rs)
	channeltest.WaitFor(t, "three play reports", func() bool { return len(s.Reports()) == 3 })
	channeltest.WaitFor(t, "all callbacks", func() bool { return f.ReportsSent() == 5 })
	by := s.ByRef()
	if by[b.Ref(0)].State != warning.Delivered || by[b.Ref(1)].State != warning.Delivered {
		t.Errorf("reports %+v", by)
	}
	if r := by[b.Ref(2)]; r.State != warning.Failed || r.Reason != "设备离线" {
		t.Errorf("offline report %+v", r)
	}
	if len(s.Reports()) != 3 {
		t.Errorf("started plays reported: %+v", s.Reports())
	}

	// The same batch again (an answer lost) plays nothing twice.
	rs2, _, err := p.Notify(context.Background(), b)
	if err != nil || rs2[0].ProviderID != rs[0].ProviderID {
		t.Fatalf("resend %+v %v", rs2, err)
	}
	if m := f.Messages(); len(m[1].Devices) != 0 {
		t.Errorf("resend played %v", m[1].Devices)
	}
}

func TestCancel(t *testing.T) {
	f, srv, s := setup(t, fake.Config{ReportDelay: 10 * time.Millisecond, PlayTime: 300 * time.Millisecond, Record: true})
	p, err := broadcast.New(config(srv.URL), srv.Client(), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	b := testBatch("EB-001")
	rs, _, err := p.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	s.Index(b, rs)
	msgID, device := broadcast.SplitProviderID(rs[0].ProviderID)
	if device != "EB-001" {
		t.Errorf("device %q", device)
	}
	if retry, err := p.Cancel(context.Background(), msgID); err != nil {
		t.Fatalf("cancel: %v %v", retry, err)
	}
	channeltest.WaitFor(t, "cancel report", func() bool { return len(s.Reports()) == 1 })
	if r := s.Reports()[0]; r.State != warning.Failed || r.Reason != "播发取消" {
		t.Errorf("report %+v", r)
	}
	m := f.Messages()
	if m[len(m)-1].MsgType != 2 || m[len(m)-1].RelatedEBM != msgID {
		t.Errorf("cancel message %+v", m[len(m)-1])
	}
	if retry, err := p.Cancel(context.Background(), "nope"); err == nil || retry || !strings.Contains(err.Error(), "查找不到该EBMID") {
		t.Errorf("unknown message: %v %v", retry, err)
	}
}

// TestRequest checks path, headers, signature and body independently of
// the adapter's signer.
func TestRequest(t *testing.T) {
	var body []byte
	var hdr http.Header
	var path string
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		hdr, path = r.Header.Clone(), r.URL.Path
		io.WriteString(w, `{"ResultCode":1,"ResultDesc":"执行成功","EBMID":"E1"}`)
	}))
	p, err := broadcast.New(config(srv.URL+"/api/v1/"), srv.Client(), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	b := testBatch("EB-001")
	b.Repeat = 0
	b.Warning.Level = warning.Yellow
	b.Warning.Hazard = warning.GeoHazard
	if _, _, err := p.Notify(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if path != "/api/v1/ebm" || hdr.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("path %s, content type %s", path, hdr.Get("Content-Type"))
	}
	want := fake.Sign(key, "POST", "/api/v1/ebm", platformID, hdr.Get("X-EB-Timestamp"), hdr.Get("X-EB-Nonce"), body)
	if hdr.Get("X-EB-Signature") != want || hdr.Get("X-EB-Platform") != platformID {
		t.Errorf("signature headers %v", hdr)
	}
	ts, _ := strconv.ParseInt(hdr.Get("X-EB-Timestamp"), 10, 64)
	if time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("timestamp %d", ts)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	ebm := m["EBM"].(map[string]any)
	info := ebm["MsgBasicInfo"].(map[string]any)
	content := ebm["MsgContent"].(map[string]any)
	params := m["Params"].(map[string]any)
	checks := map[string][2]any{
		"EBDType":      {m["EBDType"], "EBM"},
		"SRC.EBRID":    {m["SRC"].(map[string]any)["EBRID"], platformID},
		"MsgType":      {info["MsgType"], 1.0},
		"SenderCode":   {info["SenderCode"], "53010000000000"},
		"EventType":    {info["EventType"], "11D00"},
		"Severity":     {info["Severity"], 3.0},
		"LanguageCode": {content["LanguageCode"], "zho"},
		"AreaCode":     {content["AreaCode"], "530102001001"},
		"Dispatch":     {fmt.Sprint(ebm["Dispatch"].(map[string]any)["EBRID"]), "[EB-001]"},
		"PlayTimes":    {params["PlayTimes"], 1.0},
		"Priority":     {params["Priority"], 3.0},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %v, want %v", name, c[0], c[1])
		}
	}
	if desc, _ := content["MsgDesc"].(string); strings.Contains(desc, "https://") || strings.Contains(desc, "确认") {
		t.Errorf("TTS text asks to confirm: %s", desc)
	}
	if id, _ := m["EBDID"].(string); len(id) < 10 {
		t.Errorf("EBDID %q", id)
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
		{"ok", 200, `{"ResultCode":1,"ResultDesc":"执行成功","EBMID":"E1"}`, false, false},
		{"busy 503", 503, `{"ResultCode":5}`, true, true},
		{"429", 429, ``, true, true},
		{"bad signature 401", 401, `{"ResultCode":4,"ResultDesc":"签名验证失败"}`, true, false},
		{"400", 400, `{"ResultCode":2}`, true, false},
		{"format", 200, `{"ResultCode":3,"ResultDesc":"内容格式校验失败：MsgBasicInfo.Severity"}`, true, false},
		{"signature result", 200, `{"ResultCode":4,"ResultDesc":"签名验证失败"}`, true, false},
		{"other", 200, `{"ResultCode":5,"ResultDesc":"其他错误"}`, true, false},
		{"2xx garbage is taken as sent", 200, `<html>`, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := channeltest.Serve(t, channeltest.Answer(tt.status, tt.body))
			p, err := broadcast.New(config(srv.URL), srv.Client(), nil, quiet())
			if err != nil {
				t.Fatal(err)
			}
			rs, retry, err := p.Notify(context.Background(), testBatch("EB-001", "EB-002"))
			if (err != nil) != tt.err || retry != tt.retry {
				t.Fatalf("err %v retry %v", err, retry)
			}
			if !tt.err && (len(rs) != 2 || rs[0].State != warning.Sent) {
				t.Errorf("receipts %+v", rs)
			}
			if err != nil && strings.Contains(err.Error(), key) {
				t.Errorf("key in error: %v", err)
			}
		})
	}
	// Transport errors are retried.
	p, _ := broadcast.New(config(channeltest.ClosedURL(t)), &http.Client{Timeout: time.Second}, nil, quiet())
	if _, retry, err := p.Notify(context.Background(), testBatch("EB-001")); err == nil || !retry {
		t.Errorf("connection refused: %v %v", err, retry)
	}
}

func TestReceiver(t *testing.T) {
	rc, err := broadcast.NewReceiver(config("https://unused.example"), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if rc.Name() != "broadcast" {
		t.Errorf("name %s", rc.Name())
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.Broadcast, RecipientID: "dev0"}
	item := func(code int, desc string) string {
		return fmt.Sprintf(`{"EBDType":"EBMStateResponse","RptTime":"2026-07-01 10:00:05","EBM":{"EBMID":"E1"},"ResBrdInfo":[{"EBRID":"EB-001","BrdStateCode":%d,"BrdStateDesc":%q,"RptTime":"2026-07-01 10:00:04"},{"EBRID":"EB-999","BrdStateCode":3}]}`, code, desc)
	}
	signed := func(body, k string, age time.Duration, nonce string) *http.Request {
		r := httptest.NewRequest("POST", "/callbacks/broadcast", strings.NewReader(body))
		ts := strconv.FormatInt(time.Now().Add(-age).Unix(), 10)
		r.Header.Set("X-EB-Platform", platformID)
		r.Header.Set("X-EB-Timestamp", ts)
		r.Header.Set("X-EB-Nonce", nonce)
		r.Header.Set("X-EB-Signature", fake.Sign(k, "POST", "/callbacks/broadcast", platformID, ts, nonce, []byte(body)))
		return r
	}
	tests := []struct {
		name   string
		req    *http.Request
		code   int
		state  warning.DeliveryState // 0: no report
		reason string
		noSink bool
		fail   error
	}{
		{name: "finished", req: signed(item(3, "播发成功"), key, 0, "n1"), code: 200, state: warning.Delivered},
		{name: "failed", req: signed(item(4, "设备离线"), key, 0, "n2"), code: 200, state: warning.Failed, reason: "设备离线"},
		{name: "failed without reason", req: signed(item(4, ""), key, 0, "n3"), code: 200, state: warning.Failed, reason: "播发失败"},
		{name: "cancelled", req: signed(item(5, "播发取消"), key, 0, "n4"), code: 200, state: warning.Failed, reason: "播发取消"},
		{name: "started reports nothing", req: signed(strings.Replace(item(2, "播发中"), `"BrdStateCode":3`, `"BrdStateCode":2`, 1), key, 0, "n5"), code: 200, noSink: true},
		{name: "forged", req: signed(item(3, ""), "not-the-key-0123456789", 0, "n6"), code: 403, noSink: true},
		{name: "stale", req: signed(item(3, ""), key, time.Hour, "n7"), code: 403, noSink: true},
		{name: "replayed nonce", req: signed(item(3, ""), key, 0, "n1"), code: 403, noSink: true},
		{name: "unsigned", req: httptest.NewRequest("POST", "/callbacks/broadcast", strings.NewReader(item(3, ""))), code: 403, noSink: true},
		{name: "not recorded", req: signed(item(3, ""), key, 0, "n8"), code: 503, fail: errors.New("redis down")},
		{name: "malformed", req: signed(`{"EBM":`, key, 0, "n9"), code: 400, noSink: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &channeltest.Sink{Provider: "broadcast", IDs: map[string]warning.Ref{"E1:EB-001": ref}, FailRecord: tt.fail}
			w := httptest.NewRecorder()
			rc.ServeReports(w, tt.req, s)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			var ans struct{ ResultCode int }
			json.Unmarshal(w.Body.Bytes(), &ans)
			if (tt.code == 200) != (ans.ResultCode == 1) {
				t.Errorf("answer %s", w.Body)
			}
			if tt.noSink && s.Calls() != 0 {
				t.Errorf("sink called %d times", s.Calls())
			}
			var want *warning.Report
			if tt.state != 0 {
				want = &warning.Report{Ref: ref, State: tt.state, Reason: tt.reason, ProviderID: "E1:EB-001", At: time.Date(2026, 7, 1, 2, 0, 4, 0, time.UTC)}
			}
			s.CheckReport(t, want)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := broadcast.New(broadcast.Config{Endpoint: "eb.example", DefaultRepeat: 20, Priority: map[string]int{"purple": 1, "red": 0}, EventTypes: map[string]string{"rainstorm": "11B3", "meteor": "99999"}}, http.DefaultClient, nil, quiet())
	channeltest.CheckErrorHas(t, err,
		`broadcast.endpoint: "eb.example" is not an http(s) URL`,
		"broadcast.platform_id: required",
		"broadcast.key: required",
		"broadcast.default_repeat: 20",
		`unknown level "purple"`,
		"broadcast.priority.red: 0",
		`broadcast.event_types.rainstorm: "11B3"`,
		`unknown hazard "meteor"`)
	// An SM2 (or any) signer needs no key.
	c := config("https://eb.example")
	c.Key = ""
	if _, err := broadcast.New(c, http.DefaultClient, broadcast.NewHMACSigner(platformID, []byte("k"), nil), quiet()); err != nil {
		t.Errorf("with a signer: %v", err)
	}
	c.Key, c.KeyFile = key, "/etc/k"
	_, err = broadcast.New(c, http.DefaultClient, nil, quiet())
	channeltest.CheckErrorHas(t, err, "give one, not both")
	c = config("x")
	channeltest.CheckSecretsHidden(t, "broadcast", &c, key)
}
