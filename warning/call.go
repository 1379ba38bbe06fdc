package warning

import (
	"fmt"
	"time"
)

// CallOutcome is how one phone call to an official ended. Each outcome is
// one of its own in progress, the 未叫应 list and reports: an official who
// never answers is followed up differently from one who is busy or who
// listened and pressed nothing.
type CallOutcome string

// Call outcomes. Only CallAnswered confirms: the official pressed 1.
const (
	CallAnswered    CallOutcome = "answered"    // answered, and pressed 1 to confirm
	CallNoKey       CallOutcome = "no_key"      // answered and heard the prompt, but pressed no 1 before we hung up
	CallHangup      CallOutcome = "hangup"      // answered, then hung up before pressing 1
	CallNoAnswer    CallOutcome = "no_answer"   // rang, and nobody answered in time
	CallBusy        CallOutcome = "busy"        // the line was busy
	CallRejected    CallOutcome = "rejected"    // the official declined the call while it rang
	CallUnreachable CallOutcome = "unreachable" // switched off, out of coverage, suspended or no such number
	CallFailed      CallOutcome = "failed"      // the trunk or the provider failed; the official's phone may never have rung
)

// CallOutcomes lists every outcome, answered first.
var CallOutcomes = []CallOutcome{CallAnswered, CallNoKey, CallHangup, CallNoAnswer, CallBusy, CallRejected, CallUnreachable, CallFailed}

// ParseCallOutcome checks an outcome's name.
func ParseCallOutcome(s string) (CallOutcome, error) {
	for _, o := range CallOutcomes {
		if string(o) == s {
			return o, nil
		}
	}
	return "", fmt.Errorf("unknown call outcome %q: use answered, no_key, hangup, no_answer, busy, rejected, unreachable or failed", s)
}

// Answered reports whether the official picked up: the call was
// answered, whatever came after.
func (o CallOutcome) Answered() bool {
	return o == CallAnswered || o == CallNoKey || o == CallHangup
}

// Chinese returns the outcome as the 未叫应 list shows it.
func (o CallOutcome) Chinese() string {
	switch o {
	case CallAnswered:
		return "已接听并按键确认"
	case CallNoKey:
		return "接听未按键"
	case CallHangup:
		return "接听后挂断"
	case CallNoAnswer:
		return "无人接听"
	case CallBusy:
		return "占线"
	case CallRejected:
		return "拒接"
	case CallUnreachable:
		return "无法接通"
	case CallFailed:
		return "呼叫失败"
	}
	return string(o)
}

// Call is what one phone call came to. A voice delivery gets one report
// per call; an official called three times has three.
type Call struct {
	Outcome CallOutcome
	// Keys are the keys the official pressed, in order, e.g. "21" for a
	// replay and then the confirmation; empty for none.
	Keys string
	// Ring is how long the phone rang: from the call's start to the
	// answer, or to its end when it was not answered.
	Ring time.Duration
	// Talk is how long the answered call lasted; zero when not answered.
	Talk time.Duration
	// Billed is what the provider bills for the call, in minutes: the
	// talk time rounded up to whole minutes unless the provider says
	// otherwise; zero when not answered.
	Billed int
	// Account names the provider account that placed the call, for what
	// each account bills.
	Account string
}

// BilledMinutes is what carriers bill for a call that lasted talk: every
// started minute; nothing for a call not answered.
func BilledMinutes(talk time.Duration) int {
	if talk <= 0 {
		return 0
	}
	return int((talk + time.Minute - 1) / time.Minute)
}

// Report returns the report of a call to ref that ended at: Delivered
// when it was answered, otherwise Failed with the outcome as the reason
// (无人接听), followed by the provider's own words when detail has them
// (无法接通：200010 关机).
func (c Call) Report(ref Ref, providerID string, at time.Time, detail string) Report {
	r := Report{Ref: ref, ProviderID: providerID, At: at, State: Delivered, Call: &c}
	if !c.Outcome.Answered() {
		r.State, r.Reason = Failed, c.Outcome.Chinese()
		if detail != "" {
			r.Reason += "：" + detail
		}
	}
	return r
}
