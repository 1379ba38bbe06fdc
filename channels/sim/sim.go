// Package sim is a built-in provider simulator for every channel. It accepts
// batches like a provider would, answers with message ids, and later reports
// delivery over HTTP to the gateway's callback endpoint, signed with a shared
// secret, exactly as a real provider's push would arrive. It is for trying
// the product and for benchmarks, never for production.
package sim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/warning"
)

// Config tunes a simulator.
type Config struct {
	// CallbackURL receives delivery reports, e.g.
	// http://127.0.0.1:8080/callbacks/sim. Empty means reports are not sent.
	CallbackURL string
	// Secret signs reports (HMAC-SHA256 of the body, hex, in X-Sim-Signature).
	Secret string
	// ReportDelay is how long after acceptance delivery is reported. Zero reports at once.
	ReportDelay time.Duration
	// FailureRate is the fraction of accepted messages reported as failed,
	// chosen deterministically from the delivery ref.
	FailureRate float64
	// Latency is how long each Notify call takes, as a slow provider would.
	Latency time.Duration
	// Track remembers every ref accepted, for Accepted and Duplicates. It
	// costs a map entry per message: tests want it, a benchmark does not.
	Track bool
	// AcceptLog, when set, is a file every accepted delivery ref is
	// appended to, one per line, each batch closed by a "#batch <id>" line:
	// what the provider received, for checking from outside the process
	// that nobody got a message twice.
	AcceptLog string
	// HangAfter, when positive, makes the simulator stop answering after
	// accepting that many batches, as a provider that hangs: every later
	// call blocks until its context ends, accepting nothing.
	HangAfter int
	// Voice tunes the calls of the voice channel.
	Voice VoiceConfig
	// Signature is the 【signature】 its SMS carry, as a real provider's
	// approved one; it counts towards the parts billed. Default
	// DefaultSignature.
	Signature string
	// HangAccepting makes the calls that hang accept their batch first, as
	// a provider that takes the messages and never answers: the window in
	// which a worker cannot know what the provider has.
	HangAccepting bool
	// Redis, when set, keeps what the simulator accepted, by hand-over key
	// (channels.Batch.Key), for a day: it answers Accepted from there, as a
	// provider answers a send-status query, whichever process asks. It also
	// keeps the delivery reports not yet sent, by when they are due, and
	// every simulator on it sends those that are due: a process that dies
	// leaves its reports to the others, as a real provider's do not die
	// with the worker that sent to it. (Simulated calls are followed in the
	// process that placed them.)
	Redis redis.UniversalClient
	// Prefix starts the simulator's Redis keys. Default "wg:sim".
	Prefix string
	// NoQuery makes the simulator a provider that cannot be asked what it
	// accepted (Askable is false), as most real SMS gateways.
	NoQuery bool
}

// AcceptedTTL is how long the simulator remembers what it accepted.
const AcceptedTTL = 24 * time.Hour

// DefaultSignature is the simulated SMS signature.
const DefaultSignature = channels.DefaultSignature

// VoiceConfig tunes simulated calls. Whether an official answers is chosen
// deterministically from the delivery ref: most answer and press 1 after
// KeyDelay, NoAnswer of them never answer and the call ends after Ring.
type VoiceConfig struct {
	// KeyDelay is how long an official who answers listens before
	// pressing 1. Default 3s.
	KeyDelay time.Duration
	// Ring is how long a phone nobody answers rings. Default 20s.
	Ring time.Duration
	// NoAnswer is the fraction of officials who never answer. Default 0.25;
	// a negative value means none.
	NoAnswer float64
	// Silent makes those who answer listen to the end and press no key
	// (no_key): the call is delivered, nobody confirms by it.
	Silent bool
}

// Default simulated calls.
const (
	DefaultKeyDelay = 3 * time.Second
	DefaultRing     = 20 * time.Second
	DefaultNoAnswer = 0.25
	// thanks is how long an answered call goes on after the 1.
	thanks = 2 * time.Second
)

// Provider simulates one provider for all channels.
type Provider struct {
	cfg    Config
	hc     *http.Client
	log    *slog.Logger
	seq    atomic.Uint64
	mu     sync.Mutex
	seen   map[string]int // ref → times accepted
	hooks  []func(b *channels.Batch, at time.Time)
	wg     sync.WaitGroup
	closed atomic.Bool

	reportsSent atomic.Int64
	batches     atomic.Int64
	logMu       sync.Mutex

	wake     chan struct{} // a report was queued: the pump looks again
	stopPump chan struct{}
	pumpDone chan struct{}
	posting  sync.WaitGroup
}

