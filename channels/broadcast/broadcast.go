// Package broadcast plays warnings on loudspeakers through a county
// emergency-broadcast platform (县级应急广播平台), and takes the platform's
// play-status callbacks as delivery reports.
//
// No public Go client exists and each platform wraps the national message in
// its own HTTP API, so the adapter speaks the national emergency-broadcast
// message (GY/T 385-2023, which replaced the GD/J 082/089-2018 drafts) as
// JSON over HTTPS: an EBD envelope (EBDVersion, EBDID, EBDType, SRC.EBRID,
// EBDTime) around an EBM with MsgBasicInfo (MsgType 1 = play, 2 = cancel,
// SenderName, SenderCode, SentTime, EventType, Severity, StartTime, EndTime),
// MsgContent (LanguageCode, MsgTitle, MsgDesc as the TTS text, AreaCode),
// the target terminals' resource ids (EBRID) and RelatedEBM for a cancel.
// Play count and priority, which the message format leaves to the platform,
// travel in Params. Play status comes back per terminal with GD/J's
// BrdStateCode (0 未处理, 1 等待播发, 2 播发中, 3 播发成功, 4 播发失败,
// 5 播发取消). Real platforms sign with SM2 (the 数字签名 spec); this
// package signs with HMAC-SHA256 under a shared key instead, behind the
// Signer interface where SM2 can be added.
//
// The package must not learn about queues, the ledger or policy.
package broadcast

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// Config configures one county platform. Recipient.Address is a terminal's
// resource id (EBRID) on the platform, Recipient.Division its division.
type Config struct {
	// Endpoint is the platform's API base; messages are POSTed to
	// <endpoint>/ebm. E.g. https://eb.wuhua.example/api/v1.
	Endpoint string `yaml:"endpoint"`
	// PlatformID is warngate's resource id (EBRID) as registered with the
	// platform; it is the EBD's SRC and signs every request.
	PlatformID string `yaml:"platform_id"`
	// SenderName is MsgBasicInfo.SenderName. Default 昆明市应急管理局.
	SenderName string `yaml:"sender_name"`
	// SenderCode is the issuing unit's code (预警信息发布单位代码), e.g.
	// 53010000000000; optional.
	SenderCode string `yaml:"sender_code"`
	// Key is the shared signing key; or ${ENV_VAR}, or KeyFile (see
	// channels.ResolveSecret).
	Key     channels.Secret `yaml:"key"`
	KeyFile string          `yaml:"key_file"`
	// Priority maps levels (red, orange, yellow, blue) to the platform's
	// priority, 1 being the most urgent. Default red 1 … blue 4.
	Priority map[string]int `yaml:"priority"`
	// DefaultRepeat is how many times a message plays when the batch says
	// nothing. Default 1.
	DefaultRepeat int `yaml:"default_repeat"`
	// EventTypes overrides the EventType code by hazard name
	// (rainstorm: "11B03"). Check the defaults against the platform's table.
	EventTypes map[string]string `yaml:"event_types"`
	// Timeout bounds one call. Default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultConfig returns the defaults, to decode YAML over.
func DefaultConfig() Config {
	return Config{SenderName: "昆明市应急管理局", DefaultRepeat: 1, Timeout: 10 * time.Second}
}

// DefaultEventTypes are GB/T 35965.1-style 突发事件类别 codes (11B = weather,
// 11A = flood and drought, 11C = earthquake, 11D = geological, 11H = forest
// and grassland fire). They follow the national classification as far as it
// was available when this was written; verify them against the county
// platform's code table and override with event_types.
var DefaultEventTypes = map[warning.Hazard]string{
	warning.Typhoon: "11B01", warning.Rainstorm: "11B03", warning.Snowstorm: "11B04",
	warning.ColdWave: "11B05", warning.Gale: "11B06", warning.Sandstorm: "11B07",
	warning.Heat: "11B09", warning.Lightning: "11B14", warning.Hail: "11B15",
	warning.Frost: "11B16", warning.Fog: "11B17", warning.Haze: "11B19",
	warning.RoadIcing: "11B21", warning.Drought: "11B22",
	warning.Flood: "11A01", warning.FlashFlood: "11A01",
	warning.Earthquake: "11C00", warning.GeoHazard: "11D00", warning.ForestFire: "11H01",
	warning.OtherHazard: "10000",
}

// Severity codes of MsgBasicInfo: 1 特别重大 … 4 一般.
var severity = map[warning.Level]int{warning.Red: 1, warning.Orange: 2, warning.Yellow: 3, warning.Blue: 4}

// Broadcast sends batches of terminals to one platform (channel broadcast).
type Broadcast struct {
	cfg      Config
	hc       *http.Client
	signer   Signer
	log      *slog.Logger
	url      string
	priority map[warning.Level]int
	events   map[warning.Hazard]string
	now      channels.Clock
}

var (
	_ channels.Notifier = (*Broadcast)(nil)
	_ channels.Indexed  = (*Broadcast)(nil)
)

// New checks cfg and returns a notifier. signer nil means HMAC-SHA256 under
// cfg.Key; an SM2 signer needs no key.
func New(cfg Config, hc *http.Client, signer Signer, log *slog.Logger) (*Broadcast, error) {
	if cfg.SenderName == "" {
		cfg.SenderName = DefaultConfig().SenderName
	}
	if cfg.DefaultRepeat == 0 {
		cfg.DefaultRepeat = 1
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultConfig().Timeout
	}
	errs := cfg.check(signer == nil)
	if hc == nil {
		errs = append(errs, errors.New("broadcast: an *http.Client is required"))
	}
	prio, perrs := parsePriority(cfg.Priority)
	errs = append(errs, perrs...)
	events, eerrs := parseEventTypes(cfg.EventTypes)
	errs = append(errs, eerrs...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if signer == nil {
		key, _ := resolveKey(cfg)
		signer = NewHMACSigner(cfg.PlatformID, []byte(key), nil)
	}
	if log == nil {
		log = slog.Default()
	}
	return &Broadcast{
		cfg:      cfg,
		hc:       hc,
		signer:   signer,
		log:      log.With("provider", "broadcast"),
		url:      strings.TrimRight(cfg.Endpoint, "/") + "/ebm",
		priority: prio,
		events:   events,
		now:      time.Now,
	}, nil
}

func (c Config) check(needKey bool) []error {
	var errs []error
	if c.Endpoint == "" {
		errs = append(errs, errors.New("broadcast.endpoint: required: the platform's API base, e.g. https://eb.wuhua.example/api/v1"))
	} else if u, err := url.Parse(c.Endpoint); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" {
		errs = append(errs, fmt.Errorf("broadcast.endpoint: %q is not an http(s) URL without a query", c.Endpoint))
	}
	if strings.TrimSpace(c.PlatformID) == "" {
		errs = append(errs, errors.New("broadcast.platform_id: required: warngate's resource id (EBRID) as the platform registered it"))
	}
	if needKey {
		if _, err := resolveKey(c); err != nil {
			errs = append(errs, err)
		}
	}
	if c.DefaultRepeat < 1 || c.DefaultRepeat > 10 {
		errs = append(errs, fmt.Errorf("broadcast.default_repeat: %d; use 1 to 10 plays", c.DefaultRepeat))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("broadcast.timeout: %s; use a positive duration such as 10s", c.Timeout))
	}
	return errs
}

