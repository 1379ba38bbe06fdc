package tencent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"warngate/channels"
	"warngate/channels/internal/cloudsms"
)

// report is one entry of a status push.
type report struct {
	UserReceiveTime string `json:"user_receive_time"`
	NationCode      string `json:"nationcode"`
	Mobile          string `json:"mobile"`
	ReportStatus    string `json:"report_status"`
	ErrMsg          string `json:"errmsg"`
	Description     string `json:"description"`
	SID             string `json:"sid"`
}

// ID is the receipt's ProviderID, the sid (SerialNo).
func (r report) ID() string { return r.SID }

// Outcome is delivered for report_status SUCCESS, otherwise failed with
// errmsg and description.
func (r report) Outcome() (time.Time, bool, string) {
	return cloudsms.ReportTime(r.UserReceiveTime), strings.EqualFold(r.ReportStatus, "SUCCESS"), strings.TrimSpace(r.ErrMsg + " " + r.Description)
}

// LogAttrs name the report's message in a log line.
func (r report) LogAttrs() []any { return []any{"sid", r.SID, "phone", channels.MaskPhone(r.Mobile)} }

// newReports takes status pushes, answering as Tencent expects.
func newReports(auth channels.CallbackAuth, log *slog.Logger) *cloudsms.Reports[report] {
	return &cloudsms.Reports[report]{Provider: "tencent", Auth: auth, Log: log, Answer: answer,
		Malformed: "malformed status report: want a JSON array", Taken: "OK"}
}

// Name implements channels.ReportReceiver.
func (t *Tencent) Name() string { return "tencent" }

// UnknownReports returns how many pushed reports named a message the
// gateway has no index entry for.
func (t *Tencent) UnknownReports() int64 { return t.reports.Unknown() }

// ServeReports implements channels.ReportReceiver for the status push
// (短信下发状态回调): a POST of a JSON array of reports, each resolved by its
// sid (the SerialNo). report_status SUCCESS is delivered; FAIL is failed
// with errmsg and description. Reports the gateway does not know are
// counted, logged and skipped. The answer is {"result":0,"errmsg":"OK"};
// when recording fails it is a non-zero result (HTTP 503), and Tencent
// pushes again. A push without the token or from outside the allowed
// addresses gets 403 and records nothing.
func (t *Tencent) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	t.reports.Serve(w, r, sink)
}

// answer writes Tencent's answer to a push: {"result":…,"errmsg":"…"}.
func answer(w http.ResponseWriter, status, result int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Result int    `json:"result"`
		ErrMsg string `json:"errmsg"`
	}{result, msg})
}

// Admits implements channels.Admitter: the push carries this account's
// token, from an address it allows.
func (t *Tencent) Admits(r *http.Request) bool { return t.reports.Auth.Allow(r) }
