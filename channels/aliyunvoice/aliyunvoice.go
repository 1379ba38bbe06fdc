// Package aliyunvoice calls officials through Alibaba Cloud's voice service
// (dyvmsapi, API version 2017-05-25), signed by the V3 mechanism like the
// SMS adapter: IvrCall plays an approved text-to-speech template with a key
// menu (1 confirms receipt, 2 plays the warning again); SingleCallByTts
// plays a notice that asks nothing (a lifted warning, an escalation). It
// takes the pushes of the call's key presses (VoiceCallReport, status
// 300000) and of its end (VoiceReport). Calls go out as the account's lines
// come free, counted in Redis for every process (voice.Lines). It must not
// learn about queues, the ledger or policy.
//
// Each call is kept in Redis (voice.Calls) under its CallId, with the
// delivery it is for and the random id sent as its OutId: a push is taken
// only for a call the gateway placed and with that OutId, a key press "1"
// confirms once, and a call's end is recorded once.
package aliyunvoice

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/channels/internal/acs3"
	"warngate/channels/voice"
	"warngate/warning"
)

// API facts and defaults.
const (
	DefaultEndpoint   = "https://dyvmsapi.aliyuncs.com"
	Version           = "2017-05-25"
	DefaultPlayTimes  = 2
	DefaultKeyTimeout = 8 * time.Second
	DefaultMaxCall    = 5 * time.Minute
	DefaultTimeout    = 30 * time.Second
	// Provider names the account's calls in Redis and its callbacks'
	// path: /callbacks/aliyun_voice.
	Provider = "aliyun_voice"
)

// Config is one Alibaba Cloud voice account.
type Config struct {
	// Endpoint is the API's address. Default DefaultEndpoint.
	Endpoint string `yaml:"endpoint"`
	// AccessKeyID and AccessKeySecret are a RAM user's AccessKey allowed
	// dyvms:IvrCall and dyvms:SingleCallByTts. Like every secret here,
	// AccessKeySecret may be ${ENV_VAR} or be given in a file
	// (AccessKeySecretFile): see channels.ResolveSecret.
	AccessKeyID         string          `yaml:"access_key_id"`
	AccessKeySecret     channels.Secret `yaml:"access_key_secret"`
	AccessKeySecretFile string          `yaml:"access_key_secret_file"`
	// CalledShowNumber is the number bought in the voice console that the
	// officials see (主叫号码), e.g. 057112345678.
	CalledShowNumber string `yaml:"called_show_number"`
	// TtsCode is the approved text-to-speech template of the warning, e.g.
	// TTS_123456789, approved with the menu in its text, e.g.
	// "${text}确认收到请按1，重听请按2。".
	TtsCode string `yaml:"tts_code"`
	// ConfirmCode is the approved template played after the key press 1,
	// e.g. "已确认收到，谢谢，再见。". Required.
	ConfirmCode string `yaml:"confirm_code"`
	// NoticeCode is the approved template of a call that asks nothing (a
	// lifted warning, an escalation), e.g. "${text}". Without it such
	// notices are not called.
	NoticeCode string `yaml:"notice_code"`
	// TemplateParams maps each ${variable} of the templates to a part of
	// the call (see voice.Fields). Default {text: text}.
	TemplateParams map[string]string `yaml:"template_params"`
	// MaxParamChars bounds each variable's value, as the template's
	// approval may. Zero means no limit.
	MaxParamChars int `yaml:"max_param_chars"`
	// PlayTimes is how many times the warning is played, 1 to 3. Default 2.
	PlayTimes int `yaml:"play_times"`
	// KeyTimeout is how long the call waits for a key. Default 8s.
	KeyTimeout time.Duration `yaml:"key_timeout"`
	// Lines is how many calls the account places at once (its
	// concurrency), shared by every process. Required.
	Lines int `yaml:"lines"`
	// MaxCall is how long a call holds its line when its end is never
	// pushed. Default 5m.
	MaxCall time.Duration `yaml:"max_call"`
	// Timeout bounds one API call. Default DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// CallbackToken is expected as ?token= in the push URL configured for
	// VoiceReport and VoiceCallReport (…/callbacks/aliyun_voice?token=…):
	// Alibaba's push carries no signature. Or CallbackTokenFile.
	CallbackToken     channels.Secret `yaml:"callback_token"`
	CallbackTokenFile string          `yaml:"callback_token_file"`
	// CallbackAllowFrom lists the addresses (CIDRs or IPs) pushes may come
	// from. With both set, a push must pass both; at least one is required.
	CallbackAllowFrom []string `yaml:"callback_allow_from"`
}

