// Package fake is an in-process Alibaba Cloud voice service (dyvmsapi
// 2017-05-25) that speaks the real protocol: IvrCall and SingleCallByTts
// signed by the V3 mechanism (ACS3-HMAC-SHA256), verified as Alibaba
// verifies it; the real answers and error codes; and the pushes of each
// call, its key presses (VoiceCallReport, status_code 300000 with dtmf)
// and its record once it ended (VoiceReport), to a callback URL in
// Alibaba's push format, again while the gateway does not take them. Each
// number called behaves as a test scripts it: it rings, answers or not
// (busy, no answer, rejected, switched off), presses keys, hangs up. The
// account has a line limit: a call beyond it fails with 200121 (呼叫超并发).
// Tests and the bench use it, and `warngate serve` starts it in the
// embedded demo. It calls nobody.
//
// Errors it answers: IncompleteSignature, SignatureDoesNotMatch,
// InvalidAccessKeyId.NotFound, InvalidTimeStamp.Expired, SignatureNonceUsed,
// InvalidAction.NotFound, InvalidVersion (HTTP 400 or 404), and with HTTP
// 200: isv.DISPLAY_NUMBER_ILLEGAL, isv.MOBILE_NUMBER_ILLEGAL,
// isv.TTS_TEMPLATE_ILLEGAL, isv.TEMPLATE_MISSING_PARAMETERS,
// isv.INVALID_PARAMETERS, and whatever FailNext asks for.
package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warngate/channels/internal/acsfake"
	"warngate/channels/internal/fakepush"
	"warngate/channels/internal/smsfake"
)

// Behavior is how a called phone behaves.
type Behavior struct {
	// Answer says whether the official picks up.
	Answer bool
	// Status is how a call not answered ends: 200002 busy, 200003 no
	// answer, 200005 rejected, 200010 switched off…; default 200003.
	Status string
	// Ring is how long the phone rings before it is answered, or before
	// the call fails.
	Ring time.Duration
	// Keys are the keys pressed once answered, one each KeyAfter. A "1"
	// ends the call with ConfirmTalk more of talk (the thanks).
	Keys     string
	KeyAfter time.Duration
	// Talk is how long an answered call lasts when no "1" ends it.
	Talk time.Duration
	// ConfirmTalk is how long a call goes on after the "1".
	ConfirmTalk time.Duration
	// HangUp says the official hangs up at the end of Talk (hangup
	// direction 用户, status 200001) rather than the call ending after the
	// warning was played (机器, 200000).
	HangUp bool
}

// Options configure the fake account.
type Options struct {
	// AccessKeyID and AccessKeySecret are the only key pair accepted.
	AccessKeyID     string
	AccessKeySecret string
	// ShowNumbers are the numbers bought (CalledShowNumber).
	ShowNumbers []string
	// Templates maps each approved TTS code to its text, e.g.
	// "TTS_100001": "${text}确认收到请按1，重听请按2。".
	Templates map[string]string
	// Lines is how many calls the account carries at once; a call beyond
	// it fails with 200121. Zero means no limit.
	Lines int
	// Behave says how the phone of each number behaves; nil means
	// Default for every number.
	Behave  func(number string) Behavior
	Default Behavior
	// CallbackURL receives the pushes; empty means none.
	CallbackURL string
	// Client pushes. Default: a client with a 10 s timeout.
	Client *http.Client
	Log    *slog.Logger
	// Now is the fake's clock, for x-acs-date and the pushes' times.
	// Default time.Now.
	Now func() time.Time
}

// Call is one call the fake took.
type Call struct {
	CallID     string
	Action     string // IvrCall or SingleCallByTts
	Number     string
	ShowNumber string
	OutID      string
	Code       string            // StartCode or TtsCode
	Params     map[string]string // its template's values
	Text       string            // what the call says
	Menu       map[string]string // IvrCall's keys and their codes
	PlayTimes  int
	Timeout    time.Duration // how long IvrCall waits for a key
	At         time.Time
}

// Push is one entry of a push, as Alibaba writes it (VoiceCallReport or
// VoiceReport).
type Push struct {
	CallID          string  `json:"call_id"`
	StatusCode      string  `json:"status_code"`
	SmartStatusCode string  `json:"smart_status_code,omitempty"`
	StatusMsg       string  `json:"status_msg,omitempty"`
	StatusTime      string  `json:"status_time,omitempty"`
	OutID           string  `json:"out_id"`
	DTMF            string  `json:"dtmf,omitempty"`
	Caller          string  `json:"caller,omitempty"`
	Callee          string  `json:"callee,omitempty"`
	OriginateTime   string  `json:"originate_time,omitempty"`
	RingTime        string  `json:"ring_time,omitempty"`
	StartTime       string  `json:"start_time,omitempty"`
	EndTime         string  `json:"end_time,omitempty"`
	Duration        *string `json:"duration,omitempty"`
	HangupDirection string  `json:"hangup_direction,omitempty"`
	VoiceType       string  `json:"voice_type,omitempty"`
}

