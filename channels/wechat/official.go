package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/credential"
	"github.com/silenceper/wechat/v2/officialaccount/message"
	"github.com/silenceper/wechat/v2/util"

	"warngate/channels"
	"warngate/warning"
)

// OfficialAccountConfig configures template messages from an official
// account (服务号) to residents who follow it. Recipient.Address is the
// resident's openid.
type OfficialAccountConfig struct {
	// BaseURL replaces https://api.weixin.qq.com, for a test or demo
	// server. Empty means WeChat itself. See the package comment: one
	// process has one base URL.
	BaseURL string `yaml:"base_url"`
	// AppID is the account's 开发者ID (AppID), e.g. wx1234567890abcdef.
	AppID string `yaml:"app_id"`
	// AppSecret is the account's 开发者密码 (AppSecret). Like every secret
	// here it may be ${ENV_VAR}, or be given in a file (AppSecretFile): see
	// channels.ResolveSecret.
	AppSecret     channels.Secret `yaml:"app_secret"`
	AppSecretFile string          `yaml:"app_secret_file"`
	// Token is the 服务器配置 Token that signs callbacks; or TokenFile.
	// Only the Receiver needs it.
	Token     channels.Secret `yaml:"token"`
	TokenFile string          `yaml:"token_file"`
	// EncodingAESKey is the 服务器配置 EncodingAESKey (43 characters), or
	// EncodingAESKeyFile names a file that holds it. Set it when the
	// account's message encryption is safe mode (安全模式) or compatible
	// mode (兼容模式): the Receiver then reads only encrypted events and
	// refuses plain ones. Only the Receiver needs it.
	EncodingAESKey     channels.Secret `yaml:"encoding_aes_key"`
	EncodingAESKeyFile string          `yaml:"encoding_aes_key_file"`
	// TemplateID is the approved template's id.
	TemplateID string `yaml:"template_id"`
	// Fields maps the parts of a message onto the template's data keys.
	Fields TemplateFields `yaml:"fields"`
	// Colors overrides the colour of the title and level by warning level
	// ("red": "#FF0000"). Missing levels keep the defaults.
	Colors map[string]string `yaml:"colors"`
	// DetailURL, when set, is the page a tap on the message opens; the
	// warning id is appended as ?w=<id>. It must be in the account's
	// configured business domain.
	DetailURL string `yaml:"detail_url"`
	// MaxValueRunes cuts every field value to this many characters (with
	// "…"); templates of the newer kind limit "thing" fields to 20. Zero
	// means no cut.
	MaxValueRunes int `yaml:"max_value_runes"`
	// Concurrency is how many template sends run at once (the API takes
	// one openid per call). Default 20.
	Concurrency int `yaml:"concurrency"`
	// KeyPrefix starts the Redis keys of the token cache. Default "wg:wechat:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one API call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// TemplateFields names the template data keys that carry each part of a
// message. An empty name leaves that part out.
type TemplateFields struct {
	Title       string `yaml:"title"`       // 【演练】五华区暴雨红色预警
	Level       string `yaml:"level"`       // 暴雨红色预警（Ⅰ级/特别严重）
	Body        string `yaml:"body"`        // the description
	Instruction string `yaml:"instruction"` // what to do
	Time        string `yaml:"time"`        // when issued, 2006-01-02 15:04 Beijing time
}

func (f TemplateFields) empty() bool { return f == TemplateFields{} }

// DefaultTemplateFields fit the classic template layout
// {{first.DATA}} {{keyword1.DATA}} {{keyword2.DATA}} {{remark.DATA}}.
var DefaultTemplateFields = TemplateFields{Title: "first", Level: "keyword1", Body: "keyword2", Instruction: "remark"}

// DefaultOfficialAccountConfig returns the defaults, to decode YAML over.
func DefaultOfficialAccountConfig() OfficialAccountConfig {
	return OfficialAccountConfig{Fields: DefaultTemplateFields, Concurrency: 20, KeyPrefix: "wg:wechat:", Timeout: 10 * time.Second}
}

// Default title colours by level.
var defaultColors = map[warning.Level]string{
	warning.Red:    "#FF0000",
	warning.Orange: "#FF8C00",
	warning.Yellow: "#D4A017",
	warning.Blue:   "#1E90FF",
}

var hexColor = regexp.MustCompile(`^#[0-9A-Fa-f]{6}$`)
var dataKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]*$`)

func (c *OfficialAccountConfig) fill() {
	d := DefaultOfficialAccountConfig()
	if c.Fields.empty() {
		c.Fields = d.Fields
	}
	if c.Concurrency == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = d.KeyPrefix
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
}

// colors checks the colour overrides and merges them with the defaults.
func parseColors(section string, in map[string]string) (map[warning.Level]string, []error) {
	out := map[warning.Level]string{}
	for l, c := range defaultColors {
		out[l] = c
	}
	var errs []error
	for k, v := range in {
		l, err := warning.ParseLevel(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.colors: %v", section, err))
			continue
		}
		if !hexColor.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s.colors.%s: %q is not a colour; write #RRGGBB, e.g. #FF0000", section, k, v))
			continue
		}
		out[l] = strings.ToUpper(v)
	}
	return out, errs
}

// OfficialAccount sends template messages to residents (channel wechat).
type OfficialAccount struct {
	cfg      OfficialAccountConfig
	hc       *http.Client
	log      *slog.Logger
	cache    *RedisCache
	tokens   credential.AccessTokenContextHandle
	tokenKey string
	sendURL  string
	red      *redactor
	colors   map[warning.Level]string
}

var (
	_ channels.Notifier = (*OfficialAccount)(nil)
	_ channels.Indexed  = (*OfficialAccount)(nil)
)

// NewOfficialAccount checks cfg and returns a notifier. Tokens are cached in
// rdb; hc makes every request, including the SDK's token requests.
func NewOfficialAccount(cfg OfficialAccountConfig, hc *http.Client, rdb redis.UniversalClient, log *slog.Logger) (*OfficialAccount, error) {
	const sec = "wechat.official_account"
	cfg.fill()
	var errs []error
	if hc == nil {
		errs = append(errs, errors.New("wechat: an *http.Client is required"))
	}
	if rdb == nil {
		errs = append(errs, errors.New("wechat: a Redis client is required for the token cache"))
	}
	if err := checkBaseURL(sec, cfg.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(cfg.AppID) == "" {
		errs = append(errs, fmt.Errorf("%s.app_id: required: the account's AppID (开发者ID), e.g. wx1234567890abcdef", sec))
	} else if strings.ContainsAny(cfg.AppID, " \t/?&") {
		errs = append(errs, fmt.Errorf("%s.app_id: %q has spaces or URL characters; copy the AppID exactly", sec, cfg.AppID))
	}
	secret, err := channels.ResolveSecret(sec, "app_secret", cfg.AppSecret, cfg.AppSecretFile, "the account's AppSecret (开发者密码)")
	if err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(cfg.TemplateID) == "" {
		errs = append(errs, fmt.Errorf("%s.template_id: required: the id of the approved warning template (模板ID)", sec))
	}
	for name, key := range map[string]string{"title": cfg.Fields.Title, "level": cfg.Fields.Level, "body": cfg.Fields.Body, "instruction": cfg.Fields.Instruction, "time": cfg.Fields.Time} {
		if key != "" && !dataKey.MatchString(key) {
			errs = append(errs, fmt.Errorf("%s.fields.%s: %q is not a template data key; write the name inside {{…DATA}}, e.g. keyword1", sec, name, key))
		}
	}
	if cfg.DetailURL != "" {
		if u, err := url.Parse(cfg.DetailURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s.detail_url: %q is not an http(s) URL", sec, cfg.DetailURL))
		}
	}
	if cfg.MaxValueRunes < 0 || (cfg.MaxValueRunes > 0 && cfg.MaxValueRunes < 2) {
		errs = append(errs, fmt.Errorf("%s.max_value_runes: %d; use 0 for no limit or at least 2", sec, cfg.MaxValueRunes))
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 500 {
		errs = append(errs, fmt.Errorf("%s.concurrency: %d; use 1 to 500", sec, cfg.Concurrency))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s; use a positive duration such as 10s", sec, cfg.Timeout))
	}
	colors, cerrs := parseColors(sec, cfg.Colors)
	errs = append(errs, cerrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("provider", "wechat")
	configureSDK(cfg.BaseURL, hc, log)
	c := NewRedisCache(rdb, cfg.KeyPrefix)
	red := &redactor{}
	red.add(secret)
	return &OfficialAccount{
		cfg:      cfg,
		hc:       hc,
		log:      log,
		cache:    c,
		tokens:   credential.NewDefaultAccessToken(cfg.AppID, secret, credential.CacheKeyOfficialAccountPrefix, c),
		tokenKey: fmt.Sprintf("%s_access_token_%s", credential.CacheKeyOfficialAccountPrefix, cfg.AppID),
		sendURL:  apiURL(cfg.BaseURL, OfficialAccountHost, "/cgi-bin/message/template/send"),
		red:      red,
		colors:   colors,
	}, nil
}

// Provider implements channels.Indexed: TEMPLATESENDJOBFINISH events name a
// message only by its msgid.
func (o *OfficialAccount) Provider() string { return "wechat" }

// Notify implements channels.Notifier. The API takes one openid per call, so
// the batch is sent with Config.Concurrency calls in flight; the first
// failure of the whole batch stops new calls, and the receipts of calls
// already answered are returned with it.
func (o *OfficialAccount) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if len(b.Recipients) == 0 {
		return nil, false, nil
	}
	var (
		mu  sync.Mutex
		out = make([]channels.Receipt, 0, len(b.Recipients))
	)
	p := newPool(o.cfg.Concurrency)
	for i := range b.Recipients {
		started := p.run(ctx, func() *batchError {
			r, err := o.sendOne(ctx, b, i)
			if err != nil {
				return err
			}
			mu.Lock()
			out = append(out, r)
			mu.Unlock()
			return nil
		})
		if !started {
			break
		}
	}
	berr := p.wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	if berr != nil {
		return out, berr.retry, fmt.Errorf("wechat: %w", berr)
	}
	return out, false, nil
}

// templateAnswer is the template send API's answer.
type templateAnswer struct {
	util.CommonError
	MsgID int64 `json:"msgid"`
}

// sendOne sends the message to the i-th recipient. A nil batchError means
// the recipient has a receipt (sent or failed for good).
func (o *OfficialAccount) sendOne(ctx context.Context, b *channels.Batch, i int) (channels.Receipt, *batchError) {
	r := b.Recipients[i]
	if strings.TrimSpace(r.Address) == "" {
		return channels.Receipt{Index: i, State: warning.Failed, Reason: "缺少openid"}, nil
	}
	msg := o.message(b, i)
	for attempt := 0; ; attempt++ {
		tok, err := accessToken(ctx, o.tokens, o.cfg.Timeout)
		if tok == "" {
			if err == nil {
				err = errors.New("empty access token")
			}
			return channels.Receipt{}, tokenError("template send", err, o.red)
		}
		res, be := postJSON(ctx, o.hc, o.cfg.Timeout, o.sendURL+"?access_token="+url.QueryEscape(tok), "template send", msg, o.red)
		if be != nil {
			return channels.Receipt{}, be
		}
		var ans templateAnswer
		if res.unreadable || json.Unmarshal(res.body, &ans) != nil {
			o.log.Warn("wechat: template send answered 2xx with an unreadable body; taken as sent", "warning_id", b.Warning.ID, "recipient_id", r.ID)
			return channels.Receipt{Index: i, State: warning.Sent}, nil
		}
		code := ans.ErrCode
		switch {
		case code == 0:
			return channels.Receipt{Index: i, State: warning.Sent, ProviderID: strconv.FormatInt(ans.MsgID, 10)}, nil
		case tokenInvalid(code):
			if attempt == 0 {
				if err := o.cache.dropToken(ctx, o.tokenKey, tok); err != nil {
					return channels.Receipt{}, retryable("template send: drop refused access token: %v", err)
				}
				continue
			}
			return channels.Receipt{}, retryable("template send: access token refused again after refreshing it (errcode %d)", code)
		}
		if reason, ok := templateRecipientFailure[code]; ok {
			return channels.Receipt{Index: i, State: warning.Failed, Reason: reason}, nil
		}
		text := o.red.clean(ans.ErrMsg)
		switch code {
		case -1, 45009, 45011, 45047:
			return channels.Receipt{}, retryable("template send: errcode %d: %s", code, text)
		case 40037, 47003, 40013, 41001, 40164, 48001, 40125, 40036, 41028:
			return channels.Receipt{}, permanent("template send: errcode %d: %s (check template_id, fields and the account's permissions)", code, text)
		}
		// Unknown codes concern this recipient; the next may go through.
		return channels.Receipt{Index: i, State: warning.Failed, Reason: fmt.Sprintf("微信错误%d：%s", code, text)}, nil
	}
}

// Codes that fail one recipient for good, with the reason operators read.
var templateRecipientFailure = map[int64]string{
	43004: "用户未关注公众号",
	40003: "无效的openid",
	43101: "用户拒收",
	43019: "用户已被加入黑名单",
}

// templateMessage is the template send request. The SDK's TemplateMessage
// always sends an empty miniprogram object; this one leaves it out.
type templateMessage struct {
	ToUser      string                               `json:"touser"`
	TemplateID  string                               `json:"template_id"`
	URL         string                               `json:"url,omitempty"`
	Data        map[string]*message.TemplateDataItem `json:"data"`
	ClientMsgID string                               `json:"client_msg_id,omitempty"`
}

// beijing is UTC+8, without needing the time zone database.
var beijing = time.FixedZone("CST", 8*3600)

// message builds the request for one resident: pure, so layout, colours and
// cuts are tested without a network. client_msg_id is stable per delivery,
// so a batch sent again within WeChat's de-duplication window (10 minutes)
// does not reach the resident twice.
func (o *OfficialAccount) message(b *channels.Batch, i int) templateMessage {
	r := b.Recipients[i]
	t := channels.Compose(b, r)
	w := b.Warning
	color := o.colors[w.Level]
	data := map[string]*message.TemplateDataItem{}
	put := func(key, value, color string) {
		if key == "" || value == "" {
			return
		}
		if o.cfg.MaxValueRunes > 0 {
			value = channels.Truncate(value, o.cfg.MaxValueRunes)
		}
		data[key] = &message.TemplateDataItem{Value: value, Color: color}
	}
	put(o.cfg.Fields.Title, t.Title, color)
	put(o.cfg.Fields.Level, t.Level, color)
	put(o.cfg.Fields.Body, t.Body, "")
	put(o.cfg.Fields.Instruction, t.Instruction, "")
	issued := w.Issued
	if issued.IsZero() {
		issued = w.Accepted
	}
	if !issued.IsZero() {
		put(o.cfg.Fields.Time, issued.In(beijing).Format("2006-01-02 15:04"), "")
	}
	m := templateMessage{
		ToUser:      r.Address,
		TemplateID:  o.cfg.TemplateID,
		Data:        data,
		ClientMsgID: refID(b.Ref(i).String() + "/" + string(b.Notice)),
	}
	if o.cfg.DetailURL != "" {
		if u, err := url.Parse(o.cfg.DetailURL); err == nil {
			q := u.Query()
			q.Set("w", w.ID)
			u.RawQuery = q.Encode()
			m.URL = u.String()
		}
	}
	return m
}
