package ledger

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Acknowledgement (叫应): every official a warning reaches must confirm
// receipt. One hash per warning holds each official's state:
//
//	person id → "<state>|<audience code><division>|<tries>|<last try ms b36>|<acked ms b36>|<method>[|<ack nonce>]"
//
// state is w (waiting), a (acknowledged) or u (unreached: escalated to a
// superior). Counters in the progress hash ("k|<audience>|<what>" and
// "kd|<division>|<what>") make the 未叫应 figures cheap to read.

// AckState is where an official stands with one warning.
type AckState byte

// Acknowledgement states.
const (
	AckWaiting   AckState = 'w'
	AckConfirmed AckState = 'a'
	AckUnreached AckState = 'u'
)

func (s AckState) String() string {
	switch s {
	case AckWaiting:
		return "waiting"
	case AckConfirmed:
		return "confirmed"
	case AckUnreached:
		return "unreached"
	}
	return "unknown"
}

// ErrNotAddressed is returned when a person was not asked to confirm a warning.
var ErrNotAddressed = errors.New("this person was not asked to confirm this warning")

func (l *Ledger) officialsKey(id string) string { return l.prefix + ":{" + id + "}:o" }
func (l *Ledger) stepsKey(id string) string     { return l.prefix + ":{" + id + "}:esc" }
func (l *Ledger) pendingKey(person string) string {
	return l.shared + ":pend:" + person
}
func (l *Ledger) auditKey() string { return l.shared + ":audit" }

// Official is one official's acknowledgement record for a warning.
type Official struct {
	PersonID string
	Audience warning.Audience
	Division string
	State    AckState
	Tries    int       // messages sent asking for confirmation, the first included
	LastTry  time.Time // when the last of them went out
	AckedAt  time.Time
	Method   string // link, sms, api
}

func encodeOfficial(o Official) string {
	return string(rune(o.State)) + "|" + string([]byte{o.Audience.Code()}) + o.Division + "|" +
		strconv.Itoa(o.Tries) + "|" + ms36(o.LastTry) + "|" + ms36(o.AckedAt) + "|" + o.Method
}

func ms36(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	return strconv.FormatInt(t.UnixMilli(), 36)
}

// ms is t in Unix milliseconds, zero for the zero time.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func decodeOfficial(id, v string) (Official, bool) {
	f := strings.Split(v, "|")
	if (len(f) != 6 && len(f) != 7) || len(f[0]) != 1 || len(f[1]) != 13 {
		return Official{}, false
	}
	o := Official{PersonID: id, State: AckState(f[0][0]), Division: f[1][1:], Method: f[5]}
	o.Audience, _ = warning.AudienceFromCode(f[1][0])
	o.Tries, _ = strconv.Atoi(f[2])
	if n, _ := strconv.ParseInt(f[3], 36, 64); n > 0 {
		o.LastTry = time.UnixMilli(n)
	}
	if n, _ := strconv.ParseInt(f[4], 36, 64); n > 0 {
		o.AckedAt = time.UnixMilli(n)
	}
	return o, true
}

// registerScript adds officials who are not yet registered and counts
// them, one HINCRBY per counter moved.
// KEYS: officials, progress. ARGV: (id, value, audience name, division) per official.
var registerScript = redis.NewScript(`
local n, counts = 0, {}
for i = 1, #ARGV, 4 do
  if redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[i+1]) == 1 then
    local k, kd = "k|" .. ARGV[i+2] .. "|expected", "kd|" .. ARGV[i+3] .. "|expected"
    counts[k] = (counts[k] or 0) + 1
    counts[kd] = (counts[kd] or 0) + 1
    n = n + 1
  end
end
for f, c in pairs(counts) do redis.call("HINCRBY", KEYS[2], f, c) end
return n
`)

// registerPerCall is how many officials one register script takes: a
// city-wide warning's thousands in one script held Redis for 40-60 ms,
// which every other warning's first message waited out.
const registerPerCall = 500

