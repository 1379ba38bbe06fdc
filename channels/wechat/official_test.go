package wechat_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	appID     = "wx1234567890abcdef"
	appSecret = "s3cr3t-app-secret-0123456789abcdef"
	srvToken  = "wgtoken2026"
)

func oaConfig(base string, prefix string) wechat.OfficialAccountConfig {
	c := wechat.DefaultOfficialAccountConfig()
	c.BaseURL = base
	c.AppID = appID
	c.AppSecret = appSecret
	c.Token = srvToken
	c.TemplateID = "TPL-warning"
	c.DetailURL = "https://warn.km.example/w"
	c.KeyPrefix = prefix
	c.Timeout = 2 * time.Second
	return c
}

// TestOfficialAccountWithFake runs template sends and their receipts end to
// end against the fake: accepted, not following, bad openid, and a follower
// who blocks the account.
func TestOfficialAccountWithFake(t *testing.T) {
	rdb, prefix := testRedis(t)
	s := &channeltest.Sink{Provider: "wechat", AwaitIndex: true}
	rc, err := wechat.NewReceiver(oaConfig("", prefix), quiet())
	if err != nil {
		t.Fatal(err)
	}
	callback := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rc.ServeReports(w, r, s) }))
	f, srv := startFake(t, fake.Config{
		Followers: []string{"oFollower0001", "oFollower0002", "oBlocker00001"}, Blocked: []string{"oBlocker00001"},
		CallbackURL: callback.URL, ReportDelay: 20 * time.Millisecond, Record: true,
	})
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
	b := oaBatch("oFollower0001", "oStranger0001", "bad", "oBlocker00001", "oFollower0002")
	rs, retry, err := oa.Notify(context.Background(), b)
	if err != nil {
		t.Fatalf("notify: %v (retry %v)", err, retry)
	}
	channeltest.CheckReceipts(t, rs, "SFFSS", map[int]string{1: "用户未关注公众号", 2: "无效的openid"})
	for _, rc := range rs {
		if rc.State == warning.Sent && rc.ProviderID == "" {
			t.Errorf("receipt %d: no msgid", rc.Index)
		}
	}
	if f.TokenRequests() != 1 {
		t.Errorf("%d token requests for one batch, want 1 (cached in Redis)", f.TokenRequests())
	}
	if oa.Provider() != "wechat" {
		t.Errorf("provider %q", oa.Provider())
	}
	s.Index(b, rs)
	channeltest.WaitFor(t, "three TEMPLATESENDJOBFINISH reports", func() bool { return len(s.Reports()) == 3 })
	by := s.ByRef()
	if r := by[b.Ref(0)]; r.State != warning.Delivered || r.Ref != b.Ref(0) {
		t.Errorf("follower report %+v", r)
	}
	if r := by[b.Ref(3)]; r.State != warning.Failed || r.Reason != "用户拒收" {
		t.Errorf("blocker report %+v, want failed 用户拒收", r)
	}

	// A batch sent again (a lost answer) reaches nobody twice: client_msg_id.
	before := len(f.Templates())
	rs2, _, err := oa.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Templates()) != before {
		t.Errorf("resend delivered %d more messages", len(f.Templates())-before)
	}
	if rs2[0].ProviderID != rs[0].ProviderID {
		t.Errorf("resend got msgid %s, first send %s", rs2[0].ProviderID, rs[0].ProviderID)
	}
}

