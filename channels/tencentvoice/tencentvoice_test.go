package tencentvoice_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/tencentvoice"
	"warngate/channels/tencentvoice/fake"
	"warngate/channels/voice"
	"warngate/internal/channeltest"
	"warngate/internal/redistest"
	"warngate/warning"
)

const (
	secretID, secretKey = "AKIDvoicetest", "voice-secret-key-0123"
	token               = "callback-token-0123456789ab"
	appID               = "1400000001"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

type rig struct {
	t    *tencentvoice.Tencent
	f    *fake.Server
	sink *channeltest.Sink
	cb   string
	log  *logBuffer
	acct string
	lost *redistest.LostReply // loses a Redis reply when armed
}

func (r *rig) inUse() int {
	n, _ := r.t.Lines().InUse(context.Background(), r.acct)
	return n
}

func newRig(t *testing.T, fo fake.Options, change func(*tencentvoice.Config)) *rig {
	t.Helper()
	r := &rig{sink: &channeltest.Sink{}, log: &logBuffer{}, acct: "tencent-" + voice.NewID(), lost: &redistest.LostReply{}}
	gw := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.t.ServeReports(w, req, r.sink) }))
	r.cb = gw.URL + "/callbacks/tencent_voice?token=" + token
	fo.SecretID, fo.SecretKey, fo.SdkAppID, fo.CallbackURL = secretID, secretKey, appID, r.cb
	fo.Templates = map[string]string{"100001": "{1}确认收到请按1，重听请按2。", "100003": "{1}"}
	fo.Log = slog.New(slog.NewTextHandler(r.log, nil))
	r.f = fake.NewServer(fo)
	t.Cleanup(r.f.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", r.log.String())
		}
	})
	api := channeltest.Serve(t, r.f.Handler())
	cfg := tencentvoice.Config{Endpoint: api.URL, SecretID: secretID, SecretKey: secretKey, VoiceSdkAppID: appID,
		TemplateID: "100001", Lines: 10, CallbackToken: token}
	if change != nil {
		change(&cfg)
	}
	rdb := redistest.Client(t, redistest.DBTencentVoice)
	rdb.AddHook(r.lost)
	tv, err := tencentvoice.New(cfg, r.acct, rdb, "t-"+voice.NewID(),
		&http.Client{Timeout: 10 * time.Second}, slog.New(slog.NewTextHandler(r.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.t = tv
	return r
}

func (r *rig) notify(t *testing.T, numbers ...string) (*channels.Batch, []channels.Receipt, bool, error) {
	t.Helper()
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, numbers...)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rcs, retry, err := r.t.Notify(ctx, b)
	return b, rcs, retry, err
}

func (r *rig) reports(t *testing.T, n int) map[warning.Ref]warning.Report {
	t.Helper()
	channeltest.WaitFor(t, fmt.Sprintf("%d call reports", n), func() bool { return len(r.sink.Reports()) >= n })
	if got := len(r.sink.Reports()); got != n {
		t.Errorf("%d reports, want %d", got, n)
	}
	return r.sink.ByRef()
}

func answers(keys string) fake.Behavior {
	return fake.Behavior{Answer: true, Ring: 10 * time.Millisecond, Keys: keys, KeyAfter: 20 * time.Millisecond, Talk: 100 * time.Millisecond}
}

func TestOfficialAnswersAndConfirmsWithOne(t *testing.T) {
	r := newRig(t, fake.Options{Default: answers("21")}, nil)
	b, rcs, retry, err := r.notify(t, "13800000001")
	if err != nil || retry {
		t.Fatal(retry, err)
	}
	channeltest.CheckReceipts(t, rcs, "S", nil)
	c := r.f.Calls()[0]
	if c.Number != "13800000001" || c.TemplateID != "100001" || c.PlayTimes != 2 || c.CallID != rcs[0].ProviderID || len(c.SessionContext) != 12 ||
		c.Text != "暴雨红色预警，一级，特别严重。五华区暴雨红色预警。防御指引：停止户外活动，远离河道和低洼地带。确认收到请按1，重听请按2。" {
		t.Errorf("call %+v", c)
	}
	rep := r.reports(t, 1)[b.Ref(0)]
	if rep.State != warning.Delivered || rep.ProviderID != c.CallID || rep.Call.Outcome != warning.CallAnswered || rep.Call.Keys != "21" || rep.Call.Billed != 1 {
		t.Errorf("report %+v %+v", rep, rep.Call)
	}
	got := r.sink.Confirmations()
	if len(got) != 1 || got[0].Ref != b.Ref(0) || got[0].From != "138****0001 tencent_voice "+c.CallID {
		t.Errorf("confirmations %+v", got)
	}
	channeltest.WaitFor(t, "the line to come free", func() bool { return r.inUse() == 0 })
	if strings.Contains(r.log.String(), "13800000001") {
		t.Error("a whole number in the log")
	}
}

func TestEveryWayACallEnds(t *testing.T) {
	behave := map[string]fake.Behavior{
		"13800000001": {Ring: 20 * time.Millisecond}, // nobody answers (5)
		"13800000002": {FailureCode: 2},              // in another call
		"13800000003": {FailureCode: 10},             // 用户正忙: rejected
		"13800000004": {FailureCode: 1},              // switched off
		"13800000005": answers(""),                   // listens, presses nothing
		"13800000006": {FailureCode: 18},             // the network is busy
	}
	r := newRig(t, fake.Options{Behave: func(n string) fake.Behavior { return behave[n] }}, nil)
	numbers := []string{"13800000001", "13800000002", "13800000003", "13800000004", "13800000005", "13800000006"}
	b, rcs, _, err := r.notify(t, numbers...)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "SSSSSS", nil)
	reps := r.reports(t, len(numbers))
	want := []warning.CallOutcome{warning.CallNoAnswer, warning.CallBusy, warning.CallRejected, warning.CallUnreachable, warning.CallNoKey, warning.CallFailed}
	for i, o := range want {
		rep := reps[b.Ref(i)]
		if rep.Call == nil || rep.Call.Outcome != o || (rep.State == warning.Delivered) != o.Answered() {
			t.Errorf("%s: %+v %+v, want %s", numbers[i], rep, rep.Call, o)
		}
	}
	if rep := reps[b.Ref(3)]; rep.Reason != "无法接通：1 关机" {
		t.Errorf("reason %q", rep.Reason)
	}
	if !strings.Contains(r.log.String(), "call end for a call already ended, ignored") {
		t.Error("the end after the failure was not seen")
	}
}

