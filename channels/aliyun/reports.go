package aliyun

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"warngate/channels"
	"warngate/channels/internal/cloudsms"
)

// report is one receipt of an SmsReport push.
type report struct {
	PhoneNumber string   `json:"phone_number"`
	SendTime    string   `json:"send_time"`
	ReportTime  string   `json:"report_time"`
	Success     flexBool `json:"success"`
	ErrCode     string   `json:"err_code"`
	ErrMsg      string   `json:"err_msg"`
	BizID       string   `json:"biz_id"`
	OutID       string   `json:"out_id"`
}

// ID is the receipt's ProviderID, "<biz_id>:<phone>".
func (r report) ID() string { return r.BizID + ":" + r.PhoneNumber }

// Outcome is delivered for success true, otherwise failed with err_code and
// err_msg.
func (r report) Outcome() (time.Time, bool, string) {
	return cloudsms.ReportTime(r.ReportTime), bool(r.Success), strings.TrimSpace(r.ErrCode + " " + r.ErrMsg)
}

// LogAttrs name the receipt's message in a log line.
func (r report) LogAttrs() []any {
	return []any{"biz_id", r.BizID, "phone", channels.MaskPhone(r.PhoneNumber), "out_id", r.OutID}
}

// flexBool takes true, false, "true" or "false".
type flexBool bool

func (b *flexBool) UnmarshalJSON(p []byte) error {
	switch strings.Trim(string(p), `"`) {
	case "true", "1":
		*b = true
	case "false", "0", "null", "":
		*b = false
	default:
		return fmt.Errorf("success: %s is not a boolean", p)
	}
	return nil
}

// newReports takes SmsReport pushes, answering as Alibaba expects.
func newReports(auth channels.CallbackAuth, log *slog.Logger) *cloudsms.Reports[report] {
	return &cloudsms.Reports[report]{Provider: "aliyun", Auth: auth, Log: log, Answer: answer,
		Malformed: "malformed SmsReport: want a JSON array of receipts", Taken: "成功"}
}

// Name implements channels.ReportReceiver.
func (a *Aliyun) Name() string { return "aliyun" }

// UnknownReports returns how many pushed receipts named a message the
// gateway has no index entry for (sent by another system on the same
// account, or older than the index keeps).
func (a *Aliyun) UnknownReports() int64 { return a.reports.Unknown() }

// ServeReports implements channels.ReportReceiver for the SmsReport push:
// a POST of a JSON array of receipts, each resolved by "<biz_id>:<phone>".
// success true is delivered; false is failed with err_code and err_msg.
// Receipts the gateway does not know are counted, logged and skipped. The
// answer is {"code":0,"msg":"成功"}; when recording fails it is a non-zero
// code (HTTP 503), and Alibaba pushes again. A push without the token or
// from outside the allowed addresses gets 403 and records nothing.
func (a *Aliyun) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	a.reports.Serve(w, r, sink)
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

// Admits implements channels.Admitter: the push carries this account's
// token, from an address it allows.
func (a *Aliyun) Admits(r *http.Request) bool { return a.reports.Auth.Allow(r) }
