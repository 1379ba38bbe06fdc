package wechat_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/internal/channeltest"
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

// eventCase is a callback request to the receiver and what it must do.
type eventCase struct {
	name     string
	method   string
	url      string
	body     string
	code     int
	answer   string          // the answer's body, when set
	report   *warning.Report // the report recorded, at eventXML's time; nil for none
	noSink   bool            // the sink is not called (as for any request refused with 4xx)
	failSink bool            // the sink does not record
	log      string          // in the log, when set (checked by the caller)
}

// serve has rc serve c's request with an eventSink of ref and checks what
// it did.
func (c eventCase) serve(t *testing.T, rc channels.ReportReceiver, ref warning.Ref) {
	t.Helper()
	s := eventSink(ref)
	if c.failSink {
		s.FailRecord = errors.New("redis down")
	}
	w := httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest(c.method, c.url, strings.NewReader(c.body)), s)
	if w.Code != c.code {
		t.Fatalf("status %d, want %d: %s", w.Code, c.code, w.Body)
	}
	if c.answer != "" && w.Body.String() != c.answer {
		t.Errorf("answer %q, want %q", w.Body, c.answer)
	}
	if (c.noSink || (c.code >= 400 && c.code != http.StatusServiceUnavailable)) && s.Calls() != 0 {
		t.Errorf("sink called %d times", s.Calls())
	}
	var want *warning.Report
	if c.report != nil {
		r := *c.report
		r.At = time.Unix(1395658920, 0)
		want = &r
	}
	s.CheckReport(t, want)
}

func TestReceiver(t *testing.T) {
	rc, err := wechat.NewReceiver(oaConfig("", ""), quiet())
	if err != nil {
		t.Fatal(err)
	}
	if rc.Name() != "wechat" {
		t.Errorf("name %q", rc.Name())
	}
	ref := warning.Ref{WarningID: "w1", Channel: warning.WeChat, RecipientID: "r1"}
	tests := []eventCase{
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
		t.Run(tt.name, func(t *testing.T) { tt.serve(t, rc, ref) })
	}
}

// TestReceiverUnknownMsgID answers success and records nothing.
func TestReceiverUnknownMsgID(t *testing.T) {
	rc, _ := wechat.NewReceiver(oaConfig("", ""), quiet())
	s := &channeltest.Sink{Provider: "wechat"}
	w := httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest("POST", signedURL(srvToken, "1", "2", nil), strings.NewReader(strings.Replace(eventXML, "%s", "success", 1))), s)
	if w.Code != 200 || w.Body.String() != "success" || len(s.Reports()) != 0 {
		t.Errorf("%d %q %+v", w.Code, w.Body, s.Reports())
	}
	// The method is checked after the signature.
	w = httptest.NewRecorder()
	rc.ServeReports(w, httptest.NewRequest("PUT", signedURL(srvToken, "1", "2", nil), nil), s)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d", w.Code)
	}
}
