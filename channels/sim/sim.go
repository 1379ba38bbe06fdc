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
}

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
}

var _ channels.Notifier = (*Provider)(nil)
var _ channels.ReportReceiver = (*Receiver)(nil)

// New returns a simulator. hc must not be nil.
func New(cfg Config, hc *http.Client, log *slog.Logger) *Provider {
	return &Provider{cfg: cfg, hc: hc, log: log.With("provider", "sim"), seen: map[string]int{}}
}

// OnAccept registers fn to be called with every batch the simulator accepts,
// before it answers. Tests and the bench use it to see what reached the provider.
func (p *Provider) OnAccept(fn func(b *channels.Batch, at time.Time)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hooks = append(p.hooks, fn)
}

// Accepted returns how many times the simulator accepted a message for ref
// (with Config.Track).
func (p *Provider) Accepted(ref warning.Ref) int {
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
	for {
		n := p.batches.Load()
		if p.cfg.HangAfter > 0 && n >= int64(p.cfg.HangAfter) {
			<-ctx.Done()
			return nil, true, fmt.Errorf("sim: provider hangs: %w", context.Cause(ctx))
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

	out := make([]channels.Receipt, len(b.Recipients))
	reports := make([]wireReport, 0, len(b.Recipients))
	for i, r := range b.Recipients {
		if reason := invalid(b.Channel, r.Address); reason != "" {
			out[i] = channels.Receipt{Index: i, State: warning.Failed, Reason: reason}
			continue
		}
		id := "sim-" + strconv.FormatUint(p.seq.Add(1), 36)
		out[i] = channels.Receipt{Index: i, State: warning.Sent, ProviderID: id, Segments: segments(b)}
		rep := wireReport{Ref: b.Ref(i).String(), Status: "delivered", ID: id}
		if p.fails(rep.Ref) {
			rep.Status, rep.Error = "failed", failureReason(b.Channel)
		}
		reports = append(reports, rep)
	}
	if p.cfg.CallbackURL != "" && len(reports) > 0 && !p.closed.Load() {
		p.wg.Add(1)
		time.AfterFunc(p.cfg.ReportDelay, func() {
			defer p.wg.Done()
			p.report(reports)
		})
	}
	return out, false, nil
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

// Close waits for reports already scheduled to be sent.
func (p *Provider) Close() {
	p.closed.Store(true)
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
	if ch == warning.SMS {
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
	}
	return "投递失败"
}

// segments counts the SMS parts of the batch's message: 70 characters in
// one, 67 each when concatenated.
func segments(b *channels.Batch) int {
	if b.Channel != warning.SMS {
		return 0
	}
	n := len([]rune(b.Warning.Title() + b.Warning.Description))
	if n <= 70 {
		return 1
	}
	return (n + 66) / 67
}

// wireReport is one report as the simulator sends it. On the wire a report
// is one line, "ref TAB status TAB provider-id TAB unix-ms TAB error", so
// that a batch of a thousand reports costs little to write and to read.
type wireReport struct {
	Ref    string
	Status string // delivered or failed
	ID     string
	Error  string
	At     int64
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
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func decodeReports(body []byte) ([]warning.Report, error) {
	out := make([]warning.Report, 0, bytes.Count(body, []byte("\n")))
	for n := 1; len(body) > 0; n++ {
		var line []byte
		line, body, _ = bytes.Cut(body, []byte("\n"))
		if len(line) == 0 {
			continue
		}
		f := strings.SplitN(string(line), "\t", 5)
		if len(f) != 5 {
			return nil, fmt.Errorf("line %d: want 5 tab-separated fields: ref, status, id, unix-ms, error", n)
		}
		ref, err := warning.ParseRef(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		ms, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: time %q is not unix milliseconds", n, f[3])
		}
		rep := warning.Report{Ref: ref, ProviderID: f[2], At: time.UnixMilli(ms)}
		switch f[1] {
		case "delivered":
			rep.State = warning.Delivered
		case "failed":
			rep.State, rep.Reason = warning.Failed, f[4]
		default:
			return nil, fmt.Errorf("line %d: status %q: want delivered or failed", n, f[1])
		}
		out = append(out, rep)
	}
	return out, nil
}

// report posts reports, trying a few times as providers do.
func (p *Provider) report(reports []wireReport) {
	now := time.Now().UnixMilli()
	for i := range reports {
		reports[i].At = now
	}
	body := encodeReports(reports)
	mac := hmac.New(sha256.New, []byte(p.cfg.Secret))
	mac.Write(body)
	sig := hex.EncodeToString(mac.Sum(nil))
	backoff := 200 * time.Millisecond
	for attempt := 1; attempt <= 5; attempt++ {
		err := p.post(body, sig)
		if err == nil {
			p.reportsSent.Add(int64(len(reports)))
			return
		}
		p.log.Warn("sim: report not taken", "attempt", attempt, "err", err)
		time.Sleep(backoff)
		backoff *= 2
	}
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
// records the reports and answers {"ok":true}. A malformed body records
// nothing.
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
	reports, err := decodeReports(body)
	if err != nil {
		answer(w, http.StatusBadRequest, "malformed reports: "+err.Error())
		return
	}
	if err := sink.Record(req.Context(), reports); err != nil {
		answer(w, http.StatusServiceUnavailable, "not recorded, send again")
		return
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
