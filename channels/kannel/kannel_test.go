package kannel_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/kannel"
	"warngate/internal/channeltest"
	"warngate/warning"
)

const (
	password = "s3cret-Pa55word"
	cbKey    = "k3y-0123456789abcdef"
)

var errSink = errors.New("ledger down")

func config(sendsms string) kannel.Config {
	return kannel.Config{
		SendSMSURL:  sendsms,
		Username:    "warngate",
		Password:    password,
		From:        "12379",
		Signature:   "昆明市应急管理局",
		DLRURL:      "http://gw.example:8080/callbacks/kannel",
		CallbackKey: cbKey,
		Concurrency: 4,
		Timeout:     2 * time.Second,
	}
}

// sendsms imitates Kannel's smsbox: it checks the call and answers with
// answer(to) as Kannel would.
type sendsms struct {
	t      *testing.T
	mu     sync.Mutex
	calls  []url.Values
	answer func(to string) (int, string)
}

func (s *sendsms) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/cgi-bin/sendsms" {
		s.t.Errorf("request %s %s, want GET /cgi-bin/sendsms", r.Method, r.URL.Path)
	}
	q := r.URL.Query()
	s.mu.Lock()
	s.calls = append(s.calls, q)
	s.mu.Unlock()
	if q.Get("username") != "warngate" || q.Get("password") != password {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "Authorization failed for sendsms")
		return
	}
	code, body := http.StatusAccepted, "0: Accepted for delivery"
	if s.answer != nil {
		code, body = s.answer(q.Get("to"))
	}
	if code == 0 { // hang until the client gives up
		<-r.Context().Done()
		return
	}
	w.WriteHeader(code)
	fmt.Fprint(w, body)
}

func (s *sendsms) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func newSendsms(t *testing.T, answer func(to string) (int, string)) (*sendsms, *httptest.Server) {
	s := &sendsms{t: t, answer: answer}
	return s, channeltest.Serve(t, s)
}