// resolveKey returns the signing key, given inline, as ${ENV_VAR} or in
// key_file, and checks its length.
func resolveKey(c Config) (string, error) {
	k, err := channels.ResolveSecret("broadcast", "key", c.Key, c.KeyFile, "the signing key shared with the platform")
	if err != nil {
		return "", err
	}
	if len(k) < 16 {
		if c.KeyFile != "" {
			return "", fmt.Errorf("broadcast.key_file: the key in %s is shorter than 16 characters; use the key the platform issued", c.KeyFile)
		}
		return "", errors.New("broadcast.key: shorter than 16 characters; use the key the platform issued")
	}
	return k, nil
}

func parsePriority(in map[string]int) (map[warning.Level]int, []error) {
	out := map[warning.Level]int{}
	for l, s := range severity {
		out[l] = s
	}
	var errs []error
	for k, v := range in {
		l, err := warning.ParseLevel(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("broadcast.priority: %v", err))
			continue
		}
		if v < 1 || v > 9 {
			errs = append(errs, fmt.Errorf("broadcast.priority.%s: %d; use 1 (most urgent) to 9", k, v))
			continue
		}
		out[l] = v
	}
	return out, errs
}

func parseEventTypes(in map[string]string) (map[warning.Hazard]string, []error) {
	out := map[warning.Hazard]string{}
	for h, c := range DefaultEventTypes {
		out[h] = c
	}
	var errs []error
	for k, v := range in {
		h, err := warning.ParseHazard(k)
		if err != nil {
			errs = append(errs, fmt.Errorf("broadcast.event_types: %v", err))
			continue
		}
		if len(v) != 5 {
			errs = append(errs, fmt.Errorf("broadcast.event_types.%s: %q; event type codes have 5 characters, e.g. 11B03", k, v))
			continue
		}
		out[h] = v
	}
	return out, errs
}

