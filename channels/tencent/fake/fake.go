// Package fake is an in-process Tencent Cloud SMS (API 2021-01-11) that
// speaks the real protocol: SendSms signed TC3-HMAC-SHA256 (X-TC-Action,
// X-TC-Timestamp, X-TC-Version, Authorization), verified as Tencent
// verifies it; the real answers, {"Response":{"SendStatusSet":[…],
// "RequestId":"…"}} and {"Response":{"Error":{"Code":"…","Message":"…"},
// "RequestId":"…"}}, with Tencent's error codes; and status reports pushed
// later to a callback URL in Tencent's push format. Tests use it, and
// `warngate serve` starts it in the embedded demo so that a new user sees
// the real protocol at work. It sends no SMS.
//
// Request-level errors (HTTP 200, as Tencent answers them):
// AuthFailure.InvalidAuthorization, AuthFailure.SecretIdNotFound,
// AuthFailure.SignatureFailure, AuthFailure.SignatureExpire, InvalidAction,
// NoSuchVersion, MissingParameter, RequestLimitExceeded (the rate limit),
// UnauthorizedOperation.SmsSdkAppIdVerifyFail,
// FailedOperation.SignatureIncorrectOrUnapproved,
// FailedOperation.TemplateIncorrectOrUnapproved,
// FailedOperation.TemplateParamSetNotMatchApprovedTemplate,
// LimitExceeded.PhoneNumberCountLimit. Per number, in SendStatusSet: Ok,
// InvalidParameterValue.IncorrectPhoneNumber and
// LimitExceeded.PhoneNumberDailyLimit.
package fake

import (
	"cmp"
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
	"time"

	"warngate/channels/internal/smsfake"
	"warngate/channels/internal/tcfake"
)

// Defaults and limits.
const (
	DefaultReportDelay = 200 * time.Millisecond
	MaxNumbers         = 200
	MaxSkew            = tcfake.MaxSkew
)

// How a number on Options.FailNumbers is reported.
const (
	FailCode        = "UNDELIV"
	FailDescription = "用户短信未送达：关机或不在服务区"
)

// Options configure the fake application.
type Options struct {
	// SecretID and SecretKey are the only key accepted.
	SecretID  string
	SecretKey string
	// SdkAppID is the SMS application's SdkAppId.
	SdkAppID string
	// SignNames are the approved signatures.
	SignNames []string
	// Templates maps each approved template id to its text, e.g.
	// "1234567": "{1}：{2}".
	Templates map[string]string
	// IncorrectNumbers get InvalidParameterValue.IncorrectPhoneNumber, like
	// numbers that are not +86 and 11 digits.
	IncorrectNumbers []string
	// LimitedNumbers get LimitExceeded.PhoneNumberDailyLimit.
	LimitedNumbers []string
	// FailNumbers are accepted but reported FAIL.
	FailNumbers []string
	// RateLimit is how many calls pass per RateWindow; the rest get
	// RequestLimitExceeded. Zero means no limit.
	RateLimit  int
	RateWindow time.Duration // default 1 second
	// CallbackURL receives status pushes; empty means none.
	CallbackURL string
	// ReportDelay is how long after acceptance reports are pushed. Zero
	// means DefaultReportDelay.
	ReportDelay time.Duration
	// Client pushes reports. Default: a client with a 10 s timeout.
	Client *http.Client
	Log    *slog.Logger
	// Now is the fake's clock, for X-TC-Timestamp. Default time.Now.
	Now func() time.Time
}

// Message is one SMS the fake accepted.
type Message struct {
	SerialNo       string
	Phone          string // +86…
	SignName       string
	TemplateID     string
	Params         []string
	Text           string // as the phone shows it, 【signature】 first
	Fee            int    // billed segments
	SessionContext string
	At             time.Time
}

// Report is one status report as Tencent pushes it.
type Report struct {
	UserReceiveTime string `json:"user_receive_time"`
	NationCode      string `json:"nationcode"`
	Mobile          string `json:"mobile"`
	ReportStatus    string `json:"report_status"`
	ErrMsg          string `json:"errmsg"`
	Description     string `json:"description"`
	SID             string `json:"sid"`
}

