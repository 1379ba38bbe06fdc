package kannel_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
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
// answer(to) as Kannel would, to being the call's numbers.
type sendsms struct {
	t      *testing.T
	mu     sync.Mutex
	calls  []url.Values
	answer func(to []string) (int, string)
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
	code, body := http.StatusAccepted, "Sent."
	if s.answer != nil {
		code, body = s.answer(strings.Fields(q.Get("to")))
	}
	switch code {
	case 0: // hang until the client gives up
		<-r.Context().Done()
		return
	case -1: // cut the connection without an answer
		c, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			s.t.Error(err)
			return
		}
		c.Close()
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

// byTo returns the calls by their to parameter.
func (s *sendsms) byTo() map[string]url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]url.Values{}
	for _, q := range s.calls {
		out[q.Get("to")] = q
	}
	return out
}

func newSendsms(t *testing.T, answer func(to []string) (int, string)) (*sendsms, *httptest.Server) {
	s := &sendsms{t: t, answer: answer}
	return s, channeltest.Serve(t, s)
}

// newKannel returns an adapter indexing into a sink for provider "kannel".
func newKannel(t *testing.T, cfg kannel.Config) (*kannel.Kannel, *channeltest.Sink) {
	t.Helper()
	sink := &channeltest.Sink{Provider: kannel.IndexName}
	k, err := kannel.New(cfg, &http.Client{Timeout: 5 * time.Second}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k, sink
}

func phones(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("138000000%02d", i+1)
	}
	return out
}

// Residents get the same text: their numbers go many a call, and the
// dlr-url names the call, Kannel filling in each report's number.
func TestNotifySendsManyNumbersPerCall(t *testing.T) {
	s, srv := newSendsms(t, nil)
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.SMSC, cfg.NumbersPerCall = "CMCC", 2
	k, sink := newKannel(t, cfg)
	b := channeltest.Batch(append(phones(4), "+8613800000005")...)
	b.Recipients[0].ID = "用户1" // escaped to %XX, which Kannel would mistake for its own codes

	got, retry, err := k.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	text := "【昆明市应急管理局】" + channels.Compose(b, b.Recipients[0]).Plain()
	channeltest.CheckReceipts(t, got, "SSSSS", nil)
	for _, rc := range got {
		if rc.Segments != channels.SMSSegments(text) || rc.ProviderID != "" {
			t.Errorf("receipt %+v, want %d segments", rc, channels.SMSSegments(text))
		}
	}
	calls := s.byTo()
	if s.count() != 3 || calls["13800000001 13800000002"] == nil || calls["13800000003 13800000004"] == nil || calls["13800000005"] == nil {
		t.Fatalf("calls to %v, want 01 02, 03 04 and 05 (+86 removed)", slices.Collect(maps.Keys(calls)))
	}
	q := calls["13800000001 13800000002"]
	want := map[string]string{
		"username": "warngate", "password": password, "from": "12379", "text": text,
		"charset": "UTF-8", "coding": "2", "dlr-mask": "19", "smsc": "CMCC",
	}
	for name, v := range want {
		if q.Get(name) != v {
			t.Errorf("%s = %q, want %q", name, q.Get(name), v)
		}
	}
	if len(q) != len(want)+2 { // + to, dlr-url
		t.Errorf("unexpected parameters: %v", q)
	}
	// The dlr-url names the call (the batch, every % doubled for Kannel)
	// and asks for the number as %p.
	dlr := regexp.MustCompile(`^http://gw\.example:8080/callbacks/kannel\?call=w1%%2Fsms%%2F0%%2F[0-9a-z]+\.0&to=%p&type=%d&key=` + cbKey + `&reply=%A&ts=%T$`)
	if !dlr.MatchString(q.Get("dlr-url")) {
		t.Errorf("dlr-url %q", q.Get("dlr-url"))
	}
	// One number alone: the dlr-url names the delivery.
	if got := calls["13800000005"].Get("dlr-url"); got != "http://gw.example:8080/callbacks/kannel?ref=w1%%2Fsms%%2Fr4&type=%d&key="+cbKey+"&reply=%A&ts=%T" {
		t.Errorf("dlr-url of one number %q", got)
	}
	// Each number of a call is indexed before the call, to its delivery;
	// Kannel's report (its %-codes filled in) is recorded for it.
	for _, to := range []string{"13800000001 13800000002", "13800000003 13800000004"} {
		for _, phone := range strings.Fields(to) {
			report := kannelURL(calls[to].Get("dlr-url"), phone, 1)
			if rec := callback(t, k, sink, http.MethodGet, "/callbacks/kannel?"+strings.SplitN(report, "?", 2)[1]); rec.Code != 200 || rec.Body.String() != "OK" {
				t.Errorf("report %s: %d %s", report, rec.Code, rec.Body)
			}
		}
	}
	byRef := sink.ByRef()
	for i := range 4 {
		if r, ok := byRef[b.Ref(i)]; !ok || r.State != warning.Delivered {
			t.Errorf("recipient %d: report %+v, want delivered", i, r)
		}
	}
}