// Provider implements channels.Indexed: play-status callbacks name the
// message and terminal by the platform's ids.
func (p *Broadcast) Provider() string { return "broadcast" }

// Wire format.

// timeLayout is the message format's date-time: Beijing time.
const timeLayout = "2006-01-02 15:04:05"

var beijing = time.FixedZone("CST", 8*3600)

func stamp(t time.Time) string { return t.In(beijing).Format(timeLayout) }

type ebd struct {
	EBDVersion string `json:"EBDVersion"`
	EBDID      string `json:"EBDID"`
	EBDType    string `json:"EBDType"`
	SRC        ebrRef `json:"SRC"`
	EBDTime    string `json:"EBDTime"`
	EBM        ebm    `json:"EBM"`
	Params     *param `json:"Params,omitempty"`
}

type ebrRef struct {
	EBRID string `json:"EBRID"`
}

type ebm struct {
	EBMVersion   string       `json:"EBMVersion"`
	RelatedEBM   *relatedEBM  `json:"RelatedEBM,omitempty"`
	MsgBasicInfo msgBasicInfo `json:"MsgBasicInfo"`
	MsgContent   *msgContent  `json:"MsgContent,omitempty"`
	Dispatch     *dispatch    `json:"Dispatch,omitempty"`
}

type relatedEBM struct {
	EBMID string `json:"EBMID"`
}

type msgBasicInfo struct {
	MsgType    int    `json:"MsgType"` // 1 play, 2 cancel
	SenderName string `json:"SenderName"`
	SenderCode string `json:"SenderCode,omitempty"`
	SentTime   string `json:"SentTime"`
	EventType  string `json:"EventType,omitempty"`
	Severity   int    `json:"Severity,omitempty"`
	StartTime  string `json:"StartTime,omitempty"`
	EndTime    string `json:"EndTime,omitempty"`
}

type msgContent struct {
	LanguageCode string `json:"LanguageCode"`
	MsgTitle     string `json:"MsgTitle"`
	MsgDesc      string `json:"MsgDesc"`
	AreaCode     string `json:"AreaCode"` // comma-separated 12-digit division codes
}

type dispatch struct {
	EBRID []string `json:"EBRID"` // target terminals
}

type param struct {
	PlayTimes int  `json:"PlayTimes"`
	Priority  int  `json:"Priority"`
	TTS       bool `json:"TTS"`
}

