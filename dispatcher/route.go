package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/warning"
)

// Provider is one configured provider account on a channel.
type Provider struct {
	Name     string
	Notifier channels.Notifier
	// Rate is the account's limit in messages per second, shared by every
	// worker process through Redis. Zero means no limit.
	Rate float64
	// Burst is how many messages may go at once; zero means one second's worth.
	Burst int
	// ReportWindow overrides RouteConfig.ReportWindow for this account
	// (a carrier known to report slowly); zero keeps the route's.
	ReportWindow time.Duration
}

// RouteConfig tunes failover.
type RouteConfig struct {
	// Failures is how many failed calls in a row open a provider's circuit:
	// it is skipped, and batches go to the next provider. Default 3.
	Failures int
	// OpenFor is how long an open circuit skips the provider. Default 1m.
	OpenFor time.Duration
	// Prefix starts the Redis keys of limits and circuits. Default "wg".
	Prefix string
	// ReportWindow is how long a provider may keep silent about messages
	// it accepted. When SilentBatches of its batches sent longer ago than
	// that have no delivery report, and none sent since then has one, the
	// provider is taken for failing (it accepts and drops) and its circuit
	// opens. Zero turns the check off.
	ReportWindow time.Duration
	// SilentBatches is how many unreported batches it takes. Default 3: one
	// lost report is the carrier's, three in a row are the provider's.
	SilentBatches int
	// Reported tells which deliveries have a report; the check is off
	// without it. Dispatchers pass their ledger's Reported.
	Reported func(ctx context.Context, refs []warning.Ref) ([]bool, error)
	// Opened, when set, is told each time a circuit opens and why:
	// "errors" or "silent".
	Opened func(provider, reason string)
}

// Route is a channel's ordered list of providers: it sends through the
// first whose circuit is closed, within its rate limit, and fails the
// recipients a provider did not take over to the next one. A recipient a
// provider accepted is never handed to another, so nobody gets the same
// warning twice through two providers.
type Route struct {
	channel   warning.Channel
	providers []Provider
	cfg       RouteConfig
	rdb       redis.UniversalClient
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex           // held while looking for silence
	checked map[string]time.Time // provider → when this process last looked
}

var (
	_ channels.Notifier  = (*Route)(nil)
	_ channels.Canceller = (*Route)(nil)
	_ channels.SMSTexter = (*Route)(nil)
	_ channels.Querier   = (*Route)(nil)
)

// SMSText implements channels.SMSTexter: the text of the first of the
// route's providers that says, as the one a message normally goes through;
// "" when none does.
func (r *Route) SMSText(b *channels.Batch, rc warning.Recipient) string {
	for _, p := range r.providers {
		if t, ok := p.Notifier.(channels.SMSTexter); ok {
			return t.SMSText(b, rc)
		}
	}
	return ""
}

// NewRoute returns a route over providers, in failover order.
func NewRoute(ch warning.Channel, providers []Provider, cfg RouteConfig, rdb redis.UniversalClient, log *slog.Logger, now func() time.Time) *Route {
	if cfg.Failures <= 0 {
		cfg.Failures = 3
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = time.Minute
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "wg"
	}
	if cfg.SilentBatches <= 0 {
		cfg.SilentBatches = 3
	}
	if now == nil {
		now = time.Now
	}
	return &Route{channel: ch, providers: providers, cfg: cfg, rdb: rdb, log: log.With("channel", string(ch)), now: now,
		checked: map[string]time.Time{}}
}

// rateChunk is how many seconds of a rate-limited account's messages a
// chunk carries at most: a chunk larger than the account's burst goes
// when its turn comes and its debt holds the next chunks back, an urgent
// one (an official's) among them.
const rateChunk = 5

// chunkLimit is the largest chunk the route's rate-limited accounts take
// without holding the next chunks back longer than rateChunk seconds (at
// least an account's burst); 0 when no account is limited.
func (r *Route) chunkLimit() int {
	lim := 0
	for _, p := range r.providers {
		if p.Rate <= 0 {
			continue
		}
		n := max(p.Burst, int(math.Ceil(p.Rate*rateChunk)), 1)
		if lim == 0 || n < lim {
			lim = n
		}
	}
	return lim
}

