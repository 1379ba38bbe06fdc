package aliyun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/aliyun"
	"warngate/channels/aliyun/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	keyID    = "LTAI5tFakeKeyId0001"
	secret   = "FakeSecret-do-not-leak-0123456789"
	token    = "cb-token-0123456789abcdef"
	sign     = "昆明市应急管理局"
	template = "SMS_123456789"
)

// rig is a gateway (the report callback) and the fake provider.
type rig struct {
	fake    *fake.Server
	api     *httptest.Server
	gw      *httptest.Server
	sink    *channeltest.Sink
	a       *aliyun.Aliyun
	mu      sync.Mutex
	reqs    []*http.Request
	bodies  [][]byte
	options fake.Options
}

func newRig(t *testing.T, mod func(*fake.Options, *aliyun.Config)) *rig {
	t.Helper()
	r := &rig{sink: &channeltest.Sink{Provider: "aliyun", AwaitIndex: true}}
	cfg := aliyun.Config{AccessKeyID: keyID, AccessKeySecret: secret, SignName: sign, TemplateCode: template, BatchSize: 3,
		CallbackToken: token, Timeout: 2 * time.Second}
	r.gw = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.a.ServeReports(w, req, r.sink)
	}))
	t.Cleanup(r.gw.Close)
	o := fake.Options{
		AccessKeyID: keyID, AccessKeySecret: secret, SignNames: []string{sign},
		Templates:   map[string]string{template: "${title}：${content}"},
		CallbackURL: r.gw.URL + "/callbacks/aliyun?token=" + token, ReportDelay: 5 * time.Millisecond,
	}
	if mod != nil {
		mod(&o, &cfg)
	}
	r.fake = fake.NewServer(o)
	t.Cleanup(r.fake.Close)
	r.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var buf bytes.Buffer
		buf.ReadFrom(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, req.Clone(context.Background()))
		r.bodies = append(r.bodies, buf.Bytes())
		r.mu.Unlock()
		req.Body = http.NoBody
		if buf.Len() > 0 {
			req.Body = readCloser{bytes.NewReader(buf.Bytes())}
		}
		r.fake.ServeHTTP(w, req)
	}))
	t.Cleanup(r.api.Close)
	if cfg.Endpoint == "" {
		cfg.Endpoint = r.api.URL
	}
	a, err := aliyun.New(cfg, &http.Client{Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	return r
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func TestSendSmsRequestIsExact(t *testing.T) {
	r := newRig(t, nil)
	b := channeltest.Batch("13800000001", "+8613800000002")
	got, retry, err := r.a.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	if len(r.reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(r.reqs))
	}
	req := r.reqs[0]
	if req.Method != http.MethodPost || req.URL.Path != "/" || len(r.bodies[0]) != 0 {
		t.Errorf("request %s %s with %d bytes of body, want POST / with none", req.Method, req.URL.Path, len(r.bodies[0]))
	}
	for h, want := range map[string]string{
		"x-acs-action": "SendSms", "x-acs-version": "2017-05-25",
		"x-acs-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "Accept": "application/json",
	} {
		if req.Header.Get(h) != want {
			t.Errorf("%s = %q, want %q", h, req.Header.Get(h), want)
		}
	}
	if !strings.HasPrefix(req.Header.Get("Authorization"), "ACS3-HMAC-SHA256 Credential="+keyID+",SignedHeaders=host;x-acs-action;x-acs-content-sha256;x-acs-date;x-acs-signature-nonce;x-acs-version,Signature=") {
		t.Errorf("Authorization %q", req.Header.Get("Authorization"))
	}
	msg := channels.Compose(b, b.Recipients[0])
	wantParam, _ := json.Marshal(map[string]string{"title": msg.Title, "content": msg.Body + " 防御指引：" + msg.Instruction})
	want := url.Values{"PhoneNumbers": {"13800000001,13800000002"}, "SignName": {sign}, "TemplateCode": {template},
		"TemplateParam": {string(wantParam)}, "OutId": {"w1/sms/0"}}
	if fmt.Sprint(req.URL.Query()) != fmt.Sprint(want) {
		t.Errorf("query\n got %v\nwant %v", req.URL.Query(), want)
	}
	if !strings.Contains(req.URL.RawQuery, "%20") || strings.Contains(req.URL.RawQuery, "+") {
		t.Errorf("query not RFC 3986 encoded: %s", req.URL.RawQuery)
	}

	msgs := r.fake.Messages()
	if len(msgs) != 2 {
		t.Fatalf("fake accepted %d messages", len(msgs))
	}
	text := "【" + sign + "】" + msg.Title + "：" + msg.Body + " 防御指引：" + msg.Instruction
	for i, rc := range got {
		if rc.Index != i || rc.State != warning.Sent || rc.ProviderID != msgs[i].BizID+":"+msgs[i].Phone || rc.Segments != channels.SMSSegments(text) {
			t.Errorf("receipt %+v, want Sent %s:%s with %d segments", rc, msgs[i].BizID, msgs[i].Phone, channels.SMSSegments(text))
		}
	}
	if msgs[0].Text != text || msgs[0].Parts != channels.SMSSegments(text) {
		t.Errorf("the phone shows %q (%d parts), want %q", msgs[0].Text, msgs[0].Parts, text)
	}
}

func TestNotifyOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*fake.Options, *aliyun.Config)
		inject    []string
		phones    []string
		wantRetry bool
		wantErr   string
		want      string // states by index
		reasons   map[int]string
		calls     int
	}{
		{name: "all sent in batches of three", phones: []string{"13800000001", "13800000002", "13800000003", "13800000004"},
			want: "SSSS", calls: 2},
		{name: "invalid number fails without a call", phones: []string{"13800000001", "1380000000", "23800000001"},
			want: "SFF", reasons: map[int]string{1: "invalid number: want 11 digits starting with 1"}, calls: 1},
		{name: "illegal number alone fails", mod: func(o *fake.Options, _ *aliyun.Config) { o.IllegalNumbers = []string{"13800000002"} },
			phones: []string{"13800000001", "13800000002", "13800000003"}, want: "SFS",
			reasons: map[int]string{1: "isv.MOBILE_NUMBER_ILLEGAL: 手机号码格式错误"}, calls: 5},
		{name: "throttled keeps the first call and retries", mod: func(o *fake.Options, _ *aliyun.Config) { o.RateLimit = 1 },
			phones: []string{"13800000001", "13800000002", "13800000003", "13800000004"}, want: "SSS-", wantRetry: true,
			wantErr: "aliyun: SendSms answered HTTP 200 isv.BUSINESS_LIMIT_CONTROL: 触发分钟级流控Permits:1", calls: 2},
		{name: "user flow control retries", inject: []string{"Throttling.User"}, phones: []string{"13800000001"}, want: "-", wantRetry: true,
			wantErr: "aliyun: SendSms answered HTTP 400 Throttling.User: Request was denied due to user flow control.", calls: 1},
		{name: "system error retries", inject: []string{"isp.SYSTEM_ERROR"}, phones: []string{"13800000001"}, want: "-", wantRetry: true, calls: 1},
		{name: "template not approved is permanent", mod: func(o *fake.Options, _ *aliyun.Config) { o.Templates = map[string]string{"SMS_1": "x"} },
			phones: []string{"13800000001"}, want: "-", wantErr: "aliyun: SendSms answered HTTP 200 isv.SMS_TEMPLATE_ILLEGAL: 该账号下找不到对应模板", calls: 1},
		{name: "signature not approved is permanent", mod: func(o *fake.Options, _ *aliyun.Config) { o.SignNames = []string{"别的局"} },
			phones: []string{"13800000001"}, want: "-", wantErr: "aliyun: SendSms answered HTTP 200 isv.SMS_SIGNATURE_ILLEGAL: 该账号下找不到对应签名", calls: 1},
		{name: "wrong secret is permanent", mod: func(o *fake.Options, _ *aliyun.Config) { o.AccessKeySecret = "another" },
			phones: []string{"13800000001"}, want: "-", wantErr: "aliyun: SendSms answered HTTP 400 SignatureDoesNotMatch: Specified signature does not match our calculation.", calls: 1},
		{name: "unknown key is permanent", mod: func(o *fake.Options, _ *aliyun.Config) { o.AccessKeyID = "LTAIother" },
			phones: []string{"13800000001"}, want: "-", wantErr: "aliyun: SendSms answered HTTP 404 InvalidAccessKeyId.NotFound: Specified access key is not found.", calls: 1},
		{name: "template variables missing is permanent", mod: func(o *fake.Options, _ *aliyun.Config) {
			o.Templates = map[string]string{template: "${title}：${content}（${unit}）"}
		}, phones: []string{"13800000001"}, want: "-", calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.mod)
			r.fake.FailNext(tt.inject...)
			got, retry, err := r.a.Notify(context.Background(), channeltest.Batch(tt.phones...))
			channeltest.NotifyWant{Retry: tt.wantRetry, Err: tt.wantErr, States: tt.want, Reasons: tt.reasons}.Check(t, got, retry, err, secret)
			if r.fake.Calls() != tt.calls {
				t.Errorf("%d calls, want %d", r.fake.Calls(), tt.calls)
			}
		})
	}
}

