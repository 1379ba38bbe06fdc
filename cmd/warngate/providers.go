package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/api"
	"warngate/channels"
	"warngate/channels/aliyun"
	aliyunfake "warngate/channels/aliyun/fake"
	"warngate/channels/aliyunvoice"
	aliyunvoicefake "warngate/channels/aliyunvoice/fake"
	"warngate/channels/broadcast"
	broadcastfake "warngate/channels/broadcast/fake"
	"warngate/channels/calllist"
	"warngate/channels/kannel"
	"warngate/channels/screen"
	screenfake "warngate/channels/screen/fake"
	"warngate/channels/sipvoice"
	"warngate/channels/tencent"
	tencentfake "warngate/channels/tencent/fake"
	"warngate/channels/tencentvoice"
	tencentvoicefake "warngate/channels/tencentvoice/fake"
	"warngate/channels/voice"
	"warngate/channels/wechat"
	wechatfake "warngate/channels/wechat/fake"
	"warngate/config"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/warning"
)

// providers is what the configured provider accounts give the gateway.
type providers struct {
	routes    map[warning.Channel][]dispatcher.Provider
	receivers []api.ReportReceiver
	replies   []channels.ReplyReceiver
	closers   []func()
	wechatURL string
	wechatSim *wechatfake.Server
	// aliyunFake is the Alibaba Cloud fake, when one runs (the bench feeds
	// its messages' reports to the callback endpoint).
	aliyunFake *aliyunfake.Server
	// selfReporting are the notifiers that follow their own messages: SIP
	// calls, and Kannel's box connection. A process that runs workers
	// attaches them to the dispatcher.
	selfReporting []channels.SelfReporting
	// kannelBoxes are the Kannel accounts with the box transport, by name:
	// their connections' state is in the metrics.
	kannelBoxes map[string]*kannel.Kannel
}

// fakeReportDelay is how long fakes wait before pushing reports.
var fakeReportDelay = 300 * time.Millisecond