// takeScript is a token bucket shared by all workers. A chunk takes its
// tokens all at once or none: tokens taken a burst at a time and held until
// a chunk's count is there would be shared out among the chunks waiting on
// one account, none of which would ever have its count. When the bucket
// holds the chunk, or a full burst for a chunk larger than the burst, the
// whole chunk is taken and the bucket goes below zero by what it lacks:
// that debt is waited out before sending, and nobody else takes tokens
// until it is paid. Returns {1, ms to wait before sending} when taken, or
// {0, ms to wait before asking again} when not.
// KEYS: bucket. ARGV: rate per second, burst, now ms, n.
var takeScript = redis.NewScript(`
local rate, burst, now, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call("HMGET", KEYS[1], "tokens", "at")
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local need = math.min(n, burst)
local taken = 0
if tokens >= need then
  tokens = tokens - n
  taken = 1
end
redis.call("HSET", KEYS[1], "tokens", tokens, "at", now)
redis.call("PEXPIRE", KEYS[1], 3600000)
if taken == 1 then
  return {1, math.ceil(math.max(0, -tokens) * 1000 / rate)}
end
return {0, math.ceil((need - tokens) * 1000 / rate)}
`)

// giveScript puts back the n tokens of a chunk that was not sent.
// KEYS: bucket. ARGV: rate per second, burst, now ms, n.
var giveScript = redis.NewScript(`
local rate, burst, now, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local b = redis.call("HMGET", KEYS[1], "tokens", "at")
if not b[1] then return 0 end
local tokens = math.min(burst, tonumber(b[1]) + (now - tonumber(b[2])) * rate / 1000 + n)
redis.call("HSET", KEYS[1], "tokens", tokens, "at", now)
redis.call("PEXPIRE", KEYS[1], 3600000)
return 0
`)

// take waits until the provider's bucket lets n messages go, or ctx ends.
//
// A chunk whose turn cannot come before ctx's deadline fails at once and
// takes nothing (a chunk larger than the rate lets go in one call at all
// goes when its turn comes, its debt holding the next back): its tokens would be spent on a call that times out,
// and its worker is freed, so that urgent batches (officials', taken first
// by any free worker from their strict-priority queue) are not left behind
// workers waiting out calls that cannot succeed. A chunk whose ctx ends
// while it waits out its debt gives its tokens back.
func (r *Route) take(ctx context.Context, p Provider, n int) error {
	if p.Rate <= 0 || n == 0 {
		return nil
	}
	burst := p.Burst
	if burst <= 0 {
		burst = max(1, int(p.Rate))
	}
	key := r.cfg.Prefix + ":rl:" + p.Name
	// The debt of a chunk larger than the burst, taken from a full bucket.
	debt := time.Duration(float64(max(0, n-burst)) / p.Rate * float64(time.Second))
	late := func(wait time.Duration) error {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("rate limit %s: %d messages at %g/s (burst %d) cannot go within the call's time", p.Name, n, p.Rate, burst)
		}
		return nil
	}
	for {
		res, err := takeScript.Run(ctx, r.rdb, []string{key}, p.Rate, burst, r.now().UnixMilli(), n).Int64Slice()
		if err == nil && len(res) != 2 {
			err = fmt.Errorf("unexpected reply %v", res)
		}
		if err != nil {
			return fmt.Errorf("rate limit %s: %w", p.Name, err)
		}
		taken, wait := res[0] == 1, time.Duration(res[1])*time.Millisecond
		if taken && (wait == 0 || late(wait) != nil) {
			// A chunk whose debt outlasts the call is larger than the
			// account's rate lets go in one: it goes now, and its debt
			// holds the next chunks back. Failing it would fail it on
			// every attempt.
			return nil
		}
		if !taken {
			// Its turn must come within the call, and its debt too where
			// the call could wait a debt out at all.
			need := wait
			if late(debt) == nil {
				need += debt
			}
			if err := late(need); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			if taken {
				r.giveBack(ctx, p, key, burst, n)
			}
			return context.Cause(ctx)
		case <-time.After(wait):
		}
		if taken {
			return nil
		}
	}
}

// giveBack returns the tokens of a chunk taken and not sent: spent, they
// would slow every later chunk for messages that never went.
func (r *Route) giveBack(ctx context.Context, p Provider, key string, burst, n int) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := giveScript.Run(ctx, r.rdb, []string{key}, p.Rate, burst, r.now().UnixMilli(), n).Err(); err != nil {
		r.log.Warn("rate limit tokens not given back", "provider", p.Name, "n", n, "err", err)
	}
}

func (r *Route) circuitKey(p Provider) string { return r.cfg.Prefix + ":cb:" + p.Name }

// open reports whether a provider's circuit is open (it is being skipped),
// opening it first when the provider has gone silent.
func (r *Route) open(ctx context.Context, p Provider) bool {
	return r.circuitOpen(ctx, p) || r.silent(ctx, p)
}

func (r *Route) circuitOpen(ctx context.Context, p Provider) bool {
	until, err := r.rdb.HGet(ctx, r.circuitKey(p), "open_until").Int64()
	return err == nil && r.now().UnixMilli() < until
}

