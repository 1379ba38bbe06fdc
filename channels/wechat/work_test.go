package wechat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	corpID     = "ww1234567890abcdef"
	corpSecret = "corp-secret-abcdefghijklmnopqrstuvwxyz"
	agentID    = 1000002
)

func workConfig(base, prefix string) wechat.WorkConfig {
	c := wechat.DefaultWorkConfig()
	c.BaseURL = base
	c.CorpID = corpID
	c.CorpSecret = corpSecret
	c.AgentID = agentID
	c.KeyPrefix = prefix
	c.Timeout = 2 * time.Second
	return c
}

// ackBatch is workBatch with confirmation links.
func ackBatch(addrs ...string) *channels.Batch {
	b := workBatch(addrs...)
	b.AckURL = func(r warning.Recipient) string { return "https://warn.km.example/a/" + b.Warning.ID + "/" + r.ID }
	return b
}

func TestWorkWithFake(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, srv := startFake(t, fake.Config{Members: []string{"ZhangSan", "lisi", "wangwu"}, Record: true})

	for _, reportAccepted := range []bool{true, false} {
		t.Run(fmt.Sprintf("report_accepted=%v", reportAccepted), func(t *testing.T) {
			cfg := workConfig(srv.URL, prefix)
			cfg.ReportAccepted = reportAccepted
			wk := newWork(t, cfg, rdb, quiet())
			// Without confirmation links all members share one message: one call.
			b := workBatch("ZhangSan", "ghost", "lisi", "")
			rs, retry, err := wk.Notify(context.Background(), b)
			if err != nil {
				t.Fatalf("err %v retry %v", err, retry)
			}
			states := "SFSF"
			if reportAccepted {
				states = "DFDF"
			}
			channeltest.CheckReceipts(t, rs, states, map[int]string{1: "无效的企业微信用户", 3: "无效的企业微信用户"})
			if !strings.HasSuffix(rs[0].ProviderID, ":ZhangSan") || len(rs[0].ProviderID) < 10 {
				t.Errorf("provider id %q, want <msgid>:ZhangSan", rs[0].ProviderID)
			}
		})
	}
	msgs := f.WorkMessages()
	if len(msgs) != 2 || msgs[0].MsgType != "text" || !reflect.DeepEqual(msgs[0].ToUser, []string{"zhangsan", "lisi"}) {
		t.Fatalf("messages %+v", msgs)
	}

	// With confirmation links, a text card per official, all invalid → 81013.
	wk := newWork(t, workConfig(srv.URL, prefix), rdb, quiet())
	rs, _, err := wk.Notify(context.Background(), ackBatch("wangwu", "nobody"))
	if err != nil || len(rs) != 2 || rs[0].State != warning.Delivered || rs[1].State != warning.Failed {
		t.Fatalf("%+v %v", rs, err)
	}
	msgs = f.WorkMessages()
	last := msgs[len(msgs)-1]
	if last.MsgType != "textcard" || last.URL != "https://warn.km.example/a/w1/r0" || last.Title != "五华区暴雨红色预警" {
		t.Errorf("text card %+v", last)
	}
}

// TestWorkRequest checks the exact request.
func TestWorkRequest(t *testing.T) {
	rdb, prefix := testRedis(t)
	var got map[string]any
	var tokenQuery, sendQuery string
	srv := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cgi-bin/gettoken":
			tokenQuery = r.URL.RawQuery
			io.WriteString(w, `{"errcode":0,"errmsg":"ok","access_token":"WORK-TOKEN","expires_in":7200}`)
		case "/cgi-bin/message/send":
			sendQuery = r.URL.RawQuery
			json.NewDecoder(r.Body).Decode(&got)
			io.WriteString(w, `{"errcode":0,"errmsg":"ok","invaliduser":"","msgid":"MSG-1"}`)
		default:
			t.Errorf("path %s", r.URL.Path)
		}
	}))
	wk := newWork(t, workConfig(srv.URL, prefix), rdb, quiet())
	b := ackBatch("zhangsan")
	b.Warning.Description = strings.Repeat("暴雨", 200) // longer than a card holds
	rs, _, err := wk.Notify(context.Background(), b)
	if err != nil || rs[0].ProviderID != "MSG-1:zhangsan" {
		t.Fatalf("%+v %v", rs, err)
	}
	if tokenQuery != "corpid="+corpID+"&corpsecret="+corpSecret {
		t.Errorf("token query %q", tokenQuery)
	}
	if sendQuery != "access_token=WORK-TOKEN" {
		t.Errorf("send query %q", sendQuery)
	}
	card, _ := got["textcard"].(map[string]any)
	desc, _ := card["description"].(string)
	if len(desc) > 512 || !strings.HasPrefix(desc, "暴雨红色预警（Ⅰ级/特别严重）\n暴雨") || !strings.HasSuffix(desc, "…") {
		t.Errorf("description (%d bytes) %q", len(desc), desc)
	}
	delete(card, "description")
	want := map[string]any{
		"touser": "zhangsan", "agentid": float64(agentID), "msgtype": "textcard",
		"enable_duplicate_check": float64(1), "duplicate_check_interval": float64(1800),
		"textcard": map[string]any{"title": "五华区暴雨红色预警", "url": "https://warn.km.example/a/w1/r0", "btntxt": "确认收到"},
	}
	if !reflect.DeepEqual(got, want) {
		gb, _ := json.Marshal(got)
		t.Errorf("body %s", gb)
	}
}

