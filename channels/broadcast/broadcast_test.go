package broadcast_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/broadcast"
	"warngate/channels/broadcast/fake"
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

func testBatch(devices ...string) *channels.Batch {
	w := &warning.Warning{
		ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusExercise,
		Headline: "五华区暴雨红色预警", Description: "预计未来3小时五华区将出现100毫米以上降雨。",
		Instruction: "停止户外活动，远离河道和低洼地带。", Expires: time.Now().Add(3 * time.Hour), State: warning.StateActive,
	}
	b := &channels.Batch{ID: "w1/broadcast/0", Channel: warning.Broadcast, Notice: channels.NoticeFull, Warning: w, Repeat: 3,
		AckURL: func(r warning.Recipient) string { return "https://x/a/" + r.ID }}
	for i, d := range devices {
		b.Recipients = append(b.Recipients, warning.Recipient{ID: fmt.Sprintf("dev%d", i), Address: d, Audience: warning.Loudspeakers, Division: fmt.Sprintf("5301020010%02d", 1+i%2)})
	}
	return b
}

type sink struct {
	mu      sync.Mutex
	index   map[string]warning.Ref
	reports []warning.Report
	calls   int
	fail    error
}

func newSink() *sink { return &sink{index: map[string]warning.Ref{}} }

func (s *sink) learn(b *channels.Batch, rs []channels.Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if r.ProviderID != "" {
			s.index[r.ProviderID] = b.Ref(r.Index)
		}
	}
}

func (s *sink) Record(_ context.Context, reps []warning.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return s.fail
	}
	s.reports = append(s.reports, reps...)
	return nil
}

func (s *sink) Resolve(_ context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	out := map[string]warning.Ref{}
	for _, id := range ids {
		if r, ok := s.index[id]; ok && provider == "broadcast" {
			out[id] = r
		}
	}
	return out, nil
}

func (s *sink) got() []warning.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]warning.Report(nil), s.reports...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setup starts a receiver behind a callback server and the fake platform.
func setup(t *testing.T, fc fake.Config) (*fake.Server, *httptest.Server, *sink) {
	t.Helper()
	s := newSink()
	rc, err := broadcast.NewReceiver(config("https://unused.example"), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rc.ServeReports(w, r, s) }))
	t.Cleanup(cb.Close)
	fc.PlatformID, fc.Key, fc.CallbackURL = platformID, key, cb.URL+"/callbacks/broadcast"
	if fc.ReportDelay == 0 {
		fc.ReportDelay = 10 * time.Millisecond
	}
	f := fake.New(fc, cb.Client(), quiet())
	t.Cleanup(f.Close)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv, s
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
	if len(rs) != 5 {
		t.Fatalf("receipts %+v", rs)
	}
	msgID, _ := broadcast.SplitProviderID(rs[0].ProviderID)
	for i, want := range []struct {
		state  warning.DeliveryState
		reason string
	}{{warning.Sent, ""}, {warning.Sent, ""}, {warning.Sent, ""}, {warning.Failed, "设备不存在"}, {warning.Failed, "设备不存在"}} {
		if rs[i].Index != i || rs[i].State != want.state || rs[i].Reason != want.reason {
			t.Errorf("receipt %d %+v, want %v %q", i, rs[i], want.state, want.reason)
		}
		if want.state == warning.Sent && rs[i].ProviderID != msgID+":"+b.Recipients[i].Address {
			t.Errorf("receipt %d provider id %q", i, rs[i].ProviderID)
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

	s.learn(b, rs)
	waitFor(t, "three play reports", func() bool { return len(s.got()) == 3 })
	waitFor(t, "all callbacks", func() bool { return f.ReportsSent() == 5 })
	byDevice := map[string]warning.Report{}
	for _, r := range s.got() {
		byDevice[r.Ref.RecipientID] = r
	}
	if byDevice["dev0"].State != warning.Delivered || byDevice["dev1"].State != warning.Delivered {
		t.Errorf("reports %+v", byDevice)
	}
	if r := byDevice["dev2"]; r.State != warning.Failed || r.Reason != "设备离线" {
		t.Errorf("offline report %+v", r)
	}
	if len(s.got()) != 3 {
		t.Errorf("started plays reported: %+v", s.got())
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
	s.learn(b, rs)
	msgID, device := broadcast.SplitProviderID(rs[0].ProviderID)
	if device != "EB-001" {
		t.Errorf("device %q", device)
	}
	if retry, err := p.Cancel(context.Background(), msgID); err != nil {
		t.Fatalf("cancel: %v %v", retry, err)
	}
	waitFor(t, "cancel report", func() bool { return len(s.got()) == 1 })
	if r := s.got()[0]; r.State != warning.Failed || r.Reason != "播发取消" {
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
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ = io.ReadAll(r.Body)
		hdr, path = r.Header.Clone(), r.URL.Path
		io.WriteString(w, `{"ResultCode":1,"ResultDesc":"执行成功","EBMID":"E1"}`)
	}))
	defer srv.Close()
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
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
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
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	p, _ := broadcast.New(config("http://"+addr), &http.Client{Timeout: time.Second}, nil, quiet())
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
			s := newSink()
			s.index["E1:EB-001"] = ref
			s.fail = tt.fail
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
			if tt.noSink && s.calls != 0 {
				t.Errorf("sink called %d times", s.calls)
			}
			got := s.got()
			if tt.state == 0 {
				if len(got) != 0 {
					t.Errorf("reports %+v", got)
				}
				return
			}
			if len(got) != 1 || got[0].Ref != ref || got[0].State != tt.state || got[0].Reason != tt.reason || got[0].ProviderID != "E1:EB-001" {
				t.Fatalf("reports %+v", got)
			}
			if want := time.Date(2026, 7, 1, 2, 0, 4, 0, time.UTC); !got[0].At.Equal(want) {
				t.Errorf("at %s, want %s", got[0].At, want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	_, err := broadcast.New(broadcast.Config{Endpoint: "eb.example", DefaultRepeat: 20, Priority: map[string]int{"purple": 1, "red": 0}, EventTypes: map[string]string{"rainstorm": "11B3", "meteor": "99999"}}, http.DefaultClient, nil, quiet())
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`broadcast.endpoint: "eb.example" is not an http(s) URL`,
		"broadcast.platform_id: required",
		"broadcast.key: required",
		"broadcast.default_repeat: 20",
		`unknown level "purple"`,
		"broadcast.priority.red: 0",
		`broadcast.event_types.rainstorm: "11B3"`,
		`unknown hazard "meteor"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// An SM2 (or any) signer needs no key.
	c := config("https://eb.example")
	c.Key = ""
	if _, err := broadcast.New(c, http.DefaultClient, broadcast.NewHMACSigner(platformID, []byte("k"), nil), quiet()); err != nil {
		t.Errorf("with a signer: %v", err)
	}
	c.Key, c.KeyFile = key, "/etc/k"
	if _, err := broadcast.New(c, http.DefaultClient, nil, quiet()); err == nil || !strings.Contains(err.Error(), "give one, not both") {
		t.Errorf("key and key_file: %v", err)
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v", config("x"), config("x"), config("x"))
	slog.New(slog.NewTextHandler(&buf, nil)).Info("cfg", "key", config("x").Key)
	if strings.Contains(buf.String(), key) {
		t.Errorf("key printed: %s", buf.String())
	}
}