// Server is the fake. Use NewServer.
type Server struct {
	o    Options
	log  *slog.Logger
	core *smsfake.Core[Message, Report]
}

// NewServer returns a fake for o.
func NewServer(o Options) *Server {
	core := smsfake.New[Message, Report](smsfake.Config{Name: "tencent", CallbackURL: o.CallbackURL,
		ReportDelay: cmp.Or(o.ReportDelay, DefaultReportDelay), Client: o.Client, Log: o.Log, Now: o.Now,
		RateLimit: o.RateLimit, RateWindow: cmp.Or(o.RateWindow, time.Second), Taken: taken})
	return &Server{o: o, log: core.Log(), core: core}
}

// Handler returns the API's HTTP handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Messages returns the SMS accepted so far.
func (s *Server) Messages() []Message { return s.core.Messages() }

// Calls returns how many API requests arrived, refused ones included.
func (s *Server) Calls() int { return s.core.Calls() }

// Pushed returns how many reports the callback took.
func (s *Server) Pushed() int { return s.core.Pushed() }

// FailNext makes the next authenticated SendSms calls answer with these
// error codes, one call per code (e.g. InternalError.Timeout,
// RequestLimitExceeded).
func (s *Server) FailNext(codes ...string) { s.core.FailNext(codes...) }

// Close stops pushing reports and waits for pushes under way.
func (s *Server) Close() { s.core.Close() }

type apiError struct{ code, message string }

var messages = map[string]string{
	"AuthFailure.InvalidAuthorization":                         "请求头部的 Authorization 不符合腾讯云标准。",
	"AuthFailure.SecretIdNotFound":                             "密钥不存在。请在控制台检查密钥是否已被删除或者禁用，如状态正常，请检查密钥是否填写正确，注意前后不得有空格。",
	"AuthFailure.SignatureFailure":                             "请求签名验证失败，请检查您的签名计算是否正确。",
	"AuthFailure.SignatureExpire":                              "签名过期。Timestamp 和服务器时间相差不得超过五分钟，请检查本地时间是否和标准时间同步。",
	"InvalidAction":                                            "接口不存在。",
	"NoSuchVersion":                                            "接口版本不存在。",
	"MissingParameter":                                         "缺少参数错误。",
	"RequestLimitExceeded":                                     "请求的次数超过了频率限制。",
	"InternalError.Timeout":                                    "请求下发短信超时，请参考 60 秒内无法收到短信如何处理。",
	"InternalError":                                            "内部错误。",
	"UnauthorizedOperation.SmsSdkAppIdVerifyFail":              "SmsSdkAppId 校验失败，请检查 SmsSdkAppId 是否属于 云API密钥 的关联账户。",
	"FailedOperation.SignatureIncorrectOrUnapproved":           "签名未审批或格式错误。",
	"FailedOperation.TemplateIncorrectOrUnapproved":            "模板未审批或请求的内容与审核通过的模板内容不匹配。",
	"FailedOperation.TemplateParamSetNotMatchApprovedTemplate": "请求内容与审核通过的模板内容不匹配。",
	"LimitExceeded.PhoneNumberCountLimit":                      "调用接口单次提交的手机号个数超过200个。",
	"InvalidParameterValue.IncorrectPhoneNumber":               "手机号格式错误。",
	"LimitExceeded.PhoneNumberDailyLimit":                      "单个手机号日下发短信条数超过设定的上限。",
	"FailedOperation.InsufficientBalanceInSmsPackage":          "套餐包余量不足。",
}

func fail(code string) *apiError {
	m, ok := messages[code]
	if !ok {
		m = code
	}
	return &apiError{code, m}
}

// request is SendSms's body.
type request struct {
	PhoneNumberSet   []string `json:"PhoneNumberSet"`
	SmsSdkAppID      string   `json:"SmsSdkAppId"`
	TemplateID       string   `json:"TemplateId"`
	SignName         string   `json:"SignName"`
	TemplateParamSet []string `json:"TemplateParamSet"`
	ExtendCode       string   `json:"ExtendCode"`
	SessionContext   string   `json:"SessionContext"`
	SenderID         string   `json:"SenderId"`
}

