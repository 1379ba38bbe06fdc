// Package fake is an in-process Tencent Cloud voice message service (VMS,
// API 2020-09-02) that speaks the real protocol: SendTtsVoice signed
// TC3-HMAC-SHA256 (service vms), verified as Tencent verifies it; the real
// answers, {"Response":{"SendStatus":{"CallId":…,"SessionContext":…},
// "RequestId":…}} and {"Response":{"Error":{"Code":…,"Message":…},…}},
// with VMS's error codes; and each call's callbacks in Tencent's format:
// its key presses (voicekey_callback), why it failed
// (voice_failure_callback) and its end (voiceprompt_callback), again while
// the gateway does not take them. Each number called behaves as a test
// scripts it. The application has a line limit: a call beyond it fails
// (failure_code 9, 电路正忙). Tests and the bench use it, and `warngate
// serve` starts it in the embedded demo. It calls nobody.
//
// Errors it answers: AuthFailure.InvalidAuthorization,
// AuthFailure.SecretIdNotFound, AuthFailure.SignatureFailure,
// AuthFailure.SignatureExpire, InvalidAction, NoSuchVersion,
// MissingParameter, UnauthorizedOperation.VoiceSdkAppidVerifyFail,
// FailedOperation.TemplateIncorrectOrUnapproved,
// InvalidParameterValue.CalledNumberVerifyFail,
// InvalidParameterValue.ContentLengthLimit, and whatever FailNext asks for.
package fake

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"warngate/channels/internal/fakepush"
	"warngate/channels/internal/smsfake"
	"warngate/channels/internal/tcfake"
)

// Behavior is how a called phone behaves.
type Behavior struct {
	// Answer says whether the official picks up.
	Answer bool
	// FailureCode is why a call not answered failed: 5 无人接听 (the
	// default), 2 通话中, 10 用户正忙, 1 关机….
	FailureCode int
	// Ring is how long the phone rings before it is answered, or before
	// the call fails.
	Ring time.Duration
	// Keys are the keys pressed once answered, one each KeyAfter.
	Keys     string
	KeyAfter time.Duration
	// Talk is how long an answered call lasts.
	Talk time.Duration
}

// Options configure the fake application.
type Options struct {
	// SecretID and SecretKey are the only key accepted.
	SecretID, SecretKey string
	// SdkAppID is the voice application's SdkAppid.
	SdkAppID string
	// Templates maps each approved template id to its text, e.g.
	// "100001": "{1}确认收到请按1，重听请按2。".
	Templates map[string]string
	// Lines is how many calls the application carries at once; a call
	// beyond it fails. Zero means no limit.
	Lines int
	// Behave says how the phone of each number behaves; nil means Default.
	Behave  func(number string) Behavior
	Default Behavior
	// CallbackURL receives the callbacks; empty means none.
	CallbackURL string
	// Client posts callbacks. Default: a client with a 10 s timeout.
	Client *http.Client
	Log    *slog.Logger
	// Now is the fake's clock. Default time.Now.
	Now func() time.Time
}

// Call is one call the fake took.
type Call struct {
	CallID         string
	Number         string // 11 digits
	TemplateID     string
	Params         []string
	Text           string
	PlayTimes      int
	SessionContext string
	At             time.Time
}

// Callback is one callback as Tencent posts it.
type Callback struct {
	Prompt  *Prompt  `json:"voiceprompt_callback,omitempty"`
	Key     *Key     `json:"voicekey_callback,omitempty"`
	Failure *Failure `json:"voice_failure_callback,omitempty"`
}

// Prompt is a call's end.
type Prompt struct {
	Result        string `json:"result"`
	AcceptTime    string `json:"accept_time"`
	CallFrom      string `json:"call_from"`
	CallID        string `json:"callid"`
	EndCallTime   string `json:"end_calltime"`
	Fee           string `json:"fee"`
	Mobile        string `json:"mobile"`
	NationCode    string `json:"nationcode"`
	StartCallTime string `json:"start_calltime"`
}