// Server is the fake. Use NewServer.
type Server struct {
	o        Options
	log      *slog.Logger
	verifier *acsfake.Verifier
	pusher   fakepush.Pusher
	seq      atomic.Int64

	mu        sync.Mutex
	calls     []Call
	failNext  []string
	active    int
	most      int
	overflows int
	pushed    int
	requests  int
}

// NewServer returns a fake for o.
func NewServer(o Options) *Server {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Server{o: o, log: o.Log.With("fake", "aliyun_voice"),
		verifier: &acsfake.Verifier{KeyID: o.AccessKeyID, Secret: o.AccessKeySecret, Now: o.Now}}
}

// Handler returns the API's HTTP handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Calls returns the calls taken so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Requests returns how many API requests arrived, refused ones included.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Active returns how many calls are in progress; MostActive the most
// there ever were at once; Overflows how many calls failed for the line
// limit.
func (s *Server) Active() int     { s.mu.Lock(); defer s.mu.Unlock(); return s.active }
func (s *Server) MostActive() int { s.mu.Lock(); defer s.mu.Unlock(); return s.most }
func (s *Server) Overflows() int  { s.mu.Lock(); defer s.mu.Unlock(); return s.overflows }

// Pushed returns how many entries the callback took.
func (s *Server) Pushed() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushed
}

// FailNext makes the next calls that pass authentication answer with
// these codes, one call per code (e.g. isv.BUSINESS_LIMIT_CONTROL).
func (s *Server) FailNext(codes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, codes...)
}

// Close stops the calls in progress and their pushes, and waits for pushes
// under way.
func (s *Server) Close() { s.pusher.Close() }

type apiError struct {
	status        int
	code, message string
}

func business(code, msg string) *apiError { return &apiError{http.StatusOK, code, msg} }

var messages = map[string]string{
	"isv.DISPLAY_NUMBER_ILLEGAL":      "号显不合法",
	"isv.MOBILE_NUMBER_ILLEGAL":       "号码格式非法",
	"isv.TTS_TEMPLATE_ILLEGAL":        "TTS模板不合法",
	"isv.TEMPLATE_MISSING_PARAMETERS": "文本转语音模板参数缺失",
	"isv.INVALID_PARAMETERS":          "参数异常",
	"isv.BUSINESS_LIMIT_CONTROL":      "触发流控",
	"isv.OUT_OF_SERVICE":              "业务停机",
	"isv.AMOUNT_NOT_ENOUGH":           "账户余额不足",
	"isp.SYSTEM_ERROR":                "系统错误",
}

func codeError(code string) *apiError {
	if m, ok := messages[code]; ok {
		return business(code, m)
	}
	return business(code, code)
}

// ServeHTTP answers IvrCall and SingleCallByTts.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := strings.ToUpper(smsfake.RequestID())
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	if err != nil {
		s.fail(w, reqID, &apiError{http.StatusBadRequest, "InvalidParameter", "The request body is too large or unreadable."})
		return
	}
	if e := s.verifier.Verify(r, body); e != nil {
		s.log.Info("request refused", "code", e.Code)
		s.fail(w, reqID, &apiError{e.Status, e.Code, e.Message})
		return
	}
	action := r.Header.Get("x-acs-action")
	if r.URL.Path != "/" && r.URL.Path != "" || (action != "IvrCall" && action != "SingleCallByTts") {
		s.fail(w, reqID, &apiError{http.StatusNotFound, "InvalidAction.NotFound", fmt.Sprintf("Specified api %q is not found, please check your url and method.", action)})
		return
	}
	if v := r.Header.Get("x-acs-version"); v != "2017-05-25" {
		s.fail(w, reqID, &apiError{http.StatusBadRequest, "InvalidVersion", fmt.Sprintf("Specified parameter Version %q is not valid.", v)})
		return
	}
	c, e := s.take(action, r.URL.Query())
	if e != nil {
		s.log.Info(action+" refused", "code", e.code)
		s.fail(w, reqID, e)
		return
	}
	s.answer(w, http.StatusOK, map[string]string{"Code": "OK", "Message": "OK", "RequestId": reqID, "CallId": c.CallID})
}