func TestCallsKeepToTheApplicationsLines(t *testing.T) {
	b := answers("")
	b.Talk = 60 * time.Millisecond
	r := newRig(t, fake.Options{Default: b, Lines: 3}, func(c *tencentvoice.Config) { c.Lines = 3 })
	numbers := make([]string, 10)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("138000002%02d", i)
	}
	if _, _, retry, err := r.notify(t, numbers...); err != nil || retry {
		t.Fatal(retry, err)
	}
	r.reports(t, 10)
	if r.f.MostActive() != 3 || r.f.Overflows() != 0 {
		t.Errorf("at most %d calls at once, %d over: want 3 and 0", r.f.MostActive(), r.f.Overflows())
	}
}

func TestCallbacksThatMustChangeNothing(t *testing.T) {
	r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
	b, _, _, err := r.notify(t, "13800000001", "13800000002")
	if err != nil {
		t.Fatal(err)
	}
	calls := r.f.Calls()
	a, other := calls[0], calls[1]
	ctx := context.Background()
	key := func(c fake.Call, mobile string) fake.Callback {
		return fake.Callback{Key: &fake.Key{CallID: c.CallID, KeyPress: "1", Mobile: mobile, NationCode: "86"}}
	}
	if err := r.f.PostTo(ctx, strings.Replace(r.cb, token, "guessed-token-000000000", 1), key(a, a.Number)); err == nil {
		t.Error("a callback without the token was taken")
	}
	r.f.PostTo(ctx, r.cb, key(fake.Call{CallID: "never-placed"}, a.Number))
	r.f.PostTo(ctx, r.cb, key(a, other.Number)) // a's call, another number
	if n := len(r.sink.Confirmations()); n != 0 {
		t.Fatalf("%d confirmations from forged key presses", n)
	}
	for range 2 {
		if err := r.f.PostTo(ctx, r.cb, key(a, a.Number)); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.sink.Confirmations(); len(got) != 1 || got[0].Ref != b.Ref(0) {
		t.Errorf("confirmations %+v", got)
	}
	r.sink.Lifted = map[string]bool{"w1": true}
	r.f.PostTo(ctx, r.cb, key(other, other.Number))
	if len(r.sink.Confirmations()) != 1 || r.sink.Refused() != 1 {
		t.Errorf("after the lifted warning: %d confirmations, %d refused", len(r.sink.Confirmations()), r.sink.Refused())
	}
	for _, logged := range []string{"callback refused: wrong token", "key press for a call the gateway did not place",
		"key press names another number than its call's", "key press 1 again, ignored", "key press 1 changed nothing"} {
		if !strings.Contains(r.log.String(), logged) {
			t.Errorf("not logged: %q", logged)
		}
	}
}

func TestApplicationRefusals(t *testing.T) {
	tests := []struct {
		code   string
		retry  bool
		states string
	}{
		{"LimitExceeded.DeliveryFrequencyLimit", true, "-"},
		{"FailedOperation.InsufficientBalanceInVoicePackage", true, "-"},
		{"InternalError.UpstreamError", true, "-"},
		{"FailedOperation.TemplateIncorrectOrUnapproved", false, "-"},
		{"InvalidParameterValue.CalledNumberVerifyFail", false, "F"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			r := newRig(t, fake.Options{Default: answers("1")}, nil)
			r.f.FailNext(tt.code)
			_, rcs, retry, err := r.notify(t, "13800000001")
			channeltest.NotifyWant{Retry: tt.retry, States: tt.states}.Check(t, rcs, retry, err, secretKey)
			if err != nil && !strings.Contains(err.Error(), tt.code) {
				t.Errorf("err %v does not name %s", err, tt.code)
			}
			if r.inUse() != 0 {
				t.Error("a line held by a call not placed")
			}
		})
	}
}

