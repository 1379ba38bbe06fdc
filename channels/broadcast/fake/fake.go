// Package fake is an in-process county emergency-broadcast platform for
// tests and warngate's embedded demo. It takes EBD/EBM messages as JSON at
// POST <any prefix>/ebm, checks their HMAC-SHA256 signature and fields,
// answers with an EBDResponse (ResultCode 1 执行成功, the EBMID, invalid
// terminals), and later posts play-status callbacks (BrdStateCode 2 播发中,
// then 3 播发成功, 4 播发失败 for offline terminals, or 5 播发取消 after a
// cancel), signed the same way.
//
// It implements the signature and wire format itself rather than importing
// the adapter, so the adapter's tests check both against each other. It
// keeps everything in memory and is never for production.
package fake

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warngate/channels/internal/fakepush"
)

// Config describes the simulated platform.
type Config struct {
	// PlatformID is the client's EBRID, which signs requests.
	PlatformID string
	// Key is the shared signing key.
	Key string
	// Devices are the terminals (EBRID) on the platform; nil means any
	// non-empty id.
	Devices []string
	// Offline terminals accept nothing to play: they report 播发失败 设备离线.
	Offline []string
	// CallbackURL receives play-status callbacks; empty sends none.
	CallbackURL string
	// ReportDelay is the time from acceptance to 播发中; PlayTime from
	// then to 播发成功. PlayTime defaults to ReportDelay.
	ReportDelay time.Duration
	PlayTime    time.Duration
	// Record keeps every accepted message for Messages.
	Record bool
}

// Message is one accepted EBM.
type Message struct {
	EBDID      string
	EBMID      string
	MsgType    int // 1 play, 2 cancel
	RelatedEBM string
	SenderName string
	EventType  string
	Severity   int
	StartTime  string
	EndTime    string
	Title      string
	Text       string
	AreaCode   string
	Devices    []string
	PlayTimes  int
	Priority   int
}

// Wire format, as the platform reads it.
type ebd struct {
	EBDVersion string `json:"EBDVersion"`
	EBDID      string `json:"EBDID"`
	EBDType    string `json:"EBDType"`
	SRC        struct {
		EBRID string `json:"EBRID"`
	} `json:"SRC"`
	EBDTime string `json:"EBDTime"`
	EBM     struct {
		EBMVersion string `json:"EBMVersion"`
		RelatedEBM *struct {
			EBMID string `json:"EBMID"`
		} `json:"RelatedEBM"`
		MsgBasicInfo struct {
			MsgType    int    `json:"MsgType"`
			SenderName string `json:"SenderName"`
			SenderCode string `json:"SenderCode"`
			SentTime   string `json:"SentTime"`
			EventType  string `json:"EventType"`
			Severity   int    `json:"Severity"`
			StartTime  string `json:"StartTime"`
			EndTime    string `json:"EndTime"`
		} `json:"MsgBasicInfo"`
		MsgContent *struct {
			LanguageCode string `json:"LanguageCode"`
			MsgTitle     string `json:"MsgTitle"`
			MsgDesc      string `json:"MsgDesc"`
			AreaCode     string `json:"AreaCode"`
		} `json:"MsgContent"`
		Dispatch *struct {
			EBRID []string `json:"EBRID"`
		} `json:"Dispatch"`
	} `json:"EBM"`
	Params *struct {
		PlayTimes int  `json:"PlayTimes"`
		Priority  int  `json:"Priority"`
		TTS       bool `json:"TTS"`
	} `json:"Params"`
}

type invalid struct {
	EBRID  string `json:"EBRID"`
	Reason string `json:"Reason"`
}

type stateItem struct {
	EBRID        string `json:"EBRID"`
	BrdStateCode int    `json:"BrdStateCode"`
	BrdStateDesc string `json:"BrdStateDesc"`
	RptTime      string `json:"RptTime"`
}

const layout = "2006-01-02 15:04:05"

var beijing = time.FixedZone("CST", 8*3600)

