// Package fake is an in-process Alibaba Cloud SMS (dysmsapi 2017-05-25)
// that speaks the real protocol: SendSms signed by the V3 mechanism
// (ACS3-HMAC-SHA256), verified as Alibaba verifies it; the real answers and
// error codes; and SmsReport receipts pushed later to a callback URL in
// Alibaba's push format. Tests use it, and `warngate serve` starts it in
// the embedded demo so that a new user sees the real protocol at work. It
// sends no SMS and keeps only what it is told to.
//
// Errors it answers, as Alibaba does: IncompleteSignature,
// SignatureDoesNotMatch, InvalidAccessKeyId.NotFound,
// InvalidTimeStamp.Expired, SignatureNonceUsed, InvalidAction.NotFound,
// InvalidVersion, MissingPhoneNumbers / MissingSignName / MissingTemplateCode
// (HTTP 400 or 404), and with HTTP 200: isv.BUSINESS_LIMIT_CONTROL (the rate
// limit), isv.SMS_SIGNATURE_ILLEGAL, isv.SMS_TEMPLATE_ILLEGAL,
// isv.MOBILE_NUMBER_ILLEGAL (a whole call with any illegal number is
// refused), isv.MOBILE_COUNT_OVER_LIMIT, isv.INVALID_JSON_PARAM and
// isv.TEMPLATE_MISSING_PARAMETERS.
package fake

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"warngate/channels/internal/acsfake"
	"warngate/channels/internal/smsfake"
)

// Defaults of Options.
const (
	DefaultReportDelay = 200 * time.Millisecond
	MaxNumbers         = 1000
	MaxSkew            = acsfake.MaxSkew
)

// How a number on Options.FailNumbers is reported.
const (
	FailCode    = "MN:0001"
	FailMessage = "用户关机或不在服务区"
)

// Options configure the fake account.
type Options struct {
	// AccessKeyID and AccessKeySecret are the only key pair accepted.
	AccessKeyID     string
	AccessKeySecret string
	// SignNames are the approved signatures.
	SignNames []string
	// Templates maps each approved template code to its text, e.g.
	// "SMS_123456789": "${title}：${content}".
	Templates map[string]string
	// IllegalNumbers are refused with isv.MOBILE_NUMBER_ILLEGAL, like
	// numbers that are not 11 digits.
	IllegalNumbers []string
	// FailNumbers are accepted but reported as not delivered.
	FailNumbers []string
	// RateLimit is how many SendSms calls pass per RateWindow; the rest get
	// isv.BUSINESS_LIMIT_CONTROL. Zero means no limit.
	RateLimit  int
	RateWindow time.Duration // default 1 minute
	// CallbackURL receives SmsReport pushes; empty means no pushes.
	CallbackURL string
	// ReportDelay is how long after acceptance receipts are pushed. Zero
	// means DefaultReportDelay.
	ReportDelay time.Duration
	// Client pushes reports. Default: a client with a 10 s timeout.
	Client *http.Client
	Log    *slog.Logger
	// Now is the fake's clock, for x-acs-date. Default time.Now.
	Now func() time.Time
}

// Message is one SMS the fake accepted.
type Message struct {
	BizID        string
	Phone        string
	SignName     string
	TemplateCode string
	Params       map[string]string
	Text         string // as the phone shows it, 【signature】 first
	Parts        int    // billed segments
	OutID        string
	At           time.Time
}

// Report is one receipt of an SmsReport push, as Alibaba writes it.
type Report struct {
	PhoneNumber string `json:"phone_number"`
	SendTime    string `json:"send_time"`
	ReportTime  string `json:"report_time"`
	Success     bool   `json:"success"`
	ErrCode     string `json:"err_code"`
	ErrMsg      string `json:"err_msg"`
	SmsSize     string `json:"sms_size"`
	BizID       string `json:"biz_id"`
	OutID       string `json:"out_id"`
}

// Server is the fake. Its zero value is not usable: use NewServer.
type Server struct {
	o    Options
	log  *slog.Logger
	core *smsfake.Core[Message, Report]

	verifier *acsfake.Verifier
}

// NewServer returns a fake for o.
func NewServer(o Options) *Server {
	core := smsfake.New[Message, Report](smsfake.Config{Name: "aliyun", CallbackURL: o.CallbackURL,
		ReportDelay: cmp.Or(o.ReportDelay, DefaultReportDelay), Client: o.Client, Log: o.Log, Now: o.Now,
		RateLimit: o.RateLimit, RateWindow: cmp.Or(o.RateWindow, time.Minute), Taken: taken})
	return &Server{o: o, log: core.Log(), core: core, verifier: &acsfake.Verifier{KeyID: o.AccessKeyID, Secret: o.AccessKeySecret, Now: core.Now}}
}

