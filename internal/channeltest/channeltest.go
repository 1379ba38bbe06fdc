// Package channeltest helps test the channel adapters: an in-memory
// channels.ReportSink, sample batches, checks of receipts and reports,
// waiting for what happens in the background, stand-in provider servers,
// pushing a report to an adapter, and checks that the secrets an adapter
// takes from files and the environment reach it and never show.
package channeltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// Sink is an in-memory channels.ReportSink for one provider's index.
type Sink struct {
	// Provider is the only index Resolve knows.
	Provider string
	// IDs maps the provider's message ids to deliveries.
	IDs map[string]warning.Ref
	// Fail, when set, is what Record and Resolve fail with.
	Fail error
	// FailRecord, when set, is what Record fails with while Resolve
	// still finds deliveries: a report found but not stored.
	FailRecord error
	// AwaitIndex makes Resolve wait until Index has been called. A fake
	// provider pushes reports on its own clock, which can run out before
	// the test has indexed the receipts Notify returned; the dispatcher's
	// Resolve looks an id up again for a while for the same reason (a
	// real provider may report before the worker has indexed).
	AwaitIndex bool

	// Lifted names warnings whose confirmations Confirm refuses with
	// channels.ErrNotConfirmable, as the dispatcher does once a warning is
	// lifted.
	Lifted map[string]bool
	// FailConfirm, when set, is what Confirm fails with: a passing error.
	FailConfirm error

	mu       sync.Mutex
	reports  []warning.Report
	calls    int
	confirms []Confirmation
	refused  int
	indexed  chan struct{} // closed by the first Index
}

// Confirmation is one confirmation Confirm took.
type Confirmation struct {
	Ref          warning.Ref
	Method, From string
}

var _ channels.CallSink = (*Sink)(nil)

// Confirm implements channels.Confirmer.
func (s *Sink) Confirm(_ context.Context, ref warning.Ref, method, from string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.FailConfirm != nil:
		return s.FailConfirm
	case s.Lifted[ref.WarningID]:
		s.refused++
		return fmt.Errorf("warning %s was lifted: %w", ref.WarningID, channels.ErrNotConfirmable)
	}
	s.confirms = append(s.confirms, Confirmation{ref, method, from})
	return nil
}

// Confirmations returns the confirmations taken so far.
func (s *Sink) Confirmations() []Confirmation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Confirmation(nil), s.confirms...)
}

// Refused returns how many confirmations Confirm refused as not
// confirmable.
func (s *Sink) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// indexedChan returns the channel the first Index closes.
func (s *Sink) indexedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.indexed == nil {
		s.indexed = make(chan struct{})
	}
	return s.indexed
}

// awaitIndexBound keeps a push for a batch never indexed (a test that
// failed before Index) from holding its callback server open.
const awaitIndexBound = 10 * time.Second

// Record implements channels.ReportSink.
func (s *Sink) Record(_ context.Context, reports []warning.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.Fail != nil {
		return s.Fail
	}
	if s.FailRecord != nil {
		return s.FailRecord
	}
	s.reports = append(s.reports, reports...)
	return nil
}

// Resolve implements channels.ReportSink. It fails for a provider other
// than Provider.
func (s *Sink) Resolve(ctx context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	if s.AwaitIndex {
		select {
		case <-s.indexedChan():
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(awaitIndexBound):
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.Fail != nil {
		return nil, s.Fail
	}
	if provider != s.Provider {
		return nil, fmt.Errorf("provider %q", provider)
	}
	out := map[string]warning.Ref{}
	for _, id := range ids {
		if r, ok := s.IDs[id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

// Index does what the dispatcher does with an Indexed notifier's receipts.
func (s *Sink) Index(b *channels.Batch, rcs []channels.Receipt) {
	ch := s.indexedChan()
	s.mu.Lock()
	if s.IDs == nil {
		s.IDs = map[string]warning.Ref{}
	}
	for _, rc := range rcs {
		if rc.ProviderID != "" {
			s.IDs[rc.ProviderID] = b.Ref(rc.Index)
		}
	}
	select {
	case <-ch:
	default:
		close(ch)
	}
	s.mu.Unlock()
}

// IndexProviderIDs remembers which delivery each id names, as the ledger's
// provider index does, for adapters that index ids themselves. It fails
// for a provider other than Provider, unless Provider is empty: it is then
// set.
func (s *Sink) IndexProviderIDs(_ context.Context, provider string, ids map[string]warning.Ref) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	if s.Provider == "" {
		s.Provider = provider
	}
	if provider != s.Provider {
		return fmt.Errorf("provider %q", provider)
	}
	if s.IDs == nil {
		s.IDs = map[string]warning.Ref{}
	}
	for id, ref := range ids {
		s.IDs[id] = ref
	}
	return nil
}

// Reported tells, for each delivery, whether a report for it was recorded,
// as the ledger's Reported does.
func (s *Sink) Reported(_ context.Context, refs []warning.Ref) ([]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return nil, s.Fail
	}
	got := map[warning.Ref]bool{}
	for _, r := range s.reports {
		got[r.Ref] = true
	}
	out := make([]bool, len(refs))
	for i, ref := range refs {
		out[i] = got[ref]
	}
	return out, nil
}

// Reports returns the reports recorded so far.
func (s *Sink) Reports() []warning.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]warning.Report(nil), s.reports...)
}