// Server is the fake platform.
type Server struct {
	cfg     Config
	hc      *http.Client
	log     *slog.Logger
	devices map[string]bool
	offline map[string]bool

	mu             sync.Mutex
	byEBDID        map[string]*accepted // request id → message, for retried requests
	byEBMID        map[string]*accepted
	messages       []Message
	failNext       []int // HTTP statuses to answer next
	codesNext      []int // ResultCodes to answer next
	lastPrunedMsgs time.Time

	nonces  fakepush.Nonces
	push    fakepush.Pusher
	seq     atomic.Int64
	reports atomic.Int64
}

type accepted struct {
	ebmid     string
	devices   map[string]bool
	cancelled bool
	at        time.Time
}

// New returns a fake platform; hc posts callbacks. Close it to stop them.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Server {
	if cfg.PlayTime == 0 {
		cfg.PlayTime = cfg.ReportDelay
	}
	if log == nil {
		log = slog.Default()
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{
		cfg:     cfg,
		hc:      hc,
		log:     log.With("provider", "broadcast-fake"),
		offline: map[string]bool{},
		byEBDID: map[string]*accepted{},
		byEBMID: map[string]*accepted{},
	}
	if cfg.Devices != nil {
		s.devices = map[string]bool{}
		for _, d := range cfg.Devices {
			s.devices[d] = true
		}
	}
	for _, d := range cfg.Offline {
		s.offline[d] = true
	}
	return s
}

// Close stops callbacks not yet sent and waits for those under way.
func (s *Server) Close() { s.push.Close() }

// Messages returns the accepted messages (with Config.Record).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// ReportsSent counts per-terminal states the callback URL took.
func (s *Server) ReportsSent() int64 { return s.reports.Load() }

// FailNextStatus makes the next request answer with an HTTP status.
func (s *Server) FailNextStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, status)
}

// FailNextResult makes the next request answer HTTP 200 with a ResultCode.
func (s *Server) FailNextResult(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codesNext = append(s.codesNext, code)
}

func reply(w http.ResponseWriter, status int, v map[string]any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func result(code int, desc string) map[string]any {
	return map[string]any{"EBDType": "EBDResponse", "ResultCode": code, "ResultDesc": desc}
}

// Sign computes the signature of a request or callback.
func Sign(key, method, path, platformID, timestamp, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	str := strings.Join([]string{method, path, platformID, timestamp, nonce, hex.EncodeToString(sum[:])}, "\n")
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(str))
	return hex.EncodeToString(m.Sum(nil))
}

func (s *Server) verify(r *http.Request, body []byte) error {
	ts, nonce, sig := r.Header.Get("X-EB-Timestamp"), r.Header.Get("X-EB-Nonce"), r.Header.Get("X-EB-Signature")
	if r.Header.Get("X-EB-Platform") != s.cfg.PlatformID {
		return errors.New("unknown platform id")
	}
	if !hmac.Equal([]byte(sig), []byte(Sign(s.cfg.Key, r.Method, r.URL.EscapedPath(), s.cfg.PlatformID, ts, nonce, body))) {
		return errors.New("bad signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return errors.New("stale timestamp")
	}
	if !s.nonces.Fresh(nonce) {
		return errors.New("nonce replayed")
	}
	return nil
}

// ServeHTTP implements http.Handler. Mount it under any prefix but without
// http.StripPrefix: the signature covers the path the client sent.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/ebm") {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		reply(w, http.StatusMethodNotAllowed, result(2, "接收解析失败：需要POST"))
		return
	}
	s.mu.Lock()
	if len(s.failNext) > 0 {
		st := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		reply(w, st, result(5, http.StatusText(st)))
		return
	}
	if len(s.codesNext) > 0 {
		c := s.codesNext[0]
		s.codesNext = s.codesNext[1:]
		s.mu.Unlock()
		reply(w, http.StatusOK, result(c, "注入的错误"))
		return
	}
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		reply(w, http.StatusBadRequest, result(2, "接收解析失败"))
		return
	}
	if err := s.verify(r, body); err != nil {
		reply(w, http.StatusUnauthorized, result(4, "签名验证失败："+err.Error()))
		return
	}
	var m ebd
	if err := json.Unmarshal(body, &m); err != nil {
		reply(w, http.StatusOK, result(2, "接收解析失败"))
		return
	}
	if field := check(&m, s.cfg.PlatformID); field != "" {
		reply(w, http.StatusOK, result(3, "内容格式校验失败："+field))
		return
	}
	if m.EBM.MsgBasicInfo.MsgType == 2 {
		s.cancel(w, &m)
		return
	}
	s.play(w, &m)
}

