package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/credential"
	"github.com/silenceper/wechat/v2/work/message"

	"warngate/channels"
	"warngate/warning"
)

// WorkConfig configures application messages from a WeCom (企业微信) app to
// officials. Recipient.Address is the member's userid.
type WorkConfig struct {
	// BaseURL replaces https://qyapi.weixin.qq.com, for a test or demo
	// server. Empty means WeCom itself. See the package comment: one process
	// has one base URL.
	BaseURL string `yaml:"base_url"`
	// CorpID is the 企业ID, e.g. ww1234567890abcdef.
	CorpID string `yaml:"corp_id"`
	// CorpSecret is the app's Secret; or ${ENV_VAR}, or CorpSecretFile
	// (see channels.ResolveSecret).
	CorpSecret     channels.Secret `yaml:"corp_secret"`
	CorpSecretFile string          `yaml:"corp_secret_file"`
	// AgentID is the app's AgentId, e.g. 1000002.
	AgentID int64 `yaml:"agent_id"`
	// MemberLimit is how many messages one member may get in a minute.
	// WeCom drops, without an error, what an app sends to a member beyond
	// 30 a minute, so the notifier counts in Redis and holds back members
	// over the limit (retry later). Default 30; -1 turns counting off.
	MemberLimit int `yaml:"member_limit"`
	// ReportAccepted makes accepted messages count as delivered. WeCom
	// pushes no delivery report for app messages: once it accepts a message
	// it is in the member's app, and nothing later would move the delivery
	// on from "sent". The official's acknowledgement is the real receipt and
	// is recorded elsewhere. DefaultWorkConfig sets it true.
	ReportAccepted bool `yaml:"report_accepted"`
	// ButtonText is the text card's button, at most 4 characters. Default 确认收到.
	ButtonText string `yaml:"button_text"`
	// Concurrency is how many send calls run at once. Officials' messages
	// differ by their confirmation links, so most calls carry one member.
	// Default 20.
	Concurrency int `yaml:"concurrency"`
	// KeyPrefix starts the Redis keys of the token cache and the member
	// counters. Default "wg:wecom:".
	KeyPrefix string `yaml:"key_prefix"`
	// Timeout bounds one API call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultWorkConfig returns the defaults, to decode YAML over.
func DefaultWorkConfig() WorkConfig {
	return WorkConfig{MemberLimit: 30, ReportAccepted: true, ButtonText: "确认收到", Concurrency: 20, KeyPrefix: "wg:wecom:", Timeout: 10 * time.Second}
}

func (c *WorkConfig) fill() {
	d := DefaultWorkConfig()
	if c.MemberLimit == 0 {
		c.MemberLimit = d.MemberLimit
	}
	if c.ButtonText == "" {
		c.ButtonText = d.ButtonText
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

// WeCom limits.
const (
	MaxUsersPerCall   = 1000
	maxTextBytes      = 2048
	maxCardTitleBytes = 128
	maxCardDescBytes  = 512
	// duplicateWindow is WeCom's duplicate check interval for our messages:
	// the same content to the same member within it is sent once, so a
	// batch sent again after a lost answer does not reach anyone twice.
	duplicateWindow = 1800
)

// Work sends application messages to officials (channel wecom).
type Work struct {
	cfg      WorkConfig
	hc       *http.Client
	rdb      redis.UniversalClient
	log      *slog.Logger
	cache    *RedisCache
	tokens   credential.AccessTokenContextHandle
	tokenKey string
	sendURL  string
	red      *redactor
}

var _ channels.Notifier = (*Work)(nil)

// NewWork checks cfg and returns a notifier. Tokens and member counters live
// in rdb; hc makes every request.
func NewWork(cfg WorkConfig, hc *http.Client, rdb redis.UniversalClient, log *slog.Logger) (*Work, error) {
	const sec = "wechat.work"
	cfg.fill()
	var errs []error
	if hc == nil {
		errs = append(errs, errors.New("wecom: an *http.Client is required"))
	}
	if rdb == nil {
		errs = append(errs, errors.New("wecom: a Redis client is required for the token cache and member counters"))
	}
	if err := checkBaseURL(sec, cfg.BaseURL); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(cfg.CorpID) == "" {
		errs = append(errs, fmt.Errorf("%s.corp_id: required: the 企业ID from 我的企业 → 企业信息, e.g. ww1234567890abcdef", sec))
	} else if strings.ContainsAny(cfg.CorpID, " \t/?&") {
		errs = append(errs, fmt.Errorf("%s.corp_id: %q has spaces or URL characters; copy the 企业ID exactly", sec, cfg.CorpID))
	}
	secret, err := channels.ResolveSecret(sec, "corp_secret", cfg.CorpSecret, cfg.CorpSecretFile, "the app's Secret (应用管理 → the app → Secret)")
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.AgentID <= 0 {
		errs = append(errs, fmt.Errorf("%s.agent_id: required: the app's AgentId, a positive number such as 1000002", sec))
	}
	if cfg.MemberLimit < -1 {
		errs = append(errs, fmt.Errorf("%s.member_limit: %d; use a positive number (WeCom allows 30 a minute) or -1 to stop counting", sec, cfg.MemberLimit))
	}
	if n := utf8.RuneCountInString(cfg.ButtonText); n > 4 {
		errs = append(errs, fmt.Errorf("%s.button_text: %q has %d characters; WeCom allows at most 4", sec, cfg.ButtonText, n))
	}
	if cfg.Concurrency < 1 || cfg.Concurrency > 500 {
		errs = append(errs, fmt.Errorf("%s.concurrency: %d; use 1 to 500", sec, cfg.Concurrency))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%s.timeout: %s; use a positive duration such as 10s", sec, cfg.Timeout))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("provider", "wecom")
	configureSDK(cfg.BaseURL, hc, log)
	c := NewRedisCache(rdb, cfg.KeyPrefix)
	red := &redactor{}
	red.add(secret)
	agent := strconv.FormatInt(cfg.AgentID, 10)
	return &Work{
		cfg:      cfg,
		hc:       hc,
		rdb:      rdb,
		log:      log,
		cache:    c,
		tokens:   credential.NewWorkAccessToken(cfg.CorpID, secret, agent, credential.CacheKeyWorkPrefix, c),
		tokenKey: fmt.Sprintf("%s_access_token_%s_%s", credential.CacheKeyWorkPrefix, cfg.CorpID, agent),
		sendURL:  apiURL(cfg.BaseURL, WorkHost, "/cgi-bin/message/send"),
		red:      red,
	}, nil
}

// ErrMemberLimit is returned (with retry) when some members already had
// Config.MemberLimit messages this minute; they were not sent to.
var ErrMemberLimit = errors.New("members over the per-minute message limit; try them later")

// Notify implements channels.Notifier. Recipients with the same message go
// in one call of up to 1000 members. Members over the per-minute limit are
// held back: they are missing from the receipts and the error says retry.
func (wk *Work) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if len(b.Recipients) == 0 {
		return nil, false, nil
	}
	var out []channels.Receipt
	var send []int
	for i, r := range b.Recipients {
		if strings.TrimSpace(r.Address) == "" || strings.Contains(r.Address, "|") {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "无效的企业微信用户"})
			continue
		}
		send = append(send, i)
	}
	send, held := wk.admit(ctx, b, send)

	groups := wk.group(b, send)
	var mu sync.Mutex
	p := newPool(wk.cfg.Concurrency)
	for _, g := range groups {
		for start := 0; start < len(g.idx); start += MaxUsersPerCall {
			chunk := g.idx[start:min(start+MaxUsersPerCall, len(g.idx))]
			started := p.run(ctx, func() *batchError {
				rs, err := wk.sendCall(ctx, b, g.msg, chunk)
				mu.Lock()
				out = append(out, rs...)
				mu.Unlock()
				return err
			})
			if !started {
				break
			}
		}
	}
	berr := p.wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	switch {
	case berr != nil:
		return out, berr.retry, fmt.Errorf("wecom: %w", berr)
	case held > 0:
		return out, true, fmt.Errorf("wecom: %d %w (%d a minute)", held, ErrMemberLimit, wk.cfg.MemberLimit)
	}
	return out, false, nil
}

// limitScript admits each member whose counter is under ARGV[1] and counts
// the message; counters expire ARGV[2] seconds after the first message of
// their window. 1 means admitted, 0 held back.
var limitScript = redis.NewScript(`
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local out = {}
for i, k in ipairs(KEYS) do
  local n = tonumber(redis.call('GET', k) or '0')
  if n >= limit then
    out[i] = 0
  else
    if redis.call('INCR', k) == 1 then redis.call('EXPIRE', k, ttl) end
    out[i] = 1
  end
end
return out`)

// memberKey is the Redis counter of one member of this app. The hash tag
// keeps all of an app's counters in one Redis Cluster slot, so one script
// call can check a whole batch.
func (wk *Work) memberKey(userid string) string {
	return wk.cfg.KeyPrefix + "rate:{" + strconv.FormatInt(wk.cfg.AgentID, 10) + "}:" + strings.ToLower(userid)
}

// admit counts a message for each member in idx and returns those under the
// limit and how many were held back. When Redis does not answer, everyone
// is admitted: a warning to an official matters more than WeCom's limit.
func (wk *Work) admit(ctx context.Context, b *channels.Batch, idx []int) ([]int, int) {
	if wk.cfg.MemberLimit < 0 || len(idx) == 0 {
		return idx, 0
	}
	keys := make([]string, len(idx))
	for j, i := range idx {
		keys[j] = wk.memberKey(b.Recipients[i].Address)
	}
	res, err := limitScript.Run(ctx, wk.rdb, keys, wk.cfg.MemberLimit, 60).Int64Slice()
	if err != nil || len(res) != len(idx) {
		wk.log.Warn("wecom: member counters unavailable; sending without the per-minute limit", "warning_id", b.Warning.ID, "err", err)
		return idx, 0
	}
	var ok []int
	for j, i := range idx {
		if res[j] == 1 {
			ok = append(ok, i)
		}
	}
	return ok, len(idx) - len(ok)
}

// group puts recipients with the same message together, in batch order.
func (wk *Work) group(b *channels.Batch, idx []int) []*workGroup {
	var groups []*workGroup
	byKey := map[string]*workGroup{}
	for _, i := range idx {
		m := wk.message(b, b.Recipients[i])
		k := m.key()
		g := byKey[k]
		if g == nil {
			g = &workGroup{msg: m}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, i)
	}
	return groups
}

type workGroup struct {
	msg workMessage
	idx []int
}

// workMessage is the content of an app message: a text card with the
// confirmation link when there is one, else text.
type workMessage struct {
	MsgType  string    `json:"msgtype"`
	Text     *textBody `json:"text,omitempty"`
	TextCard *textCard `json:"textcard,omitempty"`
}

type textBody struct {
	Content string `json:"content"`
}

type textCard struct {
	Title       string `json:"title"`
	Description string `json:"description"`
	URL         string `json:"url"`
	BtnTxt      string `json:"btntxt,omitempty"`
}

func (m workMessage) key() string {
	if m.TextCard != nil {
		return "c\x00" + m.TextCard.Title + "\x00" + m.TextCard.Description + "\x00" + m.TextCard.URL
	}
	return "t\x00" + m.Text.Content
}

// message builds one official's message: pure, so limits are tested without
// a network.
func (wk *Work) message(b *channels.Batch, r warning.Recipient) workMessage {
	t := channels.Compose(b, r)
	if t.AckURL == "" {
		return workMessage{MsgType: "text", Text: &textBody{Content: truncBytes(t.Plain(), maxTextBytes)}}
	}
	desc := html.EscapeString(t.Level)
	if t.Body != "" {
		desc += "\n" + html.EscapeString(t.Body)
	}
	if t.Instruction != "" {
		desc += "\n防御指引：" + html.EscapeString(t.Instruction)
	}
	return workMessage{MsgType: "textcard", TextCard: &textCard{
		Title:       truncBytes(html.EscapeString(t.Title), maxCardTitleBytes),
		Description: truncBytes(desc, maxCardDescBytes),
		URL:         t.AckURL,
		BtnTxt:      wk.cfg.ButtonText,
	}}
}

// truncBytes cuts s to at most n bytes on a character boundary, ending with
// "…" when cut, and never inside an HTML entity.
func truncBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	s = s[:cut]
	if amp := strings.LastIndexByte(s, '&'); amp >= 0 && !strings.Contains(s[amp:], ";") {
		s = s[:amp]
	}
	return s + "…"
}

