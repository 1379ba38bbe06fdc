package wechat

import (
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"warngate/channels"
	"warngate/warning"
)

// Receiver takes the official account's server callbacks (服务器配置 URL,
// mounted at /callbacks/wechat): the GET that verifies the URL, and POSTed
// events, of which TEMPLATESENDJOBFINISH becomes a delivery report.
//
// Only plain mode (明文模式) and the plain fields of compatible mode (兼容模式)
// are read. Safe mode (安全模式), where the event is AES-encrypted, is not
// implemented: such events are refused with 400 and logged, so set message
// encryption to plain or compatible. In plain mode WeChat's signature covers
// the timestamp and nonce only, not the body; keep the callback on HTTPS.
type Receiver struct {
	token string
	log   *slog.Logger
}

var _ channels.ReportReceiver = (*Receiver)(nil)

// NewReceiver returns the receiver for cfg's account; it needs cfg.Token
// (or TokenFile).
func NewReceiver(cfg OfficialAccountConfig, log *slog.Logger) (*Receiver, error) {
	tok, err := resolveSecret("wechat.official_account", "token", cfg.Token, cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	if len(tok) < 3 || len(tok) > 32 {
		return nil, errors.New("wechat.official_account.token: WeChat tokens are 3 to 32 letters or digits; copy the 服务器配置 Token")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{token: tok, log: log.With("provider", "wechat")}, nil
}

// Name implements channels.ReportReceiver.
func (rc *Receiver) Name() string { return "wechat" }

// maxEventBody bounds an event; WeChat's are under a few kilobytes.
const maxEventBody = 64 << 10

// Template send statuses in TEMPLATESENDJOBFINISH.
const (
	StatusSuccess   = "success"
	StatusUserBlock = "failed:user block"
)

// ServeReports implements channels.ReportReceiver. A forged signature gets
// 403 and the sink is not called. A report the sink cannot record gets 503,
// so WeChat sends the event again.
func (rc *Receiver) ServeReports(w http.ResponseWriter, req *http.Request, sink channels.ReportSink) {
	q := req.URL.Query()
	if !rc.signed(q.Get("signature"), q.Get("timestamp"), q.Get("nonce")) {
		http.Error(w, "signature mismatch", http.StatusForbidden)
		return
	}
	switch req.Method {
	case http.MethodGet:
		// URL verification: echo echostr.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, q.Get("echostr"))
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxEventBody))
	if err != nil {
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	var ev message.MixMessage
	if err := xml.Unmarshal(body, &ev); err != nil {
		http.Error(w, "malformed XML", http.StatusBadRequest)
		return
	}
	if ev.MsgType == "" && strings.Contains(string(body), "<Encrypt>") {
		rc.log.Error("wechat: encrypted (safe mode) event refused; set the account's message encryption to plain or compatible")
		http.Error(w, "safe mode is not supported", http.StatusBadRequest)
		return
	}
	if ev.MsgType != message.MsgTypeEvent || ev.Event != message.EventTemplateSendJobFinish {
		answerSuccess(w) // other events and messages are not ours to handle
		return
	}
	id := strconv.FormatInt(ev.TemplateMsgID, 10)
	refs, err := sink.Resolve(req.Context(), "wechat", []string{id})
	if err != nil {
		rc.log.Warn("wechat: resolve msgid failed", "err", err)
		http.Error(w, "not recorded, send again", http.StatusServiceUnavailable)
		return
	}
	ref, ok := refs[id]
	if !ok {
		rc.log.Debug("wechat: report for an unknown msgid", "msgid", id)
		answerSuccess(w)
		return
	}
	rep := warning.Report{Ref: ref, ProviderID: id, At: time.Unix(int64(ev.CreateTime), 0)}
	if ev.CreateTime == 0 {
		rep.At = time.Now()
	}
	switch status := strings.TrimSpace(ev.Status); {
	case status == StatusSuccess:
		rep.State = warning.Delivered
	case status == StatusUserBlock:
		rep.State, rep.Reason = warning.Failed, "用户拒收"
	default:
		rep.State, rep.Reason = warning.Failed, status
	}
	if err := sink.Record(req.Context(), []warning.Report{rep}); err != nil {
		rc.log.Warn("wechat: record report failed", "err", err)
		http.Error(w, "not recorded, send again", http.StatusServiceUnavailable)
		return
	}
	answerSuccess(w)
}

// signed checks WeChat's signature: SHA1 of token, timestamp and nonce,
// sorted and concatenated.
func (rc *Receiver) signed(sig, timestamp, nonce string) bool {
	if sig == "" || timestamp == "" || nonce == "" {
		return false
	}
	want := util.Signature(rc.token, timestamp, nonce)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) == 1
}

// answerSuccess is WeChat's "received, do not send again".
func answerSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "success")
}
