// Package fake is an in-process WeChat and WeCom server for tests and for
// warngate's embedded demo. One http.Handler serves the paths of both
// api.weixin.qq.com and qyapi.weixin.qq.com that warngate uses:
//
//	GET  /cgi-bin/token?grant_type=client_credential&appid=&secret=
//	POST /cgi-bin/message/template/send?access_token=
//	GET  /cgi-bin/gettoken?corpid=&corpsecret=
//	POST /cgi-bin/message/send?access_token=
//
// It answers with WeChat's JSON shapes and error codes, and after a delay
// pushes TEMPLATESENDJOBFINISH events, signed with the account's server
// token, to a callback URL, as the official account platform does: plain,
// or with an EncodingAESKey encrypted as in safe mode (安全模式) or
// compatible mode (兼容模式).
//
// Like WeCom, it silently drops app messages beyond the per-member limit
// (30 a minute); Dropped counts them. RejectOverLimit makes it answer
// errcode 45033 instead, which WeCom itself does not do.
//
// It keeps everything in memory and is never for production.
package fake

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes the simulated account and app.
type Config struct {
	// Official account.
	AppID     string
	AppSecret string
	// Token is the account's server token; events are signed with it.
	Token string
	// EncodingAESKey, when set, makes events encrypted (encrypt_type=aes)
	// with this 服务器配置 key and signed with msg_signature, as in safe mode
	// (安全模式). See also SetEncodingAESKey.
	EncodingAESKey string
	// Compatible sends the plain fields of each event alongside the
	// encrypted copy, as in compatible mode (兼容模式). It needs
	// EncodingAESKey.
	Compatible bool
	// TemplateIDs are the templates that exist; empty means any.
	TemplateIDs []string
	// Followers are the openids that follow the account; nil means every
	// openid of 6 or more characters does.
	Followers []string
	// Blocked followers refuse template messages: their events say
	// "failed:user block".
	Blocked []string
	// SystemFailed followers' events say "failed: system failed".
	SystemFailed []string

	// WeCom app.
	CorpID     string
	CorpSecret string
	AgentID    int64
	// Members are the userids in the app's visible range; nil means any.
	Members []string
	// MemberLimit is the messages one member may get a minute; default 30.
	MemberLimit int
	// RejectOverLimit answers errcode 45033 for a call that includes a
	// member over the limit, instead of dropping silently as WeCom does.
	RejectOverLimit bool

	// CallbackURL receives TEMPLATESENDJOBFINISH events; empty sends none.
	CallbackURL string
	// ReportDelay is how long after a send its event is pushed.
	ReportDelay time.Duration
	// TokenTTL is the expires_in of tokens; default 7200 s.
	TokenTTL time.Duration
	// Record keeps every accepted message for Templates and WorkMessages.
	Record bool
}

// TemplateSend is one accepted template message.
type TemplateSend struct {
	ToUser      string
	TemplateID  string
	URL         string
	Data        map[string]DataItem
	ClientMsgID string
	MsgID       int64
}

// DataItem is one template value.
type DataItem struct {
	Value string `json:"value"`
	Color string `json:"color,omitempty"`
}

// WorkSend is one accepted WeCom app message.
type WorkSend struct {
	ToUser  []string // members it went to (invalid and dropped ones excluded)
	MsgType string
	Title   string // textcard
	Desc    string // textcard
	URL     string // textcard
	Content string // text
	MsgID   string
}

type token struct {
	kind    string // "mp" or "work"
	expires time.Time
	expired bool
}

type fault struct {
	status  int
	errcode int
	errmsg  string
}

type event struct {
	due    time.Time
	openid string
	msgid  int64
	status string
}

// Server is the fake. Its zero value is not usable; call New.
type Server struct {
	cfg Config
	hc  *http.Client
	log *slog.Logger

	mu          sync.Mutex
	tokens      map[string]*token
	faults      map[string][]fault
	templates   []TemplateSend
	works       []WorkSend
	dedupe      map[string]dedupeEntry // openid/client_msg_id → msgid
	workDup     map[string]time.Time   // member+content → first sent
	counters    map[string]*counter    // member → this minute's count
	lastPrune   time.Time
	followers   map[string]bool
	blocked     map[string]bool
	sysFailed   map[string]bool
	members     map[string]bool
	templateIDs map[string]bool

	crypter atomic.Pointer[Crypter] // nil: events are plain

	msgSeq        atomic.Int64
	tokenRequests atomic.Int64
	dropped       atomic.Int64
	eventsSent    atomic.Int64
	sends         atomic.Int64

	events chan event
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool
}