// Key is a key press.
type Key struct {
	CallFrom   string `json:"call_from"`
	CallID     string `json:"callid"`
	KeyPress   string `json:"keypress"`
	Mobile     string `json:"mobile"`
	NationCode string `json:"nationcode"`
}

// Failure is why a call failed.
type Failure struct {
	CallFrom      string `json:"call_from"`
	CallID        string `json:"callid"`
	FailureCode   int    `json:"failure_code"`
	FailureReason string `json:"failure_reason"`
	Mobile        string `json:"mobile"`
	NationCode    string `json:"nationcode"`
}

// failureReasons are Tencent's words for each failure_code.
var failureReasons = map[int]string{1: "关机", 2: "通话中", 3: "不在服务区", 4: "您拨打的号码已欠费", 5: "无人接听",
	6: "暂时无法接通", 7: "停机", 8: "空号", 9: "电路正忙", 10: "用户正忙", 11: "其他原因", 12: "呼叫受限，请勿越权使用",
	13: "您拨打的号码已暂停服务", 15: "号码不存在", 16: "来电提醒", 17: "您拨打的号码已过期", 18: "网络忙", 19: "未开通语音通话功能", 20: "无应答"}

// Server is the fake. Use NewServer.
type Server struct {
	o      Options
	log    *slog.Logger
	pusher fakepush.Pusher
	seq    atomic.Int64

	mu        sync.Mutex
	calls     []Call
	failNext  []string
	active    int
	most      int
	overflows int
	posted    int
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
	return &Server{o: o, log: o.Log.With("fake", "tencent_voice")}
}

// Handler returns the API's HTTP handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Calls returns the calls taken so far.
func (s *Server) Calls() []Call { s.mu.Lock(); defer s.mu.Unlock(); return slices.Clone(s.calls) }

// MostActive returns the most calls there were at once; Overflows how many
// failed for the line limit.
func (s *Server) MostActive() int { s.mu.Lock(); defer s.mu.Unlock(); return s.most }
func (s *Server) Overflows() int  { s.mu.Lock(); defer s.mu.Unlock(); return s.overflows }

// Posted returns how many callbacks the gateway took.
func (s *Server) Posted() int { s.mu.Lock(); defer s.mu.Unlock(); return s.posted }

// FailNext makes the next calls that pass authentication answer with
// these codes, one call per code (e.g. LimitExceeded.DeliveryFrequencyLimit).
func (s *Server) FailNext(codes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, codes...)
}

// Close stops the calls in progress and their callbacks.
func (s *Server) Close() { s.pusher.Close() }

var messages = map[string]string{
	"AuthFailure.InvalidAuthorization":                  "请求头部的 Authorization 不符合腾讯云标准。",
	"AuthFailure.SecretIdNotFound":                      "密钥不存在。",
	"AuthFailure.SignatureFailure":                      "请求签名验证失败，请检查您的签名计算是否正确。",
	"AuthFailure.SignatureExpire":                       "签名过期。",
	"InvalidAction":                                     "接口不存在。",
	"NoSuchVersion":                                     "接口版本不存在。",
	"UnauthorizedOperation.VoiceSdkAppidVerifyFail":     "VoiceSdkAppid 校验失败。",
	"FailedOperation.TemplateIncorrectOrUnapproved":     "模板未审批或请求的内容与审核通过的模板内容不匹配。",
	"InvalidParameterValue.CalledNumberVerifyFail":      "被叫号码校验失败。",
	"InvalidParameterValue.ContentLengthLimit":          "请求内容长度超过限制。",
	"LimitExceeded.DeliveryFrequencyLimit":              "下发语音消息时命中频率限制策略。",
	"FailedOperation.InsufficientBalanceInVoicePackage": "套餐包余量不足。",
	"InternalError.UpstreamError":                       "语音上游错误。",
}

type apiError struct{ code, message string }

func fail(code string) *apiError {
	if m, ok := messages[code]; ok {
		return &apiError{code, m}
	}
	return &apiError{code, code}
}

