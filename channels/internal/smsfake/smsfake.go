// Package smsfake is what the fake cloud SMS providers
// (channels/aliyun/fake and channels/tencent/fake) have in common: counting
// calls, keeping the messages they accept, failing calls on request or over
// a rate limit, and pushing delivery reports to a callback URL, again while
// it does not take them. Each fake keeps its provider's protocol:
// signatures, request and answer shapes, error codes and report format.
// Like the fakes, it does not use the adapters' code, so that a fake checks
// an adapter independently.
package smsfake

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Config configures a Core.
type Config struct {
	// Name names the fake in log lines, e.g. "aliyun".
	Name string
	// CallbackURL receives report pushes; empty means none.
	CallbackURL string
	// ReportDelay is how long after acceptance reports are pushed.
	ReportDelay time.Duration
	// Client pushes reports. Default: a client with a 10 s timeout.
	Client *http.Client
	// Log takes the fake's log lines, such as one for each push not
	// taken. Default: none.
	Log *slog.Logger
	// Now is the fake's clock. Default time.Now.
	Now func() time.Time
	// RateLimit is how many calls Admit lets pass per RateWindow, a window
	// starting with the first call after the last one ended. Zero means no
	// limit.
	RateLimit  int
	RateWindow time.Duration
	// Taken checks the callback's answer to a push that came with HTTP
	// 200, and says why it does not take the push. Required.
	Taken func(answer []byte) error
}

// Core is a fake provider's state and its report pushes, safe for
// concurrent use: M is the provider's message, R its report. Use New.
type Core[M, R any] struct {
	cfg Config

	mu       sync.Mutex
	seq      int64
	calls    int
	messages []M
	window   time.Time
	inWindow int
	failNext []string
	pushed   int
	closed   bool
	wg       sync.WaitGroup
	ctx      context.Context
	stop     context.CancelFunc
	timers   []*time.Timer // pushes not yet due, stopped by Close
}

// New returns a Core for cfg, with the defaults in.
func New[M, R any](cfg Config) *Core[M, R] {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	cfg.Log = cfg.Log.With("fake", cfg.Name)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Core[M, R]{cfg: cfg, ctx: ctx, stop: stop}
}

// Log returns the fake's logger, which names it.
func (c *Core[M, R]) Log() *slog.Logger { return c.cfg.Log }

// Now returns the fake's time.
func (c *Core[M, R]) Now() time.Time { return c.cfg.Now() }

// CountCall counts an API request.
func (c *Core[M, R]) CountCall() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
}

// Calls returns how many API requests were counted.
func (c *Core[M, R]) Calls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls
}

// Messages returns the messages kept so far.
func (c *Core[M, R]) Messages() []M {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.messages)
}

// Pushed returns how many reports the callback took.
func (c *Core[M, R]) Pushed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pushed
}

// FailNext queues error codes for Admit to return, one call per code.
func (c *Core[M, R]) FailNext(codes ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext = append(c.failNext, codes...)
}

// Admit decides whether a call that passed authentication goes on. It
// returns the first code FailNext queued, if any, which the call is to
// fail with; otherwise it counts the call against the rate limit and
// reports whether it is over.
func (c *Core[M, R]) Admit() (code string, throttled bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.failNext) > 0 {
		code, c.failNext = c.failNext[0], c.failNext[1:]
		return code, false
	}
	if c.cfg.RateLimit > 0 {
		now := c.cfg.Now()
		if now.Sub(c.window) >= c.cfg.RateWindow {
			c.window, c.inWindow = now, 0
		}
		c.inWindow++
		if c.inWindow > c.cfg.RateLimit {
			return "", true
		}
	}
	return "", false
}

// Keep keeps the messages accept returns and returns them. accept runs
// alone, holding the Core's lock, so it may call no method of the Core but
// Now; seq returns the next number of a sequence that starts at 1, for the
// ids of accepted messages.
func (c *Core[M, R]) Keep(accept func(seq func() int64) []M) []M {
	c.mu.Lock()
	defer c.mu.Unlock()
	msgs := accept(func() int64 {
		c.seq++
		return c.seq
	})
	c.messages = append(c.messages, msgs...)
	return msgs
}

// Schedule pushes a report for each of msgs to Config.CallbackURL after
// Config.ReportDelay; report makes one from a message and the time of the
// push. A push not taken is made again up to four times, after
// ReportDelay, then twice as long each time, as the providers do. Nothing
// is pushed without a CallbackURL or messages, or once Close was called.
func (c *Core[M, R]) Schedule(msgs []M, report func(m M, now time.Time) R) {
	if c.cfg.CallbackURL == "" || len(msgs) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.wg.Add(1)
	var t *time.Timer
	t = time.AfterFunc(c.cfg.ReportDelay, func() {
		defer c.wg.Done()
		now := c.cfg.Now()
		reports := make([]R, len(msgs))
		for i, m := range msgs {
			reports[i] = report(m, now)
		}
		backoff := c.cfg.ReportDelay
		for attempt := 1; ; attempt++ {
			err := c.Push(c.ctx, reports)
			if err == nil {
				return
			}
			c.cfg.Log.Warn("report push not taken", "attempt", attempt, "err", err)
			if attempt == 5 {
				return
			}
			select {
			case <-time.After(backoff):
			case <-c.ctx.Done():
				return
			}
			backoff *= 2
		}
	})
	c.timers = append(c.timers, t)
}

// Push pushes reports to Config.CallbackURL (see PushTo).
func (c *Core[M, R]) Push(ctx context.Context, reports []R) error {
	return c.PushTo(ctx, c.cfg.CallbackURL, reports)
}

// PushTo pushes reports to callbackURL as one POST of a JSON array, and
// checks the answer: HTTP 200, and what Config.Taken wants.
func (c *Core[M, R]) PushTo(ctx context.Context, callbackURL string, reports []R) error {
	body, err := json.Marshal(reports)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, callbackURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("callback answered %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	if err := c.cfg.Taken(raw); err != nil {
		return err
	}
	c.mu.Lock()
	c.pushed += len(reports)
	c.mu.Unlock()
	return nil
}

// Close stops pushing reports and waits for pushes under way.
func (c *Core[M, R]) Close() {
	c.mu.Lock()
	c.closed = true
	for _, t := range c.timers {
		if t.Stop() {
			c.wg.Done() // a push not yet due will not run
		}
	}
	c.timers = nil
	c.mu.Unlock()
	c.stop()
	c.wg.Wait()
}

// Mainland returns the 11-digit mainland mobile number of s, which may
// start with +86, 0086 or 86, and whether it is one.
func Mainland(s string) (string, bool) {
	for _, p := range []string{"+86", "0086", "86"} {
		if len(s) == len(p)+11 && strings.HasPrefix(s, p) {
			s = s[len(p):]
			break
		}
	}
	if len(s) != 11 || s[0] != '1' {
		return s, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return s, false
		}
	}
	return s, true
}

// Parts counts billed segments: 70 characters in one, 67 each when longer.
func Parts(text string) int {
	n := utf8.RuneCountInString(text)
	if n <= 70 {
		return 1
	}
	return (n + 66) / 67
}

// RequestID returns a random UUID (version 4), in lower case.
func RequestID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// HashHex returns the lowercase hex SHA-256 of b.
func HashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// beijing is China Standard Time, in which the providers write report
// times.
var beijing = time.FixedZone("CST", 8*3600)

// BeijingTime writes t as the providers write report times:
// "2006-01-02 15:04:05" in China Standard Time.
func BeijingTime(t time.Time) string { return t.In(beijing).Format("2006-01-02 15:04:05") }