// Handler returns the API's HTTP handler (the Server itself).
func (s *Server) Handler() http.Handler { return s }

// Messages returns the SMS accepted so far.
func (s *Server) Messages() []Message { return s.core.Messages() }

// Calls returns how many API requests arrived, refused ones included.
func (s *Server) Calls() int { return s.core.Calls() }

// Pushed returns how many receipts the callback took.
func (s *Server) Pushed() int { return s.core.Pushed() }

// FailNext makes the next SendSms calls that pass authentication answer
// with code, one call per code given (e.g. isp.SYSTEM_ERROR, Throttling.User).
func (s *Server) FailNext(codes ...string) { s.core.FailNext(codes...) }

// Close stops pushing reports and waits for pushes under way.
func (s *Server) Close() { s.core.Close() }

// apiError is an error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func gateway(status int, code, msg string) *apiError { return &apiError{status, code, msg} }
func business(code, msg string) *apiError            { return &apiError{http.StatusOK, code, msg} }

// ServeHTTP answers SendSms.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := requestID()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		s.fail(w, reqID, gateway(http.StatusBadRequest, "InvalidParameter", "The request body is too large or unreadable."))
		return
	}
	s.core.CountCall()
	if e := s.authenticate(r, body); e != nil {
		s.log.Info("request refused", "code", e.code, "message", e.message)
		s.fail(w, reqID, e)
		return
	}
	if r.URL.Path != "/" && r.URL.Path != "" {
		s.fail(w, reqID, gateway(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."))
		return
	}
	if a := r.Header.Get("x-acs-action"); a != "SendSms" {
		s.fail(w, reqID, gateway(http.StatusNotFound, "InvalidAction.NotFound", fmt.Sprintf("Specified api %q is not found, please check your url and method.", a)))
		return
	}
	if v := r.Header.Get("x-acs-version"); v != "2017-05-25" {
		s.fail(w, reqID, gateway(http.StatusBadRequest, "InvalidVersion", fmt.Sprintf("Specified parameter Version %q is not valid.", v)))
		return
	}
	params := r.URL.Query()
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			s.fail(w, reqID, gateway(http.StatusBadRequest, "InvalidParameter", "The form body is malformed."))
			return
		}
		for k, v := range form {
			params[k] = append(params[k], v...)
		}
	}
	msgs, e := s.sendSms(params)
	if e != nil {
		s.log.Info("SendSms refused", "code", e.code, "message", e.message)
		s.fail(w, reqID, e)
		return
	}
	bizID := msgs[0].BizID
	s.answer(w, http.StatusOK, map[string]string{"Code": "OK", "Message": "OK", "BizId": bizID, "RequestId": reqID})
	s.core.Schedule(msgs, s.report)
}