// response is the platform's answer (EBDResponse).
type response struct {
	ResultCode int       `json:"ResultCode"`
	ResultDesc string    `json:"ResultDesc"`
	EBMID      string    `json:"EBMID"`
	Invalid    []invalid `json:"Invalid"`
}

type invalid struct {
	EBRID  string `json:"EBRID"`
	Reason string `json:"Reason"`
}

// Result codes of EBDResponse: 1 is 执行成功 as platforms answer. Every
// other code is final for the request; an overloaded platform answers with
// HTTP 503 or 429, which are retried.
const (
	ResultOK        = 1
	ResultParse     = 2 // 接收解析失败
	ResultInvalid   = 3 // 内容格式校验失败
	ResultSignature = 4 // 签名验证失败
	ResultOther     = 5 // 其他错误, e.g. 查找不到该EBMID
)

// message builds the play request for a batch: pure, so the message is
// tested without a network. devices and areas are sorted and unique.
func (p *Broadcast) message(b *channels.Batch, devices, areas []string, now time.Time) ebd {
	w := b.Warning
	t := channels.Compose(b, b.Recipients[0])
	t.AckURL = "" // loudspeakers ask nobody to confirm
	end := w.Expires
	if end.IsZero() || !end.After(now) {
		end = now.Add(time.Hour)
	}
	repeat := b.Repeat
	if repeat <= 0 {
		repeat = p.cfg.DefaultRepeat
	}
	return ebd{
		EBDVersion: "1.0",
		EBDID:      requestID(b.ID + "/" + string(b.Notice)),
		EBDType:    "EBM",
		SRC:        ebrRef{EBRID: p.cfg.PlatformID},
		EBDTime:    stamp(now),
		EBM: ebm{
			EBMVersion: "1.0",
			MsgBasicInfo: msgBasicInfo{
				MsgType:    1,
				SenderName: p.cfg.SenderName,
				SenderCode: p.cfg.SenderCode,
				SentTime:   stamp(now),
				EventType:  p.events[w.Hazard],
				Severity:   severity[w.Level],
				StartTime:  stamp(now),
				EndTime:    stamp(end),
			},
			MsgContent: &msgContent{LanguageCode: "zho", MsgTitle: t.Title, MsgDesc: t.Plain(), AreaCode: strings.Join(areas, ",")},
			Dispatch:   &dispatch{EBRID: devices},
		},
		Params: &param{PlayTimes: repeat, Priority: p.priority[w.Level], TTS: true},
	}
}

// requestID is a stable EBDID for a batch, so that the platform can tell a
// batch sent again after a lost answer from a new one.
func requestID(s string) string {
	h := fnv.New128a()
	io.WriteString(h, s)
	return "wg" + hex.EncodeToString(h.Sum(nil))
}

// Notify implements channels.Notifier: one request for the batch's
// terminals. Unknown terminals fail with the platform's reason (设备不存在).
func (p *Broadcast) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if len(b.Recipients) == 0 {
		return nil, false, nil
	}
	var out []channels.Receipt
	seen := map[string]bool{}
	areaSet := map[string]bool{}
	var devices, areas []string
	for i, r := range b.Recipients {
		if strings.TrimSpace(r.Address) == "" {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "设备不存在"})
			continue
		}
		if !seen[r.Address] {
			seen[r.Address] = true
			devices = append(devices, r.Address)
		}
		if r.Division != "" && !areaSet[r.Division] {
			areaSet[r.Division] = true
			areas = append(areas, r.Division)
		}
	}
	if len(devices) == 0 {
		return out, false, nil
	}
	sort.Strings(devices)
	sort.Strings(areas)
	msg := p.message(b, devices, areas, p.now())
	ans, ok, retry, err := p.call(ctx, "publish", msg)
	if err != nil {
		return nil, retry, err
	}
	if !ok {
		p.log.Warn("broadcast: platform answered 2xx with an unreadable body; taken as sent", "warning_id", b.Warning.ID)
	}
	bad := map[string]string{}
	for _, inv := range ans.Invalid {
		reason := inv.Reason
		if reason == "" {
			reason = "设备不存在"
		}
		bad[inv.EBRID] = reason
	}
	for i, r := range b.Recipients {
		if strings.TrimSpace(r.Address) == "" {
			continue
		}
		if reason, isBad := bad[r.Address]; isBad {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: reason})
			continue
		}
		rc := channels.Receipt{Index: i, State: warning.Sent}
		if ans.EBMID != "" {
			rc.ProviderID = ans.EBMID + ":" + r.Address
		}
		out = append(out, rc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, false, nil
}

