// Package aliyun sends SMS through Alibaba Cloud SMS (dysmsapi, API
// version 2017-05-25): SendSms with up to 1000 numbers per call, signed by
// the V3 mechanism (ACS3-HMAC-SHA256), and takes the SmsReport delivery
// receipts Alibaba pushes to the gateway. It must not learn about queues,
// the ledger or policy.
//
// Alibaba sends only pre-approved templates. A bureau gets a template such
// as "${title}：${content}" approved (type 通知短信) together with its
// signature (e.g. 昆明市应急管理局), and configures how the warning fills the
// template's variables (Config.TemplateParams). One SendSms carries one
// TemplateParam for all its numbers, so recipients whose values differ (an
// official's confirmation link) go in calls of their own.
//
// A report names a message by BizId and phone number only: a receipt's
// ProviderID is "<BizId>:<phone>", and the dispatcher keeps the index
// (Provider "aliyun").
package aliyun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"warngate/channels"
	"warngate/channels/internal/acs3"
	"warngate/channels/internal/cloudsms"
	"warngate/warning"
)

// API facts and defaults.
const (
	DefaultEndpoint = "https://dysmsapi.aliyuncs.com"
	Action          = "SendSms"
	Version         = "2017-05-25"
	MaxBatch        = 1000 // numbers per SendSms
	DefaultTemplate = "${title}：${content}"
	DefaultMaxChars = 500 // a long SMS, signature included
	DefaultTimeout  = 30 * time.Second
)

// DefaultTemplateParams fills DefaultTemplate.
func DefaultTemplateParams() map[string]string {
	return map[string]string{"title": "title", "content": "content"}
}

// Config is one Alibaba Cloud SMS account.
type Config struct {
	// Endpoint is the API's address. Default DefaultEndpoint.
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID and AccessKeySecret are a RAM user's AccessKey with
	// permission for dysmsapi:SendSms. Like every secret here,
	// AccessKeySecret may be ${ENV_VAR}, or be given in a file
	// (AccessKeySecretFile): see channels.ResolveSecret.
	AccessKeyID         string          `yaml:"access_key_id"`
	AccessKeySecret     channels.Secret `yaml:"access_key_secret"`
	AccessKeySecretFile string          `yaml:"access_key_secret_file"`
	// SignName is the approved signature without brackets, e.g. 昆明市应急管理局.
	SignName string `yaml:"sign_name"`
	// TemplateCode is the approved template, e.g. SMS_123456789.
	TemplateCode string `yaml:"template_code"`
	// Template is the approved template's text, e.g. "${title}：${content}",
	// used to fit the message to MaxChars and count its parts. Default
	// DefaultTemplate; required when TemplateParams is set.
	Template string `yaml:"template"`
	// TemplateParams maps each ${variable} of the template to a field of the
	// warning (see Fields). Default {title: title, content: content}.
	TemplateParams map[string]string `yaml:"template_params"`
	// MaxChars bounds the whole message, signature included; the longest
	// value is cut to fit. Default DefaultMaxChars.
	MaxChars int `yaml:"max_chars"`
	// MaxParamChars bounds each variable's value, as the template's
	// approval may. Zero means no limit.
	MaxParamChars int `yaml:"max_param_chars"`
	// BatchSize is the most numbers per SendSms, 1 to 1000. Default 1000.
	BatchSize int `yaml:"batch_size"`
	// Timeout bounds one SendSms call. Default DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CallbackToken is expected as ?token= in the SmsReport push URL
	// configured in the console (…/callbacks/aliyun?token=…): Alibaba's
	// push carries no signature. Or CallbackTokenFile.
	CallbackToken     channels.Secret `yaml:"callback_token"`
	CallbackTokenFile string          `yaml:"callback_token_file"`
	// CallbackAllowFrom lists the addresses (CIDRs or IPs) pushes may come
	// from, checked against the connection's address. With both set, a push
	// must pass both; at least one is required.
	CallbackAllowFrom []string `yaml:"callback_allow_from"`
}

// Aliyun sends through one Alibaba Cloud SMS account and takes its reports.
type Aliyun struct {
	cfg      Config
	endpoint *url.URL
	tpl      *template
	reports  *cloudsms.Reports[report]
	hc       *http.Client
	log      *slog.Logger
}

var (
	_ channels.Notifier       = (*Aliyun)(nil)
	_ channels.Indexed        = (*Aliyun)(nil)
	_ channels.ReportReceiver = (*Aliyun)(nil)
	_ channels.SMSTexter      = (*Aliyun)(nil)
)