// RegisterOfficials records that the officials must confirm the warning.
// Officials already registered are left as they are, so a plan that runs
// twice registers nobody twice. The first try is counted as sent at the
// official's LastTry, or now when it is zero, so that the caller knows to
// the millisecond when the next one is due.
func (l *Ledger) RegisterOfficials(ctx context.Context, warningID string, officials []Official) (int, error) {
	if len(officials) == 0 {
		return 0, nil
	}
	now := l.now()
	args := make([]any, 0, 4*len(officials))
	for _, o := range officials {
		if len(o.Division) != 12 {
			return 0, fmt.Errorf("ledger: official %s: division %q is not a 12-digit code", o.PersonID, o.Division)
		}
		if o.LastTry.IsZero() {
			o.LastTry = now
		}
		o.State, o.Tries = AckWaiting, 1
		args = append(args, o.PersonID, encodeOfficial(o), string(o.Audience), o.Division)
	}
	// Registering is idempotent: a plan stopped between two calls registers
	// the rest when it runs again.
	n := 0
	for start := 0; start < len(args); start += 4 * registerPerCall {
		part := args[start:min(start+4*registerPerCall, len(args))]
		k, err := registerScript.Run(ctx, l.rdb, []string{l.officialsKey(warningID), l.progressKey(warningID)}, part...).Int()
		if err != nil {
			return n, fmt.Errorf("ledger: register officials of %s: %w", warningID, err)
		}
		n += k
	}
	// One script per few hundred officials: their keys share a slot (the
	// ledger's shared one) on a Redis Cluster.
	for start := 0; start < len(officials); start += pendingPerCall {
		part := officials[start:min(start+pendingPerCall, len(officials))]
		keys := make([]string, len(part))
		for i, o := range part {
			keys[i] = l.pendingKey(o.PersonID)
		}
		if err := pendingScript.Run(ctx, l.rdb, keys, now.UnixMilli(), warningID, (48 * time.Hour).Milliseconds()).Err(); err != nil {
			return n, fmt.Errorf("ledger: index officials of %s: %w", warningID, err)
		}
	}
	return n, nil
}

// pendingPerCall is how many officials' pending lists one script adds to.
const pendingPerCall = 500

// pendingScript adds a warning to officials' lists of warnings awaiting
// their confirmation. KEYS: the lists. ARGV: now ms, warning id, ttl ms.
var pendingScript = redis.NewScript(`
for _, k in ipairs(KEYS) do
  redis.call("ZADD", k, ARGV[1], ARGV[2])
  redis.call("PEXPIRE", k, ARGV[3])
end
return #KEYS
`)

// ackScript confirms an official's receipt once. Returns 1 when this call
// confirmed (or is this very confirmation, by its nonce, written again after
// a failover), 0 when already confirmed, -1 when the person was never asked.
// The nonce rides as a seventh field of the official's value.
// KEYS: officials, progress. ARGV: id, now b36, method, audience name, nonce.
var ackScript = redis.NewScript(`
local v = redis.call("HGET", KEYS[1], ARGV[1])
if not v then return -1 end
local st = string.sub(v, 1, 1)
local f = {}
for part in string.gmatch(v .. "|", "([^|]*)|") do f[#f+1] = part end
if st == "a" then
  if f[7] == ARGV[5] then return 1 end
  return 0
end
local div = string.sub(f[2], 2)
f[1] = "a"; f[5] = ARGV[2]; f[6] = ARGV[3]; f[7] = ARGV[5]
redis.call("HSET", KEYS[1], ARGV[1], table.concat(f, "|"))
redis.call("HINCRBY", KEYS[2], "k|" .. ARGV[4] .. "|confirmed", 1)
redis.call("HINCRBY", KEYS[2], "kd|" .. div .. "|confirmed", 1)
if st == "u" then
  redis.call("HINCRBY", KEYS[2], "k|" .. ARGV[4] .. "|unreached", -1)
  redis.call("HINCRBY", KEYS[2], "kd|" .. div .. "|unreached", -1)
end
return 1
`)