type sendStatus struct {
	SerialNo       string `json:"SerialNo"`
	PhoneNumber    string `json:"PhoneNumber"`
	Fee            int    `json:"Fee"`
	SessionContext string `json:"SessionContext"`
	Code           string `json:"Code"`
	Message        string `json:"Message"`
	IsoCode        string `json:"IsoCode"`
}

// ServeHTTP answers SendSms.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := smsfake.RequestID()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	s.core.CountCall()
	if err != nil {
		s.answer(w, reqID, nil, &apiError{"InvalidParameter", "请求包过大。"})
		return
	}
	if e := s.authenticate(r, body); e != nil {
		s.log.Info("request refused", "code", e.code)
		s.answer(w, reqID, nil, e)
		return
	}
	set, e := s.sendSms(r, body)
	if e != nil {
		s.log.Info("SendSms refused", "code", e.code)
	}
	s.answer(w, reqID, set, e)
}

func (s *Server) sendSms(r *http.Request, body []byte) ([]sendStatus, *apiError) {
	if a := r.Header.Get("X-TC-Action"); a != "SendSms" {
		return nil, fail("InvalidAction")
	}
	if v := r.Header.Get("X-TC-Version"); v != "2021-01-11" {
		return nil, fail("NoSuchVersion")
	}
	if r.Header.Get("X-TC-Region") == "" {
		return nil, &apiError{"MissingParameter", "缺少参数错误。The request is missing a required parameter `Region`."}
	}
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, &apiError{"InvalidParameter", "参数错误：请求体不是合法的 JSON。"}
	}
	for name, v := range map[string]string{"SmsSdkAppId": req.SmsSdkAppID, "TemplateId": req.TemplateID} {
		if v == "" {
			return nil, &apiError{"MissingParameter", "缺少参数错误。The request is missing a required parameter `" + name + "`."}
		}
	}
	if len(req.PhoneNumberSet) == 0 {
		return nil, &apiError{"MissingParameter", "缺少参数错误。The request is missing a required parameter `PhoneNumberSet`."}
	}

	switch code, throttled := s.core.Admit(); {
	case code != "":
		return nil, fail(code)
	case throttled:
		return nil, fail("RequestLimitExceeded")
	}

	if req.SmsSdkAppID != s.o.SdkAppID {
		return nil, fail("UnauthorizedOperation.SmsSdkAppIdVerifyFail")
	}
	if !slices.Contains(s.o.SignNames, req.SignName) {
		return nil, fail("FailedOperation.SignatureIncorrectOrUnapproved")
	}
	tmpl, ok := s.o.Templates[req.TemplateID]
	if !ok {
		return nil, fail("FailedOperation.TemplateIncorrectOrUnapproved")
	}
	if len(req.PhoneNumberSet) > MaxNumbers {
		return nil, fail("LimitExceeded.PhoneNumberCountLimit")
	}
	if placeholders(tmpl) != len(req.TemplateParamSet) {
		return nil, fail("FailedOperation.TemplateParamSetNotMatchApprovedTemplate")
	}
	text := "【" + req.SignName + "】" + placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		n, _ := strconv.Atoi(m[1 : len(m)-1])
		return req.TemplateParamSet[n-1]
	})
	fee := smsfake.Parts(text)

	set := make([]sendStatus, len(req.PhoneNumberSet))
	accepted := s.core.Keep(func(seq func() int64) []Message {
		now := s.core.Now()
		var accepted []Message
		for i, ph := range req.PhoneNumberSet {
			st := sendStatus{PhoneNumber: ph, SessionContext: req.SessionContext, IsoCode: "CN"}
			national, ok := smsfake.Mainland(ph)
			switch {
			case !ok || slices.Contains(s.o.IncorrectNumbers, national):
				e := fail("InvalidParameterValue.IncorrectPhoneNumber")
				st.Code, st.Message = e.code, e.message
				if !ok {
					st.IsoCode = "DEF"
				}
			case slices.Contains(s.o.LimitedNumbers, national):
				e := fail("LimitExceeded.PhoneNumberDailyLimit")
				st.Code, st.Message = e.code, e.message
			default:
				st.SerialNo = fmt.Sprintf("2433:%d", 338800000000000000+seq())
				st.Fee, st.Code, st.Message = fee, "Ok", "send success"
				m := Message{SerialNo: st.SerialNo, Phone: ph, SignName: req.SignName, TemplateID: req.TemplateID,
					Params: slices.Clone(req.TemplateParamSet), Text: text, Fee: fee, SessionContext: req.SessionContext, At: now}
				accepted = append(accepted, m)
			}
			set[i] = st
		}
		return accepted
	})
	s.core.Schedule(accepted, s.report)
	return set, nil
}

