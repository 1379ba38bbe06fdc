// Package sipvoice calls officials through a SIP trunk or the bureau's own
// IP-PBX, as a SIP user agent (sipgo, with diago for the media): it
// INVITEs sip:<number>@<trunk>, answers the trunk's digest challenge,
// plays the warning synthesised to speech, and listens for RFC 4733 key
// presses: 1 confirms receipt (叫应) through the attached
// channels.Confirmer at once, 2 plays the warning again. It follows every
// call to its end and reports how it ended (channels.CallSink). Calls go
// out as the trunk's lines come free, counted in Redis for every process
// (voice.Lines). It must not learn about queues, the ledger or policy.
package sipvoice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/diago"
	"github.com/emiago/diago/media"
	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/google/uuid"

	"warngate/channels"
	"warngate/channels/voice"
	"warngate/warning"
)

// Defaults.
const (
	DefaultListen      = "0.0.0.0:5060"
	DefaultRingTimeout = 45 * time.Second
	DefaultKeyTimeout  = 8 * time.Second
	DefaultPlays       = 2
	DefaultMaxCall     = 3 * time.Minute
	// MaxReplays bounds how often a key press "2" plays the warning again.
	MaxReplays = 3
	// leaseTTL is how long a line stays held after its process stopped
	// extending it: a call extends it every third of that.
	leaseTTL = 30 * time.Second
)

// Config is one SIP trunk (or IP-PBX) account.
type Config struct {
	// Trunk is where calls go: host or host:port of the trunk or PBX,
	// e.g. 10.20.0.5:5060. A call to 13800000001 is an INVITE to
	// sip:13800000001@10.20.0.5:5060.
	Trunk string `yaml:"trunk"`
	// Transport is udp or tcp. Default udp.
	Transport string `yaml:"transport"`
	// Listen is the local address of the gateway's SIP user agent. Default
	// 0.0.0.0:5060; port 0 picks a free one.
	Listen string `yaml:"listen"`
	// ExternalHost is the address the trunk reaches the gateway at, when
	// it is not Listen's (behind NAT); it goes in Contact and SDP.
	ExternalHost string `yaml:"external_host"`
	// RTPPorts is the range of local UDP ports for call audio, e.g.
	// 10000-10999: two per call in progress. Empty means any free port. It
	// applies to every SIP account of the process.
	RTPPorts string `yaml:"rtp_ports"`
	// DialPrefix goes before every number, as some PBXs want (0 or 9 for
	// an outside line). Default none.
	DialPrefix string `yaml:"dial_prefix"`
	// CallerID is the number the officials see, as the trunk allows it
	// (the bureau's duty number, e.g. 087163000000).
	CallerID string `yaml:"caller_id"`
	// Username and Password answer the trunk's digest challenge (401 or
	// 407); leave both out for a trunk that trusts the gateway's address.
	// Like every secret here, Password may be ${ENV_VAR} or be given in a
	// file (PasswordFile): see channels.ResolveSecret.
	Username     string          `yaml:"username"`
	Password     channels.Secret `yaml:"password"`
	PasswordFile string          `yaml:"password_file"`
	// Lines is how many calls the trunk carries at once (its channels),
	// shared by every process of the gateway. Required.
	Lines int `yaml:"lines"`
	// RingTimeout is how long a phone may ring before the call counts as
	// not answered. Default 45s.
	RingTimeout time.Duration `yaml:"ring_timeout"`
	// KeyTimeout is how long the gateway waits for a key after the
	// warning was played. Default 8s.
	KeyTimeout time.Duration `yaml:"key_timeout"`
	// Plays is how many times the warning is played when no key comes,
	// 1 to 3. Default 2.
	Plays int `yaml:"plays"`
	// MaxCall bounds an answered call. Default 3m.
	MaxCall time.Duration `yaml:"max_call"`
	// TTSCommand synthesises a call's text: the program and its
	// arguments, where {wav} is the file it writes and {text} the text
	// (without {text}, the text is its standard input). Any PCM WAV will
	// do: it is resampled to 8 kHz mono. Default espeak-ng's Mandarin
	// voice: [espeak-ng, -v, cmn, -w, "{wav}", --stdin].
	TTSCommand []string `yaml:"tts_command"`
	// TTSCacheDir keeps the audio of every text synthesised, so that a
	// warning is synthesised once for all its calls. Default
	// $TMPDIR/warngate-tts.
	TTSCacheDir string `yaml:"tts_cache_dir"`
}