// sendSms checks the business parameters in Alibaba's order and accepts.
func (s *Server) sendSms(p url.Values) ([]Message, *apiError) {
	for _, name := range []string{"PhoneNumbers", "SignName", "TemplateCode"} {
		if p.Get(name) == "" {
			return nil, gateway(http.StatusBadRequest, "Missing"+name, name+" is mandatory for this action.")
		}
	}
	switch code, throttled := s.core.Admit(); {
	case code != "":
		return nil, injected(code)
	case throttled:
		return nil, business("isv.BUSINESS_LIMIT_CONTROL", fmt.Sprintf("触发分钟级流控Permits:%d", s.o.RateLimit))
	}

	sign, code := p.Get("SignName"), p.Get("TemplateCode")
	if !slices.Contains(s.o.SignNames, sign) {
		return nil, business("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名")
	}
	tmpl, ok := s.o.Templates[code]
	if !ok {
		return nil, business("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板")
	}
	phones := strings.Split(p.Get("PhoneNumbers"), ",")
	if len(phones) > MaxNumbers {
		return nil, business("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制，最多支持1000条")
	}
	for i, ph := range phones {
		n, ok := smsfake.Mainland(ph)
		if !ok || slices.Contains(s.o.IllegalNumbers, n) {
			return nil, business("isv.MOBILE_NUMBER_ILLEGAL", "手机号码格式错误")
		}
		phones[i] = n
	}
	vals := map[string]string{}
	if tp := p.Get("TemplateParam"); tp != "" {
		var raw map[string]any
		if err := json.Unmarshal([]byte(tp), &raw); err != nil {
			return nil, business("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
		}
		for k, v := range raw {
			str, ok := v.(string)
			if !ok {
				return nil, business("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值")
			}
			vals[k] = str
		}
	}
	for _, m := range variable.FindAllStringSubmatch(tmpl, -1) {
		if _, ok := vals[m[1]]; !ok {
			return nil, business("isv.TEMPLATE_MISSING_PARAMETERS", "模板缺少变量")
		}
	}
	text := "【" + sign + "】" + variable.ReplaceAllStringFunc(tmpl, func(m string) string { return vals[m[2:len(m)-1]] })

	return s.core.Keep(func(seq func() int64) []Message {
		bizID := fmt.Sprintf("%d^%d", 900000000000000000+seq(), 0)
		now := s.core.Now()
		msgs := make([]Message, len(phones))
		for i, ph := range phones {
			msgs[i] = Message{BizID: bizID, Phone: ph, SignName: sign, TemplateCode: code, Params: vals, Text: text,
				Parts: smsfake.Parts(text), OutID: p.Get("OutId"), At: now}
		}
		return msgs
	}), nil
}

var variable = regexp.MustCompile(`\$\{([A-Za-z0-9_]+)\}`)

// injected is the answer FailNext asked for, with Alibaba's status.
func injected(code string) *apiError {
	switch code {
	case "Throttling.User":
		return gateway(http.StatusBadRequest, code, "Request was denied due to user flow control.")
	case "ServiceUnavailable":
		return gateway(http.StatusServiceUnavailable, code, "The request has failed due to a temporary failure of the server.")
	case "isp.SYSTEM_ERROR":
		return business(code, "系统出现错误，请重新调用")
	}
	return business(code, code)
}

// authenticate verifies the V3 signature as Alibaba does.
func (s *Server) authenticate(r *http.Request, body []byte) *apiError {
	if e := s.verifier.Verify(r, body); e != nil {
		return &apiError{e.Status, e.Code, e.Message}
	}
	return nil
}

// Sign computes an ACS3-HMAC-SHA256 signature (lowercase hex) of a request
// from its method, escaped path, query, signed headers (lowercase name →
// value) and body, independently of the adapter's own signer.
func Sign(method, path string, query url.Values, headers map[string]string, body []byte, secret string) string {
	return acsfake.Sign(method, path, query, headers, body, secret)
}

// requestID is a random UUID in upper case, like Alibaba's.
func requestID() string { return strings.ToUpper(smsfake.RequestID()) }

func (s *Server) fail(w http.ResponseWriter, reqID string, e *apiError) {
	if e.status == http.StatusOK {
		s.answer(w, e.status, map[string]string{"Code": e.code, "Message": e.message, "RequestId": reqID})
		return
	}
	s.answer(w, e.status, map[string]string{"Code": e.code, "Message": e.message, "RequestId": reqID,
		"HostId": "dysmsapi.aliyuncs.com", "Recommend": "https://api.aliyun.com/troubleshoot?q=" + e.code + "&product=Dysmsapi"})
}

func (s *Server) answer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// report is the receipt of m, delivered unless m's number is on
// Options.FailNumbers, as pushed at now. Receipts are pushed ReportDelay
// after acceptance, and again, as Alibaba does, while the gateway does not
// take them.
func (s *Server) report(m Message, now time.Time) Report {
	r := Report{PhoneNumber: m.Phone, SendTime: smsfake.BeijingTime(m.At), ReportTime: smsfake.BeijingTime(now),
		Success: true, ErrCode: "DELIVERED", ErrMsg: "用户接收成功", SmsSize: fmt.Sprint(m.Parts), BizID: m.BizID, OutID: m.OutID}
	if slices.Contains(s.o.FailNumbers, m.Phone) {
		r.Success, r.ErrCode, r.ErrMsg = false, FailCode, FailMessage
	}
	return r
}

// Push sends receipts to Options.CallbackURL as one SmsReport push and
// checks the answer: HTTP 200 and {"code":0}.
func (s *Server) Push(ctx context.Context, reports []Report) error { return s.core.Push(ctx, reports) }

// PushTo is Push to another URL (a forged or misaddressed push).
func (s *Server) PushTo(ctx context.Context, callbackURL string, reports []Report) error {
	return s.core.PushTo(ctx, callbackURL, reports)
}

// taken checks the gateway's answer to a push: {"code":0,"msg":"…"}.
func taken(raw []byte) error {
	var ans struct {
		Code *int   `json:"code"`
		Msg  string `json:"msg"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil || ans.Code == nil {
		return errors.New("callback answer is not {\"code\":0,\"msg\":\"…\"}")
	}
	if *ans.Code != 0 {
		return fmt.Errorf("callback answered code %d: %s", *ans.Code, ans.Msg)
	}
	return nil
}