// New checks cfg and returns the adapter. Every problem of cfg is reported,
// each naming its field and what to do.
func New(cfg Config, hc *http.Client, log *slog.Logger) (*Aliyun, error) {
	if hc == nil {
		return nil, errors.New("aliyun: no HTTP client given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
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
		errs = append(errs, fmt.Errorf("aliyun.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	endpoint, err := url.Parse(cfg.Endpoint)
	if err != nil || (endpoint.Scheme != "https" && endpoint.Scheme != "http") || endpoint.Host == "" || endpoint.RawQuery != "" {
		bad("endpoint", "%q is not an http(s) address without a query: leave it out for %s", cfg.Endpoint, DefaultEndpoint)
	}
	if cfg.AccessKeyID == "" {
		bad("access_key_id", "required: the AccessKey ID of a RAM user allowed to call dysmsapi:SendSms")
	}
	secret, err := channels.ResolveSecret("aliyun", "access_key_secret", cfg.AccessKeySecret, cfg.AccessKeySecretFile, "that AccessKey's secret")
	if err != nil {
		errs = append(errs, err)
	}
	if err := cloudsms.CheckSignName(cfg.SignName); err != nil {
		bad("sign_name", "%v", err)
	}
	switch {
	case cfg.TemplateCode == "":
		bad("template_code", "required: the approved template's code, e.g. SMS_123456789")
	case !strings.HasPrefix(cfg.TemplateCode, "SMS_"):
		bad("template_code", "%q: a template code looks like SMS_123456789", cfg.TemplateCode)
	}
	cfg.Template, cfg.TemplateParams, err = cloudsms.TemplateOrDefault("aliyun", cfg.Template, cfg.TemplateParams, DefaultTemplate, DefaultTemplateParams)
	if err != nil {
		errs = append(errs, err)
	}
	tpl, terrs := newTemplate(cfg.Template, cfg.TemplateParams, cfg.SignName, cfg.MaxChars, cfg.MaxParamChars)
	errs = append(errs, terrs...)
	auth, err := cloudsms.Settings{Provider: "aliyun", PlaceholderWord: "variable",
		MaxChars: cfg.MaxChars, DefaultMaxChars: DefaultMaxChars, MaxParamChars: cfg.MaxParamChars,
		BatchSize: cfg.BatchSize, MaxBatch: MaxBatch, Timeout: cfg.Timeout,
		CallbackToken: cfg.CallbackToken, CallbackTokenFile: cfg.CallbackTokenFile, CallbackAllowFrom: cfg.CallbackAllowFrom,
	}.Check(errs)
	if err != nil {
		return nil, err
	}
	cfg.AccessKeySecret, cfg.AccessKeySecretFile = channels.Secret(secret), ""
	log = log.With("provider", "aliyun")
	return &Aliyun{cfg: cfg, endpoint: endpoint, tpl: tpl, reports: newReports(auth, log), hc: hc, log: log}, nil
}

// Provider implements channels.Indexed.
func (a *Aliyun) Provider() string { return "aliyun" }

// Message returns the TemplateParam values for a recipient and the text the
// phone will show, signature included.
func (a *Aliyun) Message(b *channels.Batch, r warning.Recipient) (map[string]string, string) {
	return a.tpl.render(channels.Compose(b, r))
}

// SMSText implements channels.SMSTexter: the template filled for r, as the
// phone shows it.
func (a *Aliyun) SMSText(b *channels.Batch, r warning.Recipient) string {
	_, text := a.Message(b, r)
	return text
}

// group is recipients sharing one TemplateParam (its JSON).
type group = cloudsms.Group[string]

// Notify implements channels.Notifier. Recipients are grouped by their
// TemplateParam and sent BatchSize numbers per SendSms, one call after the
// other; the first call that fails ends the batch, keeping the receipts of
// the calls before it. An invalid number fails without a call. When Alibaba
// refuses a call for an illegal number (isv.MOBILE_NUMBER_ILLEGAL), the call
// is halved until that number alone fails.
func (a *Aliyun) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts, groups := cloudsms.GroupRecipients(b, func(r warning.Recipient) (string, string, string) {
		vals, text := a.Message(b, r)
		js, _ := json.Marshal(vals) // map keys come sorted
		return string(js), string(js), text
	})
	return cloudsms.SendGroups(receipts, groups, a.cfg.BatchSize, func(g *group, pos []int) ([]channels.Receipt, bool, error) {
		return a.sendAll(ctx, b.ID, g, pos)
	})
}

// sendAll sends one chunk (positions in g), halving it on an illegal number.
func (a *Aliyun) sendAll(ctx context.Context, outID string, g *group, pos []int) ([]channels.Receipt, bool, error) {
	phones := make([]string, len(pos))
	for i, p := range pos {
		phones[i] = g.Phones[p]
	}
	res, err := a.call(ctx, phones, g.Params, outID)
	if err != nil {
		return nil, true, err
	}
	out := make([]channels.Receipt, 0, len(pos))
	switch {
	case res.unreadable:
		// A 2xx we cannot read: Alibaba has the messages, a retry would
		// send them twice. Reports will not find them (no BizId).
		a.log.Warn("aliyun: SendSms answer unreadable, taken as accepted", "status", res.status, "batch", outID, "numbers", len(pos))
		for _, p := range pos {
			out = append(out, g.Sent(p, ""))
		}
		return out, false, nil
	case res.Code == "OK":
		for i, p := range pos {
			out = append(out, g.Sent(p, res.BizID+":"+phones[i]))
		}
		return out, false, nil
	case res.Code == "isv.MOBILE_NUMBER_ILLEGAL":
		if len(pos) == 1 {
			return []channels.Receipt{g.Failed(pos[0], res.Code+": "+res.Message)}, false, nil
		}
		half := len(pos) / 2
		first, retry, err := a.sendAll(ctx, outID, g, pos[:half])
		if err != nil {
			return first, retry, err
		}
		second, retry, err := a.sendAll(ctx, outID, g, pos[half:])
		return append(first, second...), retry, err
	}
	return nil, retryable(res.status, res.Code), res.err()
}

// result is SendSms's answer.
type result struct {
	Code       string `json:"Code"`
	Message    string `json:"Message"`
	BizID      string `json:"BizId"`
	RequestID  string `json:"RequestId"`
	status     int
	unreadable bool
}

func (r *result) err() error {
	return fmt.Errorf("aliyun: SendSms answered HTTP %d %s: %s (request %s)", r.status, r.Code, r.Message, r.RequestID)
}

// errTimeout is the cause of a call cut short by Config.Timeout.
var errTimeout = errors.New("aliyun: SendSms did not answer in time")

// call makes one signed SendSms call. Its error is a transport error, never
// with the secret in it: the secret signs, it never travels.
func (a *Aliyun) call(ctx context.Context, phones []string, param, outID string) (*result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, a.cfg.Timeout, errTimeout)
	defer cancel()
	q := url.Values{}
	q.Set("PhoneNumbers", strings.Join(phones, ","))
	q.Set("SignName", a.cfg.SignName)
	q.Set("TemplateCode", a.cfg.TemplateCode)
	q.Set("TemplateParam", param)
	if outID != "" {
		q.Set("OutId", outID)
	}
	u := *a.endpoint
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery = CanonicalQuery(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("aliyun: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("x-acs-action", Action)
	req.Header.Set("x-acs-version", Version)
	req.Header.Set("x-acs-date", time.Now().UTC().Format("2006-01-02T15:04:05Z"))
	req.Header.Set("x-acs-signature-nonce", nonce())
	req.Header.Set("x-acs-content-sha256", hashHex(nil))
	signRequest(req, a.cfg.AccessKeyID, string(a.cfg.AccessKeySecret))
	resp, err := a.hc.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, fmt.Errorf("aliyun: SendSms: %w", cause)
		}
		return nil, fmt.Errorf("aliyun: SendSms: %w", redact(err))
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res := &result{status: resp.StatusCode}
	if rerr != nil || json.Unmarshal(body, res) != nil || res.Code == "" {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			res.unreadable = true
			return res, nil
		}
		res.Code, res.Message = "(none)", channels.FirstLine(string(body))
	}
	return res, nil
}

// redact drops the query (numbers, message) from the URL net/http puts in
// its errors.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return ue.Err
	}
	u.RawQuery = ""
	return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
}

