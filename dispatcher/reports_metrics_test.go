package dispatcher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"warngate/ledger"
	"warngate/warning"
)

// The delivery reports counter counts each report once by its channel and
// outcome, duplicates apart, and every delivered report is observed in the
// delivery latency histogram, however many reports a request brings.
func TestReportsCountedByOutcome(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	got := submitRed(t, r, "530102001001")
	waitFor(t, 30*time.Second, "the fan-out", progressDone(t, r, got.ID))
	p, _ := r.l.Progress(ctx, got.ID)
	sms := p.Channels[warning.SMS]
	if sms.Delivered == 0 {
		t.Fatalf("nothing delivered by SMS: %+v", sms)
	}
	// A request's reports are counted once the ledger has them.
	delivered := func() float64 { return testutil.ToFloat64(r.metrics.Reports.WithLabelValues("sms", "delivered")) }
	waitFor(t, 10*time.Second, "the SMS reports counted", func() (bool, string) {
		return delivered() == float64(sms.Delivered), fmt.Sprintf("%v counted, the ledger has %+v", delivered(), sms)
	})

	// The same reports again, in one request: each a duplicate.
	again := smsReportsAgain(t, r, got.ID)
	if err := r.d.Record(ctx, again); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(r.metrics.Reports.WithLabelValues("sms", "duplicate")); n != float64(len(again)) {
		t.Errorf("duplicates counted %v, want %d", n, len(again))
	}
	if n := delivered(); n != float64(sms.Delivered) {
		t.Errorf("delivered counted %v after duplicates, want %d still", n, sms.Delivered)
	}
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var observed uint64
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "warngate_delivery_latency_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["channel"] == "sms" && labels["stage"] == "delivered" {
				observed += m.GetHistogram().GetSampleCount()
				sum += m.GetHistogram().GetSampleSum()
			}
		}
	}
	if observed != uint64(sms.Delivered) {
		t.Errorf("sms delivery latencies observed %d, want %d", observed, sms.Delivered)
	}
	// Each latency runs from the warning's acceptance to its report, the
	// acceptance read once and remembered for the requests after.
	w, err := r.l.Warning(ctx, got.ID)
	if err != nil {
		t.Fatal(err)
	}
	var want float64
	r.l.Deliveries(ctx, got.ID, warning.SMS, func(d ledger.Delivery) bool {
		if d.State == warning.Delivered {
			want += d.At.Sub(w.Accepted).Seconds()
		}
		return true
	})
	if diff := sum - want; diff > 1e-6*float64(observed) || diff < -1e-6*float64(observed) {
		t.Errorf("sms delivery latencies add up to %.6f s, want %.6f s (report instants less the acceptance)", sum, want)
	}
}

// smsReportsAgain is a delivered report for each of a warning's SMS
// deliveries, as a provider sending its reports a second time.
func smsReportsAgain(t *testing.T, r *rig, id string) []warning.Report {
	t.Helper()
	var again []warning.Report
	r.l.Deliveries(context.Background(), id, warning.SMS, func(d ledger.Delivery) bool {
		again = append(again, warning.Report{Ref: d.Ref, State: warning.Delivered, At: time.Now()})
		return true
	})
	if len(again) == 0 {
		t.Fatalf("warning %s: no SMS deliveries", id)
	}
	return again
}
