package dispatcher_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Report requests are recorded two at a time (dispatch.report_concurrency):
// a third waits in the process, not in Redis's queue ahead of new warnings;
// one whose caller gives up while waiting records nothing and says so, for
// the provider to send it again.
func TestReportRequestsTakeTurns(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	got := submitRed(t, r, "530102001001")
	waitFor(t, 30*time.Second, "the fan-out", progressDone(t, r, got.ID))
	again := smsReportsAgain(t, r, got.ID)
	dups := func() float64 { return testutil.ToFloat64(r.metrics.Reports.WithLabelValues("sms", "duplicate")) }
	base := dups()

	release := r.d.HoldReportSlots(2)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err := r.d.Record(short, again)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "waiting for their turn") {
		t.Fatalf("recorded with both turns taken: %v; want to wait, and to say so when given up", err)
	}
	if n := dups(); n != base {
		t.Fatalf("%v reports counted by a request that gave up; want none", n-base)
	}
	release()

	release = r.d.HoldReportSlots(1)
	defer release()
	if err := r.d.Record(ctx, again); err != nil {
		t.Fatalf("one turn free: %v", err)
	}
	if n := dups() - base; n != float64(len(again)) {
		t.Errorf("duplicates counted %v, want %d", n, len(again))
	}
}