// request is SendTtsVoice's body.
type request struct {
	TemplateID       string   `json:"TemplateId"`
	CalledNumber     string   `json:"CalledNumber"`
	VoiceSdkAppID    string   `json:"VoiceSdkAppid"`
	TemplateParamSet []string `json:"TemplateParamSet"`
	PlayTimes        *int     `json:"PlayTimes"`
	SessionContext   string   `json:"SessionContext"`
}

// ServeHTTP answers SendTtsVoice.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := smsfake.RequestID()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.answer(w, reqID, nil, &apiError{"InvalidParameter", "请求包过大。"})
		return
	}
	switch code := tcfake.Verify(r, body, s.o.SecretID, s.o.SecretKey, "vms", s.o.Now()); code {
	case "":
	case "MissingParameter":
		s.answer(w, reqID, nil, &apiError{code, "缺少参数错误。The request is missing a required parameter `Timestamp`."})
		return
	default:
		s.answer(w, reqID, nil, fail(code))
		return
	}
	c, e := s.take(r, body)
	if e != nil {
		s.log.Info("SendTtsVoice refused", "code", e.code)
	}
	s.answer(w, reqID, c, e)
}

var placeholder = regexp.MustCompile(`\{([0-9]+)\}`)

func (s *Server) take(r *http.Request, body []byte) (*Call, *apiError) {
	if a := r.Header.Get("X-TC-Action"); a != "SendTtsVoice" {
		return nil, fail("InvalidAction")
	}
	if v := r.Header.Get("X-TC-Version"); v != "2020-09-02" {
		return nil, fail("NoSuchVersion")
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &apiError{"FailedOperation.InvalidJsonParameters", "无效 JSON。"}
	}
	for name, v := range map[string]string{"TemplateId": req.TemplateID, "CalledNumber": req.CalledNumber, "VoiceSdkAppid": req.VoiceSdkAppID} {
		if v == "" {
			return nil, &apiError{"MissingParameter", "缺少参数错误。The request is missing a required parameter `" + name + "`."}
		}
	}
	s.mu.Lock()
	if len(s.failNext) > 0 {
		code := s.failNext[0]
		s.failNext = s.failNext[1:]
		s.mu.Unlock()
		return nil, fail(code)
	}
	s.mu.Unlock()
	if req.VoiceSdkAppID != s.o.SdkAppID {
		return nil, fail("UnauthorizedOperation.VoiceSdkAppidVerifyFail")
	}
	tmpl, ok := s.o.Templates[req.TemplateID]
	if !ok {
		return nil, fail("FailedOperation.TemplateIncorrectOrUnapproved")
	}
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, k)
	}
	if n != len(req.TemplateParamSet) {
		return nil, fail("FailedOperation.TemplateIncorrectOrUnapproved")
	}
	if len(req.CalledNumber) < 3 || req.CalledNumber[:3] != "+86" {
		return nil, fail("InvalidParameterValue.CalledNumberVerifyFail")
	}
	number, ok := smsfake.Mainland(req.CalledNumber[3:])
	if !ok {
		return nil, fail("InvalidParameterValue.CalledNumberVerifyFail")
	}
	plays := 2
	if req.PlayTimes != nil {
		plays = *req.PlayTimes
	}
	if plays < 1 || plays > 3 {
		return nil, &apiError{"FailedOperation.InvalidParameters", "无效参数。PlayTimes 为 1 到 3。"}
	}
	text := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		k, _ := strconv.Atoi(m[1 : len(m)-1])
		return req.TemplateParamSet[k-1]
	})
	if utf8.RuneCountInString(text) > 350 {
		return nil, fail("InvalidParameterValue.ContentLengthLimit")
	}
	c := &Call{CallID: fmt.Sprintf("%x-%d", s.o.Now().UnixNano(), s.seq.Add(1)), Number: number, TemplateID: req.TemplateID,
		Params: req.TemplateParamSet, Text: text, PlayTimes: plays, SessionContext: req.SessionContext, At: s.o.Now()}
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

