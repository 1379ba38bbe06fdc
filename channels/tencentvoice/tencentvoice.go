// Package tencentvoice calls officials through Tencent Cloud voice messages
// (VMS, API 2020-09-02) with the official SDK: SendTtsVoice plays an
// approved template (its text ends with the menu: 确认收到请按1，重听请按2)
// PlayTimes times. It takes Tencent's callbacks: the key presses
// (voicekey_callback), the call's end (voiceprompt_callback: answered or
// not, talk time, billed minutes) and why a call failed
// (voice_failure_callback). Calls go out as the account's lines come free,
// counted in Redis for every process (voice.Lines). It must not learn
// about queues, the ledger or policy.
//
// VMS cannot play the warning again on a key press: a 2 is recorded, and
// the call plays the warning PlayTimes times whatever the keys. Its
// callbacks name a call by its CallId and the number called: each call is
// kept in Redis (voice.Calls) with the delivery it is for, and a callback
// is taken only for a call the gateway placed, to that number.
package tencentvoice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	tcerr "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/errors"
	vms "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vms/v20200902"

	"warngate/channels"
	"warngate/channels/internal/tcapi"
	"warngate/channels/voice"
	"warngate/warning"
)

// API facts and defaults.
const (
	DefaultEndpoint  = "vms.tencentcloudapi.com"
	DefaultRegion    = "ap-guangzhou"
	DefaultPlayTimes = 2
	DefaultMaxCall   = 5 * time.Minute
	DefaultTimeout   = 30 * time.Second
	// MaxText is the most a call may say, in characters.
	MaxText = 350
	// Provider names the account's calls in Redis and its callbacks'
	// path: /callbacks/tencent_voice.
	Provider = "tencent_voice"
)

// Config is one Tencent Cloud voice message application.
type Config struct {
	// Endpoint is the API host, or a URL with a scheme (http://127.0.0.1:8082
	// for the fake). Default DefaultEndpoint over HTTPS.
	Endpoint string `yaml:"endpoint"`
	// Region is the API region. Default ap-guangzhou.
	Region string `yaml:"region"`
	// SecretID and SecretKey are a CAM key allowed to call
	// vms:SendTtsVoice. Like every secret here, SecretKey may be
	// ${ENV_VAR} or be given in a file (SecretKeyFile).
	SecretID      string          `yaml:"secret_id"`
	SecretKey     channels.Secret `yaml:"secret_key"`
	SecretKeyFile string          `yaml:"secret_key_file"`
	// VoiceSdkAppID is the voice application's SdkAppid, e.g. 1400006666.
	VoiceSdkAppID string `yaml:"voice_sdk_app_id"`
	// TemplateID is the approved template of the warning, whose text ends
	// with the menu, e.g. "{1}确认收到请按1，重听请按2。", and whose key
	// presses the console reports.
	TemplateID string `yaml:"template_id"`
	// NoticeTemplateID is the approved template of a call that asks
	// nothing (a lifted warning, an escalation), e.g. "{1}". Without it
	// such notices are not called.
	NoticeTemplateID string `yaml:"notice_template_id"`
	// TemplateParams names, in order, the part of the call for {1}, {2}, …
	// (see voice.Fields). Default [text].
	TemplateParams []string `yaml:"template_params"`
	// MaxParamChars bounds each parameter's value, as the template's
	// approval may. Zero means no limit; all of them together are cut to
	// MaxText.
	MaxParamChars int `yaml:"max_param_chars"`
	// PlayTimes is how many times the warning is played, 1 to 3. Default 2.
	PlayTimes int `yaml:"play_times"`
	// Lines is how many calls the application places at once, shared by
	// every process. Required.
	Lines int `yaml:"lines"`
	// MaxCall is how long a call holds its line when its end is never
	// reported. Default 5m.
	MaxCall time.Duration `yaml:"max_call"`
	// Timeout bounds one API call. Default DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CallbackToken is expected as ?token= in the callback URL set in the
	// console (…/callbacks/tencent_voice?token=…): Tencent's callbacks carry
	// no signature. Or CallbackTokenFile.
	CallbackToken     channels.Secret `yaml:"callback_token"`
	CallbackTokenFile string          `yaml:"callback_token_file"`
	// CallbackAllowFrom lists the addresses (CIDRs or IPs) callbacks may
	// come from. With both set, a callback must pass both; at least one is
	// required.
	CallbackAllowFrom []string `yaml:"callback_allow_from"`
}

