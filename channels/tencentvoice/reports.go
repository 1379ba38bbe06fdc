package tencentvoice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"warngate/channels"
	"warngate/channels/voice"
	"warngate/warning"
)

// Callback is one callback as Tencent posts it: one of its three members.
type Callback struct {
	Prompt  *PromptCallback  `json:"voiceprompt_callback,omitempty"`
	Key     *KeyCallback     `json:"voicekey_callback,omitempty"`
	Failure *FailureCallback `json:"voice_failure_callback,omitempty"`
}

// PromptCallback is the end of a call (语音通知状态通知): result 0 the
// official answered, 1 did not, 2 the call failed; times are Unix seconds.
type PromptCallback struct {
	Result        string `json:"result"`
	AcceptTime    string `json:"accept_time"`
	CallFrom      string `json:"call_from"`
	CallID        string `json:"callid"`
	EndCallTime   string `json:"end_calltime"`
	Fee           string `json:"fee"`
	Mobile        string `json:"mobile"`
	NationCode    string `json:"nationcode"`
	StartCallTime string `json:"start_calltime"`
}

// KeyCallback is a key press (语音通知按键通知).
type KeyCallback struct {
	CallFrom   string `json:"call_from"`
	CallID     string `json:"callid"`
	KeyPress   string `json:"keypress"`
	Mobile     string `json:"mobile"`
	NationCode string `json:"nationcode"`
}

// FailureCallback says why a call failed (语音送达失败原因通知).
type FailureCallback struct {
	CallFrom      string `json:"call_from"`
	CallID        string `json:"callid"`
	FailureCode   int    `json:"failure_code"`
	FailureReason string `json:"failure_reason"`
	Mobile        string `json:"mobile"`
	NationCode    string `json:"nationcode"`
}

// MaxCallbackBody bounds one callback.
const MaxCallbackBody = 1 << 20

// Name implements channels.ReportReceiver.
func (t *Tencent) Name() string { return Provider }

// errAgain asks Tencent to post again: something was not recorded.
var errAgain = errors.New("not recorded")

// ServeReports implements channels.ReportReceiver for Tencent's voice
// callbacks, a POST of one JSON object each. A key press "1"
// (voicekey_callback) confirms receipt through the sink (a
// channels.CallSink), once per call. The end of a call (voiceprompt_callback)
// or why it failed (voice_failure_callback), whichever comes first,
// becomes its report (one warning.Report with its warning.Call) and frees
// its line, once. A callback for a call the gateway did not place, or for
// another number than the call's, changes nothing and is logged; so does
// a key press the sink refuses (the warning was lifted). The answer is
// {"result":0,"errmsg":"OK"}; when something could not be recorded it is
// result 1 (HTTP 503), and Tencent posts again. A callback without the
// token or from outside the allowed addresses gets 403 and changes nothing.
func (t *Tencent) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	if !t.auth.Allow(r) {
		t.log.Warn("tencent_voice: callback refused: wrong token or address", "remote", r.RemoteAddr)
		answer(w, http.StatusForbidden, 403, "forbidden")
		return
	}
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, 405, "POST a JSON object")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxCallbackBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, 413, "body too large or unreadable")
		return
	}
	var cb Callback
	if err := json.Unmarshal(bytes.TrimSpace(body), &cb); err != nil {
		answer(w, http.StatusBadRequest, 400, "malformed callback: want a JSON object")
		return
	}
	switch {
	case cb.Key != nil:
		err = t.press(r.Context(), *cb.Key, sink)
	case cb.Prompt != nil:
		err = t.endWith(r.Context(), cb.Prompt.CallID, cb.Prompt.Mobile, "call end", sink, func(rec voice.Record) (warning.Call, time.Time, string) {
			return promptCall(*cb.Prompt, rec), unix(cb.Prompt.EndCallTime, t.now()), "result " + cb.Prompt.Result
		})
	case cb.Failure != nil:
		f := *cb.Failure
		err = t.endWith(r.Context(), f.CallID, f.Mobile, "call failure", sink, func(rec voice.Record) (warning.Call, time.Time, string) {
			return warning.Call{Outcome: FailureOutcome(f.FailureCode), Keys: rec.Keys, Ring: t.now().Sub(rec.Placed)},
				t.now(), strconv.Itoa(f.FailureCode) + " " + f.FailureReason
		})
	default:
		answer(w, http.StatusBadRequest, 400, "unknown callback: want voiceprompt_callback, voicekey_callback or voice_failure_callback")
		return
	}
	if err != nil {
		answer(w, http.StatusServiceUnavailable, 1, "not recorded, post again")
		return
	}
	answer(w, http.StatusOK, 0, "OK")
}