// Acknowledge records that an official confirmed receipt of a warning.
// Confirming again is harmless: first reports whether this call was the one
// that confirmed. With replicas required and none confirming, the
// acknowledgement is recorded on the master and err is ErrNotReplicated.
func (l *Ledger) Acknowledge(ctx context.Context, warningID, personID, method string) (first bool, err error) {
	cur, err := l.rdb.HGet(ctx, l.officialsKey(warningID), personID).Result()
	if errors.Is(err, redis.Nil) {
		return false, ErrNotAddressed
	}
	if err != nil {
		return false, fmt.Errorf("ledger: acknowledge: %w", err)
	}
	o, ok := decodeOfficial(personID, cur)
	if !ok {
		return false, fmt.Errorf("ledger: acknowledge: damaged record for %s", personID)
	}
	cmd, replicated := l.run(ctx, ackScript, []string{l.officialsKey(warningID), l.progressKey(warningID)},
		[]any{personID, ms36(l.now()), method, string(o.Audience), nonce()})
	n, err := cmd.Int()
	if err != nil {
		return false, fmt.Errorf("ledger: acknowledge: %w", err)
	}
	if n < 0 {
		return false, ErrNotAddressed
	}
	l.rdb.ZRem(ctx, l.pendingKey(personID), warningID)
	if replicated != nil {
		return n == 1, fmt.Errorf("ledger: acknowledge %s of %s: %w", personID, warningID, replicated)
	}
	return n == 1, nil
}

// tryScript moves waiting officials on: another try, or unreached. It moves
// only an official still as the caller read them — waiting, after the tries
// it read — so of two checks that read the same record, one moves it.
// Returns 1 or 0 per official: moved or not.
// KEYS: officials, progress. ARGV: at b36, then per official: id, tries
// read, tries, unreached (0/1), audience name.
var tryScript = redis.NewScript(`
local out = {}
for i = 2, #ARGV, 5 do
  local moved = 0
  local v = redis.call("HGET", KEYS[1], ARGV[i])
  if v then
    local f = {}
    for part in string.gmatch(v .. "|", "([^|]*)|") do f[#f+1] = part end
    if f[1] == "w" and f[3] == ARGV[i+1] then
      local div = string.sub(f[2], 2)
      f[3] = ARGV[i+2]; f[4] = ARGV[1]
      if ARGV[i+3] == "1" then
        f[1] = "u"
        redis.call("HINCRBY", KEYS[2], "k|" .. ARGV[i+4] .. "|unreached", 1)
        redis.call("HINCRBY", KEYS[2], "kd|" .. div .. "|unreached", 1)
      end
      redis.call("HSET", KEYS[1], ARGV[i], table.concat(f, "|"))
      moved = 1
    end
  end
  out[#out+1] = moved
end
return out
`)

// Try moves one official on: another request for confirmation, or onto the
// 未叫应 list.
type Try struct {
	Official  Official // as read
	Tries     int      // once moved
	Unreached bool
}

// triesPerCall bounds the officials one script call moves, so that a
// city-wide warning's check never holds Redis for long.
const triesPerCall = 500

// MarkTries records tries sent at at, in one round trip per few hundred
// officials, and reports which officials moved. An official who is no
// longer as read — confirmed, or moved on by another check — does not move.
// On an error, moved covers the tries recorded before it.
func (l *Ledger) MarkTries(ctx context.Context, warningID string, at time.Time, tries []Try) (moved []bool, err error) {
	moved = make([]bool, 0, len(tries))
	for len(tries) > 0 {
		part := tries[:min(triesPerCall, len(tries))]
		tries = tries[len(part):]
		args := make([]any, 0, 1+5*len(part))
		args = append(args, ms36(at))
		for _, t := range part {
			u := "0"
			if t.Unreached {
				u = "1"
			}
			args = append(args, t.Official.PersonID, t.Official.Tries, t.Tries, u, string(t.Official.Audience))
		}
		res, err := tryScript.Run(ctx, l.rdb, []string{l.officialsKey(warningID), l.progressKey(warningID)}, args...).Int64Slice()
		if err != nil {
			return moved, fmt.Errorf("ledger: mark tries of %s: %w", warningID, err)
		}
		for _, n := range res {
			moved = append(moved, n == 1)
		}
	}
	return moved, nil
}

