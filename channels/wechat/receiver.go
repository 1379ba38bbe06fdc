package wechat

import (
	"context"
	"crypto/subtle"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
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
// With encoding_aes_key set, the account's message encryption must be safe
// mode (安全模式) or compatible mode (兼容模式): events come encrypted
// (encrypt_type=aes), their msg_signature covers the encrypted body as well
// as the timestamp and nonce, and only the decrypted content is read, so
// the plain fields of compatible mode are ignored. Plain events are then
// refused with 400, since anyone who has seen one signature could forge
// one. An encrypted request already handled is answered again without
// being recorded twice (per process, for ten minutes).
//
// Without encoding_aes_key, plain mode (明文模式) and the plain fields of
// compatible mode are read; WeChat's signature then covers the timestamp and
// nonce only, not the body, so keep the callback on HTTPS. Safe-mode events,
// which have no plain fields, are refused with 400 and logged.
type Receiver struct {
	token   string
	cipher  *eventCipher // nil without encoding_aes_key
	log     *slog.Logger
	replays *replayMemory

	compatOnce sync.Once
}

var _ channels.ReportReceiver = (*Receiver)(nil)

const receiverSection = "wechat.official_account"

// NewReceiver returns the receiver for cfg's account; it needs cfg.Token
// (or TokenFile), and for safe or compatible mode cfg.EncodingAESKey (or
// EncodingAESKeyFile) and cfg.AppID.
func NewReceiver(cfg OfficialAccountConfig, log *slog.Logger) (*Receiver, error) {
	var errs []error
	tok, err := channels.ResolveSecret(receiverSection, "token", cfg.Token, cfg.TokenFile, "the 服务器配置 Token that signs WeChat's callbacks")
	if err != nil {
		errs = append(errs, err)
	} else if len(tok) < 3 || len(tok) > 32 {
		errs = append(errs, errors.New("wechat.official_account.token: WeChat tokens are 3 to 32 letters or digits; copy the 服务器配置 Token"))
	}
	ec, err := cfg.eventCipher()
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Receiver{token: tok, cipher: ec, log: log.With("provider", "wechat"), replays: newReplayMemory()}, nil
}

// ResolveEncodingAESKey returns the EncodingAESKey given by encoding_aes_key
// or encoding_aes_key_file, checked, or "" when neither is set.
func (c OfficialAccountConfig) ResolveEncodingAESKey() (string, error) {
	s, _, err := c.aesKey()
	return s, err
}

// aesKey returns the configured EncodingAESKey and the AES key it encodes,
// or nothing when none is set.
func (c OfficialAccountConfig) aesKey() (string, []byte, error) {
	if c.EncodingAESKey == "" && c.EncodingAESKeyFile == "" {
		return "", nil, nil
	}
	s, err := channels.ResolveSecret(receiverSection, "encoding_aes_key", c.EncodingAESKey, c.EncodingAESKeyFile, "")
	if err != nil {
		return "", nil, err
	}
	key, err := decodeAESKey(s)
	if err != nil {
		field := "encoding_aes_key"
		if c.EncodingAESKeyFile != "" {
			field = "encoding_aes_key_file"
		}
		return "", nil, fmt.Errorf("%s.%s: the key %v; copy 服务器配置 → EncodingAESKey exactly", receiverSection, field, err)
	}
	return s, key, nil
}

// eventCipher returns the cipher of the configured EncodingAESKey, or nil
// when none is set.
func (c OfficialAccountConfig) eventCipher() (*eventCipher, error) {
	_, key, err := c.aesKey()
	if err != nil || key == nil {
		return nil, err
	}
	appID := strings.TrimSpace(c.AppID)
	if appID == "" {
		return nil, fmt.Errorf("%s.app_id: required with encoding_aes_key: encrypted events name the account's AppID (开发者ID), which is checked", receiverSection)
	}
	return newEventCipher(key, appID)
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

// ServeReports implements channels.ReportReceiver. A forged signature or
// msg_signature gets 403, an event that cannot be read (or is plain while
// encoding_aes_key is set) 400, and the sink is not called. A report the
// sink cannot record gets 503, so WeChat sends the event again.
func (rc *Receiver) ServeReports(w http.ResponseWriter, req *http.Request, sink channels.ReportSink) {
	q := req.URL.Query()
	if !rc.signed(q.Get("signature"), q.Get("timestamp"), q.Get("nonce")) {
		http.Error(w, "signature mismatch", http.StatusForbidden)
		return
	}
	switch req.Method {
	case http.MethodGet:
		// URL verification: echo echostr (plain in every mode).
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
	var ev *message.MixMessage
	replayKey := ""
	encrypted := strings.EqualFold(q.Get("encrypt_type"), "aes")
	switch {
	case rc.cipher != nil && encrypted:
		ev = rc.readEncrypted(w, q, body)
		replayKey = strings.ToLower(q.Get("msg_signature"))
	case rc.cipher != nil:
		rc.refusePlain(w)
	default:
		ev = rc.readPlain(w, body)
	}
	if ev == nil {
		return
	}
	if replayKey != "" && rc.replays.has(replayKey) {
		rc.log.Debug("wechat: encrypted event already handled; answered again", "msg_signature", replayKey)
		answerSuccess(w)
		return
	}
	if rc.handle(req.Context(), w, ev, sink) && replayKey != "" {
		rc.replays.add(replayKey)
	}
}

// refusePlain answers a plain event while encoding_aes_key is set: its
// signature does not cover the body, so it may be forged.
func (rc *Receiver) refusePlain(w http.ResponseWriter) {
	rc.log.Warn("wechat: plain event refused: encoding_aes_key is set, so events must be encrypted (encrypt_type=aes); " +
		"if the account was switched to plain mode (明文模式), switch it back to safe mode (安全模式) or remove encoding_aes_key")
	http.Error(w, "plain event refused: this account expects encrypted events", http.StatusBadRequest)
}

// readPlain reads an event without encoding_aes_key: plain mode, or the
// plain fields of compatible mode. It answers the request itself and
// returns nil when the event is not to be handled.
func (rc *Receiver) readPlain(w http.ResponseWriter, body []byte) *message.MixMessage {
	var ev message.MixMessage
	if err := xml.Unmarshal(body, &ev); err != nil {
		http.Error(w, "malformed XML", http.StatusBadRequest)
		return nil
	}
	hasEncrypt := strings.Contains(string(body), "<Encrypt>")
	if ev.MsgType == "" && hasEncrypt {
		rc.log.Error("wechat: encrypted (safe mode) event refused: set wechat.official_account.encoding_aes_key (服务器配置 → EncodingAESKey) to read it")
		http.Error(w, "encrypted event refused: no EncodingAESKey configured", http.StatusBadRequest)
		return nil
	}
	if hasEncrypt {
		rc.compatOnce.Do(func() {
			rc.log.Warn("wechat: compatible mode (兼容模式) without encoding_aes_key: reading the plain fields, which the signature does not cover; set encoding_aes_key to read the encrypted copy")
		})
	}
	return &ev
}

// readEncrypted checks and decrypts an event of safe or compatible mode;
// rc.cipher is set. It answers the request itself and returns nil when the
// event is not to be handled.
func (rc *Receiver) readEncrypted(w http.ResponseWriter, q url.Values, body []byte) *message.MixMessage {
	var env message.EncryptedXMLMsg
	if err := xml.Unmarshal(body, &env); err != nil {
		http.Error(w, "malformed XML", http.StatusBadRequest)
		return nil
	}
	if strings.TrimSpace(env.EncryptedMsg) == "" {
		rc.log.Warn("wechat: encrypted event refused: no Encrypt element")
		http.Error(w, "no Encrypt element", http.StatusBadRequest)
		return nil
	}
	if !rc.msgSigned(q.Get("msg_signature"), q.Get("timestamp"), q.Get("nonce"), env.EncryptedMsg) {
		rc.log.Warn("wechat: encrypted event refused: msg_signature mismatch")
		http.Error(w, "msg_signature mismatch", http.StatusForbidden)
		return nil
	}
	msg, appID, err := rc.cipher.open(env.EncryptedMsg)
	switch {
	case errors.Is(err, errCipherAppID):
		rc.log.Warn("wechat: encrypted event refused: it is for another account; check wechat.official_account.app_id",
			"event_appid", clip(appID, 40), "app_id", rc.cipher.appID)
		http.Error(w, "event for another AppID", http.StatusBadRequest)
		return nil
	case err != nil:
		rc.log.Warn("wechat: encrypted event refused", "err", err)
		http.Error(w, "event does not decrypt", http.StatusBadRequest)
		return nil
	}
	var ev message.MixMessage
	if err := xml.Unmarshal(msg, &ev); err != nil {
		rc.log.Warn("wechat: encrypted event refused: decrypted message is not XML")
		http.Error(w, "malformed XML", http.StatusBadRequest)
		return nil
	}
	return &ev
}

// handle turns a TEMPLATESENDJOBFINISH event into a report and answers
// WeChat. It reports whether the answer was success (nothing to send again).
func (rc *Receiver) handle(ctx context.Context, w http.ResponseWriter, ev *message.MixMessage, sink channels.ReportSink) bool {
	if ev.MsgType != message.MsgTypeEvent || ev.Event != message.EventTemplateSendJobFinish {
		answerSuccess(w) // other events and messages are not ours to handle
		return true
	}
	id := strconv.FormatInt(ev.TemplateMsgID, 10)
	refs, err := sink.Resolve(ctx, "wechat", []string{id})
	if err != nil {
		rc.log.Warn("wechat: resolve msgid failed", "err", err)
		http.Error(w, "not recorded, send again", http.StatusServiceUnavailable)
		return false
	}
	ref, ok := refs[id]
	if !ok {
		rc.log.Debug("wechat: report for an unknown msgid", "msgid", id)
		answerSuccess(w)
		return true
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
	if err := sink.Record(ctx, []warning.Report{rep}); err != nil {
		rc.log.Warn("wechat: record report failed", "err", err)
		http.Error(w, "not recorded, send again", http.StatusServiceUnavailable)
		return false
	}
	answerSuccess(w)
	return true
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

// msgSigned checks the msg_signature of an encrypted event: SHA1 of token,
// timestamp, nonce and the Encrypt text, sorted and concatenated.
func (rc *Receiver) msgSigned(sig, timestamp, nonce, encrypted string) bool {
	if sig == "" || timestamp == "" || nonce == "" {
		return false
	}
	want := util.Signature(rc.token, timestamp, nonce, encrypted)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(sig)), []byte(want)) == 1
}

// answerSuccess is WeChat's "received, do not send again".
func answerSuccess(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "success")
}

// clip cuts s to n bytes for a log line.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Bounds of the replay memory.
const (
	replayWindow = 10 * time.Minute
	replayMax    = 10000
)

// replayMemory remembers the msg_signatures of encrypted events handled in
// the last replayWindow. A msg_signature covers the timestamp, nonce and
// encrypted body, so the same one again is the same request again.
type replayMemory struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newReplayMemory() *replayMemory {
	return &replayMemory{seen: map[string]time.Time{}}
}

// has reports whether key was handled within replayWindow.
func (m *replayMemory) has(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	at, ok := m.seen[key]
	return ok && time.Since(at) < replayWindow
}

// add remembers key. When full, it forgets expired keys, and then
// arbitrary ones: a replay of a forgotten event is recorded again, which
// the sink takes as it takes WeChat's own retries.
func (m *replayMemory) add(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.seen) >= replayMax {
		for k, at := range m.seen {
			if time.Since(at) >= replayWindow {
				delete(m.seen, k)
			}
		}
		for k := range m.seen {
			if len(m.seen) < replayMax {
				break
			}
			delete(m.seen, k)
		}
	}
	m.seen[key] = time.Now()
}

// Admits implements channels.Admitter: the event is signed with this
// account's token.
func (rc *Receiver) Admits(req *http.Request) bool {
	q := req.URL.Query()
	return rc.signed(q.Get("signature"), q.Get("timestamp"), q.Get("nonce"))
}