func newKannel(t *testing.T, cfg kannel.Config) *kannel.Kannel {
	t.Helper()
	k, err := kannel.New(cfg, &http.Client{Timeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNotifySendsOneExactCallPerRecipient(t *testing.T) {
	s, srv := newSendsms(t, nil)
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.SMSC = "CMCC"
	k := newKannel(t, cfg)
	b := channeltest.Batch("13800000001", "+8613800000002")
	b.Recipients[0].ID = "用户1" // escaped to %XX, which Kannel would mistake for its own codes

	got, retry, err := k.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	if len(got) != 2 || s.count() != 2 {
		t.Fatalf("%d receipts, %d calls; want 2 and 2", len(got), s.count())
	}
	text := "【昆明市应急管理局】" + channels.Compose(b, b.Recipients[0]).Plain()
	for i, rc := range got {
		if rc.Index != i || rc.State != warning.Sent || rc.ProviderID != "" || rc.Segments != channels.SMSSegments(text) {
			t.Errorf("receipt %d: %+v, want Sent with %d segments", i, rc, channels.SMSSegments(text))
		}
	}
	byTo := map[string]url.Values{}
	for _, q := range s.calls {
		byTo[q.Get("to")] = q
	}
	q := byTo["13800000001"]
	want := map[string]string{
		"username": "warngate", "password": password, "from": "12379", "text": text,
		"charset": "UTF-8", "coding": "2", "dlr-mask": "31", "smsc": "CMCC",
		// the ref escaped, then every % doubled for Kannel's %-codes
		"dlr-url": "http://gw.example:8080/callbacks/kannel?ref=w1%%2Fsms%%2F%%E7%%94%%A8%%E6%%88%%B71&type=%d&key=" + cbKey + "&reply=%A&ts=%T",
	}
	for name, v := range want {
		if q.Get(name) != v {
			t.Errorf("%s = %q, want %q", name, q.Get(name), v)
		}
	}
	if len(q) != len(want)+1 { // + to
		t.Errorf("unexpected parameters: %v", q)
	}
	if byTo["13800000002"] == nil {
		t.Errorf("+86 prefix not removed: calls %v", s.calls)
	}
}

func TestNotifyOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		answer    func(to string) (int, string)
		password  channels.Secret
		wantRetry bool
		wantErr   string
		want      string // states by index (see channeltest.States)
		reason    map[int]string
	}{
		{
			name: "accepted and queued",
			answer: func(to string) (int, string) {
				return 202, map[bool]string{true: "0: Accepted for delivery", false: "3: Queued for later delivery"}[to == "13800000001"]
			},
			want:   "SSF",
			reason: map[int]string{2: "invalid number: want 11 digits starting with 1"},
		},
		{
			name:     "authorization failed is permanent",
			password: "wrong",
			wantErr:  "kannel: sendsms answered 403 Forbidden: Authorization failed for sendsms",
			want:     "--F",
		},
		{
			name: "one number refused",
			answer: func(to string) (int, string) {
				if to == "13800000002" {
					return 400, "Number(s) has/have been denied by white- and/or black-lists."
				}
				return 202, "0: Accepted for delivery"
			},
			want:   "SFF",
			reason: map[int]string{1: "kannel: Number(s) has/have been denied by white- and/or black-lists."},
		},
		{
			name: "503 keeps what was accepted and retries the rest",
			answer: func(to string) (int, string) {
				if to == "13800000002" {
					return 503, "Sending failed."
				}
				return 202, "0: Accepted for delivery"
			},
			wantRetry: true,
			wantErr:   "kannel: 1 of 2 messages not taken: kannel: sendsms answered 503 Service Unavailable: Sending failed.",
			want:      "S-F",
		},
		{
			name:      "429 retries",
			answer:    func(string) (int, string) { return 429, "slow down" },
			wantRetry: true,
			want:      "--F",
		},
		{
			name:   "garbage 2xx is accepted, never sent twice",
			answer: func(string) (int, string) { return 200, "<html>proxy says hi</html>" },
			want:   "SSF",
		},
		{
			name:      "timeout retries",
			answer:    func(string) (int, string) { return 0, "" },
			wantRetry: true,
			wantErr:   "kannel: 2 of 2 messages not taken: kannel: sendsms: kannel: sendsms did not answer in time",
			want:      "--F",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newSendsms(t, tt.answer)
			cfg := config(srv.URL + "/cgi-bin/sendsms")
			cfg.Timeout = 100 * time.Millisecond
			if tt.password != "" {
				cfg.Password = tt.password
			}
			k := newKannel(t, cfg)
			got, retry, err := k.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002", "12345"))
			channeltest.NotifyWant{Retry: tt.wantRetry, States: tt.want, Reasons: tt.reason}.Check(t, got, retry, err, password, cbKey)
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNotifyInvalidNumberMakesNoCall(t *testing.T) {
	s, srv := newSendsms(t, nil)
	k := newKannel(t, config(srv.URL+"/cgi-bin/sendsms"))
	got, retry, err := k.Notify(context.Background(), channeltest.Batch("2380000000", "1380000000x", ""))
	if err != nil || retry || len(got) != 3 || s.count() != 0 {
		t.Fatalf("receipts %v retry %v err %v calls %d", got, retry, err, s.count())
	}
	for _, rc := range got {
		if rc.State != warning.Failed || rc.Reason == "" {
			t.Errorf("receipt %+v", rc)
		}
	}
}

func TestNotifyConnectionRefusedRetriesWithoutSecrets(t *testing.T) {
	k := newKannel(t, config(channeltest.ClosedURL(t)+"/cgi-bin/sendsms"))
	got, retry, err := k.Notify(context.Background(), channeltest.Batch("13800000001"))
	if !retry || err == nil || len(got) != 0 {
		t.Fatalf("receipts %v retry %v err %v", got, retry, err)
	}
	if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), cbKey) || strings.Contains(err.Error(), "warngate") {
		t.Errorf("credentials in error: %v", err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error does not say why: %v", err)
	}
}

func TestNotifyConcurrencyIsBounded(t *testing.T) {
	var inFlight, peak atomic.Int32
	_, srv := newSendsms(t, func(string) (int, string) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		return 202, "0: Accepted for delivery"
	})
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.Concurrency = 3
	k := newKannel(t, cfg)
	phones := make([]string, 20)
	for i := range phones {
		phones[i] = fmt.Sprintf("138000000%02d", i)
	}
	got, _, err := k.Notify(context.Background(), channeltest.Batch(phones...))
	if err != nil || len(got) != 20 {
		t.Fatalf("%d receipts, err %v", len(got), err)
	}
	if peak.Load() > 3 {
		t.Errorf("%d calls at once, want at most 3", peak.Load())
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := kannel.New(kannel.Config{SendSMSURL: "ftp://x", Signature: "【昆明】", From: "12a", CallbackKey: "short", Concurrency: -1}, &http.Client{}, nil)
	want := []string{
		`kannel.sendsms_url: "ftp://x" is not an absolute http(s) URL: use an http:// or https:// address such as http://127.0.0.1:13013/cgi-bin/sendsms`,
		"kannel.username: required: the username of a sendsms-user group in kannel.conf",
		"kannel.password: required: the password of that sendsms-user group; set it here, or to ${ENV_VAR} to read it from the environment, or set password_file to a file that holds it",
		`kannel.from: "12a" is not a service number: use digits only, e.g. 12379`,
		`kannel.signature: "【昆明】": give the signature without brackets; 【】 are added when sending`,
		"kannel.dlr_url: required: the gateway's Kannel callback as Kannel reaches it, e.g. http://127.0.0.1:8080/callbacks/kannel",
		"kannel.callback_key: must be at least 16 characters of letters, digits, '-' or '_' (it travels in URLs), e.g. from `openssl rand -hex 16`",
		"kannel.concurrency: -1 is out of range: use 1 to 256, or leave it out for 4",
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("got\n%v\nwant\n%s", err, strings.Join(want, "\n"))
	}
	if _, err := kannel.New(config("http://127.0.0.1:13013/cgi-bin/sendsms"), &http.Client{}, nil); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
}

func callback(t *testing.T, k *kannel.Kannel, sink channels.ReportSink, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	var req *http.Request
	if method == http.MethodPost {
		u, _ := url.Parse(target)
		req = httptest.NewRequest(method, u.Path, strings.NewReader(u.RawQuery))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	rec := httptest.NewRecorder()
	k.ServeReports(rec, req, sink)
	return rec
}

func TestServeReports(t *testing.T) {
	ref := "w1%2Fsms%2Fra"
	tests := []struct {
		name     string
		method   string
		query    string
		sinkErr  error
		code     int
		body     string
		want     warning.DeliveryState
		reason   string
		at       time.Time // the report's time, when the call gives one
		recorded bool
	}{
		{name: "delivered", query: "ref=" + ref + "&type=1&key=" + cbKey + "&ts=1700000000", code: 200, body: "OK", want: warning.Delivered, at: time.Unix(1700000000, 0), recorded: true},
		{name: "delivered by POST", method: http.MethodPost, query: "ref=" + ref + "&type=1&key=" + cbKey, code: 200, body: "OK", want: warning.Delivered, recorded: true},
		{name: "undelivered", query: "ref=" + ref + "&type=2&key=" + cbKey + "&reply=stat%3AUNDELIV+err%3A001", code: 200, body: "OK", want: warning.Failed, reason: "undelivered: stat:UNDELIV err:001", recorded: true},
		{name: "rejected", query: "ref=" + ref + "&type=16&key=" + cbKey, code: 200, body: "OK", want: warning.Failed, reason: "rejected by SMSC", recorded: true},
		{name: "smsc accepted reports nothing", query: "ref=" + ref + "&type=8&key=" + cbKey + "&reply=ACK%2F", code: 200, body: "OK"},
		{name: "buffered reports nothing", query: "ref=" + ref + "&type=4&key=" + cbKey, code: 200, body: "OK"},
		{name: "forged key", query: "ref=" + ref + "&type=1&key=guess", code: 403},
		{name: "no key", query: "ref=" + ref + "&type=1", code: 403},
		{name: "bad ref", query: "ref=nonsense&type=1&key=" + cbKey, code: 400},
		{name: "bad type", query: "ref=" + ref + "&type=%25d&key=" + cbKey, code: 400},
		{name: "sink down", query: "ref=" + ref + "&type=1&key=" + cbKey, sinkErr: errSink, code: 503},
	}
	k := newKannel(t, config("http://127.0.0.1:13013/cgi-bin/sendsms"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &channeltest.Sink{Fail: tt.sinkErr}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			rec := callback(t, k, sink, method, "/callbacks/kannel?"+tt.query)
			if rec.Code != tt.code || (tt.body != "" && rec.Body.String() != tt.body) {
				t.Errorf("answer %d %q, want %d %q", rec.Code, rec.Body.String(), tt.code, tt.body)
			}
			if tt.code == 403 && sink.Calls() != 0 {
				t.Errorf("forged report reached the sink")
			}
			var want *warning.Report
			if tt.recorded {
				want = &warning.Report{Ref: warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: "ra"}, State: tt.want, Reason: tt.reason, At: tt.at}
			}
			sink.CheckReport(t, want)
		})
	}
	t.Run("duplicate passes through", func(t *testing.T) {
		sink := &channeltest.Sink{}
		for range 2 {
			if rec := callback(t, k, sink, http.MethodGet, "/callbacks/kannel?ref="+ref+"&type=1&key="+cbKey); rec.Code != 200 {
				t.Fatalf("answer %d", rec.Code)
			}
		}
		if len(sink.Reports()) != 2 {
			t.Errorf("recorded %d, want 2 (the ledger dedupes)", len(sink.Reports()))
		}
	})
}

func TestServeReplies(t *testing.T) {
	k := newKannel(t, config("http://127.0.0.1:13013/cgi-bin/sendsms"))
	tests := []struct {
		name    string
		query   string
		fail    error
		code    int
		want    channels.Reply
		handled bool
	}{
		{name: "plain", query: "from=13800000001&to=12379&text=1&ts=1700000000&smsc=FAKE&key=" + cbKey, code: 200,
			want: channels.Reply{From: "13800000001", To: "12379", Text: "1", At: time.Unix(1700000000, 0)}, handled: true},
		{name: "+86 stripped", query: "from=%2B8613800000001&to=12379&text=1&ts=1700000000&key=" + cbKey, code: 200,
			want: channels.Reply{From: "13800000001", To: "12379", Text: "1", At: time.Unix(1700000000, 0)}, handled: true},
		{name: "86 stripped", query: "from=8613800000001&to=12379&text=1&ts=1700000000&key=" + cbKey, code: 200,
			want: channels.Reply{From: "13800000001", To: "12379", Text: "1", At: time.Unix(1700000000, 0)}, handled: true},
		{name: "UCS-2 text", query: "from=13800000001&to=12379&text=e6%001&ts=1700000000&coding=2&charset=UTF-16BE&key=" + cbKey, code: 200,
			want: channels.Reply{From: "13800000001", To: "12379", Text: "收1", At: time.Unix(1700000000, 0)}, handled: true},
		{name: "forged", query: "from=13800000001&to=12379&text=1&key=nope", code: 403},
		{name: "no sender", query: "to=12379&text=1&key=" + cbKey, code: 400},
		{name: "handler fails", query: "from=13800000001&to=12379&text=1&ts=1700000000&key=" + cbKey, fail: errSink, code: 503,
			want: channels.Reply{From: "13800000001", To: "12379", Text: "1", At: time.Unix(1700000000, 0)}, handled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []channels.Reply
			rec := httptest.NewRecorder()
			k.ServeReplies(rec, httptest.NewRequest(http.MethodGet, "/callbacks/kannel/mo?"+tt.query, nil), func(_ context.Context, r channels.Reply) error {
				got = append(got, r)
				return tt.fail
			})
			if rec.Code != tt.code {
				t.Errorf("answer %d, want %d", rec.Code, tt.code)
			}
			if rec.Body.Len() != 0 {
				t.Errorf("answer body %q would be texted to the phone", rec.Body.String())
			}
			if !tt.handled {
				if len(got) != 0 {
					t.Errorf("handled %v", got)
				}
				return
			}
			if len(got) != 1 || got[0] != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestPhone(t *testing.T) {
	for in, want := range map[string]string{
		"13800000001": "13800000001", "+8613800000001": "13800000001", "008613800000001": "13800000001",
		"8613800000001": "13800000001", " 13800000001 ": "13800000001",
		"23800000001": "", "1380000000": "", "138000000011": "", "1380000000a": "", "": "",
	} {
		got, ok := kannel.Phone(in)
		if got != want || ok != (want != "") {
			t.Errorf("Phone(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
