package tencent

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
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
	if !t.auth.allow(r) {
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

// callbackAuth admits a push that carries the token (?token=) and comes
// from an allowed address, for each of the two that is configured.
type callbackAuth struct {
	token string
	nets  []netip.Prefix
}

func newCallbackAuth(provider, token string, allow []string) (callbackAuth, []error) {
	var errs []error
	a := callbackAuth{token: token}
	if token != "" && len(token) < 16 {
		errs = append(errs, fmt.Errorf("%s.callback_token: too short (%d characters): use at least 16 random characters, e.g. from `openssl rand -hex 16`", provider, len(token)))
	}
	if strings.ContainsAny(token, "&#?/ %+") {
		errs = append(errs, fmt.Errorf("%s.callback_token: use only letters, digits, '-' and '_': it travels in a URL", provider))
	}
	for _, s := range allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			ip, ierr := netip.ParseAddr(s)
			if ierr != nil {
				errs = append(errs, fmt.Errorf("%s.callback_allow_from: %q is neither a CIDR (100.104.0.0/16) nor an IP address", provider, s))
				continue
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		a.nets = append(a.nets, p.Masked())
	}
	if token == "" && len(allow) == 0 {
		errs = append(errs, fmt.Errorf("%s.callback_token: required unless callback_allow_from is set: the push carries no signature, so set a random token and put it in the push URL as ?token=…", provider))
	}
	return a, errs
}

func (a callbackAuth) allow(r *http.Request) bool {
	if a.token == "" && len(a.nets) == 0 {
		return false
	}
	if a.token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(a.token)) != 1 {
		return false
	}
	if len(a.nets) > 0 {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return false
		}
		ip := ap.Addr().Unmap()
		for _, n := range a.nets {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	return true
}
