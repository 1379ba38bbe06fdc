package warning

import (
	"testing"
	"time"
)

func TestBilledMinutesCountEveryStartedMinute(t *testing.T) {
	for _, tt := range []struct {
		talk time.Duration
		want int
	}{{0, 0}, {-time.Second, 0}, {time.Second, 1}, {time.Minute, 1}, {time.Minute + time.Millisecond, 2}, {150 * time.Second, 3}} {
		if got := BilledMinutes(tt.talk); got != tt.want {
			t.Errorf("BilledMinutes(%s) = %d, want %d", tt.talk, got, tt.want)
		}
	}
}

func TestCallReportDeliveredOnlyWhenAnswered(t *testing.T) {
	ref := Ref{WarningID: "w1", Channel: Voice, RecipientID: "p1"}
	at := time.Unix(1700000000, 0)
	for _, o := range CallOutcomes {
		r := Call{Outcome: o}.Report(ref, "c1", at, "200010 关机")
		switch {
		case o.Answered() && (r.State != Delivered || r.Reason != ""):
			t.Errorf("%s: %+v, want delivered", o, r)
		case !o.Answered() && (r.State != Failed || r.Reason != o.Chinese()+"：200010 关机"):
			t.Errorf("%s: %+v, want failed with the outcome and the detail", o, r)
		case r.Call == nil || r.Call.Outcome != o || r.Ref != ref || r.ProviderID != "c1" || !r.At.Equal(at):
			t.Errorf("%s: %+v", o, r)
		}
		if p, err := ParseCallOutcome(string(o)); err != nil || p != o {
			t.Errorf("ParseCallOutcome(%s) = %s, %v", o, p, err)
		}
	}
	if r := (Call{Outcome: CallBusy}).Report(ref, "", at, ""); r.Reason != "占线" {
		t.Errorf("reason without detail %q", r.Reason)
	}
	if _, err := ParseCallOutcome("engaged"); err == nil {
		t.Error("engaged parsed")
	}
	if got, _ := ParseRef("w1/voice/p1"); got != ref {
		t.Errorf("ParseRef = %v", got)
	}
}