// TestTemplateRequest checks the exact requests: token fetch and send.
func TestTemplateRequest(t *testing.T) {
	rdb, prefix := testRedis(t)
	var got map[string]any
	var tokenQuery, sendQuery string
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cgi-bin/token":
			tokenQuery = r.URL.RawQuery
			io.WriteString(w, `{"access_token":"ACCESS-TOKEN-1","expires_in":7200}`)
		case "/cgi-bin/message/template/send":
			if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
				t.Errorf("send: %s %s", r.Method, r.Header.Get("Content-Type"))
			}
			sendQuery = r.URL.RawQuery
			json.NewDecoder(r.Body).Decode(&got)
			io.WriteString(w, `{"errcode":0,"errmsg":"ok","msgid":200228332}`)
		default:
			t.Errorf("unexpected path %s", r.URL.Path)
		}
	}))
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
	b := oaBatch("oFollower0001")
	b.Warning.Status = warning.StatusExercise
	rs, _, err := oa.Notify(context.Background(), b)
	if err != nil || len(rs) != 1 || rs[0].ProviderID != "200228332" || rs[0].State != warning.Sent {
		t.Fatalf("receipts %+v err %v", rs, err)
	}
	if tokenQuery != "grant_type=client_credential&appid="+appID+"&secret="+appSecret {
		t.Errorf("token query %q", tokenQuery)
	}
	if sendQuery != "access_token=ACCESS-TOKEN-1" {
		t.Errorf("send query %q", sendQuery)
	}
	id, _ := got["client_msg_id"].(string)
	if len(id) < 10 {
		t.Errorf("client_msg_id %q", id)
	}
	delete(got, "client_msg_id")
	want := map[string]any{
		"touser":      "oFollower0001",
		"template_id": "TPL-warning",
		"url":         "https://warn.km.example/w?w=w1",
		"data": map[string]any{
			"first":    map[string]any{"value": "【演练】五华区暴雨红色预警", "color": "#FF0000"},
			"keyword1": map[string]any{"value": "暴雨红色预警（Ⅰ级/特别严重）", "color": "#FF0000"},
			"keyword2": map[string]any{"value": "预计未来3小时五华区将出现100毫米以上降雨。"},
			"remark":   map[string]any{"value": "停止户外活动，远离河道和低洼地带。"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.MarshalIndent(got, "", " ")
		t.Errorf("body:\n%s", gb)
	}
}

// TestTemplateErrorClassification maps every answer onto a receipt or a
// batch error that may or may not be retried.
func TestTemplateErrorClassification(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		state  warning.DeliveryState // when no error
		reason string
		err    bool
		retry  bool
	}{
		{"accepted", 200, `{"errcode":0,"errmsg":"ok","msgid":7}`, warning.Sent, "", false, false},
		{"not following", 200, `{"errcode":43004,"errmsg":"require subscribe rid: 1"}`, warning.Failed, "用户未关注公众号", false, false},
		{"invalid openid", 200, `{"errcode":40003,"errmsg":"invalid openid rid: 1"}`, warning.Failed, "无效的openid", false, false},
		{"unknown code fails the recipient", 200, `{"errcode":43999,"errmsg":"odd"}`, warning.Failed, "微信错误43999：odd", false, false},
		{"quota", 200, `{"errcode":45009,"errmsg":"reach max api daily quota limit"}`, 0, "", true, true},
		{"system busy", 200, `{"errcode":-1,"errmsg":"system error"}`, 0, "", true, true},
		{"bad template", 200, `{"errcode":40037,"errmsg":"invalid template_id"}`, 0, "", true, false},
		{"argument invalid", 200, `{"errcode":47003,"errmsg":"argument invalid!"}`, 0, "", true, false},
		{"5xx", 502, `bad gateway`, 0, "", true, true},
		{"429", 429, ``, 0, "", true, true},
		{"4xx", 403, `forbidden`, 0, "", true, false},
		{"2xx garbage is taken as sent", 200, `<html>oops`, warning.Sent, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, prefix := testRedis(t)
			srv := oaAPI(t, "T", channeltest.Answer(tt.status, tt.body))
			oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
			rs, retry, err := oa.Notify(context.Background(), oaBatch("oFollower0001"))
			if (err != nil) != tt.err || retry != tt.retry {
				t.Fatalf("err %v retry %v; want error %v retry %v", err, retry, tt.err, tt.retry)
			}
			if tt.err {
				if len(rs) != 0 {
					t.Errorf("receipts with a batch error: %+v", rs)
				}
				return
			}
			if len(rs) != 1 || rs[0].State != tt.state || rs[0].Reason != tt.reason {
				t.Errorf("receipt %+v, want %v %q", rs, tt.state, tt.reason)
			}
		})
	}
}

// TestTemplateTransportError is retried.
func TestTemplateTransportError(t *testing.T) {
	rdb, prefix := testRedis(t)
	srv := oaAPI(t, "T-transport", hangUp)
	log, logged := newLog()
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, log)
	_, retry, err := oa.Notify(context.Background(), oaBatch("oFollower0001"))
	if err == nil || !retry {
		t.Fatalf("err %v retry %v", err, retry)
	}
	checkHidden(t, err, logged, "T-transport")
}