var (
	_ channels.Notifier  = (*Provider)(nil)
	_ channels.SMSTexter = (*Provider)(nil)
	_ channels.Querier   = (*Provider)(nil)
)
var _ channels.ReportReceiver = (*Receiver)(nil)

// New returns a simulator. hc must not be nil.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Provider {
	v := &cfg.Voice
	if v.KeyDelay == 0 {
		v.KeyDelay = DefaultKeyDelay
	}
	if v.Ring == 0 {
		v.Ring = DefaultRing
	}
	if v.NoAnswer == 0 {
		v.NoAnswer = DefaultNoAnswer
	}
	if cfg.Signature == "" {
		cfg.Signature = DefaultSignature
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "wg:sim"
	}
	p := &Provider{cfg: cfg, hc: hc, log: log.With("provider", "sim"), seen: map[string]int{}}
	if cfg.Redis != nil && cfg.CallbackURL != "" {
		p.wake, p.stopPump, p.pumpDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
		go p.pump()
	}
	return p
}

// OnAccept registers fn to be called with every batch the simulator accepts,
// before it answers. Tests and the bench use it to see what reached the provider.
func (p *Provider) OnAccept(fn func(b *channels.Batch, at time.Time)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooks = append(p.hooks, fn)
}

// Times returns how many times the simulator accepted a message for ref
// (with Config.Track).
func (p *Provider) Times(ref warning.Ref) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen[ref.String()]
}

// Duplicates returns the refs accepted more than once (with Config.Track).
func (p *Provider) Duplicates() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for r, n := range p.seen {
		if n > 1 {
			out = append(out, r)
		}
	}
	return out
}

// Forget drops the record of accepted refs (the bench runs many warnings).
func (p *Provider) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = map[string]int{}
}

// Notify implements channels.Notifier. A recipient whose address a real
// provider would refuse (a phone that is not 11 digits, an empty id) fails
// for good; everyone else is accepted and reported on later.
func (p *Provider) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if p.cfg.Latency > 0 {
		select {
		case <-time.After(p.cfg.Latency):
		case <-ctx.Done():
			return nil, true, fmt.Errorf("sim: %w", context.Cause(ctx))
		}
	}
	// Count the batch, or hang once HangAfter were taken: exactly that many
	// get through, however many calls race for the last place.
	hang := false
	for {
		n := p.batches.Load()
		if p.cfg.HangAfter > 0 && n >= int64(p.cfg.HangAfter) {
			if !p.cfg.HangAccepting {
				<-ctx.Done()
				return nil, true, fmt.Errorf("sim: provider hangs: %w", context.Cause(ctx))
			}
			hang = true
			break
		}
		if p.batches.CompareAndSwap(n, n+1) {
			break
		}
	}
	if p.cfg.AcceptLog != "" {
		if err := p.logAccepted(b); err != nil {
			return nil, true, fmt.Errorf("sim: accept log: %w", err)
		}
	}
	now := time.Now()
	p.mu.Lock()
	hooks := p.hooks
	if p.cfg.Track {
		for i := range b.Recipients {
			p.seen[b.Ref(i).String()]++
		}
	}
	p.mu.Unlock()
	for _, h := range hooks {
		h(b, now)
	}

	if b.Channel == warning.Voice {
		// What it accepted is kept before the calls go on, as for every
		// channel: a worker that dies meanwhile is told who was called.
		// The calls' key presses and ends are kept in the same write: a
		// worker that dies after it leaves every call to be reported.
		out, events := p.call(b)
		if err := p.keep(ctx, b, out, events); err != nil {
			return nil, true, err
		}
		if p.cfg.Redis == nil {
			for _, e := range events {
				p.later(e.after, e.report)
			}
		}
		return out, false, nil
	}
	out, reports := p.answer(b)
	events := make([]callEvent, len(reports))
	for i, r := range reports {
		events[i] = callEvent{p.cfg.ReportDelay, r}
	}
	if err := p.keep(ctx, b, out, events); err != nil {
		return nil, true, err
	}
	if p.cfg.Redis == nil {
		p.schedule(reports)
	}
	if hang {
		<-ctx.Done()
		return nil, true, fmt.Errorf("sim: provider took the batch and hangs: %w", context.Cause(ctx))
	}
	return out, false, nil
}

