// Package ledger keeps warngate's state in Redis: warnings, one delivery
// state per (warning, channel, recipient), and the counters that progress is
// read from. It is the only package that knows the key layout. It must not
// import the queue or any channel: it records what others did.
//
// Deliveries are fields of one hash per (warning, channel), not a key per
// recipient, and every transition is made by a Lua script that also moves the
// counters, so a report that arrives twice changes nothing.
package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// ErrNotFound is returned when a warning does not exist.
var ErrNotFound = errors.New("not found")

// Ledger is the Redis-backed record of warnings and deliveries. It is safe
// for concurrent use.
type Ledger struct {
	rdb    redis.UniversalClient
	prefix string
	now    func() time.Time

	repl replication
}

// New returns a ledger whose keys all start with prefix + ":" (prefix
// defaults to "wg"). now may be nil for time.Now.
func New(rdb redis.UniversalClient, prefix string, now func() time.Time) *Ledger {
	if prefix == "" {
		prefix = "wg"
	}
	if now == nil {
		now = time.Now
	}
	return &Ledger{rdb: rdb, prefix: prefix, now: now}
}

// Keys. Hash tags keep one warning's keys in one Redis Cluster slot so that
// a script may touch them together.
func (l *Ledger) warningKey(id string) string { return l.prefix + ":{" + id + "}:w" }
func (l *Ledger) deliveryKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:d:" + string(ch)
}
func (l *Ledger) batchKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:b:" + string(ch)
}
func (l *Ledger) earlyKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:e:" + string(ch)
}
func (l *Ledger) progressKey(id string) string { return l.prefix + ":{" + id + "}:p" }
func (l *Ledger) indexKey() string             { return l.prefix + ":warnings" }
func (l *Ledger) unplannedKey() string         { return l.prefix + ":unplanned" }
func (l *Ledger) idemKey(k string) string      { return l.prefix + ":idem:" + k }

// Ping checks that Redis answers.
func (l *Ledger) Ping(ctx context.Context) error { return l.rdb.Ping(ctx).Err() }

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// createScript stores a warning unless its idempotency key names another.
// The key keeps the warning's id and fingerprint ("id|fingerprint"), so that
// a repeated request can be told from a different one. A warning awaiting
// approval is not queued for planning.
// KEYS: warning, index, unplanned, idem (or ""). ARGV: id, doc, accepted ms, ttl s, state, fingerprint.
var createScript = redis.NewScript(`
if KEYS[4] ~= "" then
  local prev = redis.call("GET", KEYS[4])
  if prev then return prev end
  redis.call("SET", KEYS[4], ARGV[1] .. "|" .. ARGV[6], "EX", ARGV[4])
end
redis.call("HSET", KEYS[1], "doc", ARGV[2], "state", ARGV[5])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
if ARGV[5] == "accepted" then redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1]) end
return ARGV[1]
`)