// TestTokenExpiry: 42001 drops the cached token, fetches a new one and
// sends again once.
func TestTokenExpiry(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, srv := startFake(t, fake.Config{})
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
	ctx := context.Background()
	if _, _, err := oa.Notify(ctx, oaBatch("oFollower0001")); err != nil {
		t.Fatal(err)
	}
	key := prefix + "gowechat_officialaccount__access_token_" + appID
	first, err := rdb.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("token not cached under %s: %v", key, err)
	}
	f.ExpireTokens()
	rs, retry, err := oa.Notify(ctx, oaBatch("oFollower0001", "oFollower0002"))
	if err != nil || retry || len(rs) != 2 || rs[0].State != warning.Sent || rs[1].State != warning.Sent {
		t.Fatalf("after expiry: %+v retry %v err %v", rs, retry, err)
	}
	if n := f.TokenRequests(); n != 2 {
		t.Errorf("%d token requests, want 2 (one refresh shared by both sends)", n)
	}
	second, _ := rdb.Get(ctx, key).Result()
	if second == first || second == "" {
		t.Errorf("cached token not replaced: %s → %s", first, second)
	}
}

// TestTokenRefusedTwice reports retry after one refresh.
func TestTokenRefusedTwice(t *testing.T) {
	rdb, prefix := testRedis(t)
	var tokens, sends atomic.Int32
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/cgi-bin/token" {
			tokens.Add(1)
			io.WriteString(w, `{"access_token":"T`+string(rune('0'+tokens.Load()))+`","expires_in":7200}`)
			return
		}
		sends.Add(1)
		io.WriteString(w, `{"errcode":40001,"errmsg":"invalid credential"}`)
	}))
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
	rs, retry, err := oa.Notify(context.Background(), oaBatch("oFollower0001"))
	if err == nil || !retry || len(rs) != 0 {
		t.Fatalf("%+v retry %v err %v", rs, retry, err)
	}
	if tokens.Load() != 2 || sends.Load() != 2 {
		t.Errorf("%d token fetches, %d sends; want 2 and 2", tokens.Load(), sends.Load())
	}
}

// TestBatchErrorKeepsReceipts: a permanent error mid-batch still returns the
// receipts of recipients already handed over.
func TestBatchErrorKeepsReceipts(t *testing.T) {
	rdb, prefix := testRedis(t)
	var n atomic.Int32
	srv := oaAPI(t, "T", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 2 {
			io.WriteString(w, `{"errcode":0,"errmsg":"ok","msgid":1}`)
			return
		}
		io.WriteString(w, `{"errcode":40037,"errmsg":"invalid template_id"}`)
	})
	cfg := oaConfig(srv.URL, prefix)
	cfg.Concurrency = 1
	oa := newOA(t, cfg, rdb, quiet())
	rs, retry, err := oa.Notify(context.Background(), oaBatch("oA00000001", "oA00000002", "oA00000003", "oA00000004"))
	if err == nil || retry {
		t.Fatalf("err %v retry %v", err, retry)
	}
	if len(rs) != 2 || rs[0].Index != 0 || rs[1].Index != 1 {
		t.Errorf("receipts %+v, want the first two", rs)
	}
	if n.Load() != 3 {
		t.Errorf("%d sends; sending must stop at the permanent error", n.Load())
	}
}

// TestNoSecretLeaks fails when the app secret or an access token reaches an
// error or a log line, whatever goes wrong.
func TestNoSecretLeaks(t *testing.T) {
	closed := channeltest.ClosedURL(t)
	cases := []struct {
		name    string
		handler http.HandlerFunc // nil: nothing listens
	}{
		{"token endpoint down", nil},
		{"token refused", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"errcode":40125,"errmsg":"invalid appsecret, view more at http://t.cn/x?secret=`+appSecret+`"}`)
		}},
		{"token 500", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) }},
		{"send garbage", tokenThen("/cgi-bin/token", `{"access_token":"LEAKY-TOKEN-42","expires_in":7200}`, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"errcode":40037,"errmsg":"invalid template_id access_token=LEAKY-TOKEN-42"}`)
		})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rdb, prefix := testRedis(t)
			base := closed
			if c.handler != nil {
				base = channeltest.Serve(t, c.handler).URL
			}
			log, logged := newLog()
			oa := newOA(t, oaConfig(base, prefix), rdb, log)
			_, _, err := oa.Notify(context.Background(), oaBatch("oFollower0001"))
			if err == nil {
				t.Fatal("no error")
			}
			checkHidden(t, err, logged, appSecret, "LEAKY-TOKEN-42")
		})
	}
	// Printing the configuration shows no secret either.
	cfg := oaConfig("", "")
	channeltest.CheckSecretsHidden(t, "official_account", &cfg, appSecret, srvToken)
}