// kannelURL fills in a dlr-url as Kannel does for a report of type typ on
// number to.
func kannelURL(dlr, to string, typ int) string {
	return strings.NewReplacer("%p", to, "%d", fmt.Sprint(typ), "%A", "", "%T", "1700000000", "%%", "%").Replace(dlr)
}

// Officials' texts differ (each carries its own link): one call each, its
// dlr-url naming the delivery. So does every call with Single.
func TestNotifyOneNumberPerCall(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(fmt.Sprintf("single=%v", single), func(t *testing.T) {
			s, srv := newSendsms(t, nil)
			cfg := config(srv.URL + "/cgi-bin/sendsms")
			cfg.Single = single
			k, sink := newKannel(t, cfg)
			b := channeltest.ChannelBatch(warning.SMS, warning.VillageOfficials, "13800000001", "13800000002")
			if !single {
				b.AckURL = func(r warning.Recipient) string { return "https://gw.example/a/" + r.ID }
			}
			got, retry, err := k.Notify(context.Background(), b)
			if err != nil || retry {
				t.Fatalf("Notify: retry=%v err=%v", retry, err)
			}
			channeltest.CheckReceipts(t, got, "SS", nil)
			calls := s.byTo()
			if s.count() != 2 || calls["13800000001"] == nil || calls["13800000002"] == nil {
				t.Fatalf("calls %v, want one per number", slices.Collect(maps.Keys(calls)))
			}
			for i, to := range []string{"13800000001", "13800000002"} {
				q := calls[to]
				if want := k.SMSText(b, b.Recipients[i]); q.Get("text") != want {
					t.Errorf("text %q, want %q", q.Get("text"), want)
				}
				if want := "http://gw.example:8080/callbacks/kannel?ref=w1%%2Fsms%%2Fr" + fmt.Sprint(i) + "&type=%d&key=" + cbKey + "&reply=%A&ts=%T"; q.Get("dlr-url") != want {
					t.Errorf("dlr-url %q, want %q", q.Get("dlr-url"), want)
				}
			}
			if len(sink.IDs) != 0 {
				t.Errorf("indexed %v: a call of one number names its delivery", sink.IDs)
			}
		})
	}
}

// Kannel sends a number given twice in one call only once, and a report
// names only the call and the number: two recipients with one number go in
// two calls.
func TestNotifySameNumberTwiceGoesInTwoCalls(t *testing.T) {
	s, srv := newSendsms(t, nil)
	k, sink := newKannel(t, config(srv.URL+"/cgi-bin/sendsms"))
	got, _, err := k.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002", "13800000001", "13800000003"))
	if err != nil {
		t.Fatal(err)
	}
	channeltest.CheckReceipts(t, got, "SSSS", nil)
	calls := s.byTo()
	if s.count() != 2 || calls["13800000001 13800000002 13800000003"] == nil || calls["13800000001"] == nil {
		t.Errorf("calls %v", slices.Collect(maps.Keys(calls)))
	}
	refs := map[warning.Ref]bool{}
	for _, ref := range sink.IDs {
		refs[ref] = true
	}
	if len(sink.IDs) != 3 || refs[channeltest.Batch("").Ref(0)] != true {
		t.Errorf("indexed %v", sink.IDs)
	}
}