// find returns the record of the call a callback is for, or false, logged,
// when the gateway did not place that call or the callback names another
// number than the call's.
func (t *Tencent) find(ctx context.Context, callID, mobile, what string) (voice.Record, bool, error) {
	rec, err := t.calls.Find(ctx, callID)
	switch {
	case errors.Is(err, voice.ErrUnknownCall):
		t.log.Warn("tencent_voice: "+what+" for a call the gateway did not place, ignored", "call_id", callID, "phone", channels.MaskPhone(mobile))
		return rec, false, nil
	case err != nil:
		t.log.Error("tencent_voice: "+what+" not recorded", "call_id", callID, "err", err)
		return rec, false, errAgain
	}
	if phone, _ := channels.MobilePhone(mobile); phone != rec.Lease.Phone {
		t.log.Warn("tencent_voice: "+what+" names another number than its call's, ignored", "call_id", callID,
			"phone", channels.MaskPhone(mobile), "ref", rec.Ref.String())
		return rec, false, nil
	}
	return rec, true, nil
}

// press takes a key press. The call is marked confirmed only once the sink
// took the confirmation: until then every post of a "1", a repeat
// included, confirms (the sink takes a confirmation twice as once), so one
// that failed half-way is confirmed when Tencent posts it again.
func (t *Tencent) press(ctx context.Context, k KeyCallback, sink channels.ReportSink) error {
	if _, ok, err := t.find(ctx, k.CallID, k.Mobile, "key press"); !ok {
		return err
	}
	pr, err := t.calls.Press(ctx, k.CallID, k.KeyPress, "")
	if err != nil {
		t.log.Error("tencent_voice: key press not recorded", "call_id", k.CallID, "err", err)
		return errAgain
	}
	rec := pr.Record
	log := t.log.With("call_id", k.CallID, "ref", rec.Ref.String(), "phone", channels.MaskPhone(rec.Lease.Phone), "key", k.KeyPress)
	if !pr.Confirm {
		if k.KeyPress == "1" {
			log.Info("tencent_voice: key press 1 again, ignored")
		}
		return nil
	}
	cs, ok := channels.AsCallSink(sink)
	if !ok {
		log.Error("tencent_voice: key press 1 not confirmed: the sink takes no confirmations")
		return errAgain
	}
	err = cs.Confirm(ctx, rec.Ref, channels.ConfirmMethod, voice.From(Provider, channels.MaskPhone(rec.Lease.Phone), k.CallID))
	switch {
	case errors.Is(err, channels.ErrNotConfirmable):
		log.Warn("tencent_voice: key press 1 changed nothing", "reason", err.Error())
	case err != nil:
		log.Error("tencent_voice: key press 1 not recorded", "err", err)
		return errAgain // nothing marked: posted again, it confirms
	default:
		log.Info("tencent_voice: confirmed by key press")
	}
	ctx, cancel := voice.AfterSink(ctx)
	defer cancel()
	if err := t.calls.MarkConfirmed(ctx, k.CallID); err != nil {
		// Posted again, the key press confirms again, which is harmless,
		// and the call is marked: its report then says it was confirmed.
		log.Error("tencent_voice: key press 1 confirmed, not marked on the call", "err", err)
		return errAgain
	}
	return nil
}

