package kannel_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// memSink is an in-memory channels.ReportSink.
type memSink struct {
	mu       sync.Mutex
	reports  []warning.Report
	ids      map[string]warning.Ref
	fail     error
	calls    int
	resolved int
}

func (s *memSink) Record(_ context.Context, reports []warning.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return s.fail
	}
	s.reports = append(s.reports, reports...)
	return nil
}

func (s *memSink) Resolve(_ context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resolved++
	if s.fail != nil {
		return nil, s.fail
	}
	out := map[string]warning.Ref{}
	for _, id := range ids {
		if r, ok := s.ids[provider+"|"+id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

func (s *memSink) all() []warning.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]warning.Report(nil), s.reports...)
}

func (s *memSink) find(ref warning.Ref) (warning.Report, bool) {
	for _, r := range s.all() {
		if r.Ref == ref {
			return r, true
		}
	}
	return warning.Report{}, false
}

var errSink = errors.New("ledger down")

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testWarning() *warning.Warning {
	return &warning.Warning{
		ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual,
		Headline:    "五华区暴雨红色预警",
		Description: "预计未来3小时五华区将出现100毫米以上降雨。",
		Instruction: "停止户外活动，远离河道和低洼地带。",
	}
}

func batch(phones ...string) *channels.Batch {
	b := &channels.Batch{ID: "w1/sms/0", Channel: warning.SMS, Notice: channels.NoticeFull, Warning: testWarning()}
	for i, p := range phones {
		b.Recipients = append(b.Recipients, warning.Recipient{ID: "r" + string(rune('a'+i)), Address: p, Audience: warning.Residents, Division: "530102001001"})
	}
	return b
}