// A hand-written server for answers the fake does not give.
func TestNotifyTransportAndGarbage(t *testing.T) {
	tests := []struct {
		name      string
		handler   http.HandlerFunc
		wantRetry bool
		wantErr   bool
		want      string
	}{
		{name: "garbage 2xx is accepted without id", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(200)
			w.Write([]byte("<html>gateway</html>"))
		}, want: "SS"},
		{name: "502 retries", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(502)
			w.Write([]byte("Bad Gateway"))
		}, wantRetry: true, wantErr: true, want: "--"},
		{name: "403 without a code is permanent", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(403)
		}, wantErr: true, want: "--"},
		{name: "timeout retries", handler: func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}, wantRetry: true, wantErr: true, want: "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
			a, err := aliyun.New(aliyun.Config{Endpoint: srv.URL, AccessKeyID: keyID, AccessKeySecret: secret, SignName: sign,
				TemplateCode: template, CallbackToken: token, Timeout: 100 * time.Millisecond}, &http.Client{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, retry, err := a.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002"))
			if retry != tt.wantRetry || (err != nil) != tt.wantErr {
				t.Errorf("retry %v err %v", retry, err)
			}
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("secret in error: %v", err)
			}
			for _, rc := range got {
				if rc.ProviderID != "" {
					t.Errorf("provider id %q from garbage", rc.ProviderID)
				}
			}
			if states := channeltest.States(2, got); states != tt.want {
				t.Errorf("states %s, want %s", states, tt.want)
			}
		})
	}
}