var variable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// fill checks a template's values and returns what it says.
func (s *Server) fill(code, params string) (string, map[string]string, *apiError) {
	tmpl, ok := s.o.Templates[code]
	if !ok {
		return "", nil, codeError("isv.TTS_TEMPLATE_ILLEGAL")
	}
	vals := map[string]string{}
	if params != "" {
		var raw map[string]any
		if err := json.Unmarshal([]byte(params), &raw); err != nil {
			return "", nil, business("isv.INVALID_PARAMETERS", "参数异常: TtsParam is not a JSON object")
		}
		for k, v := range raw {
			str, ok := v.(string)
			if !ok {
				return "", nil, business("isv.INVALID_PARAMETERS", "参数异常: only string values")
			}
			vals[k] = str
		}
	}
	for _, m := range variable.FindAllStringSubmatch(tmpl, -1) {
		if _, ok := vals[m[1]]; !ok {
			return "", nil, codeError("isv.TEMPLATE_MISSING_PARAMETERS")
		}
	}
	return variable.ReplaceAllStringFunc(tmpl, func(m string) string { return vals[m[2:len(m)-1]] }), vals, nil
}

// take checks a call's parameters in Alibaba's order and takes the call.
func (s *Server) take(action string, p url.Values) (*Call, *apiError) {
	code, params := p.Get("TtsCode"), p.Get("TtsParam")
	if action == "IvrCall" {
		code, params = p.Get("StartCode"), p.Get("StartTtsParams")
	}
	for _, name := range []string{"CalledShowNumber", "CalledNumber"} {
		if p.Get(name) == "" {
			return nil, &apiError{http.StatusBadRequest, "MissingParameter", name + " is mandatory for this action."}
		}
	}
	s.mu.Lock()
	if len(s.failNext) > 0 {
		code := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		return nil, codeError(code)
	}
	s.mu.Unlock()
	if !slices.Contains(s.o.ShowNumbers, p.Get("CalledShowNumber")) {
		return nil, codeError("isv.DISPLAY_NUMBER_ILLEGAL")
	}
	number, ok := smsfake.Mainland(p.Get("CalledNumber"))
	if !ok {
		return nil, codeError("isv.MOBILE_NUMBER_ILLEGAL")
	}
	if out := p.Get("OutId"); len(out) > 15 {
		return nil, business("isv.INVALID_PARAMETERS", "参数异常: OutId is 1 to 15 bytes")
	}
	plays, _ := strconv.Atoi(cmpOr(p.Get("PlayTimes"), "1"))
	if plays < 1 || plays > 3 {
		return nil, business("isv.INVALID_PARAMETERS", "参数异常: PlayTimes is 1 to 3")
	}
	text, vals, e := s.fill(code, params)
	if e != nil {
		return nil, e
	}
	c := &Call{Action: action, Number: number, ShowNumber: p.Get("CalledShowNumber"), OutID: p.Get("OutId"),
		Code: code, Params: vals, Text: text, PlayTimes: plays, At: s.o.Now()}
	if action == "IvrCall" {
		c.Menu = map[string]string{}
		for i := 1; p.Get(fmt.Sprintf("MenuKeyMap.%d.Key", i)) != ""; i++ {
			key, kc := p.Get(fmt.Sprintf("MenuKeyMap.%d.Key", i)), p.Get(fmt.Sprintf("MenuKeyMap.%d.Code", i))
			if _, _, e := s.fill(kc, p.Get(fmt.Sprintf("MenuKeyMap.%d.TtsParams", i))); e != nil {
				return nil, e
			}
			c.Menu[key] = kc
		}
		if len(c.Menu) == 0 {
			return nil, business("isv.INVALID_PARAMETERS", "参数异常: MenuKeyMap is required")
		}
		ms, _ := strconv.Atoi(p.Get("Timeout"))
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	c.CallID = fmt.Sprintf("%d^%d", 116012354148+s.seq.Add(1), 10281378000+s.seq.Load())
	s.mu.Lock()
	s.calls = append(s.calls, *c)
	over := s.o.Lines > 0 && s.active >= s.o.Lines
	if over {
		s.overflows++
	} else {
		s.active++
		s.most = max(s.most, s.active)
	}
	s.mu.Unlock()
	b := s.o.Default
	if s.o.Behave != nil {
		b = s.o.Behave(number)
	}
	s.pusher.Go(func() { s.run(*c, b, over) })
	return c, nil
}

func cmpOr(a, b string) string {
	if a == "" {
		return b
	}
	return a
}

// run plays a call out as its phone behaves and pushes what happens.
func (s *Server) run(c Call, b Behavior, over bool) {
	rec := Push{CallID: c.CallID, OutID: c.OutID, Caller: c.ShowNumber, Callee: c.Number, VoiceType: "voice",
		OriginateTime: beijing(c.At)}
	if over {
		rec.StatusCode, rec.StatusMsg, rec.EndTime = "200121", "呼叫超并发", beijing(s.o.Now())
		rec.Duration = ptr("0")
		s.push(rec)
		return
	}
	// The line comes free when the call ends, before its record is pushed.
	free := sync.OnceFunc(func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	})
	defer free()
	if !s.pusher.Sleep(b.Ring) {
		return
	}
	rec.RingTime = beijing(c.At)
	if !b.Answer {
		rec.StatusCode = cmpOr(b.Status, "200003")
		rec.StatusMsg, rec.SmartStatusCode = statusText[rec.StatusCode], smartStatus[rec.StatusCode]
		rec.EndTime, rec.Duration, rec.HangupDirection = beijing(s.o.Now()), ptr("0"), "机器"
		free()
		s.push(rec)
		return
	}
	answered := s.o.Now()
	rec.StartTime = beijing(answered)
	rec.StatusCode, rec.SmartStatusCode, rec.StatusMsg, rec.HangupDirection = "200000", "ANSWERED", "用户听完语音", "机器"
	if b.HangUp {
		rec.StatusCode, rec.StatusMsg, rec.HangupDirection = "200001", "用户提前挂机", "用户"
	}
	talk, confirmed := time.Duration(0), false
	for _, k := range b.Keys {
		if !s.pusher.Sleep(b.KeyAfter) {
			return
		}
		talk += b.KeyAfter
		rec.DTMF += string(k)
		if c.Action != "IvrCall" || c.Menu[string(k)] == "" {
			continue // a key the call does not take
		}
		s.push(Push{CallID: c.CallID, StatusCode: "300000", SmartStatusCode: "ANSWERED", DTMF: string(k), StatusTime: beijing(s.o.Now()), OutID: c.OutID})
		if k == '1' {
			confirmed = true
			rec.StatusCode, rec.StatusMsg, rec.HangupDirection = "200000", "用户听完语音", "机器"
			break
		}
	}
	rest := b.Talk - talk
	if confirmed {
		rest = b.ConfirmTalk
	}
	if rest > 0 && !s.pusher.Sleep(rest) {
		return
	}
	end := s.o.Now()
	rec.EndTime = beijing(end)
	rec.Duration = ptr(strconv.Itoa(int(math.Ceil(end.Sub(answered).Seconds()))))
	free()
	s.push(rec)
}