func (r *Route) reportWindow(p Provider) time.Duration {
	if p.ReportWindow > 0 {
		return p.ReportWindow
	}
	return r.cfg.ReportWindow
}

func (r *Route) probeKey(p Provider) string { return r.cfg.Prefix + ":probe:" + p.Name }

// probesKept bounds the probes remembered per provider.
const probesKept = 32

// watch remembers one delivery of a batch the provider accepted, scored by
// when it was sent: silent looks later at whether its report came.
func (r *Route) watch(ctx context.Context, p Provider, ref warning.Ref) {
	window := r.reportWindow(p)
	if window <= 0 || r.cfg.Reported == nil {
		return
	}
	key := r.probeKey(p)
	_, err := r.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		pl.ZAdd(ctx, key, redis.Z{Score: float64(r.now().UnixMilli()), Member: ref.String()})
		pl.ZRemRangeByRank(ctx, key, 0, -probesKept-1)
		pl.PExpire(ctx, key, 4*window)
		return nil
	})
	if err != nil {
		r.log.Warn("provider report watch not recorded", "provider", p.Name, "err", err)
	}
}

// silent looks, at most once a second per provider and process, at the
// probes older than the report window: those followed by a reported one,
// old or sent since (within the window), are forgotten (the provider
// reports; those reports were lost); when SilentBatches remain unreported,
// the circuit opens and they are forgotten too, so that a provider back
// from its open time must go silent anew.
//
// The recipients of those batches stay with the provider: their report may
// still come, and sending them again through another would reach phones
// twice. They show as sent and not delivered, and officials among them are
// asked again by escalation, through the route, now the next provider.
func (r *Route) silent(ctx context.Context, p Provider) bool {
	window := r.reportWindow(p)
	if window <= 0 || r.cfg.Reported == nil {
		return false
	}
	// One check at a time: a batch that waited here while another looked
	// reads the circuit that look may have opened.
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked[p.Name]) < time.Second {
		return r.circuitOpen(ctx, p)
	}
	r.checked[p.Name] = now

	key := r.probeKey(p)
	// Every probe, not only the old ones: a report on a batch sent since
	// shows the provider reports, and clears the old ones before it.
	probes, err := r.rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
	cut := float64(now.Add(-window).UnixMilli())
	if err != nil || len(probes) == 0 || probes[0].Score > cut {
		return false // none old enough: not worth a ledger read
	}
	refs := make([]warning.Ref, len(probes))
	for i, z := range probes {
		refs[i], _ = warning.ParseRef(z.Member.(string)) // written by watch: a ref
	}
	reported, err := r.cfg.Reported(ctx, refs)
	if err != nil {
		r.log.Warn("provider report watch: ledger", "provider", p.Name, "err", err)
		return false
	}
	last := -1
	for i, ok := range reported {
		if ok {
			last = i
		}
	}
	if last >= 0 {
		r.rdb.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatFloat(probes[last].Score, 'f', -1, 64))
		probes = probes[last+1:]
	}
	// The unreported probes older than the window (probes are by score).
	old := probes
	for i, z := range probes {
		if z.Score > cut {
			old = probes[:i]
			break
		}
	}
	if len(old) < r.cfg.SilentBatches {
		return false
	}
	members := make([]any, len(old))
	for i, z := range old {
		members[i] = z.Member
	}
	_, err = r.rdb.TxPipelined(ctx, func(pl redis.Pipeliner) error {
		pl.HSet(ctx, r.circuitKey(p), "open_until", now.Add(r.cfg.OpenFor).UnixMilli(), "failures", 0)
		pl.PExpire(ctx, r.circuitKey(p), 24*time.Hour)
		pl.ZRem(ctx, key, members...)
		return nil
	})
	if err != nil {
		return false
	}
	r.log.Warn("provider skipped: no delivery reports", "provider", p.Name, "batches", len(old),
		"silent_since", time.UnixMilli(int64(old[0].Score)), "window", window, "for", r.cfg.OpenFor)
	if r.cfg.Opened != nil {
		r.cfg.Opened(p.Name, "silent")
	}
	return true
}

// failScript counts a failed call and opens the circuit at the threshold.
// KEYS: circuit. ARGV: threshold, now ms, open for ms. Returns 1 when it opened.
var failScript = redis.NewScript(`
local n = redis.call("HINCRBY", KEYS[1], "failures", 1)
redis.call("PEXPIRE", KEYS[1], 86400000)
if n >= tonumber(ARGV[1]) then
  redis.call("HSET", KEYS[1], "open_until", tonumber(ARGV[2]) + tonumber(ARGV[3]), "failures", 0)
  return 1
end
return 0
`)