func TestOfficialsWithLinksGoInCallsOfTheirOwn(t *testing.T) {
	r := newRig(t, func(o *fake.Options, c *aliyun.Config) {
		o.Templates = map[string]string{template: "${title}：${content} 请确认：${url}"}
		c.Template = "${title}：${content} 请确认：${url}"
		c.TemplateParams = map[string]string{"title": "title", "content": "content", "url": "ack_url"}
	})
	b := channeltest.Batch("13800000001", "13800000002", "13800000003")
	for i := range b.Recipients {
		b.Recipients[i].Audience = warning.TownshipOfficials
	}
	b.AckURL = func(rc warning.Recipient) string { return "https://k.example/a/" + rc.ID }
	got, _, err := r.a.Notify(context.Background(), b)
	if err != nil || len(got) != 3 || r.fake.Calls() != 3 {
		t.Fatalf("receipts %v err %v calls %d", got, err, r.fake.Calls())
	}
	for _, m := range r.fake.Messages() {
		want := "https://k.example/a/r" + string(m.Phone[len(m.Phone)-1]-1)
		if m.Params["url"] != want {
			t.Errorf("%s got link %q, want %q", m.Phone, m.Params["url"], want)
		}
	}
}

func TestReportsArriveThroughTheFake(t *testing.T) {
	r := newRig(t, func(o *fake.Options, _ *aliyun.Config) { o.FailNumbers = []string{"13800000002"} })
	b := channeltest.Batch("13800000001", "13800000002")
	got, _, err := r.a.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReports(t, r.sink, b, got, map[int]string{1: fake.FailCode + " " + fake.FailMessage})
	channeltest.WaitFor(t, "the fake to see its push taken", func() bool { return r.fake.Pushed() == 2 })
}