// answer decides the fate of every recipient of a batch: the receipts and
// the delivery reports to come.
func (p *Provider) answer(b *channels.Batch) ([]channels.Receipt, []wireReport) {
	out := make([]channels.Receipt, len(b.Recipients))
	reports := make([]wireReport, 0, len(b.Recipients))
	bill := p.biller(b)
	for i, r := range b.Recipients {
		if reason := invalid(b.Channel, r.Address); reason != "" {
			out[i] = channels.Receipt{Index: i, State: warning.Failed, Reason: reason}
			continue
		}
		id := "sim-" + strconv.FormatUint(p.seq.Add(1), 36)
		out[i] = channels.Receipt{Index: i, State: warning.Sent, ProviderID: id, Segments: bill(r)}
		if !b.Tracked() {
			// A notice about a warning is not followed: a provider reports
			// it under its own message id, which names no delivery, while
			// the simulator's reports name the ref, that of the
			// recipient's delivery of the warning itself.
			continue
		}
		rep := wireReport{Ref: b.Ref(i).String(), Status: "delivered", ID: id}
		if p.fails(rep.Ref) {
			rep.Status, rep.Error = "failed", failureReason(b.Channel)
		}
		reports = append(reports, rep)
	}
	return out, reports
}

func (p *Provider) acceptedKey(key string) string { return p.cfg.Prefix + ":acc:" + key }