func TestNotifyOutcomes(t *testing.T) {
	has := func(to []string, n string) bool { return slices.Contains(to, n) }
	tests := []struct {
		name      string
		answer    func(to []string) (int, string)
		password  channels.Secret
		wantRetry bool
		wantErr   string
		want      string // states by index (see channeltest.States)
		reason    map[int]string
		calls     int
	}{
		{
			name:   "accepted, delayed answer",
			answer: func([]string) (int, string) { return 202, "0: Accepted for delivery" },
			want:   "SSSF",
			reason: map[int]string{3: "invalid number: want 11 digits starting with 1"},
			calls:  1,
		},
		{
			name:   "queued",
			answer: func([]string) (int, string) { return 202, "3: Queued for later delivery" },
			want:   "SSSF",
			calls:  1,
		},
		{
			name:     "authorization failed is permanent",
			password: "wrong",
			wantErr:  "kannel: sendsms answered 403 Forbidden: Authorization failed for sendsms",
			want:     "---F",
			calls:    1,
		},
		{
			name: "a number denied in a call fails alone",
			answer: func(to []string) (int, string) {
				return 202, "Sent. Denied receivers are: 13800000002 Message splits: 2"
			},
			want:   "SFSF",
			reason: map[int]string{1: "kannel: Number(s) has/have been denied by white- and/or black-lists."},
			calls:  1,
		},
		{
			name: "a call refused for one number is split until it fails alone",
			answer: func(to []string) (int, string) {
				if has(to, "13800000002") {
					return 400, "Number(s) has/have been denied by white- and/or black-lists."
				}
				return 202, "Sent."
			},
			want:   "SFSF",
			reason: map[int]string{1: "kannel: Number(s) has/have been denied by white- and/or black-lists."},
			calls:  5, // 01 02 03 refused; 01 sent; 02 03 refused; 02 refused; 03 sent
		},
		{
			name: "every number refused",
			answer: func([]string) (int, string) {
				return 400, "Number(s) has/have been denied by white- and/or black-lists."
			},
			want:   "FFFF",
			reason: map[int]string{0: "kannel: Number(s) has/have been denied by white- and/or black-lists."},
			calls:  5,
		},
		{
			name: "failed receivers are retried, the others were taken",
			answer: func(to []string) (int, string) {
				return 500, "Sending failed. Failed receivers are: 13800000003"
			},
			wantRetry: true,
			wantErr:   "kannel: 1 of 3 messages not taken: kannel: sendsms answered 500 Internal Server Error: Sending failed. Failed receivers are: 13800000003",
			want:      "SS-F",
			calls:     1,
		},
		{
			name:      "503 retries the call",
			answer:    func([]string) (int, string) { return 503, "Temporal failure, try again later." },
			wantRetry: true,
			wantErr:   "kannel: 3 of 3 messages not taken: kannel: sendsms answered 503 Service Unavailable: Temporal failure, try again later.",
			want:      "---F",
			calls:     1,
		},
		{
			name:      "429 retries",
			answer:    func([]string) (int, string) { return 429, "slow down" },
			wantRetry: true,
			want:      "---F",
			calls:     1,
		},
		{
			name:   "garbage 2xx is accepted, never sent twice",
			answer: func([]string) (int, string) { return 200, "<html>proxy says hi</html>" },
			want:   "SSSF",
			calls:  1,
		},
		{
			name:      "no answer in time retries",
			answer:    func([]string) (int, string) { return 0, "" },
			wantRetry: true,
			wantErr:   "kannel: 3 of 3 messages not taken: kannel: sendsms: kannel: sendsms did not answer in time",
			want:      "---F",
			calls:     1,
		},
		{
			name:      "connection cut without an answer retries",
			answer:    func([]string) (int, string) { return -1, "" },
			wantRetry: true,
			want:      "---F",
			calls:     1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, srv := newSendsms(t, tt.answer)
			cfg := config(srv.URL + "/cgi-bin/sendsms")
			cfg.Timeout = 100 * time.Millisecond
			if tt.password != "" {
				cfg.Password = tt.password
			}
			k, _ := newKannel(t, cfg)
			got, retry, err := k.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002", "13800000003", "12345"))
			channeltest.NotifyWant{Retry: tt.wantRetry, States: tt.want, Reasons: tt.reason}.Check(t, got, retry, err, password, cbKey)
			if tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if s.count() != tt.calls {
				t.Errorf("%d calls, want %d", s.count(), tt.calls)
			}
		})
	}
}

// A call that does not answer may still have been taken: the numbers
// whose reports came meanwhile are sent, the others are left for the
// retry.
func TestNotifyUnansweredCallKeepsReportedNumbers(t *testing.T) {
	var k *kannel.Kannel
	var sink *channeltest.Sink
	s := &sendsms{t: t}
	s.answer = func(to []string) (int, string) {
		// Kannel took the call but its answer is lost; the report for the
		// second number comes.
		s.mu.Lock()
		dlr := s.calls[len(s.calls)-1].Get("dlr-url")
		s.mu.Unlock()
		go func() {
			rec := callback(t, k, sink, http.MethodGet, "/callbacks/kannel?"+strings.SplitN(kannelURL(dlr, "13800000002", 1), "?", 2)[1])
			if rec.Code != 200 {
				t.Errorf("report: %d %s", rec.Code, rec.Body)
			}
		}()
		return 0, ""
	}
	srv := channeltest.Serve(t, s)
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.Timeout = 200 * time.Millisecond
	k, sink = newKannel(t, cfg)
	b := channeltest.Batch("13800000001", "13800000002", "13800000003")
	got, retry, err := k.Notify(context.Background(), b)
	channeltest.NotifyWant{Retry: true, States: "-S-"}.Check(t, got, retry, err, password, cbKey)
	if err == nil || err.Error() != "kannel: 2 of 3 messages not taken: kannel: sendsms: kannel: sendsms did not answer in time" {
		t.Errorf("err = %v", err)
	}
	if r := sink.ByRef()[b.Ref(1)]; r.State != warning.Delivered {
		t.Errorf("report %+v", r)
	}
}