// approveScript moves a warning awaiting approval to accepted, with the
// approver recorded in its document, and queues it for planning.
// KEYS: warning, unplanned. ARGV: id, new doc, now ms.
// Returns the state before, so the caller can say why it refused. The same
// approval written again (after a failover) finds itself and succeeds.
var approveScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if not st then return "" end
if st == "accepted" and redis.call("HGET", KEYS[1], "doc") == ARGV[2] then return "awaiting_approval" end
if st ~= "awaiting_approval" then return st end
redis.call("HSET", KEYS[1], "doc", ARGV[2], "state", "accepted")
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[1])
return st
`)

// ErrKeyReused is returned when an idempotency key comes again with a
// warning that says something else than the first (a *KeyReusedError).
var ErrKeyReused = errors.New("idempotency key reused with a different warning")

// KeyReusedError names the idempotency key and the warning it was first
// used for.
type KeyReusedError struct {
	Key, FirstID string
}

func (e *KeyReusedError) Error() string {
	return fmt.Sprintf("idempotency key %q was first used for warning %s, which says something else", e.Key, e.FirstID)
}

// Is makes errors.Is(err, ErrKeyReused) hold.
func (e *KeyReusedError) Is(target error) bool { return target == ErrKeyReused }

// CreateWarning stores a new warning in state accepted and marks it as not
// yet planned; a warning whose State is awaiting_approval is stored as such
// and not planned. With a non-empty idemKey, a second call with the same key
// stores nothing and returns the first warning with existed true; when the
// second warning says something else (warning.Fingerprint) the error is a
// *KeyReusedError, with the first warning still returned.
func (l *Ledger) CreateWarning(ctx context.Context, w *warning.Warning, idemKey string) (stored *warning.Warning, existed bool, err error) {
	if w.State != warning.StateAwaitingApproval {
		w.State = warning.StateAccepted
	}
	doc, err := json.Marshal(w)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: encode warning: %w", err)
	}
	ik := ""
	if idemKey != "" {
		ik = l.idemKey(idemKey)
	}
	keys := []string{l.warningKey(w.ID), l.indexKey(), l.unplannedKey(), ik}
	fp := w.Fingerprint()
	args := []any{w.ID, doc, w.Accepted.UnixMilli(), int(IdempotencyTTL.Seconds()), string(w.State), fp}
	cmd, replicated := l.run(ctx, createScript, keys, args)
	got, err := cmd.Text()
	if err != nil {
		return nil, false, fmt.Errorf("ledger: store warning: %w", err)
	}
	if replicated != nil {
		replicated = fmt.Errorf("warning %s: %w", w.ID, replicated)
	}
	if got != w.ID {
		// A key written before fingerprints were kept holds the id alone,
		// and is taken for the same warning, as it was then.
		firstID, firstFP, _ := strings.Cut(got, "|")
		prev, err := l.Warning(ctx, firstID)
		if err != nil {
			return nil, false, fmt.Errorf("ledger: idempotency key names warning %s: %w", firstID, err)
		}
		if firstFP != "" && firstFP != fp {
			return prev, true, &KeyReusedError{Key: idemKey, FirstID: firstID}
		}
		return prev, true, replicated
	}
	return w, false, replicated
}

// ErrState is returned when a warning is not in the state an action needs.
var ErrState = errors.New("warning is not in the right state")

// Approve records the approver of a warning awaiting approval and queues it
// for planning. approved is the warning as stored, with ApprovedBy set.
// With replicas required and none confirming, the approval is recorded on
// the master and the error is ErrNotReplicated.
func (l *Ledger) Approve(ctx context.Context, w *warning.Warning) error {
	w.State = warning.StateAccepted
	doc, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("ledger: encode warning: %w", err)
	}
	cmd, replicated := l.run(ctx, approveScript, []string{l.warningKey(w.ID), l.unplannedKey()}, []any{w.ID, doc, l.now().UnixMilli()})
	prev, err := cmd.Text()
	if err != nil {
		return fmt.Errorf("ledger: approve %s: %w", w.ID, err)
	}
	switch prev {
	case "":
		return fmt.Errorf("warning %s: %w", w.ID, ErrNotFound)
	case string(warning.StateAwaitingApproval):
		if replicated != nil {
			return fmt.Errorf("ledger: approve %s: %w", w.ID, replicated)
		}
		return nil
	}
	return fmt.Errorf("warning %s is %s: %w", w.ID, prev, ErrState)
}

// Warning loads one warning with its current state.
func (l *Ledger) Warning(ctx context.Context, id string) (*warning.Warning, error) {
	vals, err := l.rdb.HMGet(ctx, l.warningKey(id), "doc", "state", "cancelled", "withdrawn").Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: load warning %s: %w", id, err)
	}
	doc, _ := vals[0].(string)
	if doc == "" {
		return nil, fmt.Errorf("warning %s: %w", id, ErrNotFound)
	}
	var w warning.Warning
	if err := json.Unmarshal([]byte(doc), &w); err != nil {
		return nil, fmt.Errorf("ledger: decode warning %s: %w", id, err)
	}
	if s, _ := vals[1].(string); s != "" {
		w.State = warning.State(s)
	}
	if s, _ := vals[2].(string); s != "" {
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			w.Cancelled = time.UnixMilli(ms)
		}
	}
	w.Withdrawn = vals[3] != nil
	return &w, nil
}

// Warnings lists warning ids, newest first.
func (l *Ledger) Warnings(ctx context.Context, offset, limit int) ([]string, error) {
	ids, err := l.rdb.ZRevRange(ctx, l.indexKey(), int64(offset), int64(offset+limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: list warnings: %w", err)
	}
	return ids, nil
}

// SetState changes a warning's state.
func (l *Ledger) SetState(ctx context.Context, id string, s warning.State) error {
	n, err := l.rdb.Exists(ctx, l.warningKey(id)).Result()
	if err != nil {
		return fmt.Errorf("ledger: set state of %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("warning %s: %w", id, ErrNotFound)
	}
	return l.rdb.HSet(ctx, l.warningKey(id), "state", string(s)).Err()
}

// Cancel records that a warning was lifted at at; withdrawn says it never
// went out (it awaited approval). The time is kept beside the document, as
// the state is, and comes back in Warning.Cancelled.
func (l *Ledger) Cancel(ctx context.Context, id string, at time.Time, withdrawn bool) error {
	n, err := l.rdb.Exists(ctx, l.warningKey(id)).Result()
	if err != nil {
		return fmt.Errorf("ledger: cancel %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("warning %s: %w", id, ErrNotFound)
	}
	fields := []any{"state", string(warning.StateCancelled), "cancelled", at.UnixMilli()}
	if withdrawn {
		fields = append(fields, "withdrawn", 1)
	}
	if err := l.rdb.HSet(ctx, l.warningKey(id), fields...).Err(); err != nil {
		return fmt.Errorf("ledger: cancel %s: %w", id, err)
	}
	return nil
}

// Unplanned lists warnings accepted before the given time whose fan-out has
// not been planned: after a crash between accepting and planning, these are
// planned again.
func (l *Ledger) Unplanned(ctx context.Context, before time.Time) ([]string, error) {
	ids, err := l.rdb.ZRangeByScore(ctx, l.unplannedKey(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(before.UnixMilli(), 10),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: list unplanned: %w", err)
	}
	return ids, nil
}

// Planned is what a plan puts in front of a warning: how many deliveries per
// channel, audience and division.
type Planned map[Group]int64

// Group names one progress counter group.
type Group struct {
	Channel  warning.Channel
	Audience warning.Audience
	Division string
}

// activateScript moves an accepted warning to active; a warning cancelled
// meanwhile stays cancelled.
var activateScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "state") == "accepted" then
  redis.call("HSET", KEYS[1], "state", "active")
end
return 1
`)