// check returns the first field at fault, or "".
func check(m *ebd, platform string) string {
	b := &m.EBM.MsgBasicInfo
	switch {
	case m.EBDType != "EBM":
		return "EBDType"
	case m.EBDID == "":
		return "EBDID"
	case m.SRC.EBRID != platform:
		return "SRC.EBRID"
	case !validTime(m.EBDTime):
		return "EBDTime"
	case b.SenderName == "":
		return "MsgBasicInfo.SenderName"
	case !validTime(b.SentTime):
		return "MsgBasicInfo.SentTime"
	case b.MsgType == 2:
		if m.EBM.RelatedEBM == nil || m.EBM.RelatedEBM.EBMID == "" {
			return "RelatedEBM.EBMID"
		}
		return ""
	case b.MsgType != 1:
		return "MsgBasicInfo.MsgType"
	case len(b.EventType) != 5:
		return "MsgBasicInfo.EventType"
	case b.Severity < 1 || b.Severity > 4:
		return "MsgBasicInfo.Severity"
	case !validTime(b.StartTime):
		return "MsgBasicInfo.StartTime"
	case !validTime(b.EndTime) || b.EndTime <= b.StartTime:
		return "MsgBasicInfo.EndTime"
	case m.EBM.MsgContent == nil || m.EBM.MsgContent.MsgDesc == "":
		return "MsgContent.MsgDesc"
	case m.EBM.MsgContent.LanguageCode != "zho":
		return "MsgContent.LanguageCode"
	case m.EBM.Dispatch == nil || len(m.EBM.Dispatch.EBRID) == 0:
		return "Dispatch.EBRID"
	case m.Params == nil || m.Params.PlayTimes < 1 || m.Params.PlayTimes > 10:
		return "Params.PlayTimes"
	}
	for _, a := range strings.Split(m.EBM.MsgContent.AreaCode, ",") {
		if a != "" && len(a) != 12 {
			return "MsgContent.AreaCode"
		}
	}
	return ""
}

func validTime(s string) bool {
	_, err := time.ParseInLocation(layout, s, beijing)
	return err == nil
}

func (s *Server) play(w http.ResponseWriter, m *ebd) {
	var bad []invalid
	var fresh []string
	s.mu.Lock()
	s.pruneLocked()
	a := s.byEBDID[m.EBDID]
	if a == nil {
		a = &accepted{ebmid: fmt.Sprintf("%s%012d", time.Now().In(beijing).Format("20060102"), s.seq.Add(1)), devices: map[string]bool{}, at: time.Now()}
		s.byEBDID[m.EBDID] = a
		s.byEBMID[a.ebmid] = a
	}
	for _, d := range m.EBM.Dispatch.EBRID {
		switch {
		case d == "" || (s.devices != nil && !s.devices[d]):
			bad = append(bad, invalid{EBRID: d, Reason: "设备不存在"})
		case a.devices[d]:
			// already playing this message: a retried request plays nothing twice
		default:
			a.devices[d] = true
			fresh = append(fresh, d)
		}
	}
	if s.cfg.Record {
		c := m.EBM.MsgContent
		s.messages = append(s.messages, Message{
			EBDID: m.EBDID, EBMID: a.ebmid, MsgType: 1, SenderName: m.EBM.MsgBasicInfo.SenderName,
			EventType: m.EBM.MsgBasicInfo.EventType, Severity: m.EBM.MsgBasicInfo.Severity,
			StartTime: m.EBM.MsgBasicInfo.StartTime, EndTime: m.EBM.MsgBasicInfo.EndTime,
			Title: c.MsgTitle, Text: c.MsgDesc, AreaCode: c.AreaCode, Devices: fresh,
			PlayTimes: m.Params.PlayTimes, Priority: m.Params.Priority,
		})
	}
	s.mu.Unlock()
	ans := result(1, "执行成功")
	ans["EBMID"] = a.ebmid
	ans["RelatedEBD"] = map[string]string{"EBDID": m.EBDID}
	if len(bad) > 0 {
		ans["Invalid"] = bad
	}
	reply(w, http.StatusOK, ans)
	if len(fresh) > 0 && s.cfg.CallbackURL != "" {
		s.push.Go(func() { s.report(a, fresh) })
	}
}