// run plays a call out as its phone behaves and posts what happens.
func (s *Server) run(c Call, b Behavior, over bool) {
	unix := func(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
	prompt := Prompt{CallID: c.CallID, Mobile: c.Number, NationCode: "86", StartCallTime: unix(c.At), Fee: "0"}
	failure := func(code int) {
		s.post(Callback{Failure: &Failure{CallID: c.CallID, FailureCode: code, FailureReason: failureReasons[code], Mobile: c.Number, NationCode: "86"}})
		prompt.Result, prompt.EndCallTime, prompt.AcceptTime = "1", unix(s.o.Now()), "0"
		if code != 5 && code != 20 {
			prompt.Result = "2"
		}
		s.post(Callback{Prompt: &prompt})
	}
	if over {
		failure(9)
		return
	}
	free := sync.OnceFunc(func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	})
	defer free()
	if !s.pusher.Sleep(b.Ring) {
		return
	}
	if !b.Answer {
		free()
		code := b.FailureCode
		if code == 0 {
			code = 5
		}
		failure(code)
		return
	}
	accept := s.o.Now()
	talk := time.Duration(0)
	for _, k := range b.Keys {
		if !s.pusher.Sleep(b.KeyAfter) {
			return
		}
		talk += b.KeyAfter
		s.post(Callback{Key: &Key{CallID: c.CallID, KeyPress: string(k), Mobile: c.Number, NationCode: "86"}})
	}
	if rest := b.Talk - talk; rest > 0 && !s.pusher.Sleep(rest) {
		return
	}
	end := s.o.Now()
	free()
	minutes := int((end.Sub(accept) + time.Minute - 1) / time.Minute)
	prompt.Result, prompt.AcceptTime, prompt.EndCallTime, prompt.Fee = "0", unix(accept), unix(end), strconv.Itoa(max(minutes, 1))
	s.post(Callback{Prompt: &prompt})
}

// post posts a callback, again while it is not taken.
func (s *Server) post(cb Callback) {
	if s.o.CallbackURL == "" {
		return
	}
	if err := s.pusher.Push(func() error { return s.PostTo(context.Background(), s.o.CallbackURL, cb) }); err != nil {
		s.log.Warn("callback not taken", "err", err)
	}
}

// PostTo posts a callback to callbackURL and checks the answer: HTTP 200
// and {"result":0}. Tests post forged, replayed and misaddressed
// callbacks with it.
func (s *Server) PostTo(ctx context.Context, callbackURL string, cb Callback) error {
	body, err := json.Marshal(cb)
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
		Result *int   `json:"result"`
		ErrMsg string `json:"errmsg"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Result == nil {
		return errors.New(`callback answer is not {"result":0,"errmsg":"OK"}`)
	}
	if *ans.Result != 0 {
		return fmt.Errorf("callback answered result %d: %s", *ans.Result, ans.ErrMsg)
	}
	s.mu.Lock()
	s.posted++
	s.mu.Unlock()
	return nil
}

// answer writes Tencent's shape: HTTP 200 always, the error inside.
func (s *Server) answer(w http.ResponseWriter, reqID string, c *Call, e *apiError) {
	type errBody struct {
		Code    string `json:"Code"`
		Message string `json:"Message"`
	}
	type sendStatus struct {
		CallID         string `json:"CallId"`
		SessionContext string `json:"SessionContext"`
	}
	var resp struct {
		Response struct {
			Error      *errBody    `json:"Error,omitempty"`
			SendStatus *sendStatus `json:"SendStatus,omitempty"`
			RequestID  string      `json:"RequestId"`
		} `json:"Response"`
	}
	resp.Response.RequestID = reqID
	if e != nil {
		resp.Response.Error = &errBody{e.code, e.message}
	} else {
		resp.Response.SendStatus = &sendStatus{c.CallID, c.SessionContext}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}
