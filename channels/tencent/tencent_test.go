package tencent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/tencent"
	"warngate/channels/tencent/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	secretID  = "AKIDfakefakefakefakefakefakefake0001"
	secretKey = "FakeSecretKey-do-not-leak-0123456789"
	appID     = "1400006666"
	token     = "cb-token-0123456789abcdef"
	sign      = "昆明市应急管理局"
	tmplID    = "1234567"
)

type captured struct {
	method, path string
	header       http.Header
	body         []byte
}

type rig struct {
	fake *fake.Server
	api  *httptest.Server
	gw   *httptest.Server
	sink *channeltest.Sink
	t    *tencent.Tencent
	mu   sync.Mutex
	reqs []captured
}

func newRig(t *testing.T, mod func(*fake.Options, *tencent.Config)) *rig {
	t.Helper()
	r := &rig{sink: &channeltest.Sink{Provider: "tencent", AwaitIndex: true}}
	r.gw = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.t.ServeReports(w, req, r.sink)
	}))
	t.Cleanup(r.gw.Close)
	o := fake.Options{SecretID: secretID, SecretKey: secretKey, SdkAppID: appID, SignNames: []string{sign},
		Templates:   map[string]string{tmplID: "{1}：{2}"},
		CallbackURL: r.gw.URL + "/callbacks/tencent?token=" + token, ReportDelay: 5 * time.Millisecond}
	cfg := tencent.Config{SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID, SignName: sign, TemplateID: tmplID,
		BatchSize: 3, CallbackToken: token, Timeout: 2 * time.Second}
	if mod != nil {
		mod(&o, &cfg)
	}
	r.fake = fake.NewServer(o)
	t.Cleanup(r.fake.Close)
	r.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, captured{req.Method, req.URL.Path, req.Header.Clone(), body})
		r.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.fake.ServeHTTP(w, req)
	}))
	t.Cleanup(r.api.Close)
	if cfg.Endpoint == "" {
		cfg.Endpoint = r.api.URL
	}
	tc, err := tencent.New(cfg, &http.Client{Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.t = tc
	return r
}

func TestSendSmsRequestIsExact(t *testing.T) {
	flags := log.Flags()
	r := newRig(t, nil)
	b := channeltest.Batch("13800000001", "8613800000002")
	got, retry, err := r.t.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	if log.Flags() != flags {
		t.Errorf("the SDK changed the standard logger's flags")
	}
	if len(r.reqs) != 1 {
		t.Fatalf("%d requests", len(r.reqs))
	}
	req := r.reqs[0]
	if req.method != http.MethodPost || req.path != "/" {
		t.Errorf("request %s %s", req.method, req.path)
	}
	for h, want := range map[string]string{"X-TC-Action": "SendSms", "X-TC-Version": "2021-01-11", "X-TC-Region": "ap-guangzhou", "Content-Type": "application/json"} {
		if req.header.Get(h) != want {
			t.Errorf("%s = %q, want %q", h, req.header.Get(h), want)
		}
	}
	if !strings.HasPrefix(req.header.Get("Authorization"), "TC3-HMAC-SHA256 Credential="+secretID+"/") ||
		!strings.Contains(req.header.Get("Authorization"), "/sms/tc3_request, SignedHeaders=content-type;host, Signature=") {
		t.Errorf("Authorization %q", req.header.Get("Authorization"))
	}
	msg := channels.Compose(b, b.Recipients[0])
	content := msg.Body + " 防御指引：" + msg.Instruction
	var body map[string]any
	json.Unmarshal(req.body, &body)
	want := map[string]any{"PhoneNumberSet": []any{"+8613800000001", "+8613800000002"}, "SmsSdkAppId": appID, "TemplateId": tmplID,
		"SignName": sign, "TemplateParamSet": []any{msg.Title, content}, "SessionContext": "w1/sms/0"}
	if fmt.Sprint(body) != fmt.Sprint(want) {
		t.Errorf("body\n got %v\nwant %v", body, want)
	}
	msgs := r.fake.Messages()
	text := "【" + sign + "】" + msg.Title + "：" + content
	for i, rc := range got {
		if rc.Index != i || rc.State != warning.Sent || rc.ProviderID != msgs[i].SerialNo || rc.Segments != channels.SMSSegments(text) {
			t.Errorf("receipt %+v, want Sent %s, %d segments", rc, msgs[i].SerialNo, channels.SMSSegments(text))
		}
	}
	if msgs[0].Text != text || msgs[0].Fee != channels.SMSSegments(text) {
		t.Errorf("the phone shows %q (fee %d), want %q", msgs[0].Text, msgs[0].Fee, text)
	}
}

func TestNotifyOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*fake.Options, *tencent.Config)
		inject    []string
		phones    []string
		wantRetry bool
		wantErr   string
		want      string
		reasons   map[int]string
		calls     int
	}{
		{name: "all sent in batches of three", phones: []string{"13800000001", "13800000002", "13800000003", "13800000004"}, want: "SSSS", calls: 2},
		{name: "invalid number fails without a call", phones: []string{"13800000001", "1380000000", "23800000001"}, want: "SFF", calls: 1,
			reasons: map[int]string{1: "invalid number: want 11 digits starting with 1"}},
		{name: "number refused by Tencent fails alone", mod: func(o *fake.Options, _ *tencent.Config) {
			o.IncorrectNumbers = []string{"13800000002"}
			o.LimitedNumbers = []string{"13800000003"}
		}, phones: []string{"13800000001", "13800000002", "13800000003"}, want: "SFF", calls: 1,
			reasons: map[int]string{1: "InvalidParameterValue.IncorrectPhoneNumber: 手机号格式错误。",
				2: "LimitExceeded.PhoneNumberDailyLimit: 单个手机号日下发短信条数超过设定的上限。"}},
		{name: "rate limit keeps the first call and retries", mod: func(o *fake.Options, _ *tencent.Config) { o.RateLimit = 1 },
			phones: []string{"13800000001", "13800000002", "13800000003", "13800000004"}, want: "SSS-", wantRetry: true, calls: 2,
			wantErr: "tencent: SendSms answered RequestLimitExceeded: 请求的次数超过了频率限制。"},
		{name: "internal error retries", inject: []string{"InternalError.Timeout"}, phones: []string{"13800000001"}, want: "-", wantRetry: true, calls: 1},
		{name: "template not approved is permanent", mod: func(o *fake.Options, _ *tencent.Config) { o.Templates = map[string]string{"1": "{1}"} },
			phones: []string{"13800000001"}, want: "-", calls: 1,
			wantErr: "tencent: SendSms answered FailedOperation.TemplateIncorrectOrUnapproved: 模板未审批或请求的内容与审核通过的模板内容不匹配。"},
		{name: "signature not approved is permanent", mod: func(o *fake.Options, _ *tencent.Config) { o.SignNames = []string{"别的局"} },
			phones: []string{"13800000001"}, want: "-", calls: 1,
			wantErr: "tencent: SendSms answered FailedOperation.SignatureIncorrectOrUnapproved: 签名未审批或格式错误。"},
		{name: "wrong key is permanent", mod: func(o *fake.Options, _ *tencent.Config) { o.SecretKey = "other" },
			phones: []string{"13800000001"}, want: "-", calls: 1,
			wantErr: "tencent: SendSms answered AuthFailure.SignatureFailure: 请求签名验证失败，请检查您的签名计算是否正确。"},
		{name: "unknown secret id is permanent", mod: func(o *fake.Options, _ *tencent.Config) { o.SecretID = "AKIDother" },
			phones: []string{"13800000001"}, want: "-", calls: 1},
		{name: "wrong app is permanent", mod: func(o *fake.Options, _ *tencent.Config) { o.SdkAppID = "1400000000" },
			phones: []string{"13800000001"}, want: "-", calls: 1},
		{name: "template parameters missing is permanent", mod: func(o *fake.Options, _ *tencent.Config) {
			o.Templates = map[string]string{tmplID: "{1}：{2}（{3}）"}
		},
			phones: []string{"13800000001"}, want: "-", calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.mod)
			r.fake.FailNext(tt.inject...)
			got, retry, err := r.t.Notify(context.Background(), channeltest.Batch(tt.phones...))
			channeltest.NotifyWant{Retry: tt.wantRetry, Err: tt.wantErr, States: tt.want, Reasons: tt.reasons}.Check(t, got, retry, err, secretKey)
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
		{name: "garbage 200 is accepted without id", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte("<html>gateway</html>"))
		}, want: "SS"},
		{name: "status missing a number: handed over all the same", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"Response":{"SendStatusSet":[{"SerialNo":"2433:1","PhoneNumber":"+8613800000001","Fee":1,"Code":"Ok","Message":"send success"}],"RequestId":"x"}}`))
		}, want: "SS"},
		{name: "thirty-second limit is sent again", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"Response":{"SendStatusSet":[{"SerialNo":"2433:1","PhoneNumber":"+8613800000001","Fee":1,"Code":"Ok","Message":"send success"},` +
				`{"SerialNo":"","PhoneNumber":"+8613800000002","Fee":0,"Code":"LimitExceeded.PhoneNumberThirtySecondLimit","Message":"30秒内"}],"RequestId":"x"}}`))
		}, wantRetry: true, wantErr: true, want: "S-"},
		{name: "502 retries", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(502)
		}, wantRetry: true, wantErr: true, want: "--"},
		{name: "404 is permanent", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(404)
		}, wantErr: true, want: "--"},
		{name: "timeout retries", handler: func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // so that the server notices the client leave
			<-r.Context().Done()
		}, wantRetry: true, wantErr: true, want: "--"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
			tc, err := tencent.New(tencent.Config{Endpoint: srv.URL, SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID,
				SignName: sign, TemplateID: tmplID, CallbackToken: token, Timeout: 100 * time.Millisecond}, &http.Client{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			got, retry, err := tc.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002"))
			if retry != tt.wantRetry || (err != nil) != tt.wantErr {
				t.Errorf("retry %v err %v", retry, err)
			}
			if time.Since(start) > 3*time.Second {
				t.Errorf("the call took %s: our timeout did not bind the SDK", time.Since(start))
			}
			if err != nil && strings.Contains(err.Error(), secretKey) {
				t.Errorf("secret in error: %v", err)
			}
			if states := channeltest.States(2, got); states != tt.want {
				t.Errorf("states %s, want %s", states, tt.want)
			}
		})
	}
}

