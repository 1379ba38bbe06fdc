package channeltest

import (
	"strings"
	"testing"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// NotifyWant is what a test expects a notifier's Notify to return for a
// batch.
type NotifyWant struct {
	// Retry is whether the batch is to be sent again.
	Retry bool
	// Err is what the error says before " (request …)"; "" when that does
	// not matter.
	Err string
	// States is the state of each recipient by index (see States). There is
	// an error when a recipient has no receipt ("-"), and only then.
	States string
	// Reasons are receipts' reasons by index, where they matter.
	Reasons map[int]string
}

// Check fails t unless what Notify returned (got, retry, err) is as w
// wants, and unless the error keeps each of secrets out.
func (w NotifyWant) Check(t testing.TB, got []channels.Receipt, retry bool, err error, secrets ...string) {
	t.Helper()
	if retry != w.Retry {
		t.Errorf("retry = %v, want %v (err %v)", retry, w.Retry, err)
	}
	if strings.Contains(w.States, "-") != (err != nil) {
		t.Errorf("err = %v", err)
	}
	if err != nil && w.Err != "" && !strings.HasPrefix(err.Error(), w.Err+" (request ") {
		t.Errorf("err = %v\nwant %s (request …)", err, w.Err)
	}
	for _, secret := range secrets {
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("secret in error: %v", err)
		}
	}
	CheckReasons(t, got, w.Reasons)
	if states := States(len(w.States), got); states != w.States {
		t.Errorf("states %s, want %s", states, w.States)
	}
}

// CheckReceipts fails t unless rcs hold a receipt for each recipient, in
// order, whose state letters are states (see States) and whose reasons are
// reasons by index; a receipt missing from reasons has no reason.
func CheckReceipts(t testing.TB, rcs []channels.Receipt, states string, reasons map[int]string) {
	t.Helper()
	if len(rcs) != len(states) {
		t.Fatalf("%d receipts, want %d: %+v", len(rcs), len(states), rcs)
	}
	for i, rc := range rcs {
		if rc.Index != i || rc.State != warning.DeliveryState(states[i]) || rc.Reason != reasons[i] {
			t.Errorf("receipt %d: %+v, want %c %q", i, rc, states[i], reasons[i])
		}
	}
}

// CheckReports indexes the receipts rcs of b in sink, as the dispatcher
// does, waits until a report came for each, and checks them: the report
// of a recipient that failed[i] names failed for that reason; any other
// was delivered, under its receipt's ProviderID. Each report's time must be
// within a minute of now.
func CheckReports(t testing.TB, sink *Sink, b *channels.Batch, rcs []channels.Receipt, failed map[int]string) {
	t.Helper()
	sink.Index(b, rcs)
	WaitFor(t, "a report for each receipt", func() bool { return len(sink.Reports()) == len(rcs) })
	byRef := map[warning.Ref]channels.Receipt{}
	for _, rc := range rcs {
		byRef[b.Ref(rc.Index)] = rc
	}
	for _, rep := range sink.Reports() {
		rc, ok := byRef[rep.Ref]
		reason, fails := failed[rc.Index]
		switch {
		case !ok:
			t.Errorf("report for %s", rep.Ref)
		case fails && (rep.State != warning.Failed || rep.Reason != reason):
			t.Errorf("report %+v, want failed: %s", rep, reason)
		case !fails && (rep.State != warning.Delivered || rep.ProviderID != rc.ProviderID):
			t.Errorf("report %+v, want delivered as %s", rep, rc.ProviderID)
		}
		if time.Since(rep.At) > time.Minute || time.Since(rep.At) < -time.Minute {
			t.Errorf("report time %v", rep.At)
		}
	}
}