// ByRef returns the reports recorded so far by delivery; of several for
// one delivery, the last.
func (s *Sink) ByRef() map[warning.Ref]warning.Report {
	by := map[warning.Ref]warning.Report{}
	for _, r := range s.Reports() {
		by[r.Ref] = r
	}
	return by
}

// Calls returns how many times Record and Resolve were called.
func (s *Sink) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// CheckRecorded fails t unless the sink was used (or not) as used says and
// recorded exactly want.
func (s *Sink) CheckRecorded(t testing.TB, used bool, want []warning.Report) {
	t.Helper()
	if (s.Calls() > 0) != used {
		t.Errorf("sink used: %v, want %v", s.Calls() > 0, used)
	}
	if fmt.Sprint(s.Reports()) != fmt.Sprint(want) {
		t.Errorf("recorded\n%v\nwant\n%v", s.Reports(), want)
	}
}

// CheckReport fails t unless the sink recorded want and nothing else, or
// nothing at all when want is nil. The report must have want's ref, state,
// reason and provider id, and its time, compared as an instant, unless
// want's is zero.
func (s *Sink) CheckReport(t testing.TB, want *warning.Report) {
	t.Helper()
	got := s.Reports()
	switch {
	case want == nil && len(got) != 0:
		t.Errorf("recorded %+v, want nothing", got)
	case want == nil:
	case len(got) != 1:
		t.Errorf("recorded %+v, want one report", got)
	case got[0].Ref != want.Ref || got[0].State != want.State || got[0].Reason != want.Reason ||
		got[0].ProviderID != want.ProviderID || (!want.At.IsZero() && !got[0].At.Equal(want.At)):
		t.Errorf("recorded %+v\nwant %+v", got[0], *want)
	}
}

// WaitFor polls cond until it holds, and fails t after 10 seconds.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Batch is a red rainstorm warning's SMS batch "w1/sms/0" for residents at
// phones, recipient i having the ID "r<i>".
func Batch(phones ...string) *channels.Batch {
	return ChannelBatch(warning.SMS, warning.Residents, phones...)
}

// ChannelBatch is Batch's warning, in full, as the batch "w1/<ch>/0" for
// recipients of aud at addrs, recipient i having the ID "r<i>".
func ChannelBatch(ch warning.Channel, aud warning.Audience, addrs ...string) *channels.Batch {
	b := &channels.Batch{ID: "w1/" + string(ch) + "/0", Channel: ch, Notice: channels.NoticeFull, Warning: &warning.Warning{
		ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual,
		Headline:    "五华区暴雨红色预警",
		Description: "预计未来3小时五华区将出现100毫米以上降雨。",
		Instruction: "停止户外活动，远离河道和低洼地带。",
	}}
	for i, a := range addrs {
		b.Recipients = append(b.Recipients, warning.Recipient{ID: fmt.Sprintf("r%d", i), Address: a, Audience: aud})
	}
	return b
}

// States returns the state of each of n recipients, by index, as the
// letter of its receipt's State, or "-" for a recipient without a receipt.
func States(n int, rcs []channels.Receipt) string {
	states := []byte(strings.Repeat("-", n))
	for _, rc := range rcs {
		states[rc.Index] = byte(rc.State)
	}
	return string(states)
}

// CheckReasons fails t for each receipt whose Reason is not the one want
// gives for its index.
func CheckReasons(t testing.TB, rcs []channels.Receipt, want map[int]string) {
	t.Helper()
	for _, rc := range rcs {
		if w, ok := want[rc.Index]; ok && rc.Reason != w {
			t.Errorf("reason %d = %q, want %q", rc.Index, rc.Reason, w)
		}
	}
}

// Push has rr serve a report push to target (a path with its query)
// coming from remote (when not ""), with body as it is when a string,
// otherwise as JSON, and returns the answer.
func Push(rr channels.ReportReceiver, sink channels.ReportSink, target, remote string, body any) *httptest.ResponseRecorder {
	var raw []byte
	if s, ok := body.(string); ok {
		raw = []byte(s)
	} else {
		raw, _ = json.Marshal(body)
	}
	req := httptest.NewRequest(http.MethodPost, target, bytes.NewReader(raw))
	if remote != "" {
		req.RemoteAddr = remote
	}
	rec := httptest.NewRecorder()
	rr.ServeReports(rec, req, sink)
	return rec
}

// CheckAnswer fails t unless rec, a provider's answer to a report push,
// has the HTTP status and the result code (the JSON field named field),
// and, with HTTP 200, is exactly taken and a newline.
func CheckAnswer(t testing.TB, rec *httptest.ResponseRecorder, status int, field string, code int, taken string) {
	t.Helper()
	var ans map[string]json.RawMessage
	var got int
	json.Unmarshal(rec.Body.Bytes(), &ans)
	json.Unmarshal(ans[field], &got)
	if rec.Code != status || got != code {
		t.Errorf("answer %d %s, want %d with %s %d", rec.Code, rec.Body.String(), status, field, code)
	}
	if status == http.StatusOK && rec.Body.String() != taken+"\n" {
		t.Errorf("answer body %q", rec.Body.String())
	}
}
