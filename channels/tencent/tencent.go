// Package tencent sends SMS through Tencent Cloud SMS (API 2021-01-11)
// with the official SDK (tencentcloud-sdk-go, which signs TC3-HMAC-SHA256),
// up to 200 numbers per SendSms, and takes the delivery status reports
// Tencent pushes to the gateway. It must not learn about queues, the
// ledger or policy.
//
// Tencent sends only pre-approved templates with positional parameters
// {1}, {2}, …: a bureau gets a template such as "{1}：{2}" approved with its
// signature and says which field of the warning fills each parameter
// (Config.TemplateParams). One SendSms carries one TemplateParamSet for all
// its numbers, so recipients whose values differ (an official's
// confirmation link) go in calls of their own.
//
// Reports name a message by its SerialNo only: a receipt's ProviderID is
// the SerialNo and the dispatcher keeps the index (Provider "tencent").
//
// The SDK of this module version takes no context: each call gets its own
// client whose transport binds the call's context and goes through our
// http.Client, so deadlines and cancellation work as for any other call.
package tencent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	sms "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/sms/v20210111"

	"warngate/channels"
	"warngate/channels/internal/cloudsms"
	"warngate/channels/internal/tcapi"
	"warngate/warning"
)

// API facts and defaults.
const (
	DefaultEndpoint = "sms.tencentcloudapi.com"
	DefaultRegion   = "ap-guangzhou"
	MaxBatch        = 200 // numbers per SendSms
	DefaultTemplate = "{1}：{2}"
	DefaultMaxChars = 500 // a long SMS, signature included
	DefaultTimeout  = 30 * time.Second
)

// DefaultTemplateParams fills DefaultTemplate.
func DefaultTemplateParams() []string { return []string{"title", "content"} }

// Config is one Tencent Cloud SMS application.
type Config struct {
	// Endpoint is the API host, or a URL with a scheme (http://127.0.0.1:8081
	// for the fake). Default DefaultEndpoint over HTTPS.
	Endpoint string `yaml:"endpoint"`
	// Region is the API region. Default ap-guangzhou.
	Region string `yaml:"region"`
	// SecretID and SecretKey are a CAM key allowed to call sms:SendSms.
	// Like every secret here, SecretKey may be ${ENV_VAR}, or be given in a
	// file (SecretKeyFile): see channels.ResolveSecret.
	SecretID      string          `yaml:"secret_id"`
	SecretKey     channels.Secret `yaml:"secret_key"`
	SecretKeyFile string          `yaml:"secret_key_file"`
	// SmsSdkAppID is the SMS application's SdkAppId, e.g. 1400006666.
	SmsSdkAppID string `yaml:"sms_sdk_app_id"`
	// SignName is the approved signature without brackets, e.g. 昆明市应急管理局.
	SignName string `yaml:"sign_name"`
	// TemplateID is the approved template's id, e.g. 1234567.
	TemplateID string `yaml:"template_id"`
	// Template is the approved template's text, e.g. "{1}：{2}", used to
	// fit the message to MaxChars and count its parts. Default
	// DefaultTemplate; required when TemplateParams is set.
	Template string `yaml:"template"`
	// TemplateParams names, in order, the warning's field for {1}, {2}, …
	// (see Fields). Default [title, content].
	TemplateParams []string `yaml:"template_params"`
	// MaxChars bounds the whole message, signature included; the longest
	// value is cut to fit. Default DefaultMaxChars.
	MaxChars int `yaml:"max_chars"`
	// MaxParamChars bounds each parameter's value, as the template's
	// approval may. Zero means no limit.
	MaxParamChars int `yaml:"max_param_chars"`
	// BatchSize is the most numbers per SendSms, 1 to 200. Default 200.
	BatchSize int `yaml:"batch_size"`
	// Timeout bounds one SendSms call. Default DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CallbackToken is expected as ?token= in the status push URL set in
	// the console (…/callbacks/tencent?token=…): Tencent's push carries no
	// signature. Or CallbackTokenFile.
	CallbackToken     channels.Secret `yaml:"callback_token"`
	CallbackTokenFile string          `yaml:"callback_token_file"`
	// CallbackAllowFrom lists the addresses (CIDRs or IPs) pushes may come
	// from. With both set, a push must pass both; at least one is required.
	CallbackAllowFrom []string `yaml:"callback_allow_from"`
}

// Tencent sends through one Tencent Cloud SMS application and takes its
// status reports.
type Tencent struct {
	cfg     Config
	scheme  string
	host    string
	tpl     *template
	reports *cloudsms.Reports[report]
	hc      *http.Client
	log     *slog.Logger
}

var (
	_ channels.Notifier       = (*Tencent)(nil)
	_ channels.Indexed        = (*Tencent)(nil)
	_ channels.ReportReceiver = (*Tencent)(nil)
	_ channels.SMSTexter      = (*Tencent)(nil)
)

