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
	// shared starts the keys that belong to no warning (the lists of
	// warnings, officials' pending confirmations, the audit log, provider
	// ids): prefix, in braces on a Redis Cluster, so that they share a slot
	// — scripts touch several together — and a warning depends on two
	// shards only, its own and this one.
	shared string
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
	shared := prefix
	if _, ok := rdb.(*redis.ClusterClient); ok {
		shared = "{" + prefix + "}"
	}
	return &Ledger{rdb: rdb, prefix: prefix, shared: shared, now: now}
}

// Keys. Hash tags keep one warning's keys in one Redis Cluster slot so that
// a script may touch them together.
func (l *Ledger) warningKey(id string) string { return l.prefix + ":{" + id + "}:w" }
func (l *Ledger) deliveryKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:d:" + string(ch)
}

// bucketKey is the hash of one bucket of a warning's deliveries on a
// channel; bucket "" is the one hash of a plan made before buckets.
func (l *Ledger) bucketKey(id string, ch warning.Channel, bucket string) string {
	if bucket == "" {
		return l.deliveryKey(id, ch)
	}
	return l.deliveryKey(id, ch) + ":" + bucket
}
func (l *Ledger) directoryKey(id string) string { return l.prefix + ":{" + id + "}:bk" }
func (l *Ledger) batchKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:b:" + string(ch)
}
func (l *Ledger) earlyKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:e:" + string(ch)
}
func (l *Ledger) progressKey(id string) string { return l.prefix + ":{" + id + "}:p" }
func (l *Ledger) indexKey() string             { return l.shared + ":warnings" }
func (l *Ledger) unplannedKey() string         { return l.shared + ":unplanned" }
func (l *Ledger) idemKey(k string) string      { return l.shared + ":idem:" + k }

// Ping checks that Redis answers.
func (l *Ledger) Ping(ctx context.Context) error { return l.rdb.Ping(ctx).Err() }

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// A new warning is written in three steps, each one script on one Redis
// Cluster slot: its idempotency key, then the warning, then the indexes of
// all warnings (listing, and the warnings not yet planned), which share a
// slot of their own. Each step is idempotent, and a request sent again after
// a crash between two steps finishes the steps left: its idempotency key
// names the warning, whose stored state says which indexes it belongs in.

// idemScript claims an idempotency key for a warning unless it names one
// already. The key keeps the warning's id and fingerprint ("id|fingerprint"),
// so that a repeated request can be told from a different one. KEYS: the
// idempotency key. ARGV: "id|fingerprint", ttl seconds. Returns what the key
// held, or ARGV[1] when this call claimed it.
var idemScript = redis.NewScript(`
local prev = redis.call("GET", KEYS[1])
if prev then return prev end
redis.call("SET", KEYS[1], ARGV[1], "EX", ARGV[2])
return ARGV[1]
`)