// MarkTry records one try, as MarkTries does.
func (l *Ledger) MarkTry(ctx context.Context, warningID string, o Official, at time.Time, tries int, unreached bool) (bool, error) {
	moved, err := l.MarkTries(ctx, warningID, at, []Try{{Official: o, Tries: tries, Unreached: unreached}})
	if err != nil {
		return false, err
	}
	return moved[0], nil
}

// Officials lists the officials a warning asked to confirm.
func (l *Ledger) Officials(ctx context.Context, warningID string) ([]Official, error) {
	m, err := l.rdb.HGetAll(ctx, l.officialsKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: officials of %s: %w", warningID, err)
	}
	out := make([]Official, 0, len(m))
	for id, v := range m {
		if o, ok := decodeOfficial(id, v); ok {
			out = append(out, o)
		}
	}
	return out, nil
}

// OfficialState loads one official's record.
func (l *Ledger) OfficialState(ctx context.Context, warningID, personID string) (Official, error) {
	v, err := l.rdb.HGet(ctx, l.officialsKey(warningID), personID).Result()
	if errors.Is(err, redis.Nil) {
		return Official{}, ErrNotAddressed
	}
	if err != nil {
		return Official{}, fmt.Errorf("ledger: official %s: %w", personID, err)
	}
	o, ok := decodeOfficial(personID, v)
	if !ok {
		return Official{}, fmt.Errorf("ledger: damaged record for %s", personID)
	}
	return o, nil
}

// AwaitingFrom lists the warnings, newest first, that a person has been asked
// to confirm and has not.
func (l *Ledger) AwaitingFrom(ctx context.Context, personID string) ([]string, error) {
	ids, err := l.rdb.ZRevRange(ctx, l.pendingKey(personID), 0, 50).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: awaiting from %s: %w", personID, err)
	}
	return ids, nil
}

// AckCounts are acknowledgement figures for a group of officials.
type AckCounts struct {
	Expected  int64 `json:"expected"`
	Confirmed int64 `json:"confirmed"`
	Unreached int64 `json:"unreached"`
	Waiting   int64 `json:"waiting"`
}

// Step is one recorded escalation action.
type Step struct {
	At       time.Time `json:"at"`
	Due      time.Time `json:"due,omitzero"` // when the step was due; At is when it was taken
	PersonID string    `json:"person_id"`
	Action   string    `json:"action"` // remind, escalate, unreached
	Channel  string    `json:"channel,omitempty"`
	Target   string    `json:"target,omitempty"` // the superior told, for escalate
	Try      int       `json:"try"`
	Outcome  string    `json:"outcome"`
}

// AddSteps appends escalation steps to a warning's log.
func (l *Ledger) AddSteps(ctx context.Context, warningID string, steps []Step) error {
	pipe := l.rdb.Pipeline()
	for _, s := range steps {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: l.stepsKey(warningID), Values: map[string]any{
			"at": s.At.UnixMilli(), "due": ms(s.Due), "person": s.PersonID, "action": s.Action, "channel": s.Channel,
			"target": s.Target, "try": s.Try, "outcome": s.Outcome,
		}})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ledger: escalation log of %s: %w", warningID, err)
	}
	return nil
}

