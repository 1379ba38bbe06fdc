package broadcast

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// Receiver takes the platform's play-status callbacks (mounted at
// /callbacks/broadcast), signed the same way as requests to the platform.
type Receiver struct {
	signer Signer
	log    *slog.Logger
}

var _ channels.ReportReceiver = (*Receiver)(nil)

// NewReceiver returns the receiver for cfg's platform. signer nil means
// HMAC-SHA256 under cfg.Key.
func NewReceiver(cfg Config, signer Signer, log *slog.Logger) (*Receiver, error) {
	if signer == nil {
		if cfg.PlatformID == "" {
			return nil, errors.New("broadcast.platform_id: required: warngate's resource id (EBRID) as the platform registered it")
		}
		key, err := resolveKey(cfg)
		if err != nil {
			return nil, err
		}
		signer = NewHMACSigner(cfg.PlatformID, []byte(key), nil)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{signer: signer, log: log.With("provider", "broadcast")}, nil
}

// Name implements channels.ReportReceiver.
func (rc *Receiver) Name() string { return "broadcast" }

// Play states (BrdStateCode).
const (
	StateUnprocessed = 0 // 未处理
	StateWaiting     = 1 // 等待播发
	StatePlaying     = 2 // 播发中
	StateSucceeded   = 3 // 播发成功
	StateFailed      = 4 // 播发失败
	StateCancelled   = 5 // 播发取消
)

// stateReport is a play-status callback (EBMStateResponse), one item per
// terminal.
type stateReport struct {
	EBDType    string    `json:"EBDType"`
	RptTime    string    `json:"RptTime"`
	EBM        ebmID     `json:"EBM"`
	ResBrdInfo []brdItem `json:"ResBrdInfo"`
}

type ebmID struct {
	EBMID string `json:"EBMID"`
}

type brdItem struct {
	EBRID        string `json:"EBRID"`
	BrdStateCode int    `json:"BrdStateCode"`
	BrdStateDesc string `json:"BrdStateDesc"`
	RptTime      string `json:"RptTime"`
}

const maxReportBody = 4 << 20

// ServeReports implements channels.ReportReceiver. Finished plays become
// delivered, failed and cancelled plays failed; started plays report
// nothing. A bad signature gets 403 and the sink is not called.
func (rc *Receiver) ServeReports(w http.ResponseWriter, req *http.Request, sink channels.ReportSink) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		reply(w, http.StatusMethodNotAllowed, ResultParse, "method not allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxReportBody))
	if err != nil {
		reply(w, http.StatusRequestEntityTooLarge, ResultParse, "body too large or unreadable")
		return
	}
	if err := rc.signer.Verify(req, body); err != nil {
		rc.log.Warn("broadcast: callback refused", "err", err)
		reply(w, http.StatusForbidden, ResultSignature, "签名验证失败")
		return
	}
	var rep stateReport
	if err := json.Unmarshal(body, &rep); err != nil || rep.EBM.EBMID == "" {
		reply(w, http.StatusBadRequest, ResultParse, "接收解析失败")
		return
	}
	var ids []string
	var items []brdItem
	for _, it := range rep.ResBrdInfo {
		switch it.BrdStateCode {
		case StateSucceeded, StateFailed, StateCancelled:
			ids = append(ids, rep.EBM.EBMID+":"+it.EBRID)
			items = append(items, it)
		}
	}
	if len(ids) == 0 {
		reply(w, http.StatusOK, ResultOK, "执行成功")
		return
	}
	refs, err := sink.Resolve(req.Context(), "broadcast", ids)
	if err != nil {
		rc.log.Warn("broadcast: resolve failed", "err", err)
		reply(w, http.StatusServiceUnavailable, ResultOther, "not recorded, send again")
		return
	}
	var reports []warning.Report
	for i, it := range items {
		ref, ok := refs[ids[i]]
		if !ok {
			continue
		}
		r := warning.Report{Ref: ref, ProviderID: ids[i], At: reportTime(it.RptTime, rep.RptTime)}
		switch it.BrdStateCode {
		case StateSucceeded:
			r.State = warning.Delivered
		case StateFailed:
			r.State, r.Reason = warning.Failed, it.BrdStateDesc
			if r.Reason == "" {
				r.Reason = "播发失败"
			}
		case StateCancelled:
			r.State, r.Reason = warning.Failed, "播发取消"
		}
		reports = append(reports, r)
	}
	if len(reports) > 0 {
		if err := sink.Record(req.Context(), reports); err != nil {
			rc.log.Warn("broadcast: record failed", "err", err)
			reply(w, http.StatusServiceUnavailable, ResultOther, "not recorded, send again")
			return
		}
	}
	reply(w, http.StatusOK, ResultOK, "执行成功")
}

func reportTime(vals ...string) time.Time {
	for _, v := range vals {
		if t, err := time.ParseInLocation(timeLayout, v, beijing); err == nil {
			return t
		}
	}
	return time.Now()
}

func reply(w http.ResponseWriter, status, code int, desc string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"ResultCode": code, "ResultDesc": desc})
}
