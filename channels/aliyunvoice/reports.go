package aliyunvoice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"warngate/channels"
	"warngate/channels/voice"
	"warngate/warning"
)

// Push is one entry of a push, as Alibaba writes it: a VoiceCallReport
// (a call's progress, and its key presses: status_code 300000 with dtmf)
// or a VoiceReport (the call's record once it ended: duration and
// end_time among its fields). Both come to the same URL.
type Push struct {
	CallID          string  `json:"call_id"`
	StatusCode      string  `json:"status_code"`
	SmartStatusCode string  `json:"smart_status_code,omitempty"`
	StatusMsg       string  `json:"status_msg,omitempty"`
	StatusTime      string  `json:"status_time,omitempty"`
	OutID           string  `json:"out_id"`
	DTMF            string  `json:"dtmf,omitempty"`
	Caller          string  `json:"caller,omitempty"`
	Callee          string  `json:"callee,omitempty"`
	OriginateTime   string  `json:"originate_time,omitempty"`
	RingTime        string  `json:"ring_time,omitempty"`
	StartTime       string  `json:"start_time,omitempty"`
	EndTime         string  `json:"end_time,omitempty"`
	Duration        *string `json:"duration,omitempty"`
	HangupDirection string  `json:"hangup_direction,omitempty"`
	VoiceType       string  `json:"voice_type,omitempty"`
}

// Status codes of a call in progress (VoiceCallReport).
const (
	StatusKeyPress = "300000" // a key press: dtmf holds the key
)

// ended says whether the entry is a VoiceReport, the record of a call that
// ended.
func (p Push) ended() bool { return p.Duration != nil || p.EndTime != "" }

// MaxPushBody bounds one push.
const MaxPushBody = 8 << 20

// Name implements channels.ReportReceiver.
func (a *Aliyun) Name() string { return Provider }

// errAgain asks Alibaba to push again: something was not recorded.
var errAgain = errors.New("not recorded")

// ServeReports implements channels.ReportReceiver for the VoiceCallReport
// and VoiceReport pushes: a POST of a JSON array of entries. A key press
// "1" confirms receipt through the sink (a channels.CallSink), once per
// call; a call's end becomes its report (one warning.Report with its
// warning.Call) and frees its line, once. An entry for a call the gateway
// did not place, or whose out_id is not the one sent with the call, changes
// nothing and is logged; so does a key press pushed again, and one the
// sink refuses (the warning was lifted). The answer is
// {"code":0,"msg":"成功"}; when something could not be recorded it is
// code 1 (HTTP 503), and Alibaba pushes again. A push without the token
// or from outside the allowed addresses gets 403 and changes nothing.
func (a *Aliyun) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	if !a.auth.Allow(r) {
		a.log.Warn("aliyun_voice: push refused: wrong token or address", "remote", r.RemoteAddr)
		answer(w, http.StatusForbidden, 403, "forbidden")
		return
	}
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, 405, "POST a JSON array")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPushBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, 413, "body too large or unreadable")
		return
	}
	var pushes []Push
	if err := json.Unmarshal(bytes.TrimSpace(body), &pushes); err != nil {
		answer(w, http.StatusBadRequest, 400, "malformed push: want a JSON array of VoiceReport or VoiceCallReport entries")
		return
	}
	failed := false
	for _, p := range pushes {
		var err error
		switch {
		case p.ended():
			err = a.end(r.Context(), p, sink)
		case p.StatusCode == StatusKeyPress:
			err = a.press(r.Context(), p, sink)
		default:
			continue // ringing, answered: the record at the end says it all
		}
		if err != nil {
			failed = true
		}
	}
	if failed {
		answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
		return
	}
	answer(w, http.StatusOK, 0, "成功")
}