// Aliyun places calls through one Alibaba Cloud voice account and takes
// its pushes.
type Aliyun struct {
	cfg      Config
	account  string
	endpoint *url.URL
	auth     channels.CallbackAuth
	lines    *voice.Lines
	calls    *voice.Calls
	hc       *http.Client
	log      *slog.Logger
	now      func() time.Time
	params   []string // template variables, sorted
}

var (
	_ channels.Notifier       = (*Aliyun)(nil)
	_ channels.ReportReceiver = (*Aliyun)(nil)
)

// Check returns cfg with its defaults in and the resolved secret, or every
// problem of cfg, each naming its field and what to do.
func Check(cfg Config) (Config, string, channels.CallbackAuth, error) {
	if cfg.Endpoint == "" {
		cfg.Endpoint = DefaultEndpoint
	}
	if cfg.PlayTimes == 0 {
		cfg.PlayTimes = DefaultPlayTimes
	}
	if cfg.KeyTimeout == 0 {
		cfg.KeyTimeout = DefaultKeyTimeout
	}
	if cfg.MaxCall == 0 {
		cfg.MaxCall = DefaultMaxCall
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if len(cfg.TemplateParams) == 0 {
		cfg.TemplateParams = map[string]string{"text": "text"}
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", Provider, field, fmt.Sprintf(format, args...)))
	}
	if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		bad("endpoint", "%q is not an http(s) address without a query: leave it out for %s", cfg.Endpoint, DefaultEndpoint)
	}
	if cfg.AccessKeyID == "" {
		bad("access_key_id", "required: the AccessKey ID of a RAM user allowed to call dyvms:IvrCall and dyvms:SingleCallByTts")
	}
	secret, err := channels.ResolveSecret(Provider, "access_key_secret", cfg.AccessKeySecret, cfg.AccessKeySecretFile, "that AccessKey's secret")
	if err != nil {
		errs = append(errs, err)
	}
	if n, ok := channels.MainlandNumber(cfg.CalledShowNumber); ok {
		cfg.CalledShowNumber = n
	} else {
		bad("called_show_number", "%q is not a mainland number: give the number bought in the voice console that officials see, e.g. 057112345678", cfg.CalledShowNumber)
	}
	for field, code := range map[string]string{"tts_code": cfg.TtsCode, "confirm_code": cfg.ConfirmCode} {
		if !strings.HasPrefix(code, "TTS_") {
			bad(field, "%q: an approved text-to-speech template's code, e.g. TTS_123456789", code)
		}
	}
	if cfg.NoticeCode != "" && !strings.HasPrefix(cfg.NoticeCode, "TTS_") {
		bad("notice_code", "%q: an approved text-to-speech template's code, e.g. TTS_123456789, or leave it out", cfg.NoticeCode)
	}
	for _, v := range sortedKeys(cfg.TemplateParams) {
		if f := cfg.TemplateParams[v]; !slices.Contains(voice.Fields, f) {
			bad("template_params."+v, "%q: use one of %s", f, strings.Join(voice.Fields, ", "))
		}
	}
	if cfg.MaxParamChars < 0 {
		bad("max_param_chars", "%d is negative: use the template's limit per variable, or 0 for none", cfg.MaxParamChars)
	}
	if cfg.PlayTimes < 1 || cfg.PlayTimes > 3 {
		bad("play_times", "%d: IvrCall plays 1 to 3 times", cfg.PlayTimes)
	}
	if cfg.KeyTimeout < time.Second || cfg.KeyTimeout > time.Minute {
		bad("key_timeout", "%s: use 1s to 1m", cfg.KeyTimeout)
	}
	if cfg.Lines < 1 || cfg.Lines > 10000 {
		bad("lines", "%d: how many calls the account places at once (its concurrency), 1 to 10000", cfg.Lines)
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
func New(cfg Config, account string, rdb redis.UniversalClient, prefix string, hc *http.Client, log *slog.Logger) (*Aliyun, error) {
	if hc == nil || rdb == nil {
		return nil, errors.New("aliyun_voice: no HTTP client or Redis given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, secret, auth, err := Check(cfg)
	if err != nil {
		return nil, err
	}
	cfg.AccessKeySecret, cfg.AccessKeySecretFile = channels.Secret(secret), ""
	endpoint, _ := url.Parse(cfg.Endpoint)
	return &Aliyun{cfg: cfg, account: account, endpoint: endpoint, auth: auth,
		lines: voice.NewLines(rdb, prefix, nil), calls: voice.NewCalls(rdb, prefix, Provider, 0),
		hc: hc, log: log.With("provider", Provider, "account", account), now: time.Now,
		params: sortedKeys(cfg.TemplateParams)}, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Lines returns the account's lines, for tests and figures.
func (a *Aliyun) Lines() *voice.Lines { return a.lines }

// Params returns the template variables for a call that says s, as JSON.
func (a *Aliyun) Params(s channels.Speech) string {
	vals := make(map[string]string, len(a.params))
	for _, v := range a.params {
		val := voice.Field(a.cfg.TemplateParams[v], s)
		if a.cfg.MaxParamChars > 0 {
			val = channels.Truncate(val, a.cfg.MaxParamChars)
		}
		vals[v] = val
	}
	js, _ := json.Marshal(vals)
	return string(js)
}

// Notify implements channels.Notifier. Each recipient is called once, as a
// line comes free and the number is in no other call: by IvrCall when the
// call asks for a key, by SingleCallByTts otherwise (only with NoticeCode).
// Each call placed is a Sent receipt whose ProviderID is its CallId; how it
// ends comes by push. A number that is not a mainland mobile number, or
// that Alibaba refuses (isv.MOBILE_NUMBER_ILLEGAL), fails without a call.
// A refusal of the account (a flow control, a bad template, the balance)
// ends the batch: retry says whether it may pass later. When ctx ends
// first, the recipients not yet called have no receipt and retry is true.
func (a *Aliyun) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	var phones []string
	var index []int
	for i, r := range b.Recipients {
		phone, ok := channels.MobilePhone(r.Address)
		if !ok {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: voice.InvalidNumber})
			continue
		}
		if !channels.Speak(b, r).AsksKey() && a.cfg.NoticeCode == "" {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: "no notice template: set aliyun_voice.notice_code to call notices that ask nothing"})
			continue
		}
		phones = append(phones, phone)
		index = append(index, i)
	}
	retry := false
	dial := voice.Dial{Lines: a.lines, Account: a.account, N: a.cfg.Lines, TTL: a.cfg.MaxCall}
	_, err := dial.Each(ctx, phones, func(k int, lease voice.Lease) (bool, error) {
		i := index[k]
		rc, placed, again, err := a.place(ctx, b, i, lease)
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

// place makes one call. It returns the recipient's receipt and whether the
// call was placed; an error is a refusal of the whole account, or a call
// that could not be made, with whether to retry.
func (a *Aliyun) place(ctx context.Context, b *channels.Batch, i int, lease voice.Lease) (channels.Receipt, bool, bool, error) {
	r := b.Recipients[i]
	s := channels.Speak(b, r)
	q := url.Values{}
	q.Set("CalledShowNumber", a.cfg.CalledShowNumber)
	q.Set("CalledNumber", lease.Phone)
	q.Set("PlayTimes", strconv.Itoa(a.cfg.PlayTimes))
	q.Set("OutId", lease.ID)
	params := a.Params(s)
	action := "IvrCall"
	if s.AsksKey() {
		q.Set("StartCode", a.cfg.TtsCode)
		q.Set("StartTtsParams", params)
		q.Set("Timeout", strconv.FormatInt(a.cfg.KeyTimeout.Milliseconds(), 10))
		q.Set("MenuKeyMap.1.Key", "1")
		q.Set("MenuKeyMap.1.Code", a.cfg.ConfirmCode)
		q.Set("MenuKeyMap.2.Key", "2")
		q.Set("MenuKeyMap.2.Code", a.cfg.TtsCode)
		q.Set("MenuKeyMap.2.TtsParams", params)
	} else {
		action = "SingleCallByTts"
		q.Set("TtsCode", a.cfg.NoticeCode)
		q.Set("TtsParam", params)
	}
	res, err := a.call(ctx, action, q)
	if err != nil {
		return channels.Receipt{}, false, true, err
	}
	switch {
	case res.unreadable:
		// A 2xx we cannot read: Alibaba has the call, a retry would call
		// twice. Its pushes will find no call: its line comes free when
		// MaxCall runs out.
		a.log.Warn("aliyun_voice: answer unreadable, taken as placed", "action", action, "status", res.status, "ref", b.Ref(i).String())
		return channels.Receipt{Index: i, State: warning.Sent}, true, false, nil
	case res.Code == "OK" && res.CallID != "":
		rec := voice.Record{CallID: res.CallID, Ref: b.Ref(i), Lease: lease, Placed: a.now()}
		if err := a.calls.Put(context.WithoutCancel(ctx), rec); err != nil {
			a.log.Error("aliyun_voice: call placed but not kept: its pushes will not be taken", "call_id", res.CallID, "err", err)
		}
		return channels.Receipt{Index: i, State: warning.Sent, ProviderID: res.CallID}, true, false, nil
	case res.Code == "isv.MOBILE_NUMBER_ILLEGAL":
		return channels.Receipt{Index: i, State: warning.Failed, Reason: res.Code + ": " + res.Message}, false, false, nil
	}
	return channels.Receipt{}, false, retryable(res.status, res.Code), res.err(action)
}

// result is IvrCall's and SingleCallByTts's answer.
type result struct {
	Code       string `json:"Code"`
	Message    string `json:"Message"`
	CallID     string `json:"CallId"`
	RequestID  string `json:"RequestId"`
	status     int
	unreadable bool
}

func (r *result) err(action string) error {
	return fmt.Errorf("aliyun_voice: %s answered HTTP %d %s: %s (request %s)", action, r.status, r.Code, r.Message, r.RequestID)
}

// errTimeout is the cause of a call cut short by Config.Timeout.
var errTimeout = errors.New("aliyun_voice: the API did not answer in time")

// call makes one signed API call. Its error is a transport error, never
// with the secret in it: the secret signs, it never travels.
func (a *Aliyun) call(ctx context.Context, action string, q url.Values) (*result, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, a.cfg.Timeout, errTimeout)
	defer cancel()
	u := *a.endpoint
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery = acs3.CanonicalQuery(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("aliyun_voice: build request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("x-acs-action", action)
	req.Header.Set("x-acs-version", Version)
	req.Header.Set("x-acs-date", time.Now().UTC().Format("2006-01-02T15:04:05Z"))
	req.Header.Set("x-acs-signature-nonce", acs3.Nonce())
	req.Header.Set("x-acs-content-sha256", acs3.HashHex(nil))
	acs3.Sign(req, a.cfg.AccessKeyID, string(a.cfg.AccessKeySecret))
	resp, err := a.hc.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, fmt.Errorf("aliyun_voice: %s: %w", action, cause)
		}
		return nil, fmt.Errorf("aliyun_voice: %s: %w", action, redact(err))
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

// redact drops the query (the number called, the warning) from the URL
// net/http puts in its errors.
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

// retryable says whether a refusal may pass later. Alibaba's codes decide
// where they are known; otherwise 5xx and 429 retry and the rest does not.
func retryable(status int, code string) bool {
	switch code {
	case "isv.BUSINESS_LIMIT_CONTROL", // flow control: per callee 1/min, 5/h, 20/day unless raised
		"Throttling.User", "Throttling", "Throttling.Api", "ServiceUnavailable",
		"isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR", "InternalError", "isv.VOICE_CALL_FAIL",
		"isv.AMOUNT_NOT_ENOUGH", "isv.OUT_OF_SERVICE", // the account needs topping up: retry while someone does
		"SignatureNonceUsed":
		return true
	case "isv.TTS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
		"isv.TEMPLATE_PARAMS_ILLEGAL", "isv.BLACK_KEY_CONTROL_LIMIT", "isv.DISPLAY_NUMBER_ILLEGAL",
		"isv.INVALID_PARAMETERS", "isv.PARAM_LENGTH_LIMIT", "isv.PRODUCT_UNSUBSCRIBE", "isv.PRODUCT_UN_SUBSCRIPT",
		"isv.ACCOUNT_NOT_EXISTS", "isv.ACCOUNT_ABNORMAL", "isp.RAM_PERMISSION_DENY", "isv.BILLID_NOT_EXIST",
		"SignatureDoesNotMatch", "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive",
		"IncompleteSignature", "InvalidTimeStamp.Expired", "Forbidden.RAM":
		return false
	}
	if strings.HasPrefix(code, "isp.") || strings.HasPrefix(code, "Throttling") {
		return true
	}
	return status == http.StatusTooManyRequests || status >= 500
}

// Admits implements channels.Admitter: the push carries this account's
// token, from an address it allows.
func (a *Aliyun) Admits(r *http.Request) bool { return a.auth.Allow(r) }
