package fake_test

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels/wechat/fake"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func call(t *testing.T, h http.Handler, method, target, body string) map[string]any {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, strings.NewReader(body)))
	var m map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("%s %s: %d %q", method, target, w.Code, w.Body)
	}
	return m
}

func code(m map[string]any) int {
	c, _ := m["errcode"].(float64)
	return int(c)
}

func TestOfficialAccountProtocol(t *testing.T) {
	f := fake.New(fake.Config{AppID: "wxA", AppSecret: "S", TemplateIDs: []string{"T1"}, Followers: []string{"oFollower1"}}, http.DefaultClient, quiet())
	defer f.Close()
	for target, want := range map[string]int{
		"/cgi-bin/token?grant_type=client_credential&appid=wxB&secret=S": 40013,
		"/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=X": 40125,
		"/cgi-bin/token?grant_type=client_credential&secret=S":           41002,
		"/cgi-bin/token?grant_type=password&appid=wxA&secret=S":          40002,
	} {
		if got := code(call(t, f, "GET", target, "")); got != want {
			t.Errorf("%s: errcode %d, want %d", target, got, want)
		}
	}
	m := call(t, f, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=S", "")
	tok, _ := m["access_token"].(string)
	if tok == "" || m["expires_in"].(float64) != 7200 {
		t.Fatalf("token answer %v", m)
	}
	send := func(tokenQuery, body string) int {
		return code(call(t, f, "POST", "/cgi-bin/message/template/send"+tokenQuery, body))
	}
	ok := `{"touser":"oFollower1","template_id":"T1","data":{"first":{"value":"x"}}}`
	for _, c := range []struct {
		name, query, body string
		want              int
	}{
		{"no token", "", ok, 41001},
		{"bad token", "?access_token=nope", ok, 40001},
		{"bad template", "?access_token=" + tok, `{"touser":"oFollower1","template_id":"T9","data":{"a":{"value":"x"}}}`, 40037},
		{"bad openid", "?access_token=" + tok, `{"touser":"x","template_id":"T1","data":{"a":{"value":"x"}}}`, 40003},
		{"not following", "?access_token=" + tok, `{"touser":"oStranger1","template_id":"T1","data":{"a":{"value":"x"}}}`, 43004},
		{"no data", "?access_token=" + tok, `{"touser":"oFollower1","template_id":"T1"}`, 47003},
		{"not JSON", "?access_token=" + tok, `{`, 47001},
		{"ok", "?access_token=" + tok, ok, 0},
	} {
		if got := send(c.query, c.body); got != c.want {
			t.Errorf("%s: errcode %d, want %d", c.name, got, c.want)
		}
	}
	f.ExpireTokens()
	if got := send("?access_token="+tok, ok); got != 42001 {
		t.Errorf("expired token: %d", got)
	}
	f.FailNext("/cgi-bin/message/template/send", 45009, "reach max api daily quota limit")
	if got := send("?access_token="+tok, ok); got != 45009 {
		t.Errorf("injected: %d", got)
	}
	f.FailNextStatus("/cgi-bin/token", 503)
	w := httptest.NewRecorder()
	f.ServeHTTP(w, httptest.NewRequest("GET", "/cgi-bin/token", nil))
	if w.Code != 503 {
		t.Errorf("injected status %d", w.Code)
	}
}

func TestWorkProtocol(t *testing.T) {
	f := fake.New(fake.Config{CorpID: "wwC", CorpSecret: "CS", AgentID: 1000002, Members: []string{"zhangsan", "lisi"}, MemberLimit: 2, RejectOverLimit: true}, http.DefaultClient, quiet())
	defer f.Close()
	if got := code(call(t, f, "GET", "/cgi-bin/gettoken?corpid=wwC&corpsecret=bad", "")); got != 40001 {
		t.Errorf("bad secret: %d", got)
	}
	m := call(t, f, "GET", "/cgi-bin/gettoken?corpid=wwC&corpsecret=CS", "")
	tok := m["access_token"].(string)
	send := func(body string) map[string]any {
		return call(t, f, "POST", "/cgi-bin/message/send?access_token="+tok, body)
	}
	if got := code(send(`{"touser":"zhangsan","msgtype":"text","agentid":1,"text":{"content":"x"}}`)); got != 40056 {
		t.Errorf("bad agent: %d", got)
	}
	m = send(`{"touser":"ZhangSan|ghost","msgtype":"text","agentid":"1000002","text":{"content":"a"}}`)
	if code(m) != 0 || m["invaliduser"] != "ghost" || m["msgid"] == "" {
		t.Errorf("partial: %v", m)
	}
	m = send(`{"touser":"ghost|nobody","msgtype":"text","agentid":1000002,"text":{"content":"a"}}`)
	if code(m) != 81013 || m["invaliduser"] != "ghost|nobody" {
		t.Errorf("all invalid: %v", m)
	}
	if got := code(send(`{"touser":"lisi","msgtype":"textcard","agentid":1000002,"textcard":{"title":"t"}}`)); got != 41016 {
		t.Errorf("card without url: %d", got)
	}
	if got := code(send(`{"touser":"zhangsan","msgtype":"text","agentid":1000002,"text":{"content":"b"}}`)); got != 0 {
		t.Errorf("second: %d", got)
	}
	if got := code(send(`{"touser":"zhangsan","msgtype":"text","agentid":1000002,"text":{"content":"c"}}`)); got != 45033 {
		t.Errorf("third message this minute with MemberLimit 2: %d", got)
	}
	if got := code(call(t, f, "POST", "/cgi-bin/message/send?access_token=bogus", `{}`)); got != 40014 {
		t.Errorf("bad token: %d", got)
	}
}

// TestEventPush signs events with the server token, as WeChat does.
func TestEventPush(t *testing.T) {
	type ev struct {
		MsgType string `xml:"MsgType"`
		Event   string `xml:"Event"`
		MsgID   int64  `xml:"MsgID"`
		Status  string `xml:"Status"`
	}
	var mu sync.Mutex
	var got []ev
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("signature") != fake.Sign("tok123", q.Get("timestamp"), q.Get("nonce")) || q.Get("openid") == "" {
			w.WriteHeader(403)
			return
		}
		var e ev
		b, _ := io.ReadAll(r.Body)
		if err := xml.Unmarshal(b, &e); err != nil {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		io.WriteString(w, "success")
	}))
	defer cb.Close()
	f := fake.New(fake.Config{AppID: "wxA", AppSecret: "S", Token: "tok123", Blocked: []string{"oBlocked01"}, CallbackURL: cb.URL, ReportDelay: 10 * time.Millisecond}, cb.Client(), quiet())
	defer f.Close()
	tok := call(t, f, "GET", "/cgi-bin/token?grant_type=client_credential&appid=wxA&secret=S", "")["access_token"].(string)
	for _, u := range []string{"oFollower1", "oBlocked01"} {
		call(t, f, "POST", "/cgi-bin/message/template/send?access_token="+tok, `{"touser":"`+u+`","template_id":"T","data":{"a":{"value":"x"}}}`)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.EventsSent() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("events not pushed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	statuses := map[string]bool{}
	for _, e := range got {
		if e.MsgType != "event" || e.Event != "TEMPLATESENDJOBFINISH" || e.MsgID == 0 {
			t.Errorf("event %+v", e)
		}
		statuses[e.Status] = true
	}
	if !statuses["success"] || !statuses["failed:user block"] {
		t.Errorf("statuses %v", statuses)
	}
}