// Cancel stops a message on every terminal still playing it (an EBM with
// MsgType 2 whose RelatedEBM names it), e.g. when a warning is lifted.
// msgID is the EBMID, the part of a receipt's ProviderID before the colon.
func (p *Broadcast) Cancel(ctx context.Context, msgID string) (retry bool, err error) {
	if msgID == "" {
		return false, errors.New("broadcast: cancel: empty message id")
	}
	now := p.now()
	msg := ebd{
		EBDVersion: "1.0",
		EBDID:      requestID("cancel/" + msgID),
		EBDType:    "EBM",
		SRC:        ebrRef{EBRID: p.cfg.PlatformID},
		EBDTime:    stamp(now),
		EBM: ebm{
			EBMVersion:   "1.0",
			RelatedEBM:   &relatedEBM{EBMID: msgID},
			MsgBasicInfo: msgBasicInfo{MsgType: 2, SenderName: p.cfg.SenderName, SenderCode: p.cfg.SenderCode, SentTime: stamp(now)},
		},
	}
	_, _, retry, err = p.call(ctx, "cancel", msg)
	return retry, err
}

// SplitProviderID splits a receipt's ProviderID into the platform's message
// id (EBMID) and the terminal (EBRID).
func SplitProviderID(id string) (msgID, device string) {
	msgID, device, _ = strings.Cut(id, ":")
	return msgID, device
}

var errTimeout = errors.New("broadcast: platform call timed out")

// call signs and posts one EBD. ok is false when a 2xx body could not be
// read: the platform has the message and it must not be sent again.
func (p *Broadcast) call(ctx context.Context, what string, msg ebd) (ans response, ok, retry bool, err error) {
	body, err := json.Marshal(msg)
	if err != nil {
		return ans, false, false, fmt.Errorf("broadcast: %s: encode: %w", what, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.Timeout, errTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return ans, false, false, fmt.Errorf("broadcast: %s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if err := p.signer.Sign(req, body); err != nil {
		return ans, false, false, fmt.Errorf("broadcast: %s: sign: %w", what, err)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return ans, false, true, fmt.Errorf("broadcast: %s: %w", what, err)
	}
	defer resp.Body.Close()
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return ans, false, true, fmt.Errorf("broadcast: %s: platform answered %s", what, resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return ans, false, false, fmt.Errorf("broadcast: %s: platform answered %s: check platform_id and key", what, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return ans, false, false, fmt.Errorf("broadcast: %s: platform answered %s: %s", what, resp.Status, snippet(raw))
	}
	if rerr != nil || json.Unmarshal(raw, &ans) != nil {
		return response{}, false, false, nil
	}
	switch ans.ResultCode {
	case ResultOK:
		return ans, true, false, nil
	case ResultSignature:
		return ans, false, false, fmt.Errorf("broadcast: %s: ResultCode %d: %s: check platform_id and key", what, ans.ResultCode, ans.ResultDesc)
	}
	return ans, false, false, fmt.Errorf("broadcast: %s: ResultCode %d: %s", what, ans.ResultCode, ans.ResultDesc)
}

// snippet is the start of a body for an error message, on one line.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