// net/http sends a GET again by itself when a kept-alive connection closes
// before the answer: a call of several numbers, which smsbox may have
// taken, must not be sent twice that way.
func TestNotifyCallCutIsNotSentAgain(t *testing.T) {
	var n atomic.Int32
	s, srv := newSendsms(t, func([]string) (int, string) {
		if n.Add(1) <= 2 {
			return 202, "Sent."
		}
		return -1, ""
	})
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.Concurrency, cfg.NumbersPerCall, cfg.Timeout = 1, 2, 200*time.Millisecond
	k, _ := newKannel(t, cfg)
	// A call of one number leaves a kept-alive connection to smsbox.
	if _, _, err := k.Notify(context.Background(), channeltest.Batch("13800000009")); err != nil {
		t.Fatal(err)
	}
	got, retry, err := k.Notify(context.Background(), channeltest.Batch(phones(4)...))
	channeltest.NotifyWant{Retry: true, States: "SS--"}.Check(t, got, retry, err, password, cbKey)
	if s.count() != 3 {
		t.Errorf("%d calls, want 3: the cut call was sent again", s.count())
	}
}

func TestNotifyInvalidNumberMakesNoCall(t *testing.T) {
	s, srv := newSendsms(t, nil)
	k, _ := newKannel(t, config(srv.URL+"/cgi-bin/sendsms"))
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

// Without the index written, no call is made: its reports could not be
// found.
func TestNotifyIndexDownMakesNoCall(t *testing.T) {
	s, srv := newSendsms(t, nil)
	k, sink := newKannel(t, config(srv.URL+"/cgi-bin/sendsms"))
	sink.Fail = errSink
	got, retry, err := k.Notify(context.Background(), channeltest.Batch("13800000001", "13800000002"))
	if !retry || err == nil || !strings.Contains(err.Error(), "ledger down") || len(got) != 0 || s.count() != 0 {
		t.Fatalf("receipts %v retry %v err %v calls %d", got, retry, err, s.count())
	}
}

func TestNotifyConnectionRefusedRetriesWithoutSecrets(t *testing.T) {
	k, _ := newKannel(t, config(channeltest.ClosedURL(t)+"/cgi-bin/sendsms"))
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
	_, srv := newSendsms(t, func([]string) (int, string) {
		n := inFlight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
		inFlight.Add(-1)
		return 202, "Sent."
	})
	cfg := config(srv.URL + "/cgi-bin/sendsms")
	cfg.Concurrency, cfg.NumbersPerCall = 3, 2
	k, _ := newKannel(t, cfg)
	got, _, err := k.Notify(context.Background(), channeltest.Batch(phones(40)...))
	if err != nil || len(got) != 40 {
		t.Fatalf("%d receipts, err %v", len(got), err)
	}
	if peak.Load() > 3 {
		t.Errorf("%d calls at once, want at most 3", peak.Load())
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := kannel.New(kannel.Config{SendSMSURL: "ftp://x", Signature: "【昆明】", From: "12a", CallbackKey: "short", Concurrency: -1, NumbersPerCall: 1001}, &http.Client{}, &channeltest.Sink{}, nil)
	want := []string{
		"kannel.numbers_per_call: 1001 is out of range: use 1 to 1000, or leave it out for 200",
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
	if _, err := kannel.New(config("http://127.0.0.1:13013/cgi-bin/sendsms"), &http.Client{}, &channeltest.Sink{}, nil); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	single := config("http://127.0.0.1:13013/cgi-bin/sendsms")
	single.Single, single.NumbersPerCall = true, 50
	if _, err := kannel.New(single, &http.Client{}, nil, nil); err == nil || err.Error() != "kannel.numbers_per_call: 50 with single: true: give one of them (single sends one number a call)" {
		t.Errorf("single with numbers_per_call: %v", err)
	}
	single.NumbersPerCall = 0
	if _, err := kannel.New(single, &http.Client{}, nil, nil); err != nil {
		t.Errorf("single needs no index: %v", err)
	}
	if _, err := kannel.New(config("http://127.0.0.1:13013/cgi-bin/sendsms"), &http.Client{}, nil, nil); err == nil || !strings.Contains(err.Error(), "no index given") {
		t.Errorf("no index: %v", err)
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
		// A call of several numbers: the call and Kannel's %p.
		{name: "call's number delivered", query: "call=w1%2Fsms%2F0%2Fx.0&to=13800000001&type=1&key=" + cbKey + "&ts=1700000000", code: 200, body: "OK", want: warning.Delivered, at: time.Unix(1700000000, 0), recorded: true},
		{name: "call's number +86", query: "call=w1%2Fsms%2F0%2Fx.0&to=%2B8613800000001&type=2&key=" + cbKey + "&reply=err%3A001", code: 200, body: "OK", want: warning.Failed, reason: "undelivered: err:001", recorded: true},
		{name: "call's number unknown", query: "call=w1%2Fsms%2F0%2Fx.0&to=13800000009&type=1&key=" + cbKey, code: 200, body: "OK, unknown"},
		{name: "call unknown", query: "call=w1%2Fsms%2F0%2Fy.0&to=13800000001&type=1&key=" + cbKey, code: 200, body: "OK, unknown"},
		{name: "call's number missing", query: "call=w1%2Fsms%2F0%2Fx.0&type=1&key=" + cbKey, code: 400},
		{name: "call's number not filled in", query: "call=w1%2Fsms%2F0%2Fx.0&to=%25p&type=1&key=" + cbKey, code: 400},
		{name: "neither ref nor call", query: "to=13800000001&type=1&key=" + cbKey, code: 400},
		{name: "index down", query: "call=w1%2Fsms%2F0%2Fx.0&to=13800000001&type=1&key=" + cbKey, sinkErr: errSink, code: 503},
	}
	k, _ := newKannel(t, config("http://127.0.0.1:13013/cgi-bin/sendsms"))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &channeltest.Sink{Provider: kannel.IndexName, Fail: tt.sinkErr,
				IDs: map[string]warning.Ref{"w1/sms/0/x.0/13800000001": {WarningID: "w1", Channel: warning.SMS, RecipientID: "ra"}}}
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
	k, _ := newKannel(t, config("http://127.0.0.1:13013/cgi-bin/sendsms"))
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

// A notice about a warning (a lifted notice; reminders and escalations
// alike) asks Kannel for no delivery reports: the notice goes to people
// whose delivery of the warning has the same ref, so its report would settle
// that delivery, an undelivered notice marking a delivered warning SMS
// failed and the warning's own report then dropped as a duplicate.
func TestNoticesAskForNoReports(t *testing.T) {
	ctx := context.Background()
	s, srv := newSendsms(t, nil)
	k, sink := newKannel(t, config(srv.URL+"/cgi-bin/sendsms"))
	for _, n := range []int{1, 3} { // one number a call, and several
		b := channeltest.Batch(phones(n)...)
		b.ID, b.Notice = "lift/w1/sms/0", channels.NoticeLifted
		rcs, retry, err := k.Notify(ctx, b)
		if err != nil || retry || len(rcs) != n {
			t.Fatalf("lifted notice to %d: %v %v %v", n, rcs, retry, err)
		}
		for _, rc := range rcs {
			if rc.State != warning.Sent {
				t.Errorf("lifted notice: %+v, want sent", rc)
			}
		}
	}
	for _, q := range s.calls {
		if q.Has("dlr-url") || q.Has("dlr-mask") {
			t.Errorf("a notice's sendsms to %s asks for reports: dlr-mask %q, dlr-url %q", q.Get("to"), q.Get("dlr-mask"), q.Get("dlr-url"))
		}
	}
	if len(sink.IDs) != 0 {
		t.Errorf("a notice's numbers were indexed for reports: %v", sink.IDs)
	}

	// The warning itself still asks, one number a call and several.
	for _, n := range []int{1, 3} {
		if _, _, err := k.Notify(ctx, channeltest.Batch(phones(n)...)); err != nil {
			t.Fatal(err)
		}
	}
	for _, q := range s.calls[2:] {
		if q.Get("dlr-mask") == "" || !strings.Contains(q.Get("dlr-url"), "key=") {
			t.Errorf("the warning's sendsms to %s asks for no reports: %v", q.Get("to"), q)
		}
	}
	if len(sink.IDs) != 3 {
		t.Errorf("the warning's call of 3 numbers indexed %d", len(sink.IDs))
	}
}