// createScript stores a warning unless it is stored. KEYS: warning.
// ARGV: doc, state. Returns the stored state.
var createScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if st then return st end
redis.call("HSET", KEYS[1], "doc", ARGV[1], "state", ARGV[2])
return ARGV[2]
`)

// indexScript lists a warning among all warnings and, accepted, among those
// not yet planned. KEYS: index, unplanned. ARGV: id, accepted ms, state.
var indexScript = redis.NewScript(`
redis.call("ZADD", KEYS[1], "NX", ARGV[2], ARGV[1])
if ARGV[3] == "accepted" then redis.call("ZADD", KEYS[2], "NX", ARGV[2], ARGV[1]) end
return 1
`)

// approveScript moves a warning awaiting approval to accepted, with the
// approver recorded in its document. KEYS: warning. ARGV: new doc.
// Returns the state before, so the caller can say why it refused. The same
// approval written again (after a failover or a crash) finds itself and
// succeeds.
var approveScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "state")
if not st then return "" end
if st == "accepted" and redis.call("HGET", KEYS[1], "doc") == ARGV[1] then return "awaiting_approval" end
if st ~= "awaiting_approval" then return st end
redis.call("HSET", KEYS[1], "doc", ARGV[1], "state", "accepted")
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
	fp := w.Fingerprint()
	var replicated error
	if idemKey != "" {
		cmd, repl := l.run(ctx, idemScript, []string{l.idemKey(idemKey)}, []any{w.ID + "|" + fp, int(IdempotencyTTL.Seconds())})
		got, err := cmd.Text()
		if err != nil {
			return nil, false, fmt.Errorf("ledger: store warning: %w", err)
		}
		replicated = repl
		if firstID, firstFP, _ := strings.Cut(got, "|"); firstID != w.ID {
			// A key written before fingerprints were kept holds the id alone,
			// and is taken for the same warning, as it was then.
			prev, err := l.Warning(ctx, firstID)
			if errors.Is(err, ErrNotFound) && (firstFP == "" || firstFP == fp) {
				// The first request stopped before it stored its warning
				// (it was never accepted): this one stores it, under the
				// first one's id.
				w.ID = firstID
				return l.store(ctx, w, doc, false)
			}
			if err != nil {
				return nil, false, fmt.Errorf("ledger: idempotency key names warning %s: %w", firstID, err)
			}
			if firstFP != "" && firstFP != fp {
				return prev, true, &KeyReusedError{Key: idemKey, FirstID: firstID}
			}
			// The first request may have stopped before indexing it.
			repl, err := l.index(ctx, prev)
			if err != nil {
				return nil, false, err
			}
			return prev, true, repl
		}
	}
	stored, existed, err = l.store(ctx, w, doc, existed)
	if err == nil && replicated != nil {
		err = fmt.Errorf("warning %s: %w", w.ID, replicated)
	}
	return stored, existed, err
}

// store writes a warning unless it is there, then its indexes.
func (l *Ledger) store(ctx context.Context, w *warning.Warning, doc []byte, existed bool) (*warning.Warning, bool, error) {
	cmd, replicated := l.run(ctx, createScript, []string{l.warningKey(w.ID)}, []any{doc, string(w.State)})
	st, err := cmd.Text()
	if err != nil {
		return nil, false, fmt.Errorf("ledger: store warning: %w", err)
	}
	stored := w
	if st != string(w.State) {
		// Stored before (with this id, by a request that came again).
		if stored, err = l.Warning(ctx, w.ID); err != nil {
			return nil, false, fmt.Errorf("ledger: store warning: %w", err)
		}
		existed = true
	}
	repl, err := l.index(ctx, stored)
	if err != nil {
		return nil, false, err
	}
	if replicated == nil {
		replicated = repl
	}
	if replicated != nil {
		return stored, existed, fmt.Errorf("warning %s: %w", w.ID, replicated)
	}
	return stored, existed, nil
}

// index lists a stored warning among all warnings and, when it is accepted
// and so not yet planned, among those to plan. replicated is
// ErrNotReplicated when no replica confirmed it.
func (l *Ledger) index(ctx context.Context, w *warning.Warning) (replicated, err error) {
	cmd, replicated := l.run(ctx, indexScript, []string{l.indexKey(), l.unplannedKey()},
		[]any{w.ID, w.Accepted.UnixMilli(), string(w.State)})
	if err := cmd.Err(); err != nil {
		return nil, fmt.Errorf("ledger: index warning %s: %w", w.ID, err)
	}
	return replicated, nil
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
	// Queued for planning first: a crash before the approval is written
	// leaves a warning awaiting approval among those to plan, which the
	// plan drops (it plans no warning that awaits approval).
	if err := l.rdb.ZAddNX(ctx, l.unplannedKey(), redis.Z{Score: float64(l.now().UnixMilli()), Member: w.ID}).Err(); err != nil {
		return fmt.Errorf("ledger: approve %s: %w", w.ID, err)
	}
	cmd, replicated := l.run(ctx, approveScript, []string{l.warningKey(w.ID)}, []any{doc})
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

// State reads a warning's state as it was changed since it was stored
// (lifted, replaced by an update, …): one small read, for a check between
// the chunks of a batch. Empty when it was never changed.
func (l *Ledger) State(ctx context.Context, id string) (warning.State, error) {
	s, err := l.rdb.HGet(ctx, l.warningKey(id), "state").Result()
	if err != nil && err != redis.Nil {
		return "", fmt.Errorf("ledger: state of %s: %w", id, err)
	}
	return warning.State(s), nil
}

// Supersede records that the update newID replaced warning id: its state
// becomes superseded and it names the update, so that whoever holds the
// old one (an official's link) finds the current version in one read. It
// is safe to repeat.
func (l *Ledger) Supersede(ctx context.Context, id, newID string) error {
	n, err := l.rdb.Exists(ctx, l.warningKey(id)).Result()
	if err != nil {
		return fmt.Errorf("ledger: supersede %s: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("warning %s: %w", id, ErrNotFound)
	}
	if err := l.rdb.HSet(ctx, l.warningKey(id), "state", string(warning.StateSuperseded), "superseded_by", newID).Err(); err != nil {
		return fmt.Errorf("ledger: supersede %s: %w", id, err)
	}
	return nil
}

// SupersededBy names the update that replaced warning id, as Supersede
// recorded it; empty when none did (or it was replaced before updates were
// named).
func (l *Ledger) SupersededBy(ctx context.Context, id string) (string, error) {
	s, err := l.rdb.HGet(ctx, l.warningKey(id), "superseded_by").Result()
	if err != nil && err != redis.Nil {
		return "", fmt.Errorf("ledger: update of %s: %w", id, err)
	}
	return s, nil
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

// plannedScript records a plan's totals and moves an accepted warning to
// active; a warning cancelled meanwhile stays cancelled. KEYS: progress,
// warning. ARGV: field, value, ...
var plannedScript = redis.NewScript(`
redis.call("HSET", KEYS[1], unpack(ARGV))
if redis.call("HGET", KEYS[2], "state") == "accepted" then
  redis.call("HSET", KEYS[2], "state", "active")
end
return 1
`)

// MarkPlanned records the plan's totals and moves the warning to active,
// then takes it off the list of warnings to plan. It may be called again
// with the same totals (a plan that ran twice). With replicas required,
// the warning leaves that list only once a replica holds its record — and
// with it, written before on the same Redis, the plan's tasks: on a Redis
// Cluster the list is on another shard, and a failover must not leave a
// warning whose tasks were lost off the list.
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
	cmd, replicated := l.run(ctx, plannedScript, []string{l.progressKey(id), l.warningKey(id)}, args)
	if err := cmd.Err(); err != nil {
		return fmt.Errorf("ledger: mark %s planned: %w", id, err)
	}
	if replicated != nil {
		return fmt.Errorf("ledger: mark %s planned: %w", id, replicated)
	}
	return l.Planned(ctx, id)
}

// Planned takes a warning off the list of those to plan: planned, or one
// that must not be (it awaits approval).
func (l *Ledger) Planned(ctx context.Context, id string) error {
	if err := l.rdb.ZRem(ctx, l.unplannedKey(), id).Err(); err != nil {
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
