package aliyunvoice_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/aliyunvoice"
	"warngate/channels/aliyunvoice/fake"
	"warngate/channels/voice"
	"warngate/internal/channeltest"
	"warngate/internal/redistest"
	"warngate/warning"
)

const (
	keyID, keySecret = "LTAI5tVoiceTest", "voice-secret-0123456789"
	token            = "push-token-0123456789abcdef"
	show             = "057112345678"
)

// logBuffer is a log safe to write from pushes and read from the test.
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

// rig is the adapter, its fake account, the gateway's callback endpoint
// and the sink behind it.
type rig struct {
	a    *aliyunvoice.Aliyun
	f    *fake.Server
	sink *channeltest.Sink
	cb   string // the callback URL with its token
	log  *logBuffer
	acct string
	lost *redistest.LostReply // loses a Redis reply when armed

	mu   sync.Mutex
	took []time.Duration // how long each push took the gateway
}

// inUse returns how many of the account's lines are held.
func (r *rig) inUse() int {
	n, _ := r.a.Lines().InUse(context.Background(), r.acct)
	return n
}

func newRig(t testing.TB, fo fake.Options, change func(*aliyunvoice.Config)) *rig {
	t.Helper()
	r := &rig{sink: &channeltest.Sink{}, log: &logBuffer{}, lost: &redistest.LostReply{}}
	var sink channels.ReportSink = r.sink
	gw := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		start := time.Now()
		r.a.ServeReports(w, req, sink)
		r.mu.Lock()
		r.took = append(r.took, time.Since(start))
		r.mu.Unlock()
	}))
	r.cb = gw.URL + "/callbacks/aliyun_voice?token=" + token
	fo.AccessKeyID, fo.AccessKeySecret, fo.ShowNumbers = keyID, keySecret, []string{show}
	fo.Templates = map[string]string{"TTS_100001": "${text}确认收到请按1，重听请按2。", "TTS_100002": "已确认收到，谢谢，再见。", "TTS_100003": "${text}"}
	fo.CallbackURL = r.cb
	fo.Log = slog.New(slog.NewTextHandler(r.log, nil))
	r.f = fake.NewServer(fo)
	t.Cleanup(r.f.Close)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", r.log.String())
		}
	})
	api := channeltest.Serve(t, r.f.Handler())
	cfg := aliyunvoice.Config{Endpoint: api.URL, AccessKeyID: keyID, AccessKeySecret: keySecret, CalledShowNumber: show,
		TtsCode: "TTS_100001", ConfirmCode: "TTS_100002", Lines: 10, CallbackToken: token}
	if change != nil {
		change(&cfg)
	}
	rdb := redistest.Client(t, redistest.DBAliyunVoice)
	rdb.AddHook(r.lost)
	r.acct = "aliyun-" + voice.NewID()
	a, err := aliyunvoice.New(cfg, r.acct, rdb, "t-"+voice.NewID(), &http.Client{Timeout: 10 * time.Second},
		slog.New(slog.NewTextHandler(r.log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	return r
}

// notify calls the numbers of a red rainstorm warning for township officials.
func (r *rig) notify(t *testing.T, numbers ...string) (*channels.Batch, []channels.Receipt, bool, error) {
	t.Helper()
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, numbers...)
	b.Area = "五华区"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rcs, retry, err := r.a.Notify(ctx, b)
	return b, rcs, retry, err
}

// reports waits for n reports and returns them by ref.
func (r *rig) reports(t *testing.T, n int) map[warning.Ref]warning.Report {
	t.Helper()
	channeltest.WaitFor(t, fmt.Sprintf("%d call reports", n), func() bool { return len(r.sink.Reports()) >= n })
	if got := len(r.sink.Reports()); got != n {
		t.Errorf("%d reports, want %d", got, n)
	}
	return r.sink.ByRef()
}

func answers(keys string) fake.Behavior {
	return fake.Behavior{Answer: true, Ring: 10 * time.Millisecond, Keys: keys, KeyAfter: 20 * time.Millisecond,
		Talk: 100 * time.Millisecond, ConfirmTalk: 10 * time.Millisecond}
}

func TestOfficialAnswersAndConfirmsWithOne(t *testing.T) {
	r := newRig(t, fake.Options{Default: answers("21")}, nil)
	b, rcs, retry, err := r.notify(t, "13800000001")
	if err != nil || retry {
		t.Fatal(retry, err)
	}
	channeltest.CheckReceipts(t, rcs, "S", nil)
	calls := r.f.Calls()
	if len(calls) != 1 {
		t.Fatalf("calls %+v", calls)
	}
	c := calls[0]
	if c.Action != "IvrCall" || c.Number != "13800000001" || c.ShowNumber != show || c.CallID != rcs[0].ProviderID ||
		c.Menu["1"] != "TTS_100002" || c.Menu["2"] != "TTS_100001" || c.PlayTimes != 2 || c.Timeout != 8*time.Second ||
		!regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(c.OutID) {
		t.Errorf("call %+v", c)
	}
	if want := "暴雨红色预警，一级，特别严重。预警区域：五华区。五华区暴雨红色预警。防御指引：停止户外活动，远离河道和低洼地带。确认收到请按1，重听请按2。"; c.Text != want {
		t.Errorf("the call says\n%s\nwant\n%s", c.Text, want)
	}
	rep := r.reports(t, 1)[b.Ref(0)]
	if rep.State != warning.Delivered || rep.ProviderID != c.CallID || rep.Call.Outcome != warning.CallAnswered || rep.Call.Keys != "21" ||
		rep.Call.Talk <= 0 || rep.Call.Billed != 1 {
		t.Errorf("report %+v %+v", rep, rep.Call)
	}
	got := r.sink.Confirmations()
	if len(got) != 1 || got[0].Ref != b.Ref(0) || got[0].Method != "voice" || got[0].From != "138****0001 aliyun_voice "+c.CallID {
		t.Errorf("confirmations %+v", got)
	}
	channeltest.WaitFor(t, "the line to come free", func() bool { return r.inUse() == 0 })
	if strings.Contains(r.log.String(), "13800000001") {
		t.Error("a whole number in the log")
	}
}

func TestEveryWayACallEnds(t *testing.T) {
	behave := map[string]fake.Behavior{
		"13800000001": {Status: "200003", Ring: 30 * time.Millisecond},                                    // nobody answers
		"13800000002": {Status: "200002", Ring: 5 * time.Millisecond},                                     // busy
		"13800000003": {Status: "200005", Ring: 5 * time.Millisecond},                                     // rejected
		"13800000004": {Status: "200010"},                                                                 // switched off
		"13800000005": answers(""),                                                                        // listens, presses nothing
		"13800000006": {Answer: true, Talk: 20 * time.Millisecond, HangUp: true},                          // hangs up
		"13800000007": {Answer: true, Keys: "3", KeyAfter: time.Millisecond, Talk: 20 * time.Millisecond}, // a key the menu does not take
	}
	r := newRig(t, fake.Options{Behave: func(n string) fake.Behavior { return behave[n] }}, nil)
	numbers := []string{"13800000001", "13800000002", "13800000003", "13800000004", "13800000005", "13800000006", "13800000007"}
	b, rcs, _, err := r.notify(t, numbers...)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "SSSSSSS", nil)
	reps := r.reports(t, len(numbers))
	want := []warning.CallOutcome{warning.CallNoAnswer, warning.CallBusy, warning.CallRejected, warning.CallUnreachable,
		warning.CallNoKey, warning.CallHangup, warning.CallNoKey}
	for i, o := range want {
		rep := reps[b.Ref(i)]
		if rep.Call == nil || rep.Call.Outcome != o || (rep.State == warning.Delivered) != o.Answered() || (rep.Call.Billed > 0) != o.Answered() {
			t.Errorf("%s: %+v %+v, want %s", numbers[i], rep, rep.Call, o)
		}
	}
	if r := reps[b.Ref(1)]; r.Reason != "占线：200002 用户占线 (USER_BUSY)" {
		t.Errorf("busy reason %q", r.Reason)
	}
	if r := reps[b.Ref(6)]; r.Call.Keys != "3" {
		t.Errorf("keys %q", r.Call.Keys)
	}
	if len(r.sink.Confirmations()) != 0 {
		t.Errorf("confirmations %+v", r.sink.Confirmations())
	}
}