// Tencent places calls through one Tencent Cloud voice application and
// takes its callbacks.
type Tencent struct {
	cfg    Config
	scheme string
	host   string
	auth   channels.CallbackAuth
	lines  *voice.Lines
	calls  *voice.Calls
	hc     *http.Client
	log    *slog.Logger
	now    func() time.Time
	acct   string
}

var (
	_ channels.Notifier       = (*Tencent)(nil)
	_ channels.ReportReceiver = (*Tencent)(nil)
)

// Check returns cfg with its defaults in and the resolved secret, or every
// problem of cfg, each naming its field and what to do.
func Check(cfg Config) (Config, string, channels.CallbackAuth, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.PlayTimes == 0 {
		cfg.PlayTimes = DefaultPlayTimes
	}
	if cfg.MaxCall == 0 {
		cfg.MaxCall = DefaultMaxCall
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if len(cfg.TemplateParams) == 0 {
		cfg.TemplateParams = []string{"text"}
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", Provider, field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := tcapi.Endpoint(cfg.Endpoint); err != nil {
		bad("endpoint", "%v: give a host such as %s, or a URL such as http://127.0.0.1:8082", err, DefaultEndpoint)
	}
	if strings.ContainsAny(cfg.Region, " /") {
		bad("region", "%q is not a region: use one such as ap-guangzhou", cfg.Region)
	}
	if cfg.SecretID == "" {
		bad("secret_id", "required: the SecretId of a CAM key allowed to call vms:SendTtsVoice")
	}
	secret, err := channels.ResolveSecret(Provider, "secret_key", cfg.SecretKey, cfg.SecretKeyFile, "that key's SecretKey")
	if err != nil {
		errs = append(errs, err)
	}
	if !channels.Digits(cfg.VoiceSdkAppID) {
		bad("voice_sdk_app_id", "%q: the voice application's SdkAppid, digits, e.g. 1400006666", cfg.VoiceSdkAppID)
	}
	if !channels.Digits(cfg.TemplateID) {
		bad("template_id", "%q: the approved template's id, digits, e.g. 1234567", cfg.TemplateID)
	}
	if cfg.NoticeTemplateID != "" && !channels.Digits(cfg.NoticeTemplateID) {
		bad("notice_template_id", "%q: an approved template's id, digits, e.g. 1234568, or leave it out", cfg.NoticeTemplateID)
	}
	for i, f := range cfg.TemplateParams {
		if !slices.Contains(voice.Fields, f) {
			bad(fmt.Sprintf("template_params[%d]", i), "%q: use one of %s", f, strings.Join(voice.Fields, ", "))
		}
	}
	if cfg.MaxParamChars < 0 {
		bad("max_param_chars", "%d is negative: use the template's limit per parameter, or 0 for none", cfg.MaxParamChars)
	}
	if cfg.PlayTimes < 1 || cfg.PlayTimes > 3 {
		bad("play_times", "%d: SendTtsVoice plays 1 to 3 times", cfg.PlayTimes)
	}
	if cfg.Lines < 1 || cfg.Lines > 10000 {
		bad("lines", "%d: how many calls the application places at once, 1 to 10000", cfg.Lines)
	}
	if cfg.MaxCall < time.Minute || cfg.MaxCall > time.Hour {
		bad("max_call", "%s: use 1m to 1h", cfg.MaxCall)
	}
	if cfg.Timeout < 0 {
		bad("timeout", "%s is negative: use a duration such as 30s", cfg.Timeout)
	}
	auth, aerrs := channels.NewCallbackAuth(Provider, cfg.CallbackToken, cfg.CallbackTokenFile, cfg.CallbackAllowFrom)
	errs = append(errs, aerrs...)
	return cfg, secret, auth, errors.Join(errs...)
}

// New checks cfg and returns the adapter. account names the provider
// account (its lines are counted under that name); rdb keeps lines and
// calls under keys starting with prefix.
func New(cfg Config, account string, rdb redis.UniversalClient, prefix string, hc *http.Client, log *slog.Logger) (*Tencent, error) {
	if hc == nil || rdb == nil {
		return nil, errors.New("tencent_voice: no HTTP client or Redis given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, secret, auth, err := Check(cfg)
	if err != nil {
		return nil, err
	}
	cfg.SecretKey, cfg.SecretKeyFile = channels.Secret(secret), ""
	scheme, host, _ := tcapi.Endpoint(cfg.Endpoint)
	return &Tencent{cfg: cfg, scheme: scheme, host: host, auth: auth,
		lines: voice.NewLines(rdb, prefix, nil), calls: voice.NewCalls(rdb, prefix, Provider, 0),
		hc: hc, log: log.With("provider", Provider, "account", account), now: time.Now, acct: account}, nil
}

// Lines returns the application's lines, for tests and figures.
func (t *Tencent) Lines() *voice.Lines { return t.lines }

// Params returns the template parameters for a call that says s: each cut
// to MaxParamChars, then the longest cut until they fit MaxText together.
func (t *Tencent) Params(s channels.Speech) []string {
	vals := make([]string, len(t.cfg.TemplateParams))
	total := 0
	for i, f := range t.cfg.TemplateParams {
		vals[i] = voice.Field(f, s)
		if t.cfg.MaxParamChars > 0 {
			vals[i] = channels.Truncate(vals[i], t.cfg.MaxParamChars)
		}
		total += len([]rune(vals[i]))
	}
	for over := total - (MaxText - len([]rune(channels.VoiceMenu))); over > 0; {
		longest := 0
		for i := range vals {
			if len([]rune(vals[i])) > len([]rune(vals[longest])) {
				longest = i
			}
		}
		n := len([]rune(vals[longest]))
		if n <= 1 {
			break
		}
		cut := max(1, n-over)
		vals[longest] = channels.Truncate(vals[longest], cut)
		over -= n - cut
	}
	return vals
}

// Notify implements channels.Notifier. Each recipient is called once by
// SendTtsVoice, as a line comes free and the number is in no other call.
// Each call placed is a Sent receipt whose ProviderID is its CallId; how it
// ends comes by callback. A number that is not a mainland mobile number,
// or that Tencent refuses (InvalidParameterValue.CalledNumberVerifyFail),
// fails without a call. A refusal of the application ends the batch: retry
// says whether it may pass later. When ctx ends first, the recipients not
// yet called have no receipt and retry is true.
func (t *Tencent) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	var phones []string
	var index []int
	for i, r := range b.Recipients {
		phone, ok := channels.MobilePhone(r.Address)
		if !ok {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: voice.InvalidNumber})
			continue
		}
		if !channels.Speak(b, r).AsksKey() && t.cfg.NoticeTemplateID == "" {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: "no notice template: set tencent_voice.notice_template_id to call notices that ask nothing"})
			continue
		}
		phones = append(phones, phone)
		index = append(index, i)
	}
	retry := false
	dial := voice.Dial{Lines: t.lines, Account: t.acct, N: t.cfg.Lines, TTL: t.cfg.MaxCall}
	_, err := dial.Each(ctx, phones, func(k int, lease voice.Lease) (bool, error) {
		rc, placed, again, err := t.place(ctx, b, index[k], lease)
		if err != nil {
			retry = again
			return false, err
		}
		receipts = append(receipts, rc)
		return placed, nil
	})
	if errors.Is(err, voice.ErrNoLine) {
		retry = true
	}
	if err != nil {
		return voice.Sorted(receipts), retry, err
	}
	return voice.Sorted(receipts), false, nil
}