var placeholder = regexp.MustCompile(`\{([0-9]+)\}`)

// placeholders counts a template's parameters, which must be {1}…{n}.
func placeholders(tmpl string) int {
	n := 0
	for _, m := range placeholder.FindAllStringSubmatch(tmpl, -1) {
		k, _ := strconv.Atoi(m[1])
		n = max(n, k)
	}
	return n
}

// authenticate verifies TC3-HMAC-SHA256 as Tencent does.
func (s *Server) authenticate(r *http.Request, body []byte) *apiError {
	switch code := tcfake.Verify(r, body, s.o.SecretID, s.o.SecretKey, "sms", s.core.Now()); code {
	case "":
		return nil
	case "MissingParameter":
		return &apiError{"MissingParameter", "缺少参数错误。The request is missing a required parameter `Timestamp`."}
	default:
		return fail(code)
	}
}

// Sign computes a TC3-HMAC-SHA256 signature (lowercase hex) from the
// request's method, path, query, signed header names (in their order) with
// their values, payload, timestamp and service, independently of the SDK.
func Sign(method, path, query string, signed []string, headers map[string]string, payload []byte, timestamp int64, service, secretKey string) string {
	return tcfake.Sign(method, path, query, signed, headers, payload, timestamp, service, secretKey)
}

// answer writes Tencent's shape: HTTP 200 always, the error inside.
func (s *Server) answer(w http.ResponseWriter, reqID string, set []sendStatus, e *apiError) {
	type errBody struct {
		Code    string `json:"Code"`
		Message string `json:"Message"`
	}
	var resp struct {
		Response struct {
			Error         *errBody     `json:"Error,omitempty"`
			SendStatusSet []sendStatus `json:"SendStatusSet,omitempty"`
			RequestID     string       `json:"RequestId"`
		} `json:"Response"`
	}
	resp.Response.RequestID = reqID
	if e != nil {
		resp.Response.Error = &errBody{e.code, e.message}
	} else {
		resp.Response.SendStatusSet = set
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// report is the status report of m, SUCCESS unless m's number is on
// Options.FailNumbers, as pushed at now. Reports are pushed ReportDelay
// after acceptance, and again, as Tencent does, while the gateway does not
// take them.
func (s *Server) report(m Message, now time.Time) Report {
	national, _ := smsfake.Mainland(m.Phone)
	r := Report{UserReceiveTime: smsfake.BeijingTime(now), NationCode: "86", Mobile: national, ReportStatus: "SUCCESS",
		ErrMsg: "DELIVRD", Description: "用户短信送达成功", SID: m.SerialNo}
	if slices.Contains(s.o.FailNumbers, national) {
		r.ReportStatus, r.ErrMsg, r.Description = "FAIL", FailCode, FailDescription
	}
	return r
}

// Push sends reports to Options.CallbackURL as one status push and checks
// the answer: HTTP 200 and {"result":0}.
func (s *Server) Push(ctx context.Context, reports []Report) error { return s.core.Push(ctx, reports) }

// PushTo is Push to another URL (a forged or misaddressed push).
func (s *Server) PushTo(ctx context.Context, callbackURL string, reports []Report) error {
	return s.core.PushTo(ctx, callbackURL, reports)
}

// taken checks the gateway's answer to a push: {"result":0,"errmsg":"…"}.
func taken(raw []byte) error {
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
	return nil
}