func TestCallsKeepToTheAccountsLines(t *testing.T) {
	b := answers("")
	b.Talk = 60 * time.Millisecond
	r := newRig(t, fake.Options{Default: b, Lines: 3}, func(c *aliyunvoice.Config) { c.Lines = 3 })
	numbers := make([]string, 12)
	for i := range numbers {
		numbers[i] = fmt.Sprintf("138000001%02d", i)
	}
	_, rcs, retry, err := r.notify(t, numbers...)
	if err != nil || retry {
		t.Fatal(retry, err)
	}
	channeltest.CheckReceipts(t, rcs, strings.Repeat("S", 12), nil)
	r.reports(t, 12)
	if r.f.MostActive() != 3 || r.f.Overflows() != 0 {
		t.Errorf("at most %d calls at once, %d over the limit: want 3 and 0", r.f.MostActive(), r.f.Overflows())
	}
	channeltest.WaitFor(t, "the lines to come free", func() bool { return r.inUse() == 0 })
}

func TestACallBeyondTheProvidersLinesFails(t *testing.T) {
	b := answers("")
	b.Talk = time.Second
	r := newRig(t, fake.Options{Default: b, Lines: 1}, func(c *aliyunvoice.Config) { c.Lines = 2 })
	bt, _, _, err := r.notify(t, "13800000001", "13800000002")
	if err != nil {
		t.Fatal(err)
	}
	reps := r.reports(t, 2)
	if rep := reps[bt.Ref(1)]; rep.Call.Outcome != warning.CallFailed || !strings.Contains(rep.Reason, "200121") {
		t.Errorf("the call over the line limit: %+v %+v", rep, rep.Call)
	}
}