// TestConcurrencyBound never has more than Concurrency sends in flight.
func TestConcurrencyBound(t *testing.T) {
	rdb, prefix := testRedis(t)
	var inFlight, peak atomic.Int32
	var mu sync.Mutex
	srv := oaAPI(t, "T", func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		mu.Lock()
		if n > peak.Load() {
			peak.Store(n)
		}
		mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		io.WriteString(w, `{"errcode":0,"errmsg":"ok","msgid":1}`)
	})
	cfg := oaConfig(srv.URL, prefix)
	cfg.Concurrency = 4
	oa := newOA(t, cfg, rdb, quiet())
	addrs := make([]string, 40)
	for i := range addrs {
		addrs[i] = "oUser" + strings.Repeat("x", 5) + string(rune('A'+i))
	}
	rs, _, err := oa.Notify(context.Background(), oaBatch(addrs...))
	if err != nil || len(rs) != 40 {
		t.Fatalf("%d receipts, err %v", len(rs), err)
	}
	if peak.Load() > 4 || peak.Load() < 2 {
		t.Errorf("peak %d sends in flight, want 2..4", peak.Load())
	}
}

func TestOfficialAccountConfigErrors(t *testing.T) {
	rdb, _ := testRedis(t)
	_, err := wechat.NewOfficialAccount(wechat.OfficialAccountConfig{DetailURL: "ftp://x", Colors: map[string]string{"purple": "#123456", "red": "crimson"}}, hc(), rdb, quiet())
	channeltest.CheckErrorHas(t, err,
		"wechat.official_account.app_id: required",
		"wechat.official_account.app_secret: required",
		"wechat.official_account.template_id: required",
		"wechat.official_account.detail_url:",
		`unknown level "purple"`,
		`wechat.official_account.colors.red: "crimson" is not a colour`)
	cfg := oaConfig("", "")
	cfg.AppSecretFile = "/nonexistent"
	_, err = wechat.NewOfficialAccount(cfg, hc(), rdb, quiet())
	channeltest.CheckErrorHas(t, err, "give one, not both")
	_, err = wechat.NewReceiver(wechat.OfficialAccountConfig{}, nil)
	channeltest.CheckErrorHas(t, err, "token: required")
}

// TestLiftedNotice uses the short text.
func TestLiftedNotice(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, srv := startFake(t, fake.Config{Record: true})
	oa := newOA(t, oaConfig(srv.URL, prefix), rdb, quiet())
	b := oaBatch("oFollower0001")
	b.Notice = channels.NoticeLifted
	if _, _, err := oa.Notify(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	got := f.Templates()
	if len(got) != 1 || got[0].Data["first"].Value != "【解除】五华区暴雨红色预警" || got[0].Data["keyword2"].Value != "该预警已解除。" {
		t.Errorf("lifted message %+v", got)
	}
}

// TestFakeUnderPrefix: the demo mounts the fake under a path; base_url
// carries it for the SDK's token requests and for sends.
func TestFakeUnderPrefix(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, _ := startFake(t, fake.Config{})
	mux := http.NewServeMux()
	mux.Handle("/sim/wechat/", f)
	srv := channeltest.Serve(t, mux)
	oa := newOA(t, oaConfig(srv.URL+"/sim/wechat", prefix), rdb, quiet())
	if _, _, err := oa.Notify(context.Background(), oaBatch("oFollower0001")); err != nil {
		t.Fatal(err)
	}
	wk := newWork(t, workConfig(srv.URL+"/sim/wechat", prefix), rdb, quiet())
	if rs, _, err := wk.Notify(context.Background(), workBatch("a")); err != nil || rs[0].State != warning.Delivered {
		t.Fatalf("%+v %v", rs, err)
	}
	if f.Sends() != 2 {
		t.Errorf("%d sends", f.Sends())
	}
}