// SIP places calls on one trunk account.
type SIP struct {
	cfg      Config
	account  string
	password string
	host     string
	port     int
	lines    *voice.Lines
	synth    *Synth
	log      *slog.Logger
	now      func() time.Time

	ua *sipgo.UserAgent
	dg *diago.Diago

	startMu sync.Mutex
	sink    atomic.Pointer[sinkBox]
	ctx     context.Context
	cancel  context.CancelFunc
	calls   sync.WaitGroup
	addr    string
}

type sinkBox struct{ channels.CallSink }

var (
	_ channels.Notifier      = (*SIP)(nil)
	_ channels.SelfReporting = (*SIP)(nil)
)

// Check returns cfg with its defaults in, or every problem of it, each
// naming its field and what to do. section names the configuration
// block in errors, e.g. "sip".
func Check(cfg Config, section string) (Config, string, error) {
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.RingTimeout == 0 {
		cfg.RingTimeout = DefaultRingTimeout
	}
	if cfg.KeyTimeout == 0 {
		cfg.KeyTimeout = DefaultKeyTimeout
	}
	if cfg.Plays == 0 {
		cfg.Plays = DefaultPlays
	}
	if cfg.MaxCall == 0 {
		cfg.MaxCall = DefaultMaxCall
	}
	if len(cfg.TTSCommand) == 0 {
		cfg.TTSCommand = DefaultTTSCommand
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", section, field, fmt.Sprintf(format, args...)))
	}
	if _, _, err := hostPort(cfg.Trunk, 5060); cfg.Trunk == "" || err != nil {
		bad("trunk", "%q: give the trunk's or PBX's host or host:port, e.g. 10.20.0.5:5060", cfg.Trunk)
	}
	if cfg.Transport != "udp" && cfg.Transport != "tcp" {
		bad("transport", "%q: use udp or tcp", cfg.Transport)
	}
	if _, _, err := hostPort(cfg.Listen, -1); err != nil {
		bad("listen", "%q: give host:port, e.g. 0.0.0.0:5060", cfg.Listen)
	}
	if cfg.RTPPorts != "" {
		if _, _, err := portRange(cfg.RTPPorts); err != nil {
			bad("rtp_ports", "%v", err)
		}
	}
	if cfg.DialPrefix != "" && !channels.Digits(cfg.DialPrefix) {
		bad("dial_prefix", "%q: digits only, e.g. 0 or 9", cfg.DialPrefix)
	}
	if cfg.CallerID != "" {
		if n, ok := channels.MainlandNumber(cfg.CallerID); ok {
			cfg.CallerID = n
		} else {
			bad("caller_id", "%q is not a mainland number: give the bureau's line with its area code, e.g. 087163000000, or a mobile number", cfg.CallerID)
		}
	}
	password, err := channels.ResolveSecret(section, "password", cfg.Password, cfg.PasswordFile, "")
	if err != nil {
		errs = append(errs, err)
	}
	if password != "" && cfg.Username == "" {
		bad("username", "required with a password: the user name the trunk's digest challenge wants")
	}
	if cfg.Lines < 1 || cfg.Lines > 10000 {
		bad("lines", "%d: how many calls the trunk carries at once (its channels), 1 to 10000", cfg.Lines)
	}
	if cfg.RingTimeout < 5*time.Second || cfg.RingTimeout > 3*time.Minute {
		bad("ring_timeout", "%s: use 5s to 3m", cfg.RingTimeout)
	}
	if cfg.KeyTimeout < time.Second || cfg.KeyTimeout > time.Minute {
		bad("key_timeout", "%s: use 1s to 1m", cfg.KeyTimeout)
	}
	if cfg.Plays < 1 || cfg.Plays > 3 {
		bad("plays", "%d: play the warning 1 to 3 times", cfg.Plays)
	}
	if cfg.MaxCall < 30*time.Second || cfg.MaxCall > 30*time.Minute {
		bad("max_call", "%s: use 30s to 30m", cfg.MaxCall)
	}
	if err := checkCommand(cfg.TTSCommand); err != nil {
		errs = append(errs, fmt.Errorf("%s.%w", section, err))
	} else if _, err := exec.LookPath(cfg.TTSCommand[0]); err != nil {
		bad("tts_command", "%s is not installed: apt-get install espeak-ng, or name another synthesiser", cfg.TTSCommand[0])
	}
	return cfg, password, errors.Join(errs...)
}

