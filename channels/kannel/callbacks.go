package kannel

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"warngate/channels"
	"warngate/warning"
)

// Kannel's delivery report types (the dlr-mask bits).
const (
	dlrDelivered = 1  // delivered to the phone
	dlrFailed    = 2  // not delivered
	dlrBuffered  = 4  // queued at the SMS centre
	dlrSMSC      = 8  // accepted by the SMS centre
	dlrRejected  = 16 // refused by the SMS centre
)

// dlrMaskBits is dlrMask as the box protocol carries it.
const dlrMaskBits = dlrDelivered | dlrFailed | dlrRejected

// maxCallbackBody bounds a callback's body (reports come as a GET; a POST
// form is accepted too).
const maxCallbackBody = 64 << 10

// Name implements channels.ReportReceiver and channels.ReplyReceiver.
func (k *Kannel) Name() string { return "kannel" }

// Admits implements channels.Admitter: the callback carries this account's
// key in its URL (Kannel calls the dlr-url and the MO url with GET).
func (k *Kannel) Admits(r *http.Request) bool { return k.keyOK(r.URL.Query().Get("key")) }

// ServeReports implements channels.ReportReceiver for Kannel's dlr-url
// calls, GET or POST /callbacks/kannel?…&type=N&key=…[&reply=…&ts=…] with
// ref=<delivery> (a call to one number) or call=<call>&to=<number> (a call
// to several): type 1 is delivered, 2 undelivered and 16 rejected by the
// SMS centre; types 4 (buffered) and 8 (accepted by the SMS centre) report
// nothing. It answers 200 "OK" once the report is recorded (or is for a
// delivery nobody knows), 403 for a wrong key, 400 for a malformed call
// and 503 when the report could not be recorded: Kannel sends it again
// when its smsbox has http-request-retry.
//
// Kannel makes one call per report, many at once: reports that arrive
// together are resolved and recorded together (see recorder).
func (k *Kannel) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	r.Body = http.MaxBytesReader(w, r.Body, maxCallbackBody)
	if err := r.ParseForm(); err != nil {
		plain(w, http.StatusBadRequest, "malformed request")
		return
	}
	if !k.keyOK(r.Form.Get("key")) {
		k.log.Warn("kannel: delivery report with a wrong key refused", "remote", r.RemoteAddr)
		plain(w, http.StatusForbidden, "forbidden")
		return
	}
	p := &pending{sink: sink}
	switch call, to := r.Form.Get("call"), r.Form.Get("to"); {
	case r.Form.Has("ref"):
		ref, err := warning.ParseRef(r.Form.Get("ref"))
		if err != nil {
			plain(w, http.StatusBadRequest, "bad ref: "+err.Error())
			return
		}
		p.rep.Ref = ref
	case call != "":
		phone, ok := Phone(to)
		if !ok {
			plain(w, http.StatusBadRequest, "bad to: want the number Kannel reported on (%p), 11 digits starting with 1")
			return
		}
		p.call, p.phone = call, phone
	default:
		plain(w, http.StatusBadRequest, "want ref=<delivery>, or call=<call>&to=<number>")
		return
	}
	typ, err := strconv.Atoi(r.Form.Get("type"))
	if err != nil || typ <= 0 {
		plain(w, http.StatusBadRequest, "bad type: want Kannel's %d, a number such as 1, 2, 8 or 16")
		return
	}
	p.rep.At = timeParam(r.Form.Get("ts"))
	var final bool
	p.rep.State, p.rep.Reason, final = reportOutcome(typ, r.Form.Get("reply"))
	switch {
	case final:
	case typ&(dlrBuffered|dlrSMSC) != 0:
		plain(w, http.StatusOK, "OK") // on its way: nothing to record
		return
	default:
		plain(w, http.StatusBadRequest, "unknown report type "+strconv.Itoa(typ))
		return
	}
	switch err := k.reports.record(r.Context(), p); {
	case err != nil:
		k.log.Error("kannel: delivery report not recorded", "report", p.name(), "err", err)
		plain(w, http.StatusServiceUnavailable, "not recorded, send again")
	case p.unknown:
		k.log.Warn("kannel: delivery report for a call and number nobody sent", "report", p.name())
		plain(w, http.StatusOK, "OK, unknown")
	default:
		plain(w, http.StatusOK, "OK")
	}
}

// ServeReplies implements channels.ReplyReceiver for the sms-service
// get-url, /callbacks/kannel/mo?key=…&from=%p&to=%P&text=%a&ts=%T&smsc=%i
// [&coding=%c&charset=%C]. It answers with an empty body: whatever an
// sms-service answers, Kannel texts back to the phone (unless max-messages
// is 0).
func (k *Kannel) ServeReplies(w http.ResponseWriter, r *http.Request, handle func(context.Context, channels.Reply) error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxCallbackBody)
	if err := r.ParseForm(); err != nil {
		empty(w, http.StatusBadRequest)
		return
	}
	if !k.keyOK(r.Form.Get("key")) {
		k.log.Warn("kannel: reply with a wrong key refused", "remote", r.RemoteAddr)
		empty(w, http.StatusForbidden)
		return
	}
	from := strings.TrimSpace(r.Form.Get("from"))
	if from == "" {
		empty(w, http.StatusBadRequest)
		return
	}
	if p, ok := Phone(from); ok {
		from = p
	}
	reply := channels.Reply{
		From: from,
		To:   r.Form.Get("to"),
		Text: moText(r.Form.Get("text"), r.Form.Get("coding"), r.Form.Get("charset")),
		At:   timeParam(r.Form.Get("ts")),
	}
	if err := handle(r.Context(), reply); err != nil {
		k.log.Error("kannel: reply not handled", "from", channels.MaskPhone(reply.From), "err", err)
		empty(w, http.StatusServiceUnavailable)
		return
	}
	empty(w, http.StatusOK)
}

// moText decodes a reply's text. Kannel passes a UCS-2 message (coding 2,
// e.g. Chinese) as its raw UTF-16BE bytes.
func moText(text, coding, charset string) string {
	cs := strings.ToUpper(charset)
	if coding == "2" && (cs == "" || cs == "UTF-16BE" || cs == "UCS-2" || cs == "UCS-2BE" || cs == "UTF-16") && len(text)%2 == 0 {
		u := make([]uint16, len(text)/2)
		for i := range u {
			u[i] = uint16(text[2*i])<<8 | uint16(text[2*i+1])
		}
		return string(utf16.Decode(u))
	}
	if !utf8.ValidString(text) {
		return strings.ToValidUTF8(text, "\uFFFD")
	}
	return text
}

// reportOutcome is what a delivery report of Kannel's type typ records,
// with the SMS centre's reply (clipped) in a failure's reason; final is
// false for a report that records nothing (buffered, accepted by the SMS
// centre: on its way; or a type Kannel does not send).
func reportOutcome(typ int, reply string) (state warning.DeliveryState, why string, final bool) {
	switch {
	case typ&dlrDelivered != 0:
		return warning.Delivered, "", true
	case typ&dlrFailed != 0:
		return warning.Failed, reason("undelivered", clip(reply, 160)), true
	case typ&dlrRejected != 0:
		return warning.Failed, reason("rejected by SMSC", clip(reply, 160)), true
	}
	return 0, "", false
}

func reason(what, reply string) string {
	if reply == "" {
		return what
	}
	return what + ": " + reply
}

func clip(s string, n int) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "")
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n])
	}
	return s
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

func empty(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(code)
}