func (r *Route) failed(ctx context.Context, p Provider, cause error) {
	opened, err := failScript.Run(ctx, r.rdb, []string{r.circuitKey(p)}, r.cfg.Failures, r.now().UnixMilli(), r.cfg.OpenFor.Milliseconds()).Int()
	if err == nil && opened == 1 {
		r.log.Warn("provider skipped: circuit open", "provider", p.Name, "for", r.cfg.OpenFor, "err", cause)
		if r.cfg.Opened != nil {
			r.cfg.Opened(p.Name, "errors")
		}
	}
}

func (r *Route) succeeded(ctx context.Context, p Provider) {
	r.rdb.HDel(ctx, r.circuitKey(p), "failures")
}

// Notify implements channels.Notifier.
func (r *Route) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	var out []channels.Receipt
	pending := make([]int, len(b.Recipients)) // positions in b not yet taken
	for i := range pending {
		pending[i] = i
	}
	var errs []error
	retry := false
	tried := 0
	for pass := 0; pass < 2 && len(pending) > 0; pass++ {
		for _, p := range r.providers {
			if len(pending) == 0 {
				break
			}
			// First pass: closed circuits only. Second pass: if every
			// circuit is open, try anyway rather than send nothing.
			if (pass == 0) == r.open(ctx, p) {
				continue
			}
			tried++
			sub := b
			if len(pending) != len(b.Recipients) {
				cp := *b
				cp.Recipients = make([]warning.Recipient, len(pending))
				for i, at := range pending {
					cp.Recipients[i] = b.Recipients[at]
				}
				sub = &cp
			}
			if err := r.take(ctx, p, len(sub.Recipients)); err != nil {
				return out, true, err
			}
			receipts, rt, err := p.Notifier.Notify(ctx, sub)
			index := ""
			if ix, ok := p.Notifier.(channels.Indexed); ok {
				index = ix.Provider()
			}
			taken := make(map[int]bool, len(receipts))
			probe := -1
			for _, rc := range receipts {
				if rc.Index < 0 || rc.Index >= len(pending) {
					continue
				}
				taken[rc.Index] = true
				rc.Index = pending[rc.Index]
				rc.IndexName = index
				rc.Account = p.Name
				if probe < 0 && rc.State == warning.Sent && b.Tracked() {
					probe = rc.Index
				}
				out = append(out, rc)
			}
			if probe >= 0 {
				r.watch(ctx, p, b.Ref(probe))
			}
			var rest []int
			for i, at := range pending {
				if !taken[i] {
					rest = append(rest, at)
				}
			}
			pending = rest
			if err == nil {
				r.succeeded(ctx, p)
				continue
			}
			errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			if !rt {
				// Permanent for this provider (rejected credentials, a
				// template not approved): the next may still take them.
				r.failed(ctx, p, err)
				continue
			}
			retry = true
			r.failed(ctx, p, err)
		}
		if tried > 0 {
			break
		}
	}
	if len(pending) == 0 {
		return out, false, nil
	}
	if len(errs) == 0 {
		return out, true, errors.New("no provider took the batch")
	}
	return out, retry, errors.Join(errs...)
}

// Askable reports whether every provider of the route can say what it
// accepted: a chunk may have gone to any of them.
func (r *Route) Askable() bool {
	for _, p := range r.providers {
		if !channels.Askable(p.Notifier) {
			return false
		}
	}
	return len(r.providers) > 0
}

// Accepted implements channels.Querier: every provider is asked, since a
// chunk may have gone to any of them, and each receipt names its account.
func (r *Route) Accepted(ctx context.Context, b *channels.Batch) ([]channels.Receipt, error) {
	if !r.Askable() {
		return nil, channels.ErrNotAskable
	}
	var out []channels.Receipt
	seen := make(map[int]bool)
	for _, p := range r.providers {
		receipts, err := p.Notifier.(channels.Querier).Accepted(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		index := ""
		if ix, ok := p.Notifier.(channels.Indexed); ok {
			index = ix.Provider()
		}
		for _, rc := range receipts {
			if rc.Index < 0 || rc.Index >= len(b.Recipients) || seen[rc.Index] {
				continue
			}
			seen[rc.Index] = true
			rc.Account, rc.IndexName = p.Name, index
			out = append(out, rc)
		}
	}
	return out, nil
}

// Cancel implements channels.Canceller for the providers that support it.
func (r *Route) Cancel(ctx context.Context, ids []string) error {
	var errs []error
	for _, p := range r.providers {
		if c, ok := p.Notifier.(channels.Canceller); ok {
			if err := c.Cancel(ctx, ids); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", p.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}