// pruneLocked forgets messages a day old, so a long demo does not grow.
func (s *Server) pruneLocked() {
	if time.Since(s.lastPrunedMsgs) < time.Hour {
		return
	}
	s.lastPrunedMsgs = time.Now()
	for id, a := range s.byEBDID {
		if time.Since(a.at) > 24*time.Hour {
			delete(s.byEBDID, id)
			delete(s.byEBMID, a.ebmid)
		}
	}
}

func (s *Server) cancel(w http.ResponseWriter, m *ebd) {
	id := m.EBM.RelatedEBM.EBMID
	s.mu.Lock()
	a := s.byEBMID[id]
	if a != nil {
		a.cancelled = true
	}
	if s.cfg.Record {
		s.messages = append(s.messages, Message{EBDID: m.EBDID, MsgType: 2, RelatedEBM: id, SenderName: m.EBM.MsgBasicInfo.SenderName})
	}
	s.mu.Unlock()
	if a == nil {
		reply(w, http.StatusOK, result(5, "查找不到该EBMID"))
		return
	}
	reply(w, http.StatusOK, result(1, "执行成功"))
}

// report posts 播发中, then the outcome, for the terminals of one request.
func (s *Server) report(a *accepted, devices []string) {
	if !s.push.Sleep(s.cfg.ReportDelay) {
		return
	}
	started := make([]stateItem, len(devices))
	now := time.Now().In(beijing).Format(layout)
	for i, d := range devices {
		started[i] = stateItem{EBRID: d, BrdStateCode: 2, BrdStateDesc: "播发中", RptTime: now}
		if s.offline[d] {
			started[i] = stateItem{EBRID: d, BrdStateCode: 4, BrdStateDesc: "设备离线", RptTime: now}
		}
	}
	s.post(a.ebmid, started)
	if !s.push.Sleep(s.cfg.PlayTime) {
		return
	}
	s.mu.Lock()
	cancelled := a.cancelled
	s.mu.Unlock()
	var done []stateItem
	now = time.Now().In(beijing).Format(layout)
	for _, d := range devices {
		switch {
		case s.offline[d]:
		case cancelled:
			done = append(done, stateItem{EBRID: d, BrdStateCode: 5, BrdStateDesc: "播发取消", RptTime: now})
		default:
			done = append(done, stateItem{EBRID: d, BrdStateCode: 3, BrdStateDesc: "播发成功", RptTime: now})
		}
	}
	if len(done) > 0 {
		s.post(a.ebmid, done)
	}
}

// post sends one callback, trying a few times.
func (s *Server) post(ebmid string, items []stateItem) {
	body, _ := json.Marshal(map[string]any{
		"EBDType":    "EBMStateResponse",
		"RptTime":    time.Now().In(beijing).Format(layout),
		"EBM":        map[string]string{"EBMID": ebmid},
		"ResBrdInfo": items,
	})
	if err := s.push.Push(func() error { return s.send(body) }); err != nil {
		s.log.Warn("broadcast fake: callback not taken", "ebmid", ebmid, "err", err)
		return
	}
	s.reports.Add(int64(len(items)))
}

func (s *Server) send(body []byte) error {
	u, err := url.Parse(s.cfg.CallbackURL)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Second, errors.New("broadcast fake: callback timed out"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := s.push.Nonce()
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("X-EB-Platform", s.cfg.PlatformID)
	req.Header.Set("X-EB-Timestamp", ts)
	req.Header.Set("X-EB-Nonce", nonce)
	req.Header.Set("X-EB-Signature", Sign(s.cfg.Key, http.MethodPost, req.URL.EscapedPath(), s.cfg.PlatformID, ts, nonce, body))
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ans struct{ ResultCode int }
	json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ans)
	if resp.StatusCode != http.StatusOK || ans.ResultCode != 1 {
		return fmt.Errorf("callback answered %s, ResultCode %d", resp.Status, ans.ResultCode)
	}
	return nil
}
