// Package screen shows warnings on outdoor LED screens through a vendor
// cloud, modelled on NovaStar's VNNOX open API (NovaCloud): the single-page
// emergency insertion (紧急插播) POST /v2/player/emergency-program/page with
// playerIds, attribute {spotsType IMMEDIATELY, normalProgramStatus PAUSE,
// duration in ms, backgroundColor} and a page {name, widgets} of ARCH_TEXT
// widgets (lines of textAttributes: content, fontSize, textColor, isBold);
// its cancel, POST /v2/player/emergency-program/cancel with playerIds; the
// answer {"success": [...], "fail": [...]} by player id; and the common
// headers AppKey, Nonce, CurTime (unix seconds) and CheckSum =
// hex(SHA-256(AppSecret + Nonce + CurTime)).
//
// VNNOX gives an insertion no id of its own, so the page name is a task id
// derived from the batch; a receipt's ProviderID is "<task>:<player>". A
// player in "fail" is taken as offline (屏幕离线); a player in neither list
// is unknown to the account (设备不存在). Play reports arrive as pushed play
// logs signed with the same headers (see Receiver).
//
// The package must not learn about queues, the ledger or policy.
package screen

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// Config configures one screen cloud account. Recipient.Address is the
// player id.
type Config struct {
	// Endpoint is the service domain, e.g. https://open-cn.vnnox.com.
	Endpoint string `yaml:"endpoint"`
	// AppKey is the account's AK.
	AppKey string `yaml:"app_key"`
	// AppSecret is the account's AS; or ${ENV_VAR}, or AppSecretFile (see
	// channels.ResolveSecret).
	AppSecret     channels.Secret `yaml:"app_secret"`
	AppSecretFile string          `yaml:"app_secret_file"`
	// Duration is how long a warning stays on screen, cut at the warning's
	// expiry. Default 30m.
	Duration time.Duration `yaml:"duration"`
	// Colors overrides the background by level ("red": "#C00000"); text is
	// white, black on yellow.
	Colors map[string]string `yaml:"colors"`
	// Timeout bounds one call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the defaults, to decode YAML over.
func DefaultConfig() Config {
	return Config{Duration: 30 * time.Minute, Timeout: 10 * time.Second}
}

// MaxPlayersPerCall is how many players one insertion names.
const MaxPlayersPerCall = 100

var defaultBackground = map[warning.Level]string{
	warning.Red:    "#FF0000",
	warning.Orange: "#FF8C00",
	warning.Yellow: "#FFD700",
	warning.Blue:   "#0050FF",
}

var hexColor = regexp.MustCompile(`^#[0-9A-Fa-f]{6}$`)

// Screen sends batches of players to the cloud (channel screen).
type Screen struct {
	cfg    Config
	secret string
	hc     *http.Client
	log    *slog.Logger
	base   string
	colors map[warning.Level]string
	now    channels.Clock
}

var (
	_ channels.Notifier = (*Screen)(nil)
	_ channels.Indexed  = (*Screen)(nil)
)

// New checks cfg and returns a notifier.
func New(cfg Config, hc *http.Client, log *slog.Logger) (*Screen, error) {
	d := DefaultConfig()
	if cfg.Duration == 0 {
		cfg.Duration = d.Duration
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = d.Timeout
	}
	var errs []error
	if hc == nil {
		errs = append(errs, errors.New("screen: an *http.Client is required"))
	}
	if cfg.Endpoint == "" {
		errs = append(errs, errors.New("screen.endpoint: required: the cloud's service domain, e.g. https://open-cn.vnnox.com"))
	} else if u, err := url.Parse(cfg.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		errs = append(errs, fmt.Errorf("screen.endpoint: %q is not an http(s) URL without a query", cfg.Endpoint))
	}
	if strings.TrimSpace(cfg.AppKey) == "" {
		errs = append(errs, errors.New("screen.app_key: required: the AppKey (AK) from the NovaCloud open platform"))
	}
	secret, err := cfg.appSecret()
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.Duration < time.Minute || cfg.Duration > 24*time.Hour {
		errs = append(errs, fmt.Errorf("screen.duration: %s; use 1m to 24h", cfg.Duration))
	}
	if cfg.Timeout < 0 {
		errs = append(errs, fmt.Errorf("screen.timeout: %s; use a positive duration such as 10s", cfg.Timeout))
	}
	colors := map[warning.Level]string{}
	for l, c := range defaultBackground {
		colors[l] = c
	}
	for k, v := range cfg.Colors {
		l, err := warning.ParseLevel(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("screen.colors: %v", err))
			continue
		}
		if !hexColor.MatchString(v) {
			errs = append(errs, fmt.Errorf("screen.colors.%s: %q is not a colour; write #RRGGBB, e.g. #FF0000", k, v))
			continue
		}
		colors[l] = strings.ToUpper(v)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Screen{cfg: cfg, secret: secret, hc: hc, log: log.With("provider", "screen"), base: strings.TrimRight(cfg.Endpoint, "/"), colors: colors, now: time.Now}, nil
}

// appSecret resolves the AppSecret, given inline, as ${ENV_VAR} or in
// app_secret_file.
func (c Config) appSecret() (string, error) {
	return channels.ResolveSecret("screen", "app_secret", c.AppSecret, c.AppSecretFile, "the AppSecret (AS) paired with app_key")
}

// Provider implements channels.Indexed: play logs name a task and a player.
func (s *Screen) Provider() string { return "screen" }

// CheckSum is VNNOX's request signature: hex(SHA-256(secret + nonce + curTime)).
func CheckSum(secret, nonce, curTime string) string {
	sum := sha256.Sum256([]byte(secret + nonce + curTime))
	return hex.EncodeToString(sum[:])
}

// Wire format.

type insertion struct {
	PlayerIDs []string  `json:"playerIds"`
	Attribute attribute `json:"attribute"`
	Page      page      `json:"page"`
}

type attribute struct {
	SpotsType           string `json:"spotsType"`
	NormalProgramStatus string `json:"normalProgramStatus"`
	Duration            int64  `json:"duration"` // ms
	BackgroundColor     string `json:"backgroundColor,omitempty"`
}

type page struct {
	Name    string   `json:"name"`
	Widgets []widget `json:"widgets"`
}

type widget struct {
	Type            string `json:"type"`
	ZIndex          int    `json:"zIndex"`
	Duration        int64  `json:"duration"`
	Layout          layout `json:"layout"`
	DisplayType     string `json:"displayType"`
	BackgroundColor string `json:"backgroundColor,omitempty"`
	Lines           []line `json:"lines"`
}

type layout struct {
	X      string `json:"x"`
	Y      string `json:"y"`
	Width  string `json:"width"`
	Height string `json:"height"`
}

type line struct {
	TextAttributes []textAttribute `json:"textAttributes"`
}

type textAttribute struct {
	Content   string `json:"content"`
	FontSize  int    `json:"fontSize"`
	TextColor string `json:"textColor"`
	IsBold    bool   `json:"isBold"`
}

type playerIDs struct {
	PlayerIDs []string `json:"playerIds"`
}

type result struct {
	Success []string `json:"success"`
	Fail    []string `json:"fail"`
}

// TaskID is the stable task id (page name) of a batch's insertion.
func TaskID(b *channels.Batch) string {
	h := fnv.New64a()
	io.WriteString(h, b.ID+"/"+string(b.Notice))
	return "wg-" + strconv.FormatUint(h.Sum64(), 36)
}

// program builds the insertion's attribute and page: pure, so layout and
// colours are tested without a network.
func (s *Screen) program(b *channels.Batch, duration time.Duration) (attribute, page) {
	w := b.Warning
	t := channels.Compose(b, b.Recipients[0])
	bg := s.colors[w.Level]
	fg := "#FFFFFF"
	if w.Level == warning.Yellow {
		fg = "#000000"
	}
	ms := duration.Milliseconds()
	var lines []line
	add := func(text string, size int, bold bool) {
		if text != "" {
			lines = append(lines, line{TextAttributes: []textAttribute{{Content: text, FontSize: size, TextColor: fg, IsBold: bold}}})
		}
	}
	add(t.Title, 48, true)
	add(t.Level, 36, true)
	add(t.Body, 28, false)
	if t.Instruction != "" {
		add("防御指引："+t.Instruction, 28, false)
	}
	return attribute{SpotsType: "IMMEDIATELY", NormalProgramStatus: "PAUSE", Duration: ms, BackgroundColor: bg},
		page{Name: TaskID(b), Widgets: []widget{{
			Type: "ARCH_TEXT", ZIndex: 1, Duration: ms, DisplayType: "STATIC", BackgroundColor: bg,
			Layout: layout{X: "0%", Y: "0%", Width: "100%", Height: "100%"},
			Lines:  lines,
		}}}
}

// Notify implements channels.Notifier: one insertion per 100 players. When
// a later call fails, the receipts of the players already taken are
// returned with the error.
func (s *Screen) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if len(b.Recipients) == 0 {
		return nil, false, nil
	}
	now := s.now()
	duration := s.cfg.Duration
	if !b.Warning.Expires.IsZero() {
		if left := b.Warning.Expires.Sub(now).Truncate(time.Second); left < duration {
			duration = left
		}
	}
	if duration < time.Second {
		return nil, false, fmt.Errorf("screen: warning %s has expired; nothing to show", b.Warning.ID)
	}
	var out []channels.Receipt
	byPlayer := map[string][]int{}
	var players []string
	for i, r := range b.Recipients {
		if strings.TrimSpace(r.Address) == "" {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "设备不存在"})
			continue
		}
		if byPlayer[r.Address] == nil {
			players = append(players, r.Address)
		}
		byPlayer[r.Address] = append(byPlayer[r.Address], i)
	}
	sort.Strings(players)
	attr, pg := s.program(b, duration)
	task := pg.Name
	for start := 0; start < len(players); start += MaxPlayersPerCall {
		chunk := players[start:min(start+MaxPlayersPerCall, len(players))]
		var res result
		ok, retry, err := s.call(ctx, "/v2/player/emergency-program/page", insertion{PlayerIDs: chunk, Attribute: attr, Page: pg}, &res)
		if err != nil {
			sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
			return out, retry, err
		}
		if !ok {
			s.log.Warn("screen: insertion answered 2xx with an unreadable body; taken as sent", "warning_id", b.Warning.ID)
			res.Success = chunk
		}
		okSet, failSet := set(res.Success), set(res.Fail)
		for _, p := range chunk {
			for _, i := range byPlayer[p] {
				switch {
				case okSet[p]:
					out = append(out, channels.Receipt{Index: i, State: warning.Sent, ProviderID: task + ":" + p})
				case failSet[p]:
					out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "屏幕离线"})
				default:
					out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "设备不存在"})
				}
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, false, nil
}