// buildProviders makes an adapter for every configured provider account and
// the receivers of their callbacks; with fake: true it first starts the
// provider's fake on a loopback port and points the account at it. Kannel
// notes in led which delivery each number of a call names.
func buildProviders(cfg *config.Config, rdb redis.UniversalClient, led *ledger.Ledger, log *slog.Logger) (*providers, error) {
	out := &providers{routes: map[warning.Channel][]dispatcher.Provider{}}
	hc := &http.Client{Timeout: 30 * time.Second}
	callback := func(typ string) string { return cfg.PublicURL + "/callbacks/" + typ }
	byName := map[string]int{} // receiver name → index in out.receivers
	addReceiver := func(r api.ReportReceiver) {
		i, seen := byName[r.Name()]
		if !seen {
			byName[r.Name()] = len(out.receivers)
			out.receivers = append(out.receivers, r)
			return
		}
		// Another account of a provider already served: the callback path
		// is shared, and a push goes to the account whose credentials it
		// carries. A receiver that cannot tell (the broadcast platform
		// signs the body) serves every account with the first's.
		if _, ok := r.(channels.Admitter); !ok {
			return
		}
		if sr, ok := out.receivers[i].(*sharedReceiver); ok {
			sr.accounts = append(sr.accounts, r)
		} else if _, ok := out.receivers[i].(channels.Admitter); ok {
			out.receivers[i] = &sharedReceiver{sharedPath[api.ReportReceiver]{accounts: []api.ReportReceiver{out.receivers[i], r}}}
		}
	}
	// Replies (an SMS centre's MO) share their path the same way.
	repliesByName := map[string]int{}
	addReplies := func(r channels.ReplyReceiver) {
		i, seen := repliesByName[r.Name()]
		if !seen {
			repliesByName[r.Name()] = len(out.replies)
			out.replies = append(out.replies, r)
		} else if sr, ok := out.replies[i].(*sharedReplies); ok {
			sr.accounts = append(sr.accounts, r)
		} else {
			out.replies[i] = &sharedReplies{sharedPath[channels.ReplyReceiver]{accounts: []channels.ReplyReceiver{out.replies[i], r}}}
		}
	}
	var errs []error
	for i, p := range cfg.Providers {
		at := fmt.Sprintf("providers[%d] (%s)", i, p.Name)
		plog := log.With("provider", p.Name)
		var n channels.Notifier
		var err error
		switch p.Type {
		case "kannel":
			k, e := kannel.New(*p.Kannel, hc, led, plog)
			if err = e; err == nil {
				n = k
				addReceiver(k)
				addReplies(k)
				// With the box transport, reports come on the worker's
				// connection to bearerbox.
				if box, _, _ := k.BoxState(); box {
					out.selfReporting = append(out.selfReporting, k)
					out.closers = append(out.closers, k.Close)
					if out.kannelBoxes == nil {
						out.kannelBoxes = map[string]*kannel.Kannel{}
					}
					out.kannelBoxes[p.Name] = k
				}
			}
		case "aliyun":
			c := deref(p.Aliyun)
			if p.Fake {
				c = fakeAliyun(out, c, callback("aliyun"), plog)
			}
			a, e := aliyun.New(c, hc, plog)
			if err = e; err == nil {
				n = a
				addReceiver(a)
			}
		case "tencent":
			c := deref(p.Tencent)
			if p.Fake {
				c = fakeTencent(out, c, callback("tencent"), plog)
			}
			t, e := tencent.New(c, hc, plog)
			if err = e; err == nil {
				n = t
				addReceiver(t)
			}
		case "wechat":
			c := derefOr(p.WeChat, wechat.DefaultOfficialAccountConfig())
			if p.Fake {
				c = fakeWeChat(out, c, callback("wechat"), plog)
			}
			o, e := wechat.NewOfficialAccount(c, hc, rdb, plog)
			if err = e; err == nil {
				n = o
				var rc *wechat.Receiver
				if rc, err = wechat.NewReceiver(c, plog); err == nil {
					addReceiver(rc)
				}
			}
		case "wecom":
			c := derefOr(p.WeCom, wechat.DefaultWorkConfig())
			if p.Fake {
				c = fakeWeCom(out, c, callback("wechat"), plog)
			}
			n, err = wechat.NewWork(c, hc, rdb, plog)
		case "broadcast":
			c := derefOr(p.Broadcast, broadcast.DefaultConfig())
			if p.Fake {
				c = fakeBroadcast(out, c, callback("broadcast"), plog)
			}
			b, e := broadcast.New(c, hc, nil, plog)
			if err = e; err == nil {
				n = cancelByMessage{b}
				var rc *broadcast.Receiver
				if rc, err = broadcast.NewReceiver(c, nil, plog); err == nil {
					addReceiver(rc)
				}
			}
		case "screen":
			c := derefOr(p.Screen, screen.DefaultConfig())
			if p.Fake {
				c = fakeScreen(out, c, callback("screen"), plog)
			}
			s, e := screen.New(c, hc, plog)
			if err = e; err == nil {
				n = cancelByPlayer{s}
				var rc *screen.Receiver
				if rc, err = screen.NewReceiver(c, plog); err == nil {
					addReceiver(rc)
				}
			}
		case "calllist":
			n = calllist.Assigner{}
		case "sip":
			sv, e := sipvoice.New(deref(p.SIP), p.Name, voice.NewLines(rdb, cfg.Redis.Prefix, nil), plog)
			if err = e; err == nil {
				n = sv
				out.closers = append(out.closers, sv.Close)
				out.selfReporting = append(out.selfReporting, sv)
			}
		case "aliyun_voice":
			c := deref(p.AliyunVoice)
			if p.Fake {
				c = fakeAliyunVoice(out, c, callback(aliyunvoice.Provider), plog)
			}
			a, e := aliyunvoice.New(c, p.Name, rdb, cfg.Redis.Prefix, hc, plog)
			if err = e; err == nil {
				n = a
				addReceiver(a)
			}
		case "tencent_voice":
			c := deref(p.TencentVoice)
			if p.Fake {
				c = fakeTencentVoice(out, c, callback(tencentvoice.Provider), plog)
			}
			t, e := tencentvoice.New(c, p.Name, rdb, cfg.Redis.Prefix, hc, plog)
			if err = e; err == nil {
				n = t
				addReceiver(t)
			}
		case "sim":
			continue // the simulator is wired separately
		}
		if err != nil {
			errs = append(errs, atEveryLine(at, err))
			continue
		}
		ch := warning.Channel(p.Channel)
		out.routes[ch] = append(out.routes[ch], dispatcher.Provider{Name: p.Name, Notifier: n, Rate: p.Rate, ReportWindow: time.Duration(p.ReportWindow)})
	}
	if err := errors.Join(errs...); err != nil {
		out.close()
		return nil, err
	}
	return out, nil
}

// sharedPath are the accounts of a provider that share its callback path,
// each with its own token or key.
type sharedPath[R interface{ Name() string }] struct {
	accounts []R // each a channels.Admitter
}

func (s *sharedPath[R]) Name() string { return s.accounts[0].Name() }