func TestServeReports(t *testing.T) {
	ref := warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: "r0"}
	known := fake.Report{PhoneNumber: "13800000001", SendTime: "2026-07-01 10:00:00", ReportTime: "2026-07-01 10:00:05",
		Success: true, ErrCode: "DELIVERED", ErrMsg: "用户接收成功", SmsSize: "1", BizID: "900000000000000001^0", OutID: "w1/sms/0"}
	failed := known
	failed.Success, failed.ErrCode, failed.ErrMsg = false, "MN:0001", "用户关机"
	unknown := known
	unknown.BizID = "123^0"
	tests := []struct {
		name     string
		query    string
		remote   string
		allow    []string
		noToken  bool
		body     any
		sinkErr  error
		status   int
		code     int
		want     []warning.Report
		sinkUsed bool
		unknown  int64
	}{
		{name: "delivered", query: "?token=" + token, body: []fake.Report{known}, status: 200, code: 0, sinkUsed: true,
			want: []warning.Report{{Ref: ref, State: warning.Delivered, ProviderID: "900000000000000001^0:13800000001",
				At: time.Date(2026, 7, 1, 10, 0, 5, 0, time.FixedZone("CST", 8*3600))}}},
		{name: "failed", query: "?token=" + token, body: []fake.Report{failed}, status: 200, code: 0, sinkUsed: true,
			want: []warning.Report{{Ref: ref, State: warning.Failed, Reason: "MN:0001 用户关机", ProviderID: "900000000000000001^0:13800000001",
				At: time.Date(2026, 7, 1, 10, 0, 5, 0, time.FixedZone("CST", 8*3600))}}},
		{name: "duplicate passes through", query: "?token=" + token, body: []fake.Report{known, known}, status: 200, sinkUsed: true,
			want: []warning.Report{
				{Ref: ref, State: warning.Delivered, ProviderID: "900000000000000001^0:13800000001", At: time.Date(2026, 7, 1, 10, 0, 5, 0, time.FixedZone("CST", 8*3600))},
				{Ref: ref, State: warning.Delivered, ProviderID: "900000000000000001^0:13800000001", At: time.Date(2026, 7, 1, 10, 0, 5, 0, time.FixedZone("CST", 8*3600))},
			}},
		{name: "unknown id answered OK, not recorded", query: "?token=" + token, body: []fake.Report{unknown}, status: 200, sinkUsed: true, unknown: 1},
		{name: "forged token", query: "?token=guess", body: []fake.Report{known}, status: 403, code: 403},
		{name: "no token", body: []fake.Report{known}, status: 403, code: 403},
		{name: "allowed address", query: "?token=" + token, allow: []string{"100.104.0.0/16"}, remote: "100.104.3.4:5555",
			body: []fake.Report{unknown}, status: 200, sinkUsed: true, unknown: 1},
		{name: "address outside the list", query: "?token=" + token, allow: []string{"100.104.0.0/16"}, remote: "203.0.113.9:5555",
			body: []fake.Report{known}, status: 403, code: 403},
		{name: "address alone suffices when no token is set", noToken: true, allow: []string{"100.104.3.4"}, remote: "100.104.3.4:5555",
			body: []fake.Report{unknown}, status: 200, sinkUsed: true, unknown: 1},
		{name: "malformed", query: "?token=" + token, body: "{not json", status: 400, code: 400},
		{name: "sink down asks for a push again", query: "?token=" + token, body: []fake.Report{known}, sinkErr: errors.New("down"),
			status: 503, code: 1, sinkUsed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := aliyun.Config{AccessKeyID: keyID, AccessKeySecret: secret, SignName: sign, TemplateCode: template,
				CallbackToken: token, CallbackAllowFrom: tt.allow}
			if tt.noToken {
				cfg.CallbackToken = ""
			}
			a, err := aliyun.New(cfg, &http.Client{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sink := &channeltest.Sink{Provider: "aliyun", Fail: tt.sinkErr, IDs: map[string]warning.Ref{"900000000000000001^0:13800000001": ref}}
			rec := channeltest.Push(a, sink, "/callbacks/aliyun"+tt.query, tt.remote, tt.body)
			channeltest.CheckAnswer(t, rec, tt.status, "code", tt.code, `{"code":0,"msg":"成功"}`)
			sink.CheckRecorded(t, tt.sinkUsed, tt.want)
			if a.UnknownReports() != tt.unknown {
				t.Errorf("unknown %d, want %d", a.UnknownReports(), tt.unknown)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := aliyun.New(aliyun.Config{Endpoint: "dysmsapi.aliyuncs.com", SignName: "【昆明】", TemplateCode: "123",
		TemplateParams: map[string]string{"title": "title"}, BatchSize: 2000, CallbackAllowFrom: []string{"10.0.0.0/33"}}, &http.Client{}, nil)
	want := []string{
		`aliyun.endpoint: "dysmsapi.aliyuncs.com" is not an http(s) address without a query: leave it out for https://dysmsapi.aliyuncs.com`,
		"aliyun.access_key_id: required: the AccessKey ID of a RAM user allowed to call dysmsapi:SendSms",
		"aliyun.access_key_secret: required: that AccessKey's secret; set it here, or to ${ENV_VAR} to read it from the environment, or set access_key_secret_file to a file that holds it",
		`aliyun.sign_name: "【昆明】": give the signature without brackets`,
		`aliyun.template_code: "123": a template code looks like SMS_123456789`,
		`aliyun.template: required with template_params: the approved template's text, e.g. "${title}：${content}", to fit and count the message`,
		`aliyun.template_params: the template's ${content} is not filled: add content: <field> (one of title, level, body, instruction, content, text, ack_url)`,
		"aliyun.batch_size: 2000 is out of range: SendSms takes 1 to 1000 numbers",
		`aliyun.callback_allow_from: "10.0.0.0/33" is neither a CIDR (100.104.0.0/16) nor an IP address`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	_, err = aliyun.New(aliyun.Config{AccessKeyID: keyID, AccessKeySecret: secret, SignName: sign, TemplateCode: template}, &http.Client{}, nil)
	if err == nil || !strings.Contains(err.Error(), "aliyun.callback_token: required unless callback_allow_from is set") {
		t.Errorf("no callback authentication accepted: %v", err)
	}
}