func TestCancelledContextStopsTheCall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	tc, err := tencent.New(tencent.Config{Endpoint: srv.URL, SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID,
		SignName: sign, TemplateID: tmplID, CallbackToken: token}, &http.Client{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, retry, err := tc.Notify(ctx, channeltest.Batch("13800000001"))
	if !retry || err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("retry %v err %v", retry, err)
	}
}

func TestReportsArriveThroughTheFake(t *testing.T) {
	r := newRig(t, func(o *fake.Options, _ *tencent.Config) { o.FailNumbers = []string{"13800000002"} })
	b := channeltest.Batch("13800000001", "13800000002")
	got, _, err := r.t.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReports(t, r.sink, b, got, map[int]string{1: fake.FailCode + " " + fake.FailDescription})
	channeltest.WaitFor(t, "the fake to see its push taken", func() bool { return r.fake.Pushed() == 2 })
}

func TestServeReports(t *testing.T) {
	ref := warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: "r0"}
	cst := time.FixedZone("CST", 8*3600)
	ok := fake.Report{UserReceiveTime: "2026-07-01 10:00:05", NationCode: "86", Mobile: "13800000001", ReportStatus: "SUCCESS",
		ErrMsg: "DELIVRD", Description: "用户短信送达成功", SID: "2433:1"}
	bad := ok
	bad.ReportStatus, bad.ErrMsg, bad.Description = "FAIL", "MK:0001", "空号"
	unknown := ok
	unknown.SID = "2433:999"
	delivered := warning.Report{Ref: ref, State: warning.Delivered, ProviderID: "2433:1", At: time.Date(2026, 7, 1, 10, 0, 5, 0, cst)}
	tests := []struct {
		name     string
		query    string
		remote   string
		allow    []string
		body     any
		sinkErr  error
		status   int
		result   int
		want     []warning.Report
		sinkUsed bool
		unknown  int64
	}{
		{name: "delivered", query: "?token=" + token, body: []fake.Report{ok}, status: 200, sinkUsed: true, want: []warning.Report{delivered}},
		{name: "failed", query: "?token=" + token, body: []fake.Report{bad}, status: 200, sinkUsed: true,
			want: []warning.Report{{Ref: ref, State: warning.Failed, Reason: "MK:0001 空号", ProviderID: "2433:1", At: delivered.At}}},
		{name: "duplicate passes through", query: "?token=" + token, body: []fake.Report{ok, ok}, status: 200, sinkUsed: true,
			want: []warning.Report{delivered, delivered}},
		{name: "unknown sid answered OK, not recorded", query: "?token=" + token, body: []fake.Report{unknown}, status: 200, sinkUsed: true, unknown: 1},
		{name: "forged token", query: "?token=nope", body: []fake.Report{ok}, status: 403, result: 403},
		{name: "allowed address", query: "?token=" + token, allow: []string{"203.0.113.0/24"}, remote: "203.0.113.7:1234",
			body: []fake.Report{ok}, status: 200, sinkUsed: true, want: []warning.Report{delivered}},
		{name: "token right, address wrong", query: "?token=" + token, allow: []string{"203.0.113.0/24"}, remote: "198.51.100.7:1234",
			body: []fake.Report{ok}, status: 403, result: 403},
		{name: "malformed", query: "?token=" + token, body: `{"sid":1}`, status: 400, result: 400},
		{name: "sink down asks for a push again", query: "?token=" + token, body: []fake.Report{ok}, sinkErr: errors.New("down"),
			status: 503, result: 1, sinkUsed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tencent.New(tencent.Config{SecretID: secretID, SecretKey: secretKey, SmsSdkAppID: appID, SignName: sign,
				TemplateID: tmplID, CallbackToken: token, CallbackAllowFrom: tt.allow}, &http.Client{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			sink := &channeltest.Sink{Provider: "tencent", Fail: tt.sinkErr, IDs: map[string]warning.Ref{"2433:1": ref}}
			rec := channeltest.Push(tc, sink, "/callbacks/tencent"+tt.query, tt.remote, tt.body)
			channeltest.CheckAnswer(t, rec, tt.status, "result", tt.result, `{"result":0,"errmsg":"OK"}`)
			sink.CheckRecorded(t, tt.sinkUsed, tt.want)
			if tc.UnknownReports() != tt.unknown {
				t.Errorf("unknown %d, want %d", tc.UnknownReports(), tt.unknown)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := tencent.New(tencent.Config{Endpoint: "ftp://x", SmsSdkAppID: "app", SignName: "【昆明】", TemplateID: "SMS_1",
		Template: "{1}：{3}", TemplateParams: []string{"title", "headline"}, BatchSize: 201, CallbackToken: "short"}, &http.Client{}, nil)
	want := []string{
		`tencent.endpoint: scheme "ftp": use https or http: give a host such as sms.tencentcloudapi.com, or a URL such as http://127.0.0.1:8081`,
		"tencent.secret_id: required: the SecretId of a CAM key allowed to call sms:SendSms",
		"tencent.secret_key: required: that key's SecretKey; set it here, or to ${ENV_VAR} to read it from the environment, or set secret_key_file to a file that holds it",
		`tencent.sms_sdk_app_id: "app": an SdkAppId is digits, e.g. 1400006666`,
		`tencent.sign_name: "【昆明】": give the signature without brackets`,
		`tencent.template_id: "SMS_1": a template id is digits, e.g. 1234567`,
		"tencent.template: {3} is not filled: template_params has 2 entries, one per {1}, {2}, …",
		"tencent.template_params[1]: the template has no {2}: remove it or correct tencent.template",
		`tencent.template_params[1]: unknown field "headline": use one of title, level, body, instruction, content, text, ack_url`,
		"tencent.batch_size: 201 is out of range: SendSms takes 1 to 200 numbers",
		"tencent.callback_token: too short (5 characters): use at least 16 random characters, e.g. from `openssl rand -hex 16`",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
}