// find returns the record of the call an entry is for, or false, logged,
// when the gateway did not place that call or the entry's out_id is not
// the call's.
func (a *Aliyun) find(ctx context.Context, p Push, what string) (voice.Record, bool, error) {
	rec, err := a.calls.Find(ctx, p.CallID)
	switch {
	case errors.Is(err, voice.ErrUnknownCall):
		a.log.Warn("aliyun_voice: "+what+" for a call the gateway did not place, ignored", "call_id", p.CallID, "out_id", p.OutID)
		return rec, false, nil
	case err != nil:
		a.log.Error("aliyun_voice: "+what+" not recorded", "call_id", p.CallID, "err", err)
		return rec, false, errAgain
	case p.OutID != rec.Lease.ID:
		a.log.Warn("aliyun_voice: "+what+" names another call, ignored", "call_id", p.CallID, "out_id", p.OutID, "ref", rec.Ref.String())
		return rec, false, nil
	}
	return rec, true, nil
}

// press takes a key press. The call is marked confirmed only once the sink
// took the confirmation: until then every push of the key press, a replay
// included, confirms (the sink takes a confirmation twice as once), so one
// that failed half-way is confirmed when Alibaba pushes it again.
func (a *Aliyun) press(ctx context.Context, p Push, sink channels.ReportSink) error {
	if _, ok, err := a.find(ctx, p, "key press"); !ok {
		return err
	}
	pr, err := a.calls.Press(ctx, p.CallID, p.DTMF, p.StatusTime+"/"+p.DTMF)
	if err != nil {
		a.log.Error("aliyun_voice: key press not recorded", "call_id", p.CallID, "err", err)
		return errAgain
	}
	rec := pr.Record
	log := a.log.With("call_id", p.CallID, "ref", rec.Ref.String(), "phone", channels.MaskPhone(rec.Lease.Phone), "key", p.DTMF)
	if !pr.Confirm {
		if pr.Replayed {
			log.Info("aliyun_voice: key press pushed again, ignored")
		}
		return nil
	}
	cs, ok := channels.AsCallSink(sink)
	if !ok {
		log.Error("aliyun_voice: key press 1 not confirmed: the sink takes no confirmations")
		return errAgain
	}
	err = cs.Confirm(ctx, rec.Ref, channels.ConfirmMethod, voice.From(Provider, channels.MaskPhone(rec.Lease.Phone), p.CallID))
	switch {
	case errors.Is(err, channels.ErrNotConfirmable):
		log.Warn("aliyun_voice: key press 1 changed nothing", "reason", err.Error())
	case err != nil:
		log.Error("aliyun_voice: key press 1 not recorded", "err", err)
		return errAgain // nothing marked: pushed again, it confirms
	default:
		log.Info("aliyun_voice: confirmed by key press")
	}
	ctx, cancel := voice.AfterSink(ctx)
	defer cancel()
	if err := a.calls.MarkConfirmed(ctx, p.CallID); err != nil {
		// Pushed again, the key press confirms again, which is harmless,
		// and the call is marked: its report then says it was confirmed.
		log.Error("aliyun_voice: key press 1 confirmed, not marked on the call", "err", err)
		return errAgain
	}
	return nil
}

// end takes the record of a call that ended. The call is marked ended
// only once the sink took its report: until then every push of its end
// reports it (the sink takes a report twice as once), so one that failed
// half-way is reported when Alibaba pushes it again.
func (a *Aliyun) end(ctx context.Context, p Push, sink channels.ReportSink) error {
	rec, ok, err := a.find(ctx, p, "call record")
	if !ok {
		return err
	}
	if rec.Ended {
		a.log.Info("aliyun_voice: call record pushed again, ignored", "call_id", p.CallID)
		return nil
	}
	c := callOf(p, rec)
	at := pushTime(p.EndTime, a.now())
	if err := sink.Record(ctx, []warning.Report{c.Report(rec.Ref, p.CallID, at, detail(p))}); err != nil {
		a.log.Error("aliyun_voice: call report not recorded", "call_id", p.CallID, "err", err)
		return errAgain // nothing marked: pushed again, it is reported
	}
	ctx, cancel := voice.AfterSink(ctx)
	defer cancel()
	if err := a.lines.Release(ctx, rec.Lease); err != nil {
		a.log.Warn("aliyun_voice: line not released; it comes free after max_call", "err", err)
	}
	if err := a.calls.MarkEnded(ctx, p.CallID); err != nil {
		// Pushed again, the call is reported again, which is harmless.
		a.log.Error("aliyun_voice: call reported, not marked ended", "call_id", p.CallID, "err", err)
		return errAgain
	}
	return nil
}