var statusText = map[string]string{
	"200002": "用户占线", "200003": "用户收到呼叫但未接听", "200004": "用户号码不合法", "200005": "被叫用户无法接通",
	"200007": "用户无法接通(不在服务区)", "200010": "关机", "200011": "停机",
}

var smartStatus = map[string]string{
	"200002": "USER_BUSY", "200003": "NO_ANSWER", "200005": "CALL_REJECTED", "200007": "NO_USER_RESPONDING",
	"200010": "POWERED_OFF", "200011": "SUSPEND", "200004": "INVALID_NUMBER",
}

func ptr(s string) *string { return &s }

// beijing writes t as Alibaba does: "2006-01-02 15:04:05", China Standard
// Time.
func beijing(t time.Time) string { return smsfake.BeijingTime(t) }

// push pushes one entry to the callback, again while it is not taken.
func (s *Server) push(p Push) {
	if s.o.CallbackURL == "" {
		return
	}
	if err := s.pusher.Push(func() error { return s.PushTo(context.Background(), s.o.CallbackURL, []Push{p}) }); err != nil {
		s.log.Warn("push not taken", "call_id", p.CallID, "err", err)
	}
}

// PushTo pushes entries to callbackURL as one POST of a JSON array and
// checks the answer: HTTP 200 and {"code":0}. Tests push forged, replayed
// and misaddressed entries with it.
func (s *Server) PushTo(ctx context.Context, callbackURL string, entries []Push) error {
	body, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callbackURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var ans struct {
		Code *int   `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Code == nil {
		return errors.New(`callback answer is not {"code":0,"msg":"…"}`)
	}
	if *ans.Code != 0 {
		return fmt.Errorf("callback answered code %d: %s", *ans.Code, ans.Msg)
	}
	s.mu.Lock()
	s.pushed += len(entries)
	s.mu.Unlock()
	return nil
}

func (s *Server) fail(w http.ResponseWriter, reqID string, e *apiError) {
	v := map[string]string{"Code": e.code, "Message": e.message, "RequestId": reqID}
	if e.status != http.StatusOK {
		v["HostId"] = "dyvmsapi.aliyuncs.com"
		v["Recommend"] = "https://api.aliyun.com/troubleshoot?q=" + e.code + "&product=Dyvmsapi"
	}
	s.answer(w, e.status, v)
}

func (s *Server) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