// pick is the account whose credentials a callback carries; for one that
// carries none of theirs, the first account, which refuses it.
func (s *sharedPath[R]) pick(r *http.Request) R {
	for _, a := range s.accounts {
		if ad, ok := any(a).(channels.Admitter); ok && ad.Admits(r) {
			return a
		}
	}
	return s.accounts[0]
}

// sharedReceiver takes the delivery reports of a shared callback path.
type sharedReceiver struct{ sharedPath[api.ReportReceiver] }

func (s *sharedReceiver) ServeReports(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	s.pick(r).ServeReports(w, r, sink)
}

// sharedReplies takes the replies from phones of a shared callback path.
type sharedReplies struct {
	sharedPath[channels.ReplyReceiver]
}

func (s *sharedReplies) ServeReplies(w http.ResponseWriter, r *http.Request, handle func(context.Context, channels.Reply) error) {
	s.pick(r).ServeReplies(w, r, handle)
}

func (p *providers) close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// serveFake runs a fake provider on a loopback port and returns its URL.
func serveFake(out *providers, h http.Handler, log *slog.Logger) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Error("fake provider not started", "err", err)
		return "http://127.0.0.1:1"
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	out.closers = append(out.closers, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	log.Warn("provider fake running: nobody is notified", "url", "http://"+ln.Addr().String())
	return "http://" + ln.Addr().String()
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// demoSecret gives a fake and its adapter the same secret: the configured
// one (inline, ${ENV_VAR} or *_file), resolved, or demo when none is
// configured. A configured secret that does not resolve is left as it is,
// for the adapter to report.
func demoSecret(section, field string, inline *channels.Secret, file *string, demo string) {
	if *inline == "" && *file == "" {
		*inline = channels.Secret(demo)
		return
	}
	if s, err := channels.ResolveSecret(section, field, *inline, *file, ""); err == nil {
		*inline, *file = channels.Secret(s), ""
	}
}

func fakeAliyun(out *providers, c aliyun.Config, cb string, log *slog.Logger) aliyun.Config {
	c.AccessKeyID = or(c.AccessKeyID, "LTAIdemo")
	demoSecret("aliyun", "access_key_secret", &c.AccessKeySecret, &c.AccessKeySecretFile, "demo-secret-aliyun")
	c.SignName, c.TemplateCode = or(c.SignName, "昆明应急"), or(c.TemplateCode, "SMS_000001")
	demoSecret("aliyun", "callback_token", &c.CallbackToken, &c.CallbackTokenFile, "demo-callback-token")
	f := aliyunfake.NewServer(aliyunfake.Options{AccessKeyID: c.AccessKeyID, AccessKeySecret: string(c.AccessKeySecret),
		SignNames: []string{c.SignName}, Templates: map[string]string{c.TemplateCode: "${title}：${content}"},
		CallbackURL: cb + "?token=" + string(c.CallbackToken), ReportDelay: fakeReportDelay, Log: log})
	out.closers = append(out.closers, f.Close)
	out.aliyunFake = f
	c.Endpoint = serveFake(out, f.Handler(), log)
	return c
}

func fakeTencent(out *providers, c tencent.Config, cb string, log *slog.Logger) tencent.Config {
	c.SecretID = or(c.SecretID, "AKIDdemo")
	demoSecret("tencent", "secret_key", &c.SecretKey, &c.SecretKeyFile, "demo-secret-tencent")
	c.SmsSdkAppID, c.SignName, c.TemplateID = or(c.SmsSdkAppID, "1400000001"), or(c.SignName, "昆明应急"), or(c.TemplateID, "100001")
	demoSecret("tencent", "callback_token", &c.CallbackToken, &c.CallbackTokenFile, "demo-callback-token")
	f := tencentfake.NewServer(tencentfake.Options{SecretID: c.SecretID, SecretKey: string(c.SecretKey), SdkAppID: c.SmsSdkAppID,
		SignNames: []string{c.SignName}, Templates: map[string]string{c.TemplateID: "{1}：{2}"},
		CallbackURL: cb + "?token=" + string(c.CallbackToken), ReportDelay: fakeReportDelay, Log: log})
	out.closers = append(out.closers, f.Close)
	c.Endpoint = serveFake(out, f.Handler(), log)
	return c
}

// demoCall is how a phone behaves in the voice fakes of the embedded demo:
// three officials in four answer after a few seconds of ringing and press
// 1 a few seconds later; the fourth never answers.
func demoCall(number string) (answers bool) {
	n, _ := strconv.Atoi(number[len(number)-2:])
	return n%4 != 3
}

// fakeAliyunVoiceBehave, when set, says how the phones behave on the
// Alibaba Cloud voice fake instead of demoCall (the bench sets it).
var fakeAliyunVoiceBehave func(number string) aliyunvoicefake.Behavior

// onFakeAliyunVoice, when set, is given the Alibaba Cloud voice fake once
// it runs (the bench reads its figures).
var onFakeAliyunVoice func(*aliyunvoicefake.Server)

func fakeAliyunVoice(out *providers, c aliyunvoice.Config, cb string, log *slog.Logger) aliyunvoice.Config {
	c.AccessKeyID = or(c.AccessKeyID, "LTAIdemo")
	demoSecret(aliyunvoice.Provider, "access_key_secret", &c.AccessKeySecret, &c.AccessKeySecretFile, "demo-secret-aliyun-voice")
	c.CalledShowNumber, c.TtsCode, c.ConfirmCode = or(c.CalledShowNumber, "087163000000"), or(c.TtsCode, "TTS_000001"), or(c.ConfirmCode, "TTS_000002")
	c.NoticeCode = or(c.NoticeCode, "TTS_000003")
	if c.Lines == 0 {
		c.Lines = 100
	}
	demoSecret(aliyunvoice.Provider, "callback_token", &c.CallbackToken, &c.CallbackTokenFile, "demo-callback-token")
	f := aliyunvoicefake.NewServer(aliyunvoicefake.Options{AccessKeyID: c.AccessKeyID, AccessKeySecret: string(c.AccessKeySecret),
		ShowNumbers: []string{c.CalledShowNumber}, Lines: c.Lines,
		Templates: map[string]string{c.TtsCode: "${text}" + channels.VoiceMenu, c.ConfirmCode: channels.VoiceThanks, c.NoticeCode: "${text}"},
		Behave: func(number string) aliyunvoicefake.Behavior {
			if fakeAliyunVoiceBehave != nil {
				return fakeAliyunVoiceBehave(number)
			}
			if !demoCall(number) {
				return aliyunvoicefake.Behavior{Status: "200003", Ring: 20 * time.Second}
			}
			return aliyunvoicefake.Behavior{Answer: true, Ring: 3 * time.Second, Keys: "1", KeyAfter: 4 * time.Second,
				Talk: 20 * time.Second, ConfirmTalk: 2 * time.Second}
		},
		CallbackURL: cb + "?token=" + string(c.CallbackToken), Log: log})
	if onFakeAliyunVoice != nil {
		onFakeAliyunVoice(f)
	}
	out.closers = append(out.closers, f.Close)
	c.Endpoint = serveFake(out, f.Handler(), log)
	return c
}

func fakeTencentVoice(out *providers, c tencentvoice.Config, cb string, log *slog.Logger) tencentvoice.Config {
	c.SecretID = or(c.SecretID, "AKIDdemo")
	demoSecret(tencentvoice.Provider, "secret_key", &c.SecretKey, &c.SecretKeyFile, "demo-secret-tencent-voice")
	c.VoiceSdkAppID, c.TemplateID, c.NoticeTemplateID = or(c.VoiceSdkAppID, "1400000002"), or(c.TemplateID, "200001"), or(c.NoticeTemplateID, "200002")
	if c.Lines == 0 {
		c.Lines = 100
	}
	demoSecret(tencentvoice.Provider, "callback_token", &c.CallbackToken, &c.CallbackTokenFile, "demo-callback-token")
	f := tencentvoicefake.NewServer(tencentvoicefake.Options{SecretID: c.SecretID, SecretKey: string(c.SecretKey), SdkAppID: c.VoiceSdkAppID,
		Lines: c.Lines, Templates: map[string]string{c.TemplateID: "{1}" + channels.VoiceMenu, c.NoticeTemplateID: "{1}"},
		Behave: func(number string) tencentvoicefake.Behavior {
			if !demoCall(number) {
				return tencentvoicefake.Behavior{FailureCode: 5, Ring: 20 * time.Second}
			}
			return tencentvoicefake.Behavior{Answer: true, Ring: 3 * time.Second, Keys: "1", KeyAfter: 4 * time.Second, Talk: 15 * time.Second}
		},
		CallbackURL: cb + "?token=" + string(c.CallbackToken), Log: log})
	out.closers = append(out.closers, f.Close)
	c.Endpoint = serveFake(out, f.Handler(), log)
	return c
}

// The WeChat SDK's base URL is one per process, so the official account
// and the WeCom app share one fake, with demo credentials for both.
const (
	demoAppID, demoAppSecret, demoToken = "wxdemo", "demo-secret-wx", "demo-token"
	demoCorpID, demoCorpSecret          = "wwdemo", "demo-secret-wecom"
	demoAgentID                         = 1000002
)

func (p *providers) wechatFake(cb string, log *slog.Logger) string {
	if p.wechatURL == "" {
		f := wechatfake.New(wechatfake.Config{AppID: demoAppID, AppSecret: demoAppSecret, Token: demoToken,
			CorpID: demoCorpID, CorpSecret: demoCorpSecret, AgentID: demoAgentID,
			CallbackURL: cb, ReportDelay: fakeReportDelay}, &http.Client{Timeout: 10 * time.Second}, log)
		p.closers = append(p.closers, f.Close)
		p.wechatSim = f
		p.wechatURL = serveFake(p, f, log)
	}
	return p.wechatURL
}

func fakeWeChat(out *providers, c wechat.OfficialAccountConfig, cb string, log *slog.Logger) wechat.OfficialAccountConfig {
	c.AppID, c.AppSecret, c.Token = demoAppID, demoAppSecret, demoToken
	c.AppSecretFile, c.TokenFile = "", ""
	c.TemplateID = or(c.TemplateID, "TPL-WARNING")
	c.BaseURL = out.wechatFake(cb, log)
	// With an EncodingAESKey the fake pushes events in safe mode; a bad key
	// is reported by wechat.NewReceiver.
	if key, err := c.ResolveEncodingAESKey(); err == nil && key != "" {
		if err := out.wechatSim.SetEncodingAESKey(key); err != nil {
			log.Error("wechat fake: events stay plain", "err", err)
		}
	}
	return c
}

func fakeWeCom(out *providers, c wechat.WorkConfig, cb string, log *slog.Logger) wechat.WorkConfig {
	c.CorpID, c.CorpSecret, c.CorpSecretFile, c.AgentID = demoCorpID, demoCorpSecret, "", demoAgentID
	c.BaseURL = out.wechatFake(cb, log)
	return c
}

func fakeBroadcast(out *providers, c broadcast.Config, cb string, log *slog.Logger) broadcast.Config {
	c.PlatformID = or(c.PlatformID, "EB-KM-DEMO")
	demoSecret("broadcast", "key", &c.Key, &c.KeyFile, "demo-broadcast-key-0123")
	f := broadcastfake.New(broadcastfake.Config{PlatformID: c.PlatformID, Key: string(c.Key), CallbackURL: cb, ReportDelay: fakeReportDelay},
		&http.Client{Timeout: 10 * time.Second}, log)
	out.closers = append(out.closers, f.Close)
	c.Endpoint = serveFake(out, f, log)
	return c
}

func fakeScreen(out *providers, c screen.Config, cb string, log *slog.Logger) screen.Config {
	c.AppKey = or(c.AppKey, "demo-app-key")
	demoSecret("screen", "app_secret", &c.AppSecret, &c.AppSecretFile, "demo-app-secret")
	f := screenfake.New(screenfake.Config{AppKey: c.AppKey, AppSecret: string(c.AppSecret), CallbackURL: cb, ReportDelay: fakeReportDelay},
		&http.Client{Timeout: 10 * time.Second}, log)
	out.closers = append(out.closers, f.Close)
	c.Endpoint = serveFake(out, f, log)
	return c
}

// cancelByMessage stops loudspeakers: the broadcast platform cancels by its
// message id, the part of each provider id before the device.
type cancelByMessage struct{ *broadcast.Broadcast }

func (c cancelByMessage) Cancel(ctx context.Context, ids []string) error {
	done := map[string]bool{}
	var errs []error
	for _, id := range ids {
		msg, _ := broadcast.SplitProviderID(id)
		if msg == "" || done[msg] {
			continue
		}
		done[msg] = true
		if _, err := c.Broadcast.Cancel(ctx, msg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cancelByPlayer stops screen inserts: the screen cloud cancels by player.
type cancelByPlayer struct{ *screen.Screen }

func (c cancelByPlayer) Cancel(ctx context.Context, ids []string) error {
	var players []string
	for _, id := range ids {
		if _, p := screen.SplitProviderID(id); p != "" {
			players = append(players, p)
		}
	}
	if len(players) == 0 {
		return nil
	}
	_, err := c.Screen.Cancel(ctx, players)
	return err
}

// atEveryLine puts where a problem is before each line of err, so that every
// problem an adapter reports names its provider account.
func atEveryLine(at string, err error) error {
	var errs []error
	for _, l := range strings.Split(err.Error(), "\n") {
		errs = append(errs, errors.New(at+": "+l))
	}
	return errors.Join(errs...)
}