func TestWorkErrorClassification(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		err    bool
		retry  bool
		failed bool // every recipient failed, no error
	}{
		{"frequency", 200, `{"errcode":45009,"errmsg":"api freq out of limit"}`, true, true, false},
		{"concurrency", 200, `{"errcode":45033,"errmsg":"api concurrent out of limit"}`, true, true, false},
		{"busy", 200, `{"errcode":-1,"errmsg":"system busy"}`, true, true, false},
		{"bad agent", 200, `{"errcode":40056,"errmsg":"invalid agentid"}`, true, false, false},
		{"ip not allowed", 200, `{"errcode":60020,"errmsg":"not allow to access from your ip"}`, true, false, false},
		{"all invalid", 200, `{"errcode":81013,"errmsg":"user & party & tag all invalid","invaliduser":"a|b"}`, false, false, true},
		{"502", 502, ``, true, true, false},
		{"400", 400, ``, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, prefix := testRedis(t)
			srv := workAPI(t, channeltest.Answer(tt.status, tt.body))
			wk := newWork(t, workConfig(srv.URL, prefix), rdb, quiet())
			rs, retry, err := wk.Notify(context.Background(), workBatch("a", "b"))
			if (err != nil) != tt.err || retry != tt.retry {
				t.Fatalf("err %v retry %v", err, retry)
			}
			if tt.failed {
				if len(rs) != 2 || rs[0].State != warning.Failed || rs[1].Reason != "无效的企业微信用户" {
					t.Errorf("receipts %+v", rs)
				}
			}
		})
	}
}

// TestWorkTokenExpiry drops the WeCom token on 42001 and sends again.
func TestWorkTokenExpiry(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, srv := startFake(t, fake.Config{})
	wk := newWork(t, workConfig(srv.URL, prefix), rdb, quiet())
	if _, _, err := wk.Notify(context.Background(), workBatch("a")); err != nil {
		t.Fatal(err)
	}
	f.ExpireTokens()
	rs, retry, err := wk.Notify(context.Background(), workBatch("b"))
	if err != nil || retry || len(rs) != 1 || rs[0].State != warning.Delivered {
		t.Fatalf("%+v %v %v", rs, retry, err)
	}
	if f.TokenRequests() != 2 {
		t.Errorf("%d token requests, want 2", f.TokenRequests())
	}
}

// TestWorkMemberLimit holds back members who had 30 messages this minute,
// through counters in Redis, so WeCom never drops one silently.
func TestWorkMemberLimit(t *testing.T) {
	rdb, prefix := testRedis(t)
	f, srv := startFake(t, fake.Config{Record: true})
	wk := newWork(t, workConfig(srv.URL, prefix), rdb, quiet())
	ctx := context.Background()
	for i := range 30 {
		b := ackBatch("busy")
		b.Warning.ID = fmt.Sprintf("w%d", i) // different messages, not duplicates
		if _, _, err := wk.Notify(ctx, b); err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
	}
	b := ackBatch("busy", "calm")
	b.Warning.ID = "w31"
	rs, retry, err := wk.Notify(ctx, b)
	if !errors.Is(err, wechat.ErrMemberLimit) || !retry {
		t.Fatalf("31st: err %v retry %v", err, retry)
	}
	if len(rs) != 1 || rs[0].Index != 1 || rs[0].State != warning.Delivered {
		t.Errorf("receipts %+v: want only the calm member", rs)
	}
	if f.Dropped() != 0 {
		t.Errorf("WeCom dropped %d messages", f.Dropped())
	}
	key := prefix + "rate:{1000002}:busy"
	if n, _ := rdb.Get(ctx, key).Int(); n != 30 {
		t.Errorf("counter %s = %d, want 30", key, n)
	}
	if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("counter TTL %v", ttl)
	}

	// Without our counters WeCom drops the 31st silently: why they exist.
	cfg := workConfig(srv.URL, prefix+"off:")
	cfg.MemberLimit = -1
	wk2 := newWork(t, cfg, rdb, quiet())
	b = ackBatch("busy")
	b.Warning.ID = "w32"
	if _, _, err := wk2.Notify(ctx, b); err != nil {
		t.Fatal(err)
	}
	if f.Dropped() != 1 {
		t.Errorf("dropped %d, want 1", f.Dropped())
	}
}

func TestWorkConfigErrors(t *testing.T) {
	rdb, _ := testRedis(t)
	_, err := wechat.NewWork(wechat.WorkConfig{MemberLimit: -5, ButtonText: "请点击确认收到", BaseURL: "qyapi"}, hc(), rdb, quiet())
	channeltest.CheckErrorHas(t, err,
		"wechat.work.corp_id: required",
		"wechat.work.corp_secret: required",
		"wechat.work.agent_id: required",
		"wechat.work.member_limit: -5",
		"wechat.work.button_text:",
		"wechat.work.base_url:")
	cfg := workConfig("", "")
	channeltest.CheckSecretsHidden(t, "work", &cfg, corpSecret)
}

// TestWorkNoSecretLeak: a bad secret's answer and transport errors keep the
// secret out.
func TestWorkNoSecretLeak(t *testing.T) {
	rdb, prefix := testRedis(t)
	srv := channeltest.Serve(t, http.HandlerFunc(hangUp))
	log, logged := newLog()
	wk := newWork(t, workConfig(srv.URL, prefix), rdb, log)
	_, retry, err := wk.Notify(context.Background(), workBatch("a"))
	if err == nil || !retry {
		t.Fatalf("err %v retry %v", err, retry)
	}
	checkHidden(t, err, logged, corpSecret)
	if !strings.Contains(err.Error(), "REDACTED") && !strings.Contains(err.Error(), "EOF") {
		t.Logf("error: %v", err)
	}
}