// MarkPlanned records the plan's totals and moves the warning to active. It
// may be called again with the same totals (a plan that ran twice).
func (l *Ledger) MarkPlanned(ctx context.Context, id string, p Planned) error {
	fields := make(map[string]int64)
	for g, n := range p {
		for _, f := range counterFields(g, "planned") {
			fields[f] += n
		}
	}
	args := make([]any, 0, 2*len(fields)+2)
	for f, n := range fields {
		args = append(args, f, n)
	}
	args = append(args, "planned", l.now().UnixMilli())
	pipe := l.rdb.TxPipeline()
	pipe.HSet(ctx, l.progressKey(id), args...)
	activateScript.Eval(ctx, pipe, []string{l.warningKey(id)})
	pipe.ZRem(ctx, l.unplannedKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ledger: mark %s planned: %w", id, err)
	}
	return nil
}

// counterFields lists the progress fields a delivery in group g moves for
// counter (planned, sent, delivered, failed, expired). The same layout is
// built by the Lua scripts: keep them in step.
func counterFields(g Group, counter string) []string {
	return []string{
		"c|" + string(g.Channel) + "|" + counter,
		"a|" + string(g.Channel) + "|" + string(g.Audience) + "|" + counter,
		"d|" + g.Division + "|" + counter,
	}
}

// cleanReason keeps a failure reason usable as part of a counter field.
func cleanReason(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '|' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 80 {
		s = s[:80]
	}
	if s == "" {
		s = "unknown"
	}
	return s
}