// endWith ends a call with what call makes of its record: the call, when
// it ended and the provider's words. The call is marked ended only once
// the sink took its report: until then every post of its end reports it
// (the sink takes a report twice as once), so one that failed half-way is
// reported when Tencent posts it again.
func (t *Tencent) endWith(ctx context.Context, callID, mobile, what string, sink channels.ReportSink,
	call func(voice.Record) (warning.Call, time.Time, string)) error {
	rec, ok, err := t.find(ctx, callID, mobile, what)
	if !ok {
		return err
	}
	if rec.Ended {
		t.log.Info("tencent_voice: "+what+" for a call already ended, ignored", "call_id", callID)
		return nil
	}
	c, at, detail := call(rec)
	c.Account = rec.Lease.Account
	if err := sink.Record(ctx, []warning.Report{c.Report(rec.Ref, callID, at, detail)}); err != nil {
		t.log.Error("tencent_voice: call report not recorded", "call_id", callID, "err", err)
		return errAgain // nothing marked: posted again, it is reported
	}
	ctx, cancel := voice.AfterSink(ctx)
	defer cancel()
	if err := t.lines.Release(ctx, rec.Lease); err != nil {
		t.log.Warn("tencent_voice: line not released; it comes free after max_call", "err", err)
	}
	if err := t.calls.MarkEnded(ctx, callID); err != nil {
		// Posted again, the call is reported again, which is harmless.
		t.log.Error("tencent_voice: call reported, not marked ended", "call_id", callID, "err", err)
		return errAgain
	}
	return nil
}

// promptCall reads what a call came to from its end. VMS says whether
// the call was answered, not who hung up: an answered call without a 1 is
// CallNoKey.
func promptCall(p PromptCallback, rec voice.Record) warning.Call {
	c := warning.Call{Keys: rec.Keys}
	start := unix(p.StartCallTime, rec.Placed)
	end := unix(p.EndCallTime, start)
	switch p.Result {
	case "0":
		c.Outcome = warning.CallNoKey
		if rec.Confirmed {
			c.Outcome = warning.CallAnswered
		}
		accept := unix(p.AcceptTime, start)
		c.Ring, c.Talk = max(accept.Sub(start), 0), max(end.Sub(accept), 0)
		c.Billed = warning.BilledMinutes(c.Talk)
		if fee, err := strconv.Atoi(strings.TrimSpace(p.Fee)); err == nil && fee > 0 {
			c.Billed = fee
		}
	case "1":
		c.Outcome, c.Ring = warning.CallNoAnswer, max(end.Sub(start), 0)
	default:
		c.Outcome, c.Ring = warning.CallFailed, max(end.Sub(start), 0)
	}
	return c
}

// FailureOutcome maps a voice_failure_callback's failure_code. On mainland
// networks a phone's reject button makes the caller hear 用户正忙 (10);
// 通话中 (2) is a line in use.
func FailureOutcome(code int) warning.CallOutcome {
	switch code {
	case 2:
		return warning.CallBusy
	case 10:
		return warning.CallRejected
	case 5, 20:
		return warning.CallNoAnswer
	case 1, 3, 4, 6, 7, 8, 13, 15, 16, 17, 19:
		return warning.CallUnreachable
	}
	return warning.CallFailed // 9 电路正忙, 11 其他, 12 呼叫受限, 18 网络忙, and codes not known
}

// unix reads Unix seconds as Tencent writes them, or returns def.
func unix(s string, def time.Time) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return def
	}
	return time.Unix(n, 0)
}

// answer writes Tencent's answer to a callback: {"result":…,"errmsg":"…"}.
func answer(w http.ResponseWriter, status, result int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Result int    `json:"result"`
		ErrMsg string `json:"errmsg"`
	}{result, msg})
}
