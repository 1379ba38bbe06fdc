package config

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"warngate/channels/aliyun"
	"warngate/channels/aliyunvoice"
	"warngate/channels/broadcast"
	"warngate/channels/kannel"
	"warngate/channels/screen"
	"warngate/channels/sipvoice"
	"warngate/channels/tencent"
	"warngate/channels/tencentvoice"
	"warngate/channels/wechat"
)

// Provider is one provider account. Its type decides which block is read;
// providers of one channel are tried in the order they are listed.
type Provider struct {
	// Name is unique among providers; rate limits and circuits are per name.
	Name string `yaml:"name"`
	// Channel is sms, wechat, wecom, broadcast, screen, calllist or voice.
	Channel string `yaml:"channel"`
	// Type is kannel, aliyun, tencent (sms), wechat (wechat), wecom (wecom),
	// broadcast, screen, calllist (the in-house call lists), sip,
	// aliyun_voice, tencent_voice (voice), or sim.
	Type string `yaml:"type"`
	// Rate is the account's limit in messages per second, shared by every
	// worker. Zero means none.
	Rate float64 `yaml:"rate"`
	// ReportWindow overrides failover.report_window for this account, e.g.
	// for a carrier known to report late.
	ReportWindow Duration `yaml:"report_window"`
	// Fake runs the provider's in-process fake and points the adapter at it:
	// the real protocol, nobody notified. Only in the embedded mode.
	Fake bool `yaml:"fake"`

	Kannel    *kannel.Config                `yaml:"kannel"`
	Aliyun    *aliyun.Config                `yaml:"aliyun"`
	Tencent   *tencent.Config               `yaml:"tencent"`
	WeChat    *wechat.OfficialAccountConfig `yaml:"wechat"`
	WeCom     *wechat.WorkConfig            `yaml:"wecom"`
	Broadcast *broadcast.Config             `yaml:"broadcast"`
	Screen    *screen.Config                `yaml:"screen"`
	// SIP is a SIP trunk or the bureau's IP-PBX that the gateway calls
	// through as a SIP user agent.
	SIP          *sipvoice.Config     `yaml:"sip"`
	AliyunVoice  *aliyunvoice.Config  `yaml:"aliyun_voice"`
	TencentVoice *tencentvoice.Config `yaml:"tencent_voice"`
}

// Failover tunes how providers of a channel stand in for each other.
type Failover struct {
	// Failures in a row that make the gateway skip a provider. Default 3.
	Failures int `yaml:"failures"`
	// OpenFor is how long a failing provider is skipped. Default 1m.
	OpenFor Duration `yaml:"open_for"`
	// ReportWindow is how long a provider may leave the messages it
	// accepted without a delivery report: when three of its batches in a
	// row stay unreported longer, it is skipped as if it had failed.
	// Default 10m; 0s turns the check off.
	ReportWindow Duration `yaml:"report_window"`
}

var typeChannel = map[string]string{
	"kannel": "sms", "aliyun": "sms", "tencent": "sms", "wechat": "wechat", "wecom": "wecom",
	"broadcast": "broadcast", "screen": "screen", "calllist": "calllist",
	"sip": "voice", "aliyun_voice": "voice", "tencent_voice": "voice",
}

// checkProviders reports every problem of the providers list at once.
func (c *Config) checkProviders() []error {
	var errs []error
	seen := map[string]bool{}
	for i, p := range c.Providers {
		at := fmt.Sprintf("providers[%d] (%s)", i, p.Name)
		bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(at+": "+format, args...)) }
		if p.Name == "" {
			bad("name is required")
		} else if !validName(p.Name) {
			bad("name: use letters, digits, '-' and '_' (it names the account in keys, metrics and bills)")
		} else if seen[p.Name] {
			bad("name used twice: give each provider account its own name")
		}
		seen[p.Name] = true
		if !knownChannel(p.Channel) {
			bad("channel %q: use wecom, sms, wechat, broadcast, screen, calllist or voice", p.Channel)
		}
		want, ok := typeChannel[p.Type]
		switch {
		case p.Type == "sim":
		case !ok:
			bad("type %q: use kannel, aliyun, tencent, wechat, wecom, broadcast, screen, calllist, sip, aliyun_voice, tencent_voice or sim", p.Type)
		case want != p.Channel:
			bad("type %s sends on channel %s, not %s", p.Type, want, p.Channel)
		}
		blocks := map[string]bool{"kannel": p.Kannel != nil, "aliyun": p.Aliyun != nil, "tencent": p.Tencent != nil,
			"wechat": p.WeChat != nil, "wecom": p.WeCom != nil, "broadcast": p.Broadcast != nil, "screen": p.Screen != nil,
			"sip": p.SIP != nil, "aliyun_voice": p.AliyunVoice != nil, "tencent_voice": p.TencentVoice != nil}
		for _, b := range slices.Sorted(maps.Keys(blocks)) {
			if blocks[b] && b != p.Type {
				bad("has a %s block but is of type %s: remove the block or change the type", b, p.Type)
			}
		}
		if ok && p.Type != "calllist" && !blocks[p.Type] && !p.Fake {
			bad("type %s needs a %s: block with its settings", p.Type, p.Type)
		}
		if p.ReportWindow < 0 {
			bad("report_window %s: must not be negative", time.Duration(p.ReportWindow))
		}
		if p.Rate < 0 {
			bad("rate %v: use messages per second, 0 for no limit", p.Rate)
		}
		if p.Fake && !c.Embedded() {
			bad("fake: true runs a provider simulator; it is for the embedded mode only")
		}
		if p.Fake && p.Type == "kannel" {
			bad("kannel has no fake: run the real Kannel with its fakesmsc (see deploy/README.md)")
		}
		if p.Fake && p.Type == "sip" {
			bad("sip has no fake: the embedded demo's simulator calls officials; to try a trunk, point sip.trunk at a SIP phone such as baresip")
		}
	}
	if c.Failover.Failures < 0 {
		errs = append(errs, errors.New("failover.failures: use 1 or more"))
	}
	if d := time.Duration(c.Failover.OpenFor); d < 0 {
		errs = append(errs, errors.New("failover.open_for: must not be negative"))
	}
	if d := time.Duration(c.Failover.ReportWindow); d < 0 || (d > 0 && d < time.Minute) {
		errs = append(errs, fmt.Errorf("failover.report_window %s: use 1m or more (reports take time to come back), or 0s to turn the check off", d))
	}
	return errs
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return len(s) <= 64
}