type dedupeEntry struct {
	msgid int64
	at    time.Time
}

type counter struct {
	n     int
	until time.Time
}

// New returns a fake server; hc posts events. Close it to stop pushing events.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Server {
	if cfg.MemberLimit == 0 {
		cfg.MemberLimit = 30
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = 7200 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{
		cfg:         cfg,
		hc:          hc,
		log:         log.With("provider", "wechat-fake"),
		tokens:      map[string]*token{},
		faults:      map[string][]fault{},
		dedupe:      map[string]dedupeEntry{},
		workDup:     map[string]time.Time{},
		counters:    map[string]*counter{},
		followers:   set(cfg.Followers, false),
		blocked:     set(cfg.Blocked, false),
		sysFailed:   set(cfg.SystemFailed, false),
		members:     set(cfg.Members, true),
		templateIDs: set(cfg.TemplateIDs, false),
		msgSeq:      atomic.Int64{},
		events:      make(chan event, 1<<16),
		stop:        make(chan struct{}),
	}
	s.msgSeq.Store(2000000000)
	if cfg.EncodingAESKey != "" {
		if err := s.SetEncodingAESKey(cfg.EncodingAESKey); err != nil {
			s.log.Error("wechat fake: events stay plain", "err", err)
		}
	}
	if cfg.CallbackURL != "" {
		for range 4 {
			s.wg.Add(1)
			go s.pushEvents()
		}
	}
	return s
}

func set(list []string, lower bool) map[string]bool {
	if list == nil {
		return nil
	}
	m := make(map[string]bool, len(list))
	for _, v := range list {
		if lower {
			v = strings.ToLower(v)
		}
		m[v] = true
	}
	return m
}

// SetEncodingAESKey makes the events pushed from now on encrypted with key,
// as in safe mode; "" makes them plain again. It is for a fake shared by
// an official account and a WeCom app, started before the account's
// settings are known.
func (s *Server) SetEncodingAESKey(key string) error {
	if key == "" {
		s.crypter.Store(nil)
		return nil
	}
	c, err := NewCrypter(key, s.cfg.AppID)
	if err != nil {
		return err
	}
	s.crypter.Store(c)
	return nil
}

// Close stops pushing events; events not yet pushed are dropped.
func (s *Server) Close() {
	if s.closed.Swap(true) {
		return
	}
	close(s.stop)
	s.wg.Wait()
}

// ExpireTokens makes every token issued so far expired: the next call with
// one answers 42001, and a new token must be fetched.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.tokens {
		t.expired = true
	}
}

// FailNext makes the next request to path (e.g. "/cgi-bin/message/send")
// answer HTTP 200 with errcode and errmsg.
func (s *Server) FailNext(path string, errcode int, errmsg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], fault{errcode: errcode, errmsg: errmsg})
}

// FailNextStatus makes the next request to path answer with an HTTP status.
func (s *Server) FailNextStatus(path string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = append(s.faults[path], fault{status: status})
}

// Templates returns the template messages accepted (with Config.Record).
func (s *Server) Templates() []TemplateSend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TemplateSend(nil), s.templates...)
}

// WorkMessages returns the WeCom messages accepted (with Config.Record).
func (s *Server) WorkMessages() []WorkSend {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]WorkSend(nil), s.works...)
}

// TokenRequests counts token fetches of both kinds.
func (s *Server) TokenRequests() int64 { return s.tokenRequests.Load() }

// Dropped counts WeCom member messages dropped over the per-member limit.
func (s *Server) Dropped() int64 { return s.dropped.Load() }

// Sends counts messages accepted, one per template send and one per member.
func (s *Server) Sends() int64 { return s.sends.Load() }

// EventsSent counts events the callback URL took.
func (s *Server) EventsSent() int64 { return s.eventsSent.Load() }