func nonce() string { return acs3.Nonce() }

// retryable says whether a SendSms refusal may pass later. Alibaba's codes
// decide where they are known; otherwise 5xx and 429 retry and the rest
// does not.
func retryable(status int, code string) bool {
	switch code {
	case "isv.BUSINESS_LIMIT_CONTROL", // per-number or account flow control
		"Throttling.User", "Throttling", "Throttling.Api", "ServiceUnavailable",
		"isp.SYSTEM_ERROR", "isp.RAM_PERMISSION_DENY_UNEXPECTED", "InternalError",
		"isv.AMOUNT_NOT_ENOUGH", // the account needs topping up: retry while someone does
		"SignatureNonceUsed":    // a fresh nonce next time
		return true
	case "isv.MOBILE_NUMBER_ILLEGAL", "isv.SMS_TEMPLATE_ILLEGAL", "isv.SMS_SIGNATURE_ILLEGAL",
		"isv.INVALID_PARAMETERS", "isv.MOBILE_COUNT_OVER_LIMIT", "isv.TEMPLATE_MISSING_PARAMETERS",
		"isv.INVALID_JSON_PARAM", "isv.PARAM_LENGTH_LIMIT", "isv.DAY_LIMIT_CONTROL",
		"SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
		"Forbidden.RAM", "IncompleteSignature", "InvalidTimeStamp.Expired":
		return false
	}
	if strings.HasPrefix(code, "isp.") || strings.HasPrefix(code, "Throttling") {
		return true
	}
	return status == http.StatusTooManyRequests || status >= 500
}

// Phone returns addr as an 11-digit mainland mobile number, accepting a
// +86, 0086 or 86 prefix, and reports whether it is one.
func Phone(addr string) (string, bool) { return channels.MobilePhone(addr) }