// New checks cfg and returns the adapter for it. account names the
// provider account (its lines are counted under that name); lines are
// shared through Redis. Nothing listens yet: Attach starts the account's
// SIP user agent on cfg.Listen. Close stops it.
func New(cfg Config, account string, lines *voice.Lines, log *slog.Logger) (*SIP, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if lines == nil {
		return nil, errors.New("sip: no lines given")
	}
	cfg, password, err := Check(cfg, "sip")
	if err != nil {
		return nil, err
	}
	if cfg.TTSCacheDir == "" {
		cfg.TTSCacheDir = defaultCacheDir()
	}
	host, port, _ := hostPort(cfg.Trunk, 5060)
	s := &SIP{cfg: cfg, account: account, password: password, host: host, port: port, lines: lines,
		log: log.With("provider", "sip", "account", account), now: time.Now}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Attach implements channels.SelfReporting: the calls' reports and key
// presses go to sink from now on. The first Attach starts the account's SIP
// user agent on Config.Listen and makes the synthesiser's cache directory;
// its error says why they could not start.
func (s *SIP) Attach(sink channels.CallSink) error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.ua == nil {
		if err := s.start(); err != nil {
			return err
		}
	}
	s.sink.Store(&sinkBox{sink})
	return nil
}

// start starts the user agent and the synthesiser.
func (s *SIP) start() error {
	cfg := s.cfg
	synth, err := NewSynth(cfg.TTSCommand, cfg.TTSCacheDir)
	if err != nil {
		return fmt.Errorf("sip.%w", err)
	}
	s.synth = synth
	if cfg.RTPPorts != "" {
		lo, hi, _ := portRange(cfg.RTPPorts)
		media.RTPPortStart, media.RTPPortEnd = lo, hi
	}
	lhost, lport, _ := hostPort(cfg.Listen, -1)
	if lport == 0 {
		// Pick the port here: the SIP stack tells the port it picked
		// itself only in a way that races with its own listener.
		if lport, err = freePort(cfg.Transport, lhost); err != nil {
			return fmt.Errorf("sip.listen: %s: %w", cfg.Listen, err)
		}
	}
	s.addr = net.JoinHostPort(lhost, strconv.Itoa(lport))
	stackLog := slog.New(maskingHandler{s.log.Handler()})
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("warngate"))
	if err != nil {
		return fmt.Errorf("sip: user agent: %w", err)
	}
	tr := diago.Transport{Transport: cfg.Transport, BindHost: lhost, BindPort: lport, ExternalHost: cfg.ExternalHost}
	dg := diago.NewDiago(ua, diago.WithLogger(stackLog), diago.WithTransport(tr))
	if err := dg.ServeBackground(s.ctx, s.refuseIncoming); err != nil {
		ua.Close()
		return fmt.Errorf("sip.listen: %s: %w", cfg.Listen, err)
	}
	s.ua, s.dg = ua, dg
	if err := s.waitListening(); err != nil {
		return err
	}
	s.log.Info("sip: user agent listening", "addr", s.addr, "trunk", cfg.Trunk)
	return nil
}