func TestKeyPressesThatMustChangeNothing(t *testing.T) {
	r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
	b, rcs, _, err := r.notify(t, "13800000001", "13800000002")
	if err != nil {
		t.Fatal(err)
	}
	calls := r.f.Calls()
	a, other := calls[0], calls[1]
	ctx := context.Background()
	press := func(c fake.Call, out, at string) fake.Push {
		return fake.Push{CallID: c.CallID, StatusCode: "300000", DTMF: "1", StatusTime: at, OutID: out}
	}
	// Forged: without the token, then for a call never placed.
	if err := r.f.PushTo(ctx, strings.Replace(r.cb, token, "guessed-token-0000000", 1), []fake.Push{press(a, a.OutID, "2026-12-01 10:00:01")}); err == nil {
		t.Error("a push without the token was taken")
	}
	r.f.PushTo(ctx, r.cb, []fake.Push{press(fake.Call{CallID: "999^999"}, a.OutID, "2026-12-01 10:00:01")})
	// For another call: a's call id with the other call's out id.
	r.f.PushTo(ctx, r.cb, []fake.Push{press(a, other.OutID, "2026-12-01 10:00:01")})
	if n := len(r.sink.Confirmations()); n != 0 {
		t.Fatalf("%d confirmations from forged key presses", n)
	}
	// The real one, then the same push again.
	for range 2 {
		if err := r.f.PushTo(ctx, r.cb, []fake.Push{press(a, a.OutID, "2026-12-01 10:00:02")}); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.sink.Confirmations(); len(got) != 1 || got[0].Ref != b.Ref(0) {
		t.Errorf("confirmations %+v", got)
	}
	// Late: the warning was lifted before the official pressed 1.
	r.sink.Lifted = map[string]bool{"w1": true}
	r.f.PushTo(ctx, r.cb, []fake.Push{press(other, other.OutID, "2026-12-01 10:00:03")})
	if len(r.sink.Confirmations()) != 1 || r.sink.Refused() != 1 {
		t.Errorf("after the lifted warning: %d confirmations, %d refused", len(r.sink.Confirmations()), r.sink.Refused())
	}
	for _, logged := range []string{"push refused: wrong token", "key press for a call the gateway did not place", "key press names another call",
		"key press pushed again", "key press 1 changed nothing"} {
		if !strings.Contains(r.log.String(), logged) {
			t.Errorf("not logged: %q\n%s", logged, r.log.String())
		}
	}
	// A call's record pushed twice is one report.
	end := fake.Push{CallID: a.CallID, StatusCode: "200000", OutID: a.OutID, Duration: ptr("12"), EndTime: "2026-12-01 10:00:20",
		StartTime: "2026-12-01 10:00:05", OriginateTime: "2026-12-01 10:00:00", HangupDirection: "机器"}
	for range 2 {
		if err := r.f.PushTo(ctx, r.cb, []fake.Push{end}); err != nil {
			t.Fatal(err)
		}
	}
	reps := r.sink.Reports()
	if len(reps) != 1 || reps[0].Call.Outcome != warning.CallAnswered || reps[0].Call.Ring != 5*time.Second ||
		reps[0].Call.Talk != 12*time.Second || reps[0].ProviderID != rcs[0].ProviderID {
		t.Errorf("reports %+v", reps)
	}
}

func ptr(s string) *string { return &s }

func TestAKeyPressTheSinkCannotConfirmIsPushedAgain(t *testing.T) {
	r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
	r.notify(t, "13800000001")
	a := r.f.Calls()[0]
	r.sink.FailConfirm = fmt.Errorf("redis is down")
	p := []fake.Push{{CallID: a.CallID, StatusCode: "300000", DTMF: "1", StatusTime: "2026-12-01 10:00:02", OutID: a.OutID}}
	if err := r.f.PushTo(context.Background(), r.cb, p); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("push while the sink fails: %v", err)
	}
	r.sink.FailConfirm = nil
	if err := r.f.PushTo(context.Background(), r.cb, p); err != nil {
		t.Fatal(err)
	}
	if len(r.sink.Confirmations()) != 1 {
		t.Errorf("the push made again did not confirm: %+v", r.sink.Confirmations())
	}
}