// New checks cfg and returns the adapter. Every problem of cfg is reported,
// each naming its field and what to do.
func New(cfg Config, hc *http.Client, log *slog.Logger) (*Tencent, error) {
	if hc == nil {
		return nil, errors.New("tencent: no HTTP client given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = MaxBatch
	}
	if cfg.MaxChars == 0 {
		cfg.MaxChars = DefaultMaxChars
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("tencent.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	scheme, host, err := tcapi.Endpoint(cfg.Endpoint)
	if err != nil {
		bad("endpoint", "%v: give a host such as %s, or a URL such as http://127.0.0.1:8081", err, DefaultEndpoint)
	}
	if strings.ContainsAny(cfg.Region, " /") {
		bad("region", "%q is not a region: use one such as ap-guangzhou", cfg.Region)
	}
	if cfg.SecretID == "" {
		bad("secret_id", "required: the SecretId of a CAM key allowed to call sms:SendSms")
	}
	secretKey, err := channels.ResolveSecret("tencent", "secret_key", cfg.SecretKey, cfg.SecretKeyFile, "that key's SecretKey")
	if err != nil {
		errs = append(errs, err)
	}
	switch {
	case cfg.SmsSdkAppID == "":
		bad("sms_sdk_app_id", "required: the SMS application's SdkAppId, e.g. 1400006666, from the SMS console")
	case !channels.Digits(cfg.SmsSdkAppID):
		bad("sms_sdk_app_id", "%q: an SdkAppId is digits, e.g. 1400006666", cfg.SmsSdkAppID)
	}
	if err := cloudsms.CheckSignName(cfg.SignName); err != nil {
		bad("sign_name", "%v", err)
	}
	switch {
	case cfg.TemplateID == "":
		bad("template_id", "required: the approved template's id, e.g. 1234567")
	case !channels.Digits(cfg.TemplateID):
		bad("template_id", "%q: a template id is digits, e.g. 1234567", cfg.TemplateID)
	}
	cfg.Template, cfg.TemplateParams, err = cloudsms.TemplateOrDefault("tencent", cfg.Template, cfg.TemplateParams, DefaultTemplate, DefaultTemplateParams)
	if err != nil {
		errs = append(errs, err)
	}
	tpl, terrs := newTemplate(cfg.Template, cfg.TemplateParams, cfg.SignName, cfg.MaxChars, cfg.MaxParamChars)
	errs = append(errs, terrs...)
	auth, err := cloudsms.Settings{Provider: "tencent", PlaceholderWord: "parameter",
		MaxChars: cfg.MaxChars, DefaultMaxChars: DefaultMaxChars, MaxParamChars: cfg.MaxParamChars,
		BatchSize: cfg.BatchSize, MaxBatch: MaxBatch, Timeout: cfg.Timeout,
		CallbackToken: cfg.CallbackToken, CallbackTokenFile: cfg.CallbackTokenFile, CallbackAllowFrom: cfg.CallbackAllowFrom,
	}.Check(errs)
	if err != nil {
		return nil, err
	}
	cfg.SecretKey, cfg.SecretKeyFile = channels.Secret(secretKey), ""
	log = log.With("provider", "tencent")
	return &Tencent{cfg: cfg, scheme: scheme, host: host, tpl: tpl, reports: newReports(auth, log), hc: hc, log: log}, nil
}

// Provider implements channels.Indexed.
func (t *Tencent) Provider() string { return "tencent" }

// Message returns the TemplateParamSet for a recipient and the text the
// phone will show, signature included.
func (t *Tencent) Message(b *channels.Batch, r warning.Recipient) ([]string, string) {
	return t.tpl.render(channels.Compose(b, r))
}

// SMSText implements channels.SMSTexter: the template filled for r, as the
// phone shows it.
func (t *Tencent) SMSText(b *channels.Batch, r warning.Recipient) string {
	_, text := t.Message(b, r)
	return text
}

// group is recipients sharing one TemplateParamSet.
type group = cloudsms.Group[[]string]

// Notify implements channels.Notifier. Recipients are grouped by their
// parameters and sent BatchSize numbers per SendSms, one call after the
// other; a call that fails as a whole ends the batch, keeping the receipts
// of the calls before it. Each number's SendStatus decides its receipt:
// Ok is sent with the SerialNo as ProviderID; a refusal of that number
// (LimitExceeded.PhoneNumberDailyLimit, InvalidParameterValue.IncorrectPhoneNumber, …)
// fails it with the code and message; a passing refusal (the 30-second
// limit, an internal error) leaves it out, to be sent again.
func (t *Tencent) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts, groups := cloudsms.GroupRecipients(b, func(r warning.Recipient) ([]string, string, string) {
		params, text := t.Message(b, r)
		return params, strings.Join(params, "\x00"), text
	})
	var passing int
	receipts, retry, err := cloudsms.SendGroups(receipts, groups, t.cfg.BatchSize, func(g *group, pos []int) ([]channels.Receipt, bool, error) {
		rcs, left, retry, err := t.send(ctx, b.ID, g, pos)
		passing += left
		return rcs, retry, err
	})
	if err != nil {
		return receipts, retry, err
	}
	if passing > 0 {
		return receipts, true, fmt.Errorf("tencent: %d numbers refused for now, to be sent again", passing)
	}
	return receipts, false, nil
}

// errTimeout is the cause of a call cut short by Config.Timeout.
var errTimeout = errors.New("tencent: SendSms did not answer in time")

// send makes one SendSms call for positions pos of g. It returns the
// receipts, how many numbers were refused for now, and for a call that
// failed as a whole, whether to retry and the error.
func (t *Tencent) send(ctx context.Context, sessionContext string, g *group, pos []int) ([]channels.Receipt, int, bool, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, t.cfg.Timeout, errTimeout)
	defer cancel()
	numbers := make([]string, len(pos))
	where := make(map[string]int, len(pos)) // "+86…" → position
	for i, p := range pos {
		numbers[i] = "+86" + g.Phones[p]
		where[numbers[i]] = p
	}
	req := sms.NewSendSmsRequest()
	req.PhoneNumberSet = common.StringPtrs(numbers)
	req.SmsSdkAppId = common.StringPtr(t.cfg.SmsSdkAppID)
	req.SignName = common.StringPtr(t.cfg.SignName)
	req.TemplateId = common.StringPtr(t.cfg.TemplateID)
	req.TemplateParamSet = common.StringPtrs(g.Params)
	if sessionContext != "" {
		req.SessionContext = common.StringPtr(sessionContext)
	}
	tr := &tcapi.Transport{Ctx: ctx, HC: t.hc}
	resp, err := t.client(tr).SendSms(req)
	if err != nil {
		var sdkErr *tcerr.TencentCloudSDKError
		code, msg, reqID := "", err.Error(), ""
		if errors.As(err, &sdkErr) {
			code, msg, reqID = sdkErr.GetCode(), sdkErr.GetMessage(), sdkErr.GetRequestId()
		}
		switch {
		case tr.Err != nil || (tr.Status == 0 && strings.HasPrefix(code, "ClientError.")):
			cause := tr.Err
			if c := context.Cause(ctx); c != nil {
				cause = c
			}
			if cause == nil {
				cause = errors.New(msg)
			}
			return nil, 0, true, fmt.Errorf("tencent: SendSms: %w", cause)
		case strings.HasPrefix(code, "ClientError.") && tr.Status >= 200 && tr.Status < 300:
			// A 2xx we cannot read: Tencent has the messages, a retry
			// would send them twice.
			t.log.Warn("tencent: SendSms answer unreadable, taken as accepted", "status", tr.Status, "batch", sessionContext, "numbers", len(pos))
			out := make([]channels.Receipt, len(pos))
			for i, p := range pos {
				out[i] = g.Sent(p, "")
			}
			return out, 0, false, nil
		case strings.HasPrefix(code, "ClientError."):
			return nil, 0, tr.Status == http.StatusTooManyRequests || tr.Status >= 500,
				fmt.Errorf("tencent: SendSms answered HTTP %d", tr.Status)
		}
		return nil, 0, retryable(code), fmt.Errorf("tencent: SendSms answered %s: %s (request %s)", code, msg, reqID)
	}

	out := make([]channels.Receipt, 0, len(pos))
	answered := make(map[int]bool, len(pos))
	var passing int
	if resp.Response != nil {
		for _, st := range resp.Response.SendStatusSet {
			if st == nil || st.PhoneNumber == nil {
				continue
			}
			p, ok := where[*st.PhoneNumber]
			if !ok || answered[p] {
				continue
			}
			answered[p] = true
			code, msg := str(st.Code), str(st.Message)
			switch {
			case code == "Ok":
				out = append(out, g.Sent(p, str(st.SerialNo)))
			case retryable(code) || code == "LimitExceeded.PhoneNumberThirtySecondLimit":
				passing++
			default:
				out = append(out, g.Failed(p, code+": "+msg))
			}
		}
	}
	// A number the answer does not mention was handed over all the same.
	for _, p := range pos {
		if !answered[p] {
			out = append(out, g.Sent(p, ""))
		}
	}
	return out, passing, false, nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// retryable says whether a refusal by code may pass later.
func retryable(code string) bool {
	switch {
	case code == "RequestLimitExceeded", strings.HasPrefix(code, "RequestLimitExceeded."),
		code == "InternalError", strings.HasPrefix(code, "InternalError."),
		code == "ResourceUnavailable", code == "ServiceUnavailable",
		code == "FailedOperation.InsufficientBalanceInSmsPackage", // retry while someone tops up
		code == "AuthFailure.SignatureExpire":                     // a fresh timestamp next time
		return true
	}
	// AuthFailure.*, UnauthorizedOperation.*, FailedOperation.* (template or
	// signature not approved), InvalidParameter*, MissingParameter,
	// LimitExceeded.* and anything unknown.
	return false
}

// client returns an SDK client whose every request goes through tr.
func (t *Tencent) client(tr *tcapi.Transport) *sms.Client {
	return tcapi.Client(sms.NewClient, t.cfg.SecretID, string(t.cfg.SecretKey), t.cfg.Region, t.scheme, t.host, t.cfg.Timeout, tr)
}

// Phone returns addr as an 11-digit mainland mobile number, accepting a
// +86, 0086 or 86 prefix, and reports whether it is one.
func Phone(addr string) (string, bool) { return channels.MobilePhone(addr) }