// callOf reads what a call came to from its record.
func callOf(p Push, rec voice.Record) warning.Call {
	c := warning.Call{Keys: rec.Keys, Outcome: Outcome(p.StatusCode, p.SmartStatusCode), Account: rec.Lease.Account}
	if c.Keys == "" {
		c.Keys = p.DTMF
	}
	talk := 0
	if p.Duration != nil {
		talk, _ = strconv.Atoi(*p.Duration)
	}
	start := pushTime(p.OriginateTime, rec.Placed)
	if c.Outcome.Answered() || talk > 0 {
		c.Talk = time.Duration(talk) * time.Second
		c.Billed = warning.BilledMinutes(c.Talk)
		switch {
		case rec.Confirmed:
			c.Outcome = warning.CallAnswered
		case p.HangupDirection == "用户" || p.HangupDirection == "User" || p.StatusCode == "200001":
			c.Outcome = warning.CallHangup
		default:
			c.Outcome = warning.CallNoKey
		}
		if answered := pushTime(p.StartTime, time.Time{}); !answered.IsZero() {
			c.Ring = answered.Sub(start)
		}
	} else if end := pushTime(p.EndTime, time.Time{}); !end.IsZero() {
		c.Ring = end.Sub(start)
	}
	c.Ring = max(c.Ring, 0)
	return c
}

// Outcome maps a VoiceReport's status code, and its smart status code when
// given, to how the call ended. Answered calls come out as CallNoKey: the
// record of the call decides between a confirmation, a hang-up and no key.
func Outcome(status, smart string) warning.CallOutcome {
	switch smart {
	case "ANSWERED":
		return warning.CallNoKey
	case "CALL_REJECTED":
		return warning.CallRejected
	case "USER_BUSY":
		return warning.CallBusy
	case "NO_ANSWER", "CANCEL":
		return warning.CallNoAnswer
	case "POWERED_OFF", "SUSPEND", "INVALID_NUMBER", "NO_USER_RESPONDING", "UNAVAILABLE", "INCOMING_CALL_BARRED":
		return warning.CallUnreachable
	case "NETWORK_BUSY", "OPERATOR_BLOCK":
		return warning.CallFailed
	}
	switch status {
	case "200000", "200001", "200008", "200100": // heard it all, hung up early, no key in time, ended after talking
		return warning.CallNoKey
	case "200002":
		return warning.CallBusy
	case "200003":
		return warning.CallNoAnswer
	case "200005": // 被叫无法接通: mostly a rejection
		return warning.CallRejected
	case "200004", "200007", "200010", "200011":
		return warning.CallUnreachable
	}
	return warning.CallFailed
}

// detail is what a push says of a call that failed, for the report's
// reason.
func detail(p Push) string {
	s := p.StatusCode
	if p.StatusMsg != "" {
		s += " " + p.StatusMsg
	}
	if p.SmartStatusCode != "" {
		s += " (" + p.SmartStatusCode + ")"
	}
	return s
}

// beijing is China Standard Time, in which Alibaba writes times.
var beijing = time.FixedZone("CST", 8*3600)

// pushTime reads a time as Alibaba writes it, or returns def.
func pushTime(s string, def time.Time) time.Time {
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", s, beijing); err == nil {
		return t
	}
	return def
}

// answer writes Alibaba's answer to a push: {"code":…,"msg":"…"}.
func answer(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg})
}