// errTimeout is the cause of a call cut short by Config.Timeout.
var errTimeout = errors.New("tencent_voice: SendTtsVoice did not answer in time")

// place makes one call. It returns the recipient's receipt and whether the
// call was placed; an error is a refusal of the whole application, or a
// call that could not be made, with whether to retry.
func (t *Tencent) place(ctx context.Context, b *channels.Batch, i int, lease voice.Lease) (channels.Receipt, bool, bool, error) {
	s := channels.Speak(b, b.Recipients[i])
	req := vms.NewSendTtsVoiceRequest()
	req.TemplateId = common.StringPtr(t.cfg.TemplateID)
	if !s.AsksKey() {
		req.TemplateId = common.StringPtr(t.cfg.NoticeTemplateID)
	}
	req.CalledNumber = common.StringPtr("+86" + lease.Phone)
	req.VoiceSdkAppid = common.StringPtr(t.cfg.VoiceSdkAppID)
	req.TemplateParamSet = common.StringPtrs(t.Params(s))
	req.PlayTimes = common.Uint64Ptr(uint64(t.cfg.PlayTimes))
	req.SessionContext = common.StringPtr(lease.ID)

	cctx, cancel := context.WithTimeoutCause(ctx, t.cfg.Timeout, errTimeout)
	defer cancel()
	tr := &tcapi.Transport{Ctx: cctx, HC: t.hc}
	resp, err := tcapi.Client(vms.NewClient, t.cfg.SecretID, string(t.cfg.SecretKey), t.cfg.Region, t.scheme, t.host, t.cfg.Timeout, tr).SendTtsVoice(req)
	if err != nil {
		var sdkErr *tcerr.TencentCloudSDKError
		code, msg, reqID := "", err.Error(), ""
		if errors.As(err, &sdkErr) {
			code, msg, reqID = sdkErr.GetCode(), sdkErr.GetMessage(), sdkErr.GetRequestId()
		}
		switch {
		case tr.Err != nil || (tr.Status == 0 && strings.HasPrefix(code, "ClientError.")):
			cause := tr.Err
			if c := context.Cause(cctx); c != nil {
				cause = c
			}
			if cause == nil {
				cause = errors.New(msg)
			}
			return channels.Receipt{}, false, true, fmt.Errorf("tencent_voice: SendTtsVoice: %w", cause)
		case strings.HasPrefix(code, "ClientError.") && tr.Status >= 200 && tr.Status < 300:
			// A 2xx we cannot read: Tencent has the call, a retry would
			// call twice. Its callbacks will find no call.
			t.log.Warn("tencent_voice: answer unreadable, taken as placed", "status", tr.Status, "ref", b.Ref(i).String())
			return channels.Receipt{Index: i, State: warning.Sent}, true, false, nil
		case strings.HasPrefix(code, "ClientError."):
			return channels.Receipt{}, false, tr.Status == http.StatusTooManyRequests || tr.Status >= 500,
				fmt.Errorf("tencent_voice: SendTtsVoice answered HTTP %d", tr.Status)
		case code == "InvalidParameterValue.CalledNumberVerifyFail":
			return channels.Receipt{Index: i, State: warning.Failed, Reason: code + ": " + msg}, false, false, nil
		}
		return channels.Receipt{}, false, retryable(code), fmt.Errorf("tencent_voice: SendTtsVoice answered %s: %s (request %s)", code, msg, reqID)
	}
	callID := ""
	if resp.Response != nil && resp.Response.SendStatus != nil && resp.Response.SendStatus.CallId != nil {
		callID = *resp.Response.SendStatus.CallId
	}
	if callID == "" {
		t.log.Warn("tencent_voice: call placed without a CallId: its callbacks will find no call", "ref", b.Ref(i).String())
		return channels.Receipt{Index: i, State: warning.Sent}, true, false, nil
	}
	rec := voice.Record{CallID: callID, Ref: b.Ref(i), Lease: lease, Placed: t.now()}
	if err := t.calls.Put(context.WithoutCancel(ctx), rec); err != nil {
		t.log.Error("tencent_voice: call placed but not kept: its callbacks will not be taken", "call_id", callID, "err", err)
	}
	return channels.Receipt{Index: i, State: warning.Sent, ProviderID: callID}, true, false, nil
}

// retryable says whether a refusal by code may pass later.
func retryable(code string) bool {
	switch {
	case code == "RequestLimitExceeded", strings.HasPrefix(code, "RequestLimitExceeded."),
		code == "InternalError", strings.HasPrefix(code, "InternalError."),
		code == "ResourceUnavailable", code == "ServiceUnavailable",
		code == "FailedOperation.AccessUpstreamTimeout",
		code == "LimitExceeded.DeliveryFrequencyLimit",              // the number was called too often: it passes
		code == "FailedOperation.InsufficientBalanceInVoicePackage", // retry while someone tops up
		code == "UnauthorizedOperation.ServiceSuspendDueToArrears",
		code == "AuthFailure.SignatureExpire":
		return true
	}
	// AuthFailure.*, UnauthorizedOperation.*, FailedOperation.* (template
	// not approved, sensitive words, number not bought),
	// InvalidParameterValue.*, MissingParameter and anything unknown.
	return false
}

// Admits implements channels.Admitter: the callback carries this account's
// token, from an address it allows.
func (t *Tencent) Admits(r *http.Request) bool { return t.auth.Allow(r) }