func TestNoticesAndLongWarnings(t *testing.T) {
	r := newRig(t, fake.Options{Default: answers("")}, func(c *tencentvoice.Config) { c.NoticeTemplateID = "100003" })
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "13800000001")
	b.Warning.Instruction = strings.Repeat("远离河道。", 200)
	b.Warning.Headline = strings.Repeat("五华区暴雨红色预警", 15)
	rcs, _, err := r.t.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "S", nil)
	b.Notice = channels.NoticeLifted
	if _, _, err := r.t.Notify(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	calls := r.f.Calls()
	if len(calls) != 2 || len([]rune(calls[0].Text)) > tencentvoice.MaxText || !strings.HasSuffix(calls[0].Text, "确认收到请按1，重听请按2。") ||
		calls[1].TemplateID != "100003" || !strings.Contains(calls[1].Text, "该预警已解除") {
		t.Errorf("calls %+v", calls)
	}
}

func TestCheckNamesEveryBadSetting(t *testing.T) {
	_, _, _, err := tencentvoice.Check(tencentvoice.Config{Endpoint: "ftp://x", Region: "a b", VoiceSdkAppID: "app",
		TemplateID: "T1", NoticeTemplateID: "N", TemplateParams: []string{"title"}, PlayTimes: 4, MaxCall: time.Second})
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"endpoint", "region", "secret_id", "secret_key", "voice_sdk_app_id", "template_id",
		"notice_template_id", "template_params[0]", "play_times", "lines", "max_call", "callback_token"} {
		if !strings.Contains(err.Error(), "tencent_voice."+f+":") {
			t.Errorf("no problem named for %s in\n%v", f, err)
		}
	}
}
