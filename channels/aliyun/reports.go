package aliyun

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// beijing is China Standard Time, in which Alibaba writes report times.
var beijing = time.FixedZone("CST", 8*3600)

// maxReportBody bounds one push; Alibaba pushes at most a few hundred
// receipts at a time.
const maxReportBody = 8 << 20

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

// Name implements channels.ReportReceiver.
func (a *Aliyun) Name() string { return "aliyun" }

// UnknownReports returns how many pushed receipts named a message the
// gateway has no index entry for (sent by another system on the same
// account, or older than the index keeps).
func (a *Aliyun) UnknownReports() int64 { return a.unknown.Load() }

// ServeReports implements channels.ReportReceiver for the SmsReport push:
// a POST of a JSON array of receipts, each resolved by "<biz_id>:<phone>".
// success true is delivered; false is failed with err_code and err_msg.
// Receipts the gateway does not know are counted, logged and skipped. The
// answer is {"code":0,"msg":"成功"}; when recording fails it is a non-zero
// code (HTTP 503), and Alibaba pushes again. A push without the token or
// from outside the allowed addresses gets 403 and records nothing.
func (a *Aliyun) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	if !a.auth.Allow(r) {
		a.log.Warn("aliyun: report push refused: wrong token or address", "remote", r.RemoteAddr)
		answer(w, http.StatusForbidden, 403, "forbidden")
		return
	}
	if r.Method != http.MethodPost {
		answer(w, http.StatusMethodNotAllowed, 405, "POST a JSON array")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxReportBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, 413, "body too large or unreadable")
		return
	}
	var items []report
	if err := json.Unmarshal(bytes.TrimSpace(body), &items); err != nil {
		answer(w, http.StatusBadRequest, 400, "malformed SmsReport: want a JSON array of receipts")
		return
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.BizID+":"+it.PhoneNumber)
	}
	refs, err := sink.Resolve(r.Context(), "aliyun", ids)
	if err != nil {
		a.log.Error("aliyun: reports not resolved", "err", err)
		answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
		return
	}
	reports := make([]warning.Report, 0, len(items))
	for i, it := range items {
		ref, ok := refs[ids[i]]
		if !ok {
			a.unknown.Add(1)
			a.log.Warn("aliyun: report for an unknown message skipped", "biz_id", it.BizID, "phone", mask(it.PhoneNumber), "out_id", it.OutID)
			continue
		}
		rep := warning.Report{Ref: ref, ProviderID: ids[i], At: parseTime(it.ReportTime), State: warning.Delivered}
		if !it.Success {
			rep.State, rep.Reason = warning.Failed, strings.TrimSpace(it.ErrCode+" "+it.ErrMsg)
		}
		reports = append(reports, rep)
	}
	if len(reports) > 0 {
		if err := sink.Record(r.Context(), reports); err != nil {
			a.log.Error("aliyun: reports not recorded", "err", err, "reports", len(reports))
			answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
			return
		}
	}
	answer(w, http.StatusOK, 0, "成功")
}

func parseTime(s string) time.Time {
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", s, beijing); err == nil {
		return t
	}
	return time.Now()
}

func answer(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	}{code, msg})
}