// keep records, before the simulator answers, which recipients of a keyed
// hand-over it accepted (one value per hand-over, the recipient ids a line
// each), and queues their delivery reports, each due after its delay, all
// in one transaction: a provider that cannot keep its record takes nothing,
// and one that kept it owes every report it queued.
func (p *Provider) keep(ctx context.Context, b *channels.Batch, out []channels.Receipt, reports []callEvent) error {
	if p.cfg.Redis == nil {
		return nil
	}
	var took strings.Builder
	for _, rc := range out {
		if rc.State == warning.Sent {
			took.WriteString(b.Recipients[rc.Index].ID)
			took.WriteByte('\n')
		}
	}
	send := p.cfg.CallbackURL != "" && len(reports) > 0 && !p.closed.Load()
	_, err := p.cfg.Redis.TxPipelined(ctx, func(pl redis.Pipeliner) error {
		if b.Key != "" {
			pl.Set(ctx, p.acceptedKey(b.Key), took.String(), AcceptedTTL)
		}
		if send {
			now := time.Now()
			due := map[time.Duration][]wireReport{}
			var order []time.Duration
			for _, e := range reports {
				if _, ok := due[e.after]; !ok {
					order = append(order, e.after)
				}
				due[e.after] = append(due[e.after], e.report)
			}
			for _, d := range order {
				p.queueAt(ctx, pl, due[d], now.Add(d))
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sim: keep what was accepted: %w", err)
	}
	if send {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Accepted implements channels.Querier from the record keep wrote: any
// simulator on the same Redis answers for what another accepted.
func (p *Provider) Accepted(ctx context.Context, b *channels.Batch) ([]channels.Receipt, error) {
	if !p.Askable() || b.Key == "" {
		return nil, channels.ErrNotAskable
	}
	v, err := p.cfg.Redis.Get(ctx, p.acceptedKey(b.Key)).Result()
	if err == redis.Nil {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sim: status query: %w", err)
	}
	took := map[string]bool{}
	for _, id := range strings.Split(v, "\n") {
		took[id] = true
	}
	bill := p.biller(b)
	var out []channels.Receipt
	for i, r := range b.Recipients {
		if took[r.ID] {
			out = append(out, channels.Receipt{Index: i, State: warning.Sent, Segments: bill(r)})
		}
	}
	return out, nil
}

// Askable says whether the simulator answers status queries: with a Redis
// to keep its record in, unless NoQuery.
func (p *Provider) Askable() bool { return p.cfg.Redis != nil && !p.cfg.NoQuery }

// callEvent is what a simulated call reports, after a while.
type callEvent struct {
	after  time.Duration
	report wireReport
}

// call places the batch's calls: each official called either answers and
// presses 1 after KeyDelay (a key line, then the call's end thanks later),
// or never answers (the call's end after Ring). It returns the receipts and
// what the calls will report (to the callback, like any report).
func (p *Provider) call(b *channels.Batch) ([]channels.Receipt, []callEvent) {
	out := make([]channels.Receipt, len(b.Recipients))
	var events []callEvent
	v := p.cfg.Voice
	for i, r := range b.Recipients {
		if reason := invalid(b.Channel, r.Address); reason != "" {
			out[i] = channels.Receipt{Index: i, State: warning.Failed, Reason: reason}
			continue
		}
		id := "sim-call-" + strconv.FormatUint(p.seq.Add(1), 36)
		out[i] = channels.Receipt{Index: i, State: warning.Sent, ProviderID: id}
		ref := b.Ref(i).String()
		if p.cfg.CallbackURL == "" || p.closed.Load() {
			continue
		}
		asks := channels.Speak(b, r).AsksKey() && !v.Silent
		if p.answers(ref, v.NoAnswer) {
			if asks {
				events = append(events, callEvent{v.KeyDelay, wireReport{Ref: ref, Status: "key", ID: id, Error: "1"}})
			}
			talk := v.KeyDelay + thanks
			events = append(events, callEvent{talk, callReport(ref, id, warning.Call{Outcome: warning.CallAnswered, Keys: "1", Ring: time.Second,
				Talk: talk, Billed: warning.BilledMinutes(talk)}, asks)})
			continue
		}
		events = append(events, callEvent{v.Ring, callReport(ref, id, warning.Call{Outcome: warning.CallNoAnswer, Ring: v.Ring}, asks)})
	}
	return out, events
}

// answers says whether the official of ref answers, NoAnswer of them not.
func (p *Provider) answers(ref string, noAnswer float64) bool {
	if noAnswer < 0 {
		return true
	}
	h := fnv.New64a()
	io.WriteString(h, "voice:"+ref)
	return float64(h.Sum64()%10000) >= noAnswer*10000
}

// callReport is the wire report of a call that ended as c. A call that
// asks nothing (a notice) ends with no key.
func callReport(ref, id string, c warning.Call, asks bool) wireReport {
	if !asks && c.Outcome == warning.CallAnswered {
		c.Outcome, c.Keys = warning.CallNoKey, ""
	}
	r := wireReport{Ref: ref, Status: "delivered", ID: id, Call: &c}
	if !c.Outcome.Answered() {
		r.Status, r.Error = "failed", c.Outcome.Chinese()
	}
	return r
}

// later reports r after d from this process: a simulator without Redis.
// (With Redis, keep queued the calls' reports there with the calls.)
func (p *Provider) later(d time.Duration, r wireReport) {
	p.wg.Add(1)
	time.AfterFunc(d, func() {
		defer p.wg.Done()
		p.report([]wireReport{r})
	})
}

func (p *Provider) logAccepted(b *channels.Batch) error {
	var buf bytes.Buffer
	for i := range b.Recipients {
		buf.WriteString(b.Ref(i).String())
		buf.WriteByte('\n')
	}
	buf.WriteString("#batch " + b.ID + "\n")
	p.logMu.Lock()
	defer p.logMu.Unlock()
	f, err := os.OpenFile(p.cfg.AcceptLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(buf.Bytes())
	return err
}

// schedule sends the delivery reports of accepted messages from this
// process, after the report delay: a simulator without Redis.
func (p *Provider) schedule(reports []wireReport) {
	if p.cfg.CallbackURL == "" || len(reports) == 0 || p.closed.Load() {
		return
	}
	p.wg.Add(1)
	time.AfterFunc(p.cfg.ReportDelay, func() {
		defer p.wg.Done()
		p.report(reports)
	})
}

// Close stops this simulator's report sending: those scheduled in this
// process are sent first; those kept in Redis stay there for any other.
func (p *Provider) Close() {
	p.closed.Store(true)
	if p.stopPump != nil {
		close(p.stopPump)
		<-p.pumpDone
	}
	p.posting.Wait()
	p.wg.Wait()
}

// ReportsSent returns how many reports reached the gateway.
func (p *Provider) ReportsSent() int64 { return p.reportsSent.Load() }

func (p *Provider) fails(ref string) bool {
	if p.cfg.FailureRate <= 0 {
		return false
	}
	h := fnv.New64a()
	io.WriteString(h, ref)
	return float64(h.Sum64()%10000) < p.cfg.FailureRate*10000
}

func invalid(ch warning.Channel, addr string) string {
	if addr == "" {
		return "empty address"
	}
	if ch == warning.SMS || ch == warning.Voice {
		if len(addr) != 11 || addr[0] != '1' {
			return "invalid number"
		}
		for _, c := range addr {
			if c < '0' || c > '9' {
				return "invalid number"
			}
		}
	}
	return ""
}

func failureReason(ch warning.Channel) string {
	switch ch {
	case warning.SMS:
		return "用户关机"
	case warning.WeChat:
		return "用户拒收"
	case warning.Broadcast, warning.Screen:
		return "设备离线"
	case warning.CallList:
		return "未找到住户"
	case warning.Voice:
		return "无人接听"
	}
	return "投递失败"
}

// SMSText implements channels.SMSTexter.
func (p *Provider) SMSText(b *channels.Batch, r warning.Recipient) string {
	return channels.SMSText(p.cfg.Signature, b, r)
}

// biller returns what each recipient of b is billed, as a real SMS
// provider bills: the parts of the text that recipient's phone shows. Only
// officials' texts differ (their links); the others' is counted once.
func (p *Provider) biller(b *channels.Batch) func(warning.Recipient) int {
	if b.Channel != warning.SMS {
		return func(warning.Recipient) int { return 0 }
	}
	common := -1
	return func(r warning.Recipient) int {
		if b.AckURL != nil && r.Audience.Official() {
			return channels.SMSSegments(p.SMSText(b, r))
		}
		if common < 0 {
			common = channels.SMSSegments(p.SMSText(b, r))
		}
		return common
	}
}

// wireReport is one report as the simulator sends it. On the wire a report
// is one line, "ref TAB status TAB provider-id TAB unix-ms TAB error", so
// that a batch of a thousand reports costs little to write and to read. A
// call's end adds "TAB outcome TAB keys TAB ring-ms TAB talk-ms TAB billed";
// a key press is status "key" with the key in the error field.
type wireReport struct {
	Ref    string
	Status string // delivered, failed or key
	ID     string
	Error  string
	At     int64
	Call   *warning.Call
}

var fieldSafe = strings.NewReplacer("\t", " ", "\n", " ")

func encodeReports(reports []wireReport) []byte {
	var b bytes.Buffer
	b.Grow(len(reports) * 64)
	for _, r := range reports {
		b.WriteString(r.Ref)
		b.WriteByte('\t')
		b.WriteString(r.Status)
		b.WriteByte('\t')
		b.WriteString(r.ID)
		b.WriteByte('\t')
		b.WriteString(strconv.FormatInt(r.At, 10))
		b.WriteByte('\t')
		b.WriteString(fieldSafe.Replace(r.Error))
		if c := r.Call; c != nil {
			fmt.Fprintf(&b, "\t%s\t%s\t%d\t%d\t%d", c.Outcome, c.Keys, c.Ring.Milliseconds(), c.Talk.Milliseconds(), c.Billed)
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// keyPress is a key pressed on a simulated call.
type keyPress struct {
	Ref warning.Ref
	ID  string
	Key string
}

func decodeReports(body []byte) ([]warning.Report, []keyPress, error) {
	out := make([]warning.Report, 0, bytes.Count(body, []byte("\n")))
	var keys []keyPress
	for n := 1; len(body) > 0; n++ {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		var fields [10]string
		f := cutFields(string(line), fields[:0])
		if len(f) != 5 && len(f) != 10 {
			return nil, nil, fmt.Errorf("line %d: want 5 tab-separated fields: ref, status, id, unix-ms, error, and for a call 5 more: outcome, keys, ring-ms, talk-ms, billed", n)
		}
		ref, err := warning.ParseRef(f[0])
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		ms, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: time %q is not unix milliseconds", n, f[3])
		}
		if f[1] == "key" {
			keys = append(keys, keyPress{Ref: ref, ID: f[2], Key: f[4]})
			continue
		}
		rep := warning.Report{Ref: ref, ProviderID: f[2], At: time.UnixMilli(ms)}
		switch f[1] {
		case "delivered":
			rep.State = warning.Delivered
		case "failed":
			rep.State, rep.Reason = warning.Failed, f[4]
		default:
			return nil, nil, fmt.Errorf("line %d: status %q: want delivered, failed or key", n, f[1])
		}
		if len(f) == 10 {
			c, err := decodeCall(f[5:])
			if err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", n, err)
			}
			c.Account = "sim"
			rep.Call = c
		}
		out = append(out, rep)
	}
	return out, keys, nil
}

// cutFields appends the tab-separated fields of line to f while it has
// room, and the rest of the line as one more field when there is more.
func cutFields(line string, f []string) []string {
	for len(f) < cap(f) {
		field, rest, more := strings.Cut(line, "\t")
		f = append(f, field)
		if !more {
			return f
		}
		line = rest
	}
	return append(f, line)
}

// decodeCall reads a call's fields: outcome, keys, ring-ms, talk-ms, billed.
func decodeCall(f []string) (*warning.Call, error) {
	o, err := warning.ParseCallOutcome(f[0])
	if err != nil {
		return nil, err
	}
	var n [3]int64
	for i, s := range f[2:] {
		if n[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("call field %q is not a number", s)
		}
	}
	return &warning.Call{Outcome: o, Keys: f[1], Ring: time.Duration(n[0]) * time.Millisecond,
		Talk: time.Duration(n[1]) * time.Millisecond, Billed: int(n[2])}, nil
}

// report posts reports, trying a few times as providers do.
func (p *Provider) report(reports []wireReport) {
	now := time.Now().UnixMilli()
	for i := range reports {
		reports[i].At = now
	}
	p.send(encodeReports(reports), len(reports))
}

// send posts a body of reports, signed, trying a few times as providers
// do, and says whether the gateway took it.
func (p *Provider) send(body []byte, n int) bool {
	mac := hmac.New(sha256.New, []byte(p.cfg.Secret))
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))
	backoff := 200 * time.Millisecond
	for attempt := 1; attempt <= 5; attempt++ {
		err := p.post(body, sig)
		if err == nil {
			p.reportsSent.Add(int64(n))
			return true
		}
		p.log.Warn("sim: report not taken", "attempt", attempt, "err", err)
		time.Sleep(backoff)
		backoff *= 2
	}
	return false
}

func (p *Provider) post(body []byte, sig string) error {
	ctx, cancel := context.WithTimeoutCause(context.Background(), 10*time.Second, errors.New("sim: report timed out"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.CallbackURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/tab-separated-values")
	req.Header.Set("X-Sim-Signature", sig)
	resp, err := p.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("gateway answered %s", resp.Status)
	}
	return nil
}

// Receiver takes the simulator's reports at the gateway.
type Receiver struct {
	Secret string
}

// Name implements channels.ReportReceiver.
func (r *Receiver) Name() string { return "sim" }

// MaxReportBody bounds a report request.
const MaxReportBody = 8 << 20

// ServeReports implements channels.ReportReceiver: it checks the signature,
// records the reports and answers {"ok":true}. A key press "1" on a call
// confirms through the sink, which must be a channels.CallSink; a
// confirmation it refuses (the warning was lifted) changes nothing. A
// malformed body records nothing.
func (r *Receiver) ServeReports(w http.ResponseWriter, req *http.Request, sink channels.ReportSink) {
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, MaxReportBody))
	if err != nil {
		answer(w, http.StatusRequestEntityTooLarge, "body too large or unreadable")
		return
	}
	mac := hmac.New(sha256.New, []byte(r.Secret))
	mac.Write(body)
	got, err := hex.DecodeString(req.Header.Get("X-Sim-Signature"))
	if err != nil || !hmac.Equal(got, mac.Sum(nil)) {
		answer(w, http.StatusUnauthorized, "bad or missing X-Sim-Signature")
		return
	}
	reports, keys, err := decodeReports(body)
	if err != nil {
		answer(w, http.StatusBadRequest, "malformed reports: "+err.Error())
		return
	}
	for _, k := range keys {
		if k.Key != string(channels.KeyConfirm) {
			continue
		}
		cs, ok := channels.AsCallSink(sink)
		if !ok {
			answer(w, http.StatusServiceUnavailable, "key press not confirmed: the sink takes no confirmations")
			return
		}
		err := cs.Confirm(req.Context(), k.Ref, channels.ConfirmMethod, "sim "+k.ID)
		if err != nil && !errors.Is(err, channels.ErrNotConfirmable) {
			answer(w, http.StatusServiceUnavailable, "not recorded, send again")
			return
		}
	}
	if len(reports) > 0 {
		if err := sink.Record(req.Context(), reports); err != nil {
			answer(w, http.StatusServiceUnavailable, "not recorded, send again")
			return
		}
	}
	answer(w, http.StatusOK, "")
}

func answer(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code == http.StatusOK {
		io.WriteString(w, `{"ok":true}`)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": msg})
}