// Steps reads a warning's escalation log, oldest first.
func (l *Ledger) Steps(ctx context.Context, warningID string) ([]Step, error) {
	msgs, err := l.rdb.XRange(ctx, l.stepsKey(warningID), "-", "+").Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: escalation log of %s: %w", warningID, err)
	}
	out := make([]Step, 0, len(msgs))
	for _, m := range msgs {
		get := func(k string) string { s, _ := m.Values[k].(string); return s }
		at, _ := strconv.ParseInt(get("at"), 10, 64)
		try, _ := strconv.Atoi(get("try"))
		var due time.Time
		if n, _ := strconv.ParseInt(get("due"), 10, 64); n > 0 {
			due = time.UnixMilli(n)
		}
		out = append(out, Step{At: time.UnixMilli(at), Due: due, PersonID: get("person"), Action: get("action"),
			Channel: get("channel"), Target: get("target"), Try: try, Outcome: get("outcome")})
	}
	return out, nil
}

// AuditEntry is one thing a person did.
type AuditEntry struct {
	At        time.Time `json:"at"`
	Who       string    `json:"who"`    // person id, or "admin"/user name
	Action    string    `json:"action"` // acknowledge, checklist, calllist, issue, …
	WarningID string    `json:"warning_id,omitempty"`
	Target    string    `json:"target,omitempty"`
	Detail    string    `json:"detail,omitempty"`
	From      string    `json:"from,omitempty"` // IP address or phone number
}

// AuditMax bounds the audit stream; the oldest entries go first.
const AuditMax = 1_000_000

// Audit appends to the audit trail.
func (l *Ledger) Audit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = l.now()
	}
	err := l.rdb.XAdd(ctx, &redis.XAddArgs{Stream: l.auditKey(), MaxLen: AuditMax, Approx: true, Values: map[string]any{
		"at": e.At.UnixMilli(), "who": e.Who, "action": e.Action, "warning": e.WarningID,
		"target": e.Target, "detail": e.Detail, "from": e.From,
	}}).Err()
	if err != nil {
		return fmt.Errorf("ledger: audit: %w", err)
	}
	return nil
}

// AuditLog reads the newest audit entries, optionally of one warning.
func (l *Ledger) AuditLog(ctx context.Context, warningID string, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	last := "+"
	for len(out) < limit {
		msgs, err := l.rdb.XRevRangeN(ctx, l.auditKey(), last, "-", 500).Result()
		if err != nil {
			return nil, fmt.Errorf("ledger: audit log: %w", err)
		}
		for _, m := range msgs {
			get := func(k string) string { s, _ := m.Values[k].(string); return s }
			if warningID != "" && get("warning") != warningID {
				continue
			}
			at, _ := strconv.ParseInt(get("at"), 10, 64)
			out = append(out, AuditEntry{At: time.UnixMilli(at), Who: get("who"), Action: get("action"), WarningID: get("warning"),
				Target: get("target"), Detail: get("detail"), From: get("from")})
			if len(out) == limit {
				break
			}
		}
		if len(msgs) < 500 {
			break
		}
		last = "(" + msgs[len(msgs)-1].ID
	}
	return out, nil
}

// nonce names one call, so that a script written again after a failover
// can tell itself from another call.
func nonce() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (l *Ledger) retryClaimsKey(id string) string { return l.prefix + ":{" + id + "}:er" }

// retryClaimScript takes the claim on one escalation to try again unless
// another check took it less than hold ago. KEYS: claims. ARGV: field, now
// ms, hold ms. Returns 1 when taken.
var retryClaimScript = redis.NewScript(`
local at = tonumber(redis.call("HGET", KEYS[1], ARGV[1]) or "")
if at and tonumber(ARGV[2]) - at < tonumber(ARGV[3]) then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// ClaimEscalationRetry lets one check, of those running at once, try an
// escalation again: the attempt-th try of telling an unreached official's
// superior (0 for one a stopped check never sent). A claim older than hold
// is taken for that of a check that stopped, and may be taken again.
func (l *Ledger) ClaimEscalationRetry(ctx context.Context, warningID, personID string, attempt int, now time.Time, hold time.Duration) (bool, error) {
	ok, err := retryClaimScript.Run(ctx, l.rdb, []string{l.retryClaimsKey(warningID)},
		personID+"|"+strconv.Itoa(attempt), now.UnixMilli(), hold.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("ledger: claim the escalation of %s again: %w", personID, err)
	}
	return ok == 1, nil
}
