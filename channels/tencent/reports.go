package tencent

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// beijing is China Standard Time, in which Tencent writes report times.
var beijing = time.FixedZone("CST", 8*3600)

// maxReportBody bounds one push.
const maxReportBody = 8 << 20

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

// Name implements channels.ReportReceiver.
func (t *Tencent) Name() string { return "tencent" }

// UnknownReports returns how many pushed reports named a message the
// gateway has no index entry for.
func (t *Tencent) UnknownReports() int64 { return t.unknown.Load() }

// ServeReports implements channels.ReportReceiver for the status push
// (短信下发状态回调): a POST of a JSON array of reports, each resolved by its
// sid (the SerialNo). report_status SUCCESS is delivered; FAIL is failed
// with errmsg and description. Reports the gateway does not know are
// counted, logged and skipped. The answer is {"result":0,"errmsg":"OK"};
// when recording fails it is a non-zero result (HTTP 503), and Tencent
// pushes again. A push without the token or from outside the allowed
// addresses gets 403 and records nothing.
func (t *Tencent) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	if !t.auth.Allow(r) {
		t.log.Warn("tencent: report push refused: wrong token or address", "remote", r.RemoteAddr)
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
		answer(w, http.StatusBadRequest, 400, "malformed status report: want a JSON array")
		return
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.SID)
	}
	refs, err := sink.Resolve(r.Context(), "tencent", ids)
	if err != nil {
		t.log.Error("tencent: reports not resolved", "err", err)
		answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
		return
	}
	reports := make([]warning.Report, 0, len(items))
	for _, it := range items {
		ref, ok := refs[it.SID]
		if !ok {
			t.unknown.Add(1)
			t.log.Warn("tencent: report for an unknown message skipped", "sid", it.SID, "phone", mask(it.Mobile))
			continue
		}
		rep := warning.Report{Ref: ref, ProviderID: it.SID, At: parseTime(it.UserReceiveTime), State: warning.Delivered}
		if !strings.EqualFold(it.ReportStatus, "SUCCESS") {
			rep.State, rep.Reason = warning.Failed, strings.TrimSpace(it.ErrMsg+" "+it.Description)
		}
		reports = append(reports, rep)
	}
	if len(reports) > 0 {
		if err := sink.Record(r.Context(), reports); err != nil {
			t.log.Error("tencent: reports not recorded", "err", err, "reports", len(reports))
			answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
			return
		}
	}
	answer(w, http.StatusOK, 0, "OK")
}

func parseTime(s string) time.Time {
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", s, beijing); err == nil {
		return t
	}
	return time.Now()
}

func answer(w http.ResponseWriter, status, result int, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Result int    `json:"result"`
		ErrMsg string `json:"errmsg"`
	}{result, msg})
}