func set(list []string) map[string]bool {
	m := make(map[string]bool, len(list))
	for _, v := range list {
		m[v] = true
	}
	return m
}

// Cancel takes the emergency insertion off the players (the player ids of a
// task's receipts: see SplitProviderID). Players that did not take the
// cancel make the error retryable.
func (s *Screen) Cancel(ctx context.Context, players []string) (retry bool, err error) {
	if len(players) == 0 {
		return false, nil
	}
	var failed int
	for start := 0; start < len(players); start += MaxPlayersPerCall {
		chunk := players[start:min(start+MaxPlayersPerCall, len(players))]
		var res result
		ok, retry, err := s.call(ctx, "/v2/player/emergency-program/cancel", playerIDs{PlayerIDs: chunk}, &res)
		if err != nil {
			return retry, err
		}
		if ok {
			failed += len(res.Fail)
		}
	}
	if failed > 0 {
		return true, fmt.Errorf("screen: cancel: %d of %d players did not take it", failed, len(players))
	}
	return false, nil
}

// SplitProviderID splits a receipt's ProviderID into task and player id.
func SplitProviderID(id string) (task, player string) {
	task, player, _ = strings.Cut(id, ":")
	return task, player
}

var errTimeout = errors.New("screen: cloud call timed out")

// sign sets VNNOX's authentication headers.
func (s *Screen) sign(h http.Header) error {
	nb := make([]byte, 8)
	if _, err := rand.Read(nb); err != nil {
		return err
	}
	nonce := hex.EncodeToString(nb)
	cur := strconv.FormatInt(s.now().Unix(), 10)
	h.Set("AppKey", s.cfg.AppKey)
	h.Set("Nonce", nonce)
	h.Set("CurTime", cur)
	h.Set("CheckSum", CheckSum(s.secret, nonce, cur))
	return nil
}

// call posts v to path and decodes a 2xx answer into out; ok is false when
// a 2xx body could not be read (the cloud took the request).
func (s *Screen) call(ctx context.Context, path string, v, out any) (ok, retry bool, err error) {
	body, err := json.Marshal(v)
	if err != nil {
		return false, false, fmt.Errorf("screen: %s: encode: %w", path, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.Timeout, errTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+path, bytes.NewReader(body))
	if err != nil {
		return false, false, fmt.Errorf("screen: %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if err := s.sign(req.Header); err != nil {
		return false, false, fmt.Errorf("screen: %s: sign: %w", path, err)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return false, true, fmt.Errorf("screen: %s: %w", path, err)
	}
	defer resp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return false, true, fmt.Errorf("screen: %s: cloud answered %s", path, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return false, false, fmt.Errorf("screen: %s: cloud answered %s: check app_key and app_secret, and the account's API permissions", path, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return false, false, fmt.Errorf("screen: %s: cloud answered %s: %s", path, resp.Status, snippet(raw))
	}
	if rerr != nil || json.Unmarshal(raw, out) != nil {
		return false, false, nil
	}
	return true, false, nil
}

func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