// ServeHTTP implements http.Handler.
// It may be mounted under a prefix: the path from /cgi-bin/ on is used.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if i := strings.Index(path, "/cgi-bin/"); i > 0 {
		path = path[i:]
	}
	if f, ok := s.takeFault(path); ok {
		if f.status != 0 {
			http.Error(w, http.StatusText(f.status), f.status)
			return
		}
		s.answerErr(w, f.errcode, f.errmsg)
		return
	}
	switch path {
	case "/cgi-bin/token":
		s.mpToken(w, r)
	case "/cgi-bin/gettoken":
		s.workToken(w, r)
	case "/cgi-bin/message/template/send":
		s.templateSend(w, r)
	case "/cgi-bin/message/send":
		s.workSend(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) takeFault(path string) (fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.faults[path]
	if len(q) == 0 {
		return fault{}, false
	}
	s.faults[path] = q[1:]
	return q[0], true
}

func answer(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; encoding=utf-8")
	json.NewEncoder(w).Encode(v)
}

// answerErr writes WeChat's error shape, with a request id as WeChat adds.
func (s *Server) answerErr(w http.ResponseWriter, code int, msg string) {
	answer(w, map[string]any{"errcode": code, "errmsg": msg + " rid: " + randHex(12)})
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func (s *Server) issue(kind string) (string, int) {
	tok := randHex(64)
	ttl := int(s.cfg.TokenTTL / time.Second)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = &token{kind: kind, expires: time.Now().Add(s.cfg.TokenTTL)}
	return tok, ttl
}

func (s *Server) mpToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	q := r.URL.Query()
	switch {
	case q.Get("grant_type") != "client_credential":
		s.answerErr(w, 40002, "invalid grant_type")
	case q.Get("appid") == "":
		s.answerErr(w, 41002, "appid missing")
	case q.Get("secret") == "":
		s.answerErr(w, 41004, "appsecret missing")
	case q.Get("appid") != s.cfg.AppID:
		s.answerErr(w, 40013, "invalid appid")
	case q.Get("secret") != s.cfg.AppSecret:
		s.answerErr(w, 40125, "invalid appsecret")
	default:
		tok, ttl := s.issue("mp")
		answer(w, map[string]any{"access_token": tok, "expires_in": ttl})
	}
}

func (s *Server) workToken(w http.ResponseWriter, r *http.Request) {
	s.tokenRequests.Add(1)
	q := r.URL.Query()
	switch {
	case q.Get("corpid") == "":
		s.answerErr(w, 41002, "corpid missing")
	case q.Get("corpsecret") == "":
		s.answerErr(w, 41004, "corpsecret missing")
	case q.Get("corpid") != s.cfg.CorpID:
		s.answerErr(w, 40013, "invalid corpid")
	case q.Get("corpsecret") != s.cfg.CorpSecret:
		s.answerErr(w, 40001, "invalid credential")
	default:
		tok, ttl := s.issue("work")
		answer(w, map[string]any{"errcode": 0, "errmsg": "ok", "access_token": tok, "expires_in": ttl})
	}
}

// checkToken answers the token errors of WeChat (mp) or WeCom (work) and
// reports whether the request may go on.
func (s *Server) checkToken(w http.ResponseWriter, r *http.Request, kind string) bool {
	tok := r.URL.Query().Get("access_token")
	if tok == "" {
		s.answerErr(w, 41001, "access_token missing")
		return false
	}
	s.mu.Lock()
	t := s.tokens[tok]
	s.mu.Unlock()
	switch {
	case t == nil || t.kind != kind:
		if kind == "work" {
			s.answerErr(w, 40014, "invalid access_token")
		} else {
			s.answerErr(w, 40001, "invalid credential, access_token is invalid or not latest")
		}
		return false
	case t.expired || time.Now().After(t.expires):
		s.answerErr(w, 42001, "access_token expired")
		return false
	}
	return true
}

const maxBody = 1 << 20

// postBody checks what every send API checks, as WeChat does: a POST with a
// valid token of api ("mp" or "work"), and reads its body. It answers the
// request itself when it returns false.
func (s *Server) postBody(w http.ResponseWriter, r *http.Request, api string) ([]byte, bool) {
	if r.Method != http.MethodPost {
		s.answerErr(w, 43002, "require POST method")
		return nil, false
	}
	if !s.checkToken(w, r, api) {
		return nil, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil {
		s.answerErr(w, 44002, "empty post data")
		return nil, false
	}
	return body, true
}

func (s *Server) templateSend(w http.ResponseWriter, r *http.Request) {
	body, ok := s.postBody(w, r, "mp")
	if !ok {
		return
	}
	var req struct {
		ToUser      string              `json:"touser"`
		TemplateID  string              `json:"template_id"`
		URL         string              `json:"url"`
		Data        map[string]DataItem `json:"data"`
		ClientMsgID string              `json:"client_msg_id"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.answerErr(w, 47001, "data format error")
		return
	}
	switch {
	case s.templateIDs != nil && !s.templateIDs[req.TemplateID], req.TemplateID == "":
		s.answerErr(w, 40037, "invalid template_id")
		return
	case len(req.ToUser) < 6 || strings.ContainsAny(req.ToUser, " |/"):
		s.answerErr(w, 40003, "invalid openid")
		return
	case s.followers != nil && !s.followers[req.ToUser]:
		s.answerErr(w, 43004, "require subscribe")
		return
	case len(req.Data) == 0:
		s.answerErr(w, 47003, "argument invalid! data is empty")
		return
	}
	now := time.Now()
	s.mu.Lock()
	s.pruneLocked(now)
	if req.ClientMsgID != "" {
		if d, ok := s.dedupe[req.ToUser+"/"+req.ClientMsgID]; ok {
			s.mu.Unlock()
			answer(w, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": d.msgid})
			return
		}
	}
	id := s.msgSeq.Add(1)
	if req.ClientMsgID != "" {
		s.dedupe[req.ToUser+"/"+req.ClientMsgID] = dedupeEntry{msgid: id, at: now}
	}
	if s.cfg.Record {
		s.templates = append(s.templates, TemplateSend{ToUser: req.ToUser, TemplateID: req.TemplateID, URL: req.URL, Data: req.Data, ClientMsgID: req.ClientMsgID, MsgID: id})
	}
	status := "success"
	switch {
	case s.blocked[req.ToUser]:
		status = "failed:user block"
	case s.sysFailed[req.ToUser]:
		status = "failed: system failed"
	}
	s.mu.Unlock()
	s.sends.Add(1)
	s.schedule(event{due: now.Add(s.cfg.ReportDelay), openid: req.ToUser, msgid: id, status: status})
	answer(w, map[string]any{"errcode": 0, "errmsg": "ok", "msgid": id})
}

// pruneLocked forgets de-duplication entries older than WeChat's window.
func (s *Server) pruneLocked(now time.Time) {
	if now.Sub(s.lastPrune) < time.Minute {
		return
	}
	s.lastPrune = now
	for k, d := range s.dedupe {
		if now.Sub(d.at) > 10*time.Minute {
			delete(s.dedupe, k)
		}
	}
	for k, at := range s.workDup {
		if now.Sub(at) > 4*time.Hour {
			delete(s.workDup, k)
		}
	}
	for k, c := range s.counters {
		if now.After(c.until) {
			delete(s.counters, k)
		}
	}
}

// flexInt accepts a JSON number or a string of digits, as WeCom does for agentid.
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return err
	}
	*f = flexInt(n)
	return nil
}

func (s *Server) workSend(w http.ResponseWriter, r *http.Request) {
	body, ok := s.postBody(w, r, "work")
	if !ok {
		return
	}
	var req struct {
		ToUser   string                    `json:"touser"`
		ToParty  string                    `json:"toparty"`
		ToTag    string                    `json:"totag"`
		MsgType  string                    `json:"msgtype"`
		AgentID  flexInt                   `json:"agentid"`
		Text     *struct{ Content string } `json:"text"`
		TextCard *struct {
			Title       string `json:"title"`
			Description string `json:"description"`
			URL         string `json:"url"`
			BtnTxt      string `json:"btntxt"`
		} `json:"textcard"`
		EnableDuplicateCheck   int `json:"enable_duplicate_check"`
		DuplicateCheckInterval int `json:"duplicate_check_interval"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		s.answerErr(w, 40058, "不合法的参数")
		return
	}
	if int64(req.AgentID) != s.cfg.AgentID {
		s.answerErr(w, 40056, "invalid agentid")
		return
	}
	rec := WorkSend{MsgType: req.MsgType}
	switch req.MsgType {
	case "text":
		if req.Text == nil || req.Text.Content == "" {
			s.answerErr(w, 41016, "content missing")
			return
		}
		if len(req.Text.Content) > 2048 {
			req.Text.Content = req.Text.Content[:2048] // WeCom cuts, it does not refuse
		}
		rec.Content = req.Text.Content
	case "textcard":
		c := req.TextCard
		if c == nil || c.Title == "" || c.Description == "" || c.URL == "" {
			s.answerErr(w, 41016, "title, description or url missing")
			return
		}
		if len(c.Title) > 128 || len(c.Description) > 512 {
			s.answerErr(w, 44004, "text content too long")
			return
		}
		rec.Title, rec.Desc, rec.URL = c.Title, c.Description, c.URL
	default:
		s.answerErr(w, 40008, "invalid message type")
		return
	}
	users := strings.Split(req.ToUser, "|")
	if req.ToUser == "" {
		users = nil
	}
	if len(users) == 0 {
		s.answerErr(w, 40031, "invalid user list")
		return
	}
	if len(users) > 1000 {
		s.answerErr(w, 40058, "touser exceeds 1000 members")
		return
	}
	var invalid, valid []string
	for _, u := range users {
		lu := strings.ToLower(strings.TrimSpace(u))
		if lu == "" || (s.members != nil && !s.members[lu]) {
			invalid = append(invalid, lu)
			continue
		}
		valid = append(valid, lu)
	}
	sort.Strings(invalid)
	if len(valid) == 0 {
		answer(w, map[string]any{"errcode": 81013, "errmsg": "user & party & tag all invalid rid: " + randHex(12), "invaliduser": strings.Join(invalid, "|")})
		return
	}
	now := time.Now()
	content := rec.Content + "\x00" + rec.Title + "\x00" + rec.Desc + "\x00" + rec.URL
	s.mu.Lock()
	s.pruneLocked(now)
	var over []string
	for _, u := range valid {
		if c := s.counters[u]; c != nil && now.Before(c.until) && c.n >= s.cfg.MemberLimit {
			over = append(over, u)
		}
	}
	if len(over) > 0 && s.cfg.RejectOverLimit {
		s.mu.Unlock()
		s.answerErr(w, 45033, "api concurrent out of limit")
		return
	}
	window := time.Duration(req.DuplicateCheckInterval) * time.Second
	if window <= 0 {
		window = 1800 * time.Second
	}
	msgid := randHex(32)
	for _, u := range valid {
		if req.EnableDuplicateCheck == 1 {
			k := u + "\x00" + content
			if at, ok := s.workDup[k]; ok && now.Sub(at) < window {
				continue // WeCom sends a duplicate once
			}
			s.workDup[k] = now
		}
		c := s.counters[u]
		if c == nil || !now.Before(c.until) {
			c = &counter{until: now.Add(time.Minute)}
			s.counters[u] = c
		}
		if c.n >= s.cfg.MemberLimit {
			s.dropped.Add(1) // WeCom drops without saying so
			continue
		}
		c.n++
		s.sends.Add(1)
		rec.ToUser = append(rec.ToUser, u)
	}
	rec.MsgID = msgid
	if s.cfg.Record {
		s.works = append(s.works, rec)
	}
	s.mu.Unlock()
	ans := map[string]any{"errcode": 0, "errmsg": "ok", "msgid": msgid}
	if len(invalid) > 0 {
		ans["invaliduser"] = strings.Join(invalid, "|")
	}
	answer(w, ans)
}

// schedule queues an event for the callback URL; with the queue full the
// event is lost, as a real push may be.
func (s *Server) schedule(e event) {
	if s.cfg.CallbackURL == "" || s.closed.Load() {
		return
	}
	select {
	case s.events <- e:
	default:
		s.log.Warn("wechat fake: event queue full; event dropped", "msgid", e.msgid)
	}
}

func (s *Server) pushEvents() {
	defer s.wg.Done()
	for {
		var e event
		select {
		case <-s.stop:
			return
		case e = <-s.events:
		}
		if d := time.Until(e.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		s.push(e)
	}
}

// eventXML is the TEMPLATESENDJOBFINISH push.
type eventXML struct {
	XMLName      xml.Name `xml:"xml"`
	ToUserName   cdata    `xml:"ToUserName"`
	FromUserName cdata    `xml:"FromUserName"`
	CreateTime   int64    `xml:"CreateTime"`
	MsgType      cdata    `xml:"MsgType"`
	Event        cdata    `xml:"Event"`
	MsgID        int64    `xml:"MsgID"`
	Status       cdata    `xml:"Status"`
	Encrypt      *cdata   `xml:"Encrypt,omitempty"` // compatible mode
}

// encryptedXML is an event in safe mode.
type encryptedXML struct {
	XMLName    xml.Name `xml:"xml"`
	ToUserName cdata    `xml:"ToUserName"`
	Encrypt    cdata    `xml:"Encrypt"`
}

type cdata struct {
	Value string `xml:",cdata"`
}

// Sign returns WeChat's callback signature for token, timestamp and nonce.
func Sign(token, timestamp, nonce string) string {
	return sha1Sorted(token, timestamp, nonce)
}

// sha1Sorted is the hex SHA1 of parts, sorted and concatenated.
func sha1Sorted(parts ...string) string {
	p := append([]string(nil), parts...)
	sort.Strings(p)
	h := sha1.Sum([]byte(strings.Join(p, "")))
	return hex.EncodeToString(h[:])
}

// push posts one event, trying three times as WeChat does.
func (s *Server) push(e event) {
	ev := eventXML{
		ToUserName:   cdata{"gh_" + s.cfg.AppID},
		FromUserName: cdata{e.openid},
		CreateTime:   time.Now().Unix(),
		MsgType:      cdata{"event"},
		Event:        cdata{"TEMPLATESENDJOBFINISH"},
		MsgID:        e.msgid,
		Status:       cdata{e.status},
	}
	body, encrypted, err := s.envelope(ev)
	if err != nil {
		s.log.Warn("wechat fake: event not built", "msgid", e.msgid, "err", err)
		return
	}
	for attempt := 1; attempt <= 3; attempt++ {
		if err := s.post(body, encrypted, e.openid); err == nil {
			s.eventsSent.Add(1)
			return
		} else if attempt == 3 {
			s.log.Warn("wechat fake: event not taken", "msgid", e.msgid, "err", err)
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
		}
	}
}

// envelope returns the body that carries ev: the event itself in plain
// mode; its encryption in safe mode; both in compatible mode. encrypted is
// the Encrypt text, "" in plain mode.
func (s *Server) envelope(ev eventXML) (body []byte, encrypted string, err error) {
	plain, err := xml.Marshal(ev)
	c := s.crypter.Load()
	if err != nil || c == nil {
		return plain, "", err
	}
	if encrypted, err = c.Encrypt(plain); err != nil {
		return nil, "", err
	}
	if s.cfg.Compatible {
		ev.Encrypt = &cdata{encrypted}
		body, err = xml.Marshal(ev)
	} else {
		body, err = xml.Marshal(encryptedXML{ToUserName: ev.ToUserName, Encrypt: cdata{encrypted}})
	}
	return body, encrypted, err
}

// post sends one event body; encrypted is its Encrypt text, "" when plain.
func (s *Server) post(body []byte, encrypted, openid string) error {
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	nonce := strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	u, err := url.Parse(s.cfg.CallbackURL)
	if err != nil {
		return err
	}
	q := u.Query()
	q.Set("signature", Sign(s.cfg.Token, ts, nonce))
	q.Set("timestamp", ts)
	q.Set("nonce", nonce)
	q.Set("openid", openid)
	if encrypted != "" {
		q.Set("encrypt_type", "aes")
		q.Set("msg_signature", MsgSign(s.cfg.Token, ts, nonce, encrypted))
	}
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeoutCause(context.Background(), 5*time.Second, errors.New("wechat fake: event push timed out"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/xml")
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s", resp.Status)
	}
	if s := strings.TrimSpace(string(b)); s != "success" && s != "" {
		return fmt.Errorf("callback answered %q, want success", s)
	}
	return nil
}