func TestAccountRefusals(t *testing.T) {
	tests := []struct {
		code   string
		retry  bool
		states string
	}{
		{"isv.BUSINESS_LIMIT_CONTROL", true, "-"},
		{"isv.AMOUNT_NOT_ENOUGH", true, "-"},
		{"isv.TTS_TEMPLATE_ILLEGAL", false, "-"},
		{"isv.DISPLAY_NUMBER_ILLEGAL", false, "-"},
		{"isv.MOBILE_NUMBER_ILLEGAL", false, "F"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			r := newRig(t, fake.Options{Default: answers("1")}, nil)
			r.f.FailNext(tt.code)
			_, rcs, retry, err := r.notify(t, "13800000001")
			channeltest.NotifyWant{Retry: tt.retry, States: tt.states}.Check(t, rcs, retry, err, keySecret)
			if err != nil && !strings.Contains(err.Error(), tt.code) {
				t.Errorf("err %v does not name %s", err, tt.code)
			}
			if n := r.inUse(); n != 0 {
				t.Errorf("%d lines held by a call not placed", n)
			}
		})
	}
}

func TestNoticesAndBadNumbers(t *testing.T) {
	r := newRig(t, fake.Options{Default: answers("")}, nil)
	b := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, "13800000001", "+1 555 0100")
	b.Notice = channels.NoticeLifted
	rcs, _, err := r.a.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "FF", map[int]string{0: "no notice template: set aliyun_voice.notice_code to call notices that ask nothing", 1: voice.InvalidNumber})

	r = newRig(t, fake.Options{Default: answers("")}, func(c *aliyunvoice.Config) { c.NoticeCode = "TTS_100003" })
	rcs, _, err = r.a.Notify(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, rcs, "SF", map[int]string{1: voice.InvalidNumber})
	if c := r.f.Calls(); len(c) != 1 || c[0].Action != "SingleCallByTts" || !strings.Contains(c[0].Text, "该预警已解除") || strings.Contains(c[0].Text, "按1") {
		t.Errorf("calls %+v", c)
	}
}

func TestCheckNamesEveryBadSetting(t *testing.T) {
	_, _, _, err := aliyunvoice.Check(aliyunvoice.Config{Endpoint: "ftp://x", CalledShowNumber: "duty", TtsCode: "100001",
		NoticeCode: "x", TemplateParams: map[string]string{"t": "title"}, PlayTimes: 5, KeyTimeout: time.Hour, MaxCall: time.Second})
	if err == nil {
		t.Fatal("no error")
	}
	for _, f := range []string{"endpoint", "access_key_id", "access_key_secret", "called_show_number", "tts_code", "confirm_code",
		"notice_code", "template_params.t", "play_times", "key_timeout", "lines", "max_call", "callback_token"} {
		if !strings.Contains(err.Error(), "aliyun_voice."+f+":") {
			t.Errorf("no problem named for %s in\n%v", f, err)
		}
	}
}
