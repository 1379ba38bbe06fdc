package wechat_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/warning"
)

func signedURL(token, ts, nonce string, extra url.Values) string {
	q := url.Values{"signature": {fake.Sign(token, ts, nonce)}, "timestamp": {ts}, "nonce": {nonce}}
	for k, v := range extra {
		q[k] = v
	}
	return "/callbacks/wechat?" + q.Encode()
}

const eventXML = `<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>
<FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>
<CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>
<Status><![CDATA[%s]]></Status></xml>`

func TestReceiver(t *testing.T) {
	rc, err := wechat.NewReceiver(oaConfig("", ""), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if rc.Name() != "wechat" {
		t.Errorf("name %q", rc.Name())
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "r1"}
	tests := []struct {
		name     string
		method   string
		url      string
		body     string
		code     int
		answer   string
		report   *warning.Report
		noSink   bool
		failSink bool
	}{
		{name: "url verification", method: "GET", url: signedURL(srvToken, "1700000000", "42", url.Values{"echostr": {"hello-echo"}}), code: 200, answer: "hello-echo", noSink: true},
		{name: "forged GET", method: "GET", url: signedURL("wrong", "1700000000", "42", url.Values{"echostr": {"x"}}), code: 403, noSink: true},
		{name: "unsigned POST", method: "POST", url: "/callbacks/wechat", body: strings.Replace(eventXML, "%s", "success", 1), code: 403, noSink: true},
		{name: "forged POST", method: "POST", url: signedURL("guess", "1700000000", "7", nil), body: strings.Replace(eventXML, "%s", "success", 1), code: 403, noSink: true},
		{name: "delivered", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: strings.Replace(eventXML, "%s", "success", 1), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Delivered, ProviderID: "200163836"}},
		{name: "user block", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: strings.Replace(eventXML, "%s", "failed:user block", 1), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Failed, Reason: "用户拒收", ProviderID: "200163836"}},
		{name: "system failed", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: strings.Replace(eventXML, "%s", "failed: system failed", 1), code: 200, answer: "success",
			report: &warning.Report{Ref: ref, State: warning.Failed, Reason: "failed: system failed", ProviderID: "200163836"}},
		{name: "not recorded", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: strings.Replace(eventXML, "%s", "success", 1), code: 503, failSink: true},
		{name: "other event", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: `<xml><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>`, code: 200, answer: "success"},
		{name: "safe mode", method: "POST", url: signedURL(srvToken, "1700000000", "7", url.Values{"encrypt_type": {"aes"}}), body: `<xml><ToUserName><![CDATA[gh]]></ToUserName><Encrypt><![CDATA[abc]]></Encrypt></xml>`, code: 400},
		{name: "malformed", method: "POST", url: signedURL(srvToken, "1700000000", "7", nil), body: `<xml><MsgType>`, code: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSink()
			s.index["200163836"] = ref
			if tt.failSink {
				s.failRecord = errors.New("redis down")
			}
			w := httptest.NewRecorder()
			rc.ServeReports(w, httptest.NewRequest(tt.method, tt.url, strings.NewReader(tt.body)), s)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			if tt.answer != "" && w.Body.String() != tt.answer {
				t.Errorf("answer %q, want %q", w.Body, tt.answer)
			}
			if tt.noSink && s.touched() != 0 {
				t.Errorf("sink called %d times", s.touched())
			}
			got := s.got()
			if tt.report == nil {
				if len(got) != 0 {
					t.Errorf("reports %+v", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("reports %+v", got)
			}
			got[0].At = got[0].At.UTC()
			if g := got[0]; g.Ref != tt.report.Ref || g.State != tt.report.State || g.Reason != tt.report.Reason || g.ProviderID != tt.report.ProviderID || g.At.Unix() != 1395658920 {
				t.Errorf("report %+v, want %+v", g, *tt.report)
			}
		})
	}
}

// TestReceiverUnknownMsgID answers success and records nothing.
func TestReceiverUnknownMsgID(t *testing.T) {
	rc, _ := wechat.NewReceiver(oaConfig("", ""), quiet())
	s := newSink()
	w := httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest("POST", signedURL(srvToken, "1", "2", nil), strings.NewReader(strings.Replace(eventXML, "%s", "success", 1))), s)
	if w.Code != 200 || w.Body.String() != "success" || len(s.got()) != 0 {
		t.Errorf("%d %q %+v", w.Code, w.Body, s.got())
	}
	// The method is checked after the signature.
	w = httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest("PUT", signedURL(srvToken, "1", "2", nil), nil), s)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", w.Code)
	}
	b, _ := io.ReadAll(w.Body)
	_ = b
}