// waitListening waits until the user agent's UDP socket takes the
// requests of its own client: the stack announces it ready a moment
// before, and a call placed in that moment fails.
func (s *SIP) waitListening() error {
	if s.cfg.Transport != "udp" {
		return nil
	}
	tl := s.ua.TransportLayer()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, _ := tl.GetConnection("udp", s.addr); c != nil {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
	return fmt.Errorf("sip.listen: %s: the SIP user agent did not start listening", s.cfg.Listen)
}

// freePort returns a port of host free for the transport now.
func freePort(transport, host string) (int, error) {
	addr := net.JoinHostPort(host, "0")
	if transport == "udp" {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the address the user agent listens on.
func (s *SIP) Addr() string { return s.addr }

// refuseIncoming answers calls to the gateway: it places calls, it takes
// none.
func (s *SIP) refuseIncoming(d *diago.DialogServerSession) {
	d.Respond(sip.StatusForbidden, "Forbidden", nil)
}

// Close hangs up every call in progress, waits for their reports and stops
// the user agent.
func (s *SIP) Close() {
	s.cancel()
	s.calls.Wait()
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.ua != nil {
		s.ua.Close()
	}
}

// Notify implements channels.Notifier. Each recipient is called once, as a
// line of the trunk comes free and the number is in no other call; Notify
// returns when every call was placed (each a Sent receipt whose ProviderID
// is the SIP Call-ID), and the calls go on after it. A number that is not a
// mainland mobile number fails without a call. When ctx ends first, the
// recipients not yet called have no receipt, and the error says to retry.
// How each call ends comes later, through the attached sink.
func (s *SIP) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	box := s.sink.Load()
	if box == nil {
		return nil, true, errors.New("sip: not attached: nothing takes the calls' reports and key presses yet")
	}
	if s.ctx.Err() != nil {
		return nil, true, errors.New("sip: stopping")
	}
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	var phones []string
	var index []int
	prompts := map[string]string{} // text → WAV
	for i, r := range b.Recipients {
		phone, ok := channels.MobilePhone(r.Address)
		if !ok {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: voice.InvalidNumber})
			continue
		}
		text := channels.Speak(b, r).Text()
		if _, ok := prompts[text]; !ok {
			wav, err := s.synth.WAV(ctx, text)
			if err != nil {
				return receipts, true, fmt.Errorf("sip: %w", err)
			}
			prompts[text] = wav
		}
		phones = append(phones, phone)
		index = append(index, i)
	}
	dial := voice.Dial{Lines: s.lines, Account: s.account, N: s.cfg.Lines, TTL: leaseTTL}
	_, err := dial.Each(ctx, phones, func(k int, lease voice.Lease) (bool, error) {
		i := index[k]
		r := b.Recipients[i]
		sp := channels.Speak(b, r)
		c := &call{s: s, sink: box.CallSink, ref: b.Ref(i), lease: lease, prompt: prompts[sp.Text()],
			asks: sp.AsksKey(), callID: uuid.NewString(), log: s.log.With("ref", b.Ref(i).String(), "phone", channels.MaskPhone(lease.Phone))}
		s.calls.Add(1)
		go c.run()
		receipts = append(receipts, channels.Receipt{Index: i, State: warning.Sent, ProviderID: c.callID})
		return true, nil
	})
	if err != nil {
		return voice.Sorted(receipts), true, fmt.Errorf("sip: %w", err)
	}
	return voice.Sorted(receipts), false, nil
}

// hostPort splits host[:port]; def is the port when none is given (-1:
// one is required).
func hostPort(s string, def int) (string, int, error) {
	host, p, err := net.SplitHostPort(s)
	if err != nil {
		if def < 0 || strings.Contains(s, ":") || s == "" {
			return "", 0, err
		}
		return s, def, nil
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 || host == "" {
		return "", 0, fmt.Errorf("bad port in %q", s)
	}
	return host, port, nil
}

// portRange reads lo-hi.
func portRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || lo < 1024 || hi > 65535 || hi-lo < 1 {
		return 0, 0, fmt.Errorf("%q: give a range of UDP ports such as 10000-10999", s)
	}
	return lo, hi, nil
}
