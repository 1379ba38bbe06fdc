package screen

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// Receiver takes pushed play logs (mounted at /callbacks/screen), signed
// with the same AppKey, Nonce, CurTime and CheckSum headers as requests to
// the cloud. The body is
//
//	{"logs": [{"playerId": "…", "programName": "<task>", "status": "PLAYED",
//	           "reason": "", "timestamp": <unix ms>}]}
//
// with status PLAYED (or SUCCESS) → delivered and FAILED → failed; other
// statuses (DOWNLOADING, PLAYING) report nothing. VNNOX documents play-log
// queries and change notifications but not this body, which is this
// adapter's reading. Because CheckSum does not cover the body, CurTime must
// be within MaxSkew and each nonce is taken once.
type Receiver struct {
	appKey string
	secret string
	log    *slog.Logger
	now    channels.Clock
	// MaxSkew is how far CurTime may be from now. Default 5 minutes.
	MaxSkew time.Duration

	mu     sync.Mutex
	nonces map[string]time.Time
	pruned time.Time
}

var _ channels.ReportReceiver = (*Receiver)(nil)

// NewReceiver returns the receiver for cfg's account.
func NewReceiver(cfg Config, log *slog.Logger) (*Receiver, error) {
	var errs []error
	if strings.TrimSpace(cfg.AppKey) == "" {
		errs = append(errs, errors.New("screen.app_key: required: the AppKey (AK) from the NovaCloud open platform"))
	}
	secret, err := cfg.appSecret()
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{appKey: cfg.AppKey, secret: secret, log: log.With("provider", "screen"), now: time.Now, MaxSkew: 5 * time.Minute, nonces: map[string]time.Time{}}, nil
}

// Name implements channels.ReportReceiver.
func (rc *Receiver) Name() string { return "screen" }

type playLogs struct {
	Logs []playLog `json:"logs"`
}

type playLog struct {
	PlayerID    string `json:"playerId"`
	ProgramName string `json:"programName"`
	Status      string `json:"status"`
	Reason      string `json:"reason"`
	Timestamp   int64  `json:"timestamp"`
}

const maxLogBody = 4 << 20

// ServeReports implements channels.ReportReceiver. A bad signature gets 403
// and the sink is not called; a report not recorded gets 503.
func (rc *Receiver) ServeReports(w http.ResponseWriter, req *http.Request, sink channels.ReportSink) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		answer(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxLogBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, "body too large or unreadable")
		return
	}
	if err := rc.verify(req.Header); err != nil {
		rc.log.Warn("screen: callback refused", "err", err)
		answer(w, http.StatusForbidden, "CheckSum verification failed")
		return
	}
	var logs playLogs
	if err := json.Unmarshal(body, &logs); err != nil {
		answer(w, http.StatusBadRequest, "malformed play logs")
		return
	}
	var ids []string
	var items []playLog
	for _, l := range logs.Logs {
		switch strings.ToUpper(l.Status) {
		case "PLAYED", "SUCCESS", "FAILED":
			ids = append(ids, l.ProgramName+":"+l.PlayerID)
			items = append(items, l)
		}
	}
	if len(ids) == 0 {
		answer(w, http.StatusOK, "")
		return
	}
	refs, err := sink.Resolve(req.Context(), "screen", ids)
	if err != nil {
		rc.log.Warn("screen: resolve failed", "err", err)
		answer(w, http.StatusServiceUnavailable, "not recorded, send again")
		return
	}
	var reports []warning.Report
	for i, l := range items {
		ref, ok := refs[ids[i]]
		if !ok {
			continue
		}
		r := warning.Report{Ref: ref, ProviderID: ids[i], At: time.UnixMilli(l.Timestamp)}
		if l.Timestamp == 0 {
			r.At = rc.now()
		}
		if strings.ToUpper(l.Status) == "FAILED" {
			r.State, r.Reason = warning.Failed, l.Reason
			if r.Reason == "" {
				r.Reason = "播放失败"
			}
		} else {
			r.State = warning.Delivered
		}
		reports = append(reports, r)
	}
	if len(reports) > 0 {
		if err := sink.Record(req.Context(), reports); err != nil {
			rc.log.Warn("screen: record failed", "err", err)
			answer(w, http.StatusServiceUnavailable, "not recorded, send again")
			return
		}
	}
	answer(w, http.StatusOK, "")
}

func (rc *Receiver) verify(h http.Header) error {
	key, nonce, cur, sum := h.Get("AppKey"), h.Get("Nonce"), h.Get("CurTime"), h.Get("CheckSum")
	if key == "" || nonce == "" || cur == "" || sum == "" {
		return errors.New("missing AppKey, Nonce, CurTime or CheckSum")
	}
	if subtle.ConstantTimeCompare([]byte(key), []byte(rc.appKey)) != 1 {
		return errors.New("unknown AppKey")
	}
	if subtle.ConstantTimeCompare([]byte(strings.ToLower(sum)), []byte(CheckSum(rc.secret, nonce, cur))) != 1 {
		return errors.New("CheckSum does not match")
	}
	sec, err := strconv.ParseInt(cur, 10, 64)
	if err != nil {
		return errors.New("CurTime is not unix seconds")
	}
	now := rc.now()
	if d := now.Sub(time.Unix(sec, 0)); d > rc.MaxSkew || d < -rc.MaxSkew {
		return errors.New("CurTime too far from now")
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if now.Sub(rc.pruned) > rc.MaxSkew {
		for n, at := range rc.nonces {
			if now.Sub(at) > 2*rc.MaxSkew {
				delete(rc.nonces, n)
			}
		}
		rc.pruned = now
	}
	if _, seen := rc.nonces[nonce]; seen {
		return errors.New("nonce already used")
	}
	rc.nonces[nonce] = now
	return nil
}

func answer(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		io.WriteString(w, `{"status":"success"}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]string{"status": "error", "message": msg})
}

// Admits implements channels.Admitter: the callback's headers carry this
// platform's AppKey and a checksum made with its secret. The nonce is left
// for verify, which remembers it.
func (rc *Receiver) Admits(req *http.Request) bool {
	h := req.Header
	key, nonce, cur, sum := h.Get("AppKey"), h.Get("Nonce"), h.Get("CurTime"), h.Get("CheckSum")
	return key != "" && subtle.ConstantTimeCompare([]byte(key), []byte(rc.appKey)) == 1 &&
		subtle.ConstantTimeCompare([]byte(strings.ToLower(sum)), []byte(CheckSum(rc.secret, nonce, cur))) == 1
}