// workRequest is the app message send request. agentid is a number, as
// WeCom documents it (the SDK's SendRequestCommon sends a string).
type workRequest struct {
	ToUser                 string `json:"touser"`
	AgentID                int64  `json:"agentid"`
	EnableDuplicateCheck   int    `json:"enable_duplicate_check"`
	DuplicateCheckInterval int    `json:"duplicate_check_interval"`
	workMessage
}

// sendCall sends one message to the members in idx. It returns receipts for
// everyone in idx unless the whole call failed.
func (wk *Work) sendCall(ctx context.Context, b *channels.Batch, m workMessage, idx []int) ([]channels.Receipt, *batchError) {
	users := make([]string, 0, len(idx))
	seen := map[string]bool{}
	for _, i := range idx {
		u := b.Recipients[i].Address
		if !seen[strings.ToLower(u)] {
			seen[strings.ToLower(u)] = true
			users = append(users, u)
		}
	}
	req := workRequest{
		ToUser:                 strings.Join(users, "|"),
		AgentID:                wk.cfg.AgentID,
		EnableDuplicateCheck:   1,
		DuplicateCheckInterval: duplicateWindow,
		workMessage:            m,
	}
	accepted := warning.Sent
	if wk.cfg.ReportAccepted {
		accepted = warning.Delivered
	}
	for attempt := 0; ; attempt++ {
		tok, err := accessToken(ctx, wk.tokens, wk.cfg.Timeout)
		if tok == "" {
			if err == nil {
				err = errors.New("empty access token")
			}
			return nil, tokenError("message send", err, wk.red)
		}
		res, be := postJSON(ctx, wk.hc, wk.cfg.Timeout, wk.sendURL+"?access_token="+url.QueryEscape(tok), "message send", req, wk.red)
		if be != nil {
			return nil, be
		}
		var ans message.SendResponse
		if res.unreadable || json.Unmarshal(res.body, &ans) != nil {
			wk.log.Warn("wecom: message send answered 2xx with an unreadable body; taken as accepted", "warning_id", b.Warning.ID, "members", len(users))
			out := make([]channels.Receipt, len(idx))
			for j, i := range idx {
				out[j] = channels.Receipt{Index: i, State: accepted}
			}
			return out, nil
		}
		code := ans.ErrCode
		switch {
		case code == 0:
			invalid := memberSet(ans.InvalidUser)
			unlicensed := memberSet(ans.UnlicensedUser)
			out := make([]channels.Receipt, len(idx))
			for j, i := range idx {
				u := b.Recipients[i].Address
				switch {
				case invalid[strings.ToLower(u)]:
					out[j] = channels.Receipt{Index: i, State: warning.Failed, Reason: "无效的企业微信用户"}
				case unlicensed[strings.ToLower(u)]:
					out[j] = channels.Receipt{Index: i, State: warning.Failed, Reason: "成员没有接口许可"}
				default:
					out[j] = channels.Receipt{Index: i, State: accepted, ProviderID: ans.MsgID + ":" + u}
				}
			}
			return out, nil
		case code == 81013:
			// user & party & tag all invalid
			out := make([]channels.Receipt, len(idx))
			for j, i := range idx {
				out[j] = channels.Receipt{Index: i, State: warning.Failed, Reason: "无效的企业微信用户"}
			}
			return out, nil
		case tokenInvalid(code):
			if attempt == 0 {
				if err := wk.cache.dropToken(ctx, wk.tokenKey, tok); err != nil {
					return nil, retryable("message send: drop refused access token: %v", err)
				}
				continue
			}
			return nil, retryable("message send: access token refused again after refreshing it (errcode %d)", code)
		}
		text := wk.red.clean(ans.ErrMsg)
		switch code {
		case -1, 45009, 45033, 45047:
			return nil, retryable("message send: errcode %d: %s", code, text)
		}
		return nil, permanent("message send: errcode %d: %s (check agent_id, the app's visible range and IP allowlist)", code, text)
	}
}

// memberSet reads WeCom's "|"-joined member lists; WeCom lower-cases them.
func memberSet(list string) map[string]bool {
	if list == "" {
		return nil
	}
	m := map[string]bool{}
	for _, u := range strings.Split(list, "|") {
		if u = strings.TrimSpace(u); u != "" {
			m[strings.ToLower(u)] = true
		}
	}
	return m
}
