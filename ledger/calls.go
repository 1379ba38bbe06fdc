package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Calls (电话叫应): the officials of audiences the policy calls have a
// call schedule, one hash per warning:
//
//	person id → "<calls placed>|<ms b36>"
//
// where the time is of the last call, or of the message while no call was
// placed. The 叫应 checks place the calls that are due and claim each in
// the hash first, so that two checks never call an official twice.

func (l *Ledger) callTracksKey(id string) string { return l.prefix + ":{" + id + "}:vc" }

// CallTrack is where an official's call schedule stands.
type CallTrack struct {
	// Calls is how many calls were placed to them.
	Calls int
	// At is when the last call was placed, or when the message went while
	// none was.
	At time.Time
}

func (t CallTrack) encode() string { return strconv.Itoa(t.Calls) + "|" + ms36(t.At) }

func decodeTrack(v string) (CallTrack, bool) {
	n, at, ok := strings.Cut(v, "|")
	if !ok {
		return CallTrack{}, false
	}
	c, err1 := strconv.Atoi(n)
	t, err2 := strconv.ParseInt(at, 36, 64)
	if err1 != nil || err2 != nil {
		return CallTrack{}, false
	}
	return CallTrack{Calls: c, At: time.UnixMilli(t)}, true
}

// RegisterCalls starts the call schedules of officials not yet on one; an
// official already on one is left as they are, so a plan that runs twice
// calls nobody twice.
func (l *Ledger) RegisterCalls(ctx context.Context, warningID string, tracks map[string]CallTrack) error {
	if len(tracks) == 0 {
		return nil
	}
	pipe := l.rdb.Pipeline()
	for id, t := range tracks {
		pipe.HSetNX(ctx, l.callTracksKey(warningID), id, t.encode())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ledger: register calls of %s: %w", warningID, err)
	}
	return nil
}

// CallTracks returns the call schedules of a warning's officials, by person id.
func (l *Ledger) CallTracks(ctx context.Context, warningID string) (map[string]CallTrack, error) {
	out, err := decodedHash(ctx, l, l.callTracksKey(warningID), decodeTrack)
	if err != nil {
		return nil, fmt.Errorf("ledger: calls of %s: %w", warningID, err)
	}
	return out, nil
}

// decodedHash reads a hash whose values are records of one kind, by
// field, skipping values that do not decode (written by another version).
func decodedHash[T any](ctx context.Context, l *Ledger, key string, decode func(string) (T, bool)) (map[string]T, error) {
	m, err := l.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string]T, len(m))
	for field, v := range m {
		if t, ok := decode(v); ok {
			out[field] = t
		}
	}
	return out, nil
}

// CallClaim moves one official's call schedule on: from Read, as the
// caller read it, to Next.
type CallClaim struct {
	PersonID   string
	Read, Next CallTrack
}

// claimCallsScript sets each schedule to its next value when it is still
// as read and the official has not confirmed meanwhile.
// KEYS: tracks, officials. ARGV: (id, read, next) per claim. Returns 1 or 0
// per claim.
var claimCallsScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 3 do
  local o = redis.call("HGET", KEYS[2], ARGV[i])
  if redis.call("HGET", KEYS[1], ARGV[i]) == ARGV[i+1] and not (o and string.sub(o, 1, 1) == "a") then
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i+2])
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`)

// ClaimCalls claims the calls of a check: each official's schedule moves
// on only when it is still as the check read it, so of two checks that
// read the same, one calls, and only while the official has not confirmed,
// so a confirmation that came after the check read the officials still
// stops the call. It reports per claim whether it was made.
func (l *Ledger) ClaimCalls(ctx context.Context, warningID string, claims []CallClaim) ([]bool, error) {
	out := make([]bool, 0, len(claims))
	for len(claims) > 0 {
		part := claims[:min(triesPerCall, len(claims))]
		claims = claims[len(part):]
		args := make([]any, 0, 3*len(part))
		for _, c := range part {
			args = append(args, c.PersonID, c.Read.encode(), c.Next.encode())
		}
		res, err := claimCallsScript.Run(ctx, l.rdb, []string{l.callTracksKey(warningID), l.officialsKey(warningID)}, args...).Int64Slice()
		if err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("ledger: claim calls of %s: %w", warningID, err)
		}
		for _, v := range res {
			out = append(out, v == 1)
		}
	}
	return out, nil
}

// Each call's outcome is kept in one hash per warning, call id →
//
//	"<person>|<outcome>|<keys>|<ring ms>|<talk ms>|<billed minutes>|<account>|<ended ms b36>"
//
// and counted once in the progress hash: "v|<outcome>" per outcome and
// "vb|<account>|calls", "vb|<account>|minutes" per provider account.

func (l *Ledger) callsKey(id string) string { return l.prefix + ":{" + id + "}:calls" }

// CallRecord is one call placed to an official, as its provider reported
// how it ended.
type CallRecord struct {
	CallID   string              `json:"call_id"`
	PersonID string              `json:"person_id"`
	Outcome  warning.CallOutcome `json:"outcome"`
	Keys     string              `json:"keys,omitempty"`
	Ring     time.Duration       `json:"-"`
	Talk     time.Duration       `json:"-"`
	Billed   int                 `json:"billed_minutes"`
	Account  string              `json:"account,omitempty"`
	Ended    time.Time           `json:"ended"`
}

// CallBill is what one provider account charges for a warning's calls.
type CallBill struct {
	Calls   int64 `json:"calls"`
	Minutes int64 `json:"minutes"`
}

// CallCounts are a warning's calls by outcome, and billed per account.
type CallCounts struct {
	Outcomes map[warning.CallOutcome]int64 `json:"outcomes"`
	Billing  map[string]CallBill           `json:"billing"`
}

// recordCallsScript keeps each call once and counts it.
// KEYS: calls, progress. ARGV: (call id, value, outcome, account, billed)
// per call. Returns 1 or 0 per call: new or seen before.
var recordCallsScript = redis.NewScript(`
local out = {}
for i = 1, #ARGV, 5 do
  if redis.call("HSETNX", KEYS[1], ARGV[i], ARGV[i+1]) == 1 then
    redis.call("HINCRBY", KEYS[2], "v|" .. ARGV[i+2], 1)
    redis.call("HINCRBY", KEYS[2], "vb|" .. ARGV[i+3] .. "|calls", 1)
    redis.call("HINCRBY", KEYS[2], "vb|" .. ARGV[i+3] .. "|minutes", tonumber(ARGV[i+4]))
    out[#out+1] = 1
  else
    out[#out+1] = 0
  end
end
return out
`)

// RecordCalls keeps the calls the reports carry (those with a Call), each
// once however often its report comes: a provider pushes again what was
// not answered. It returns the reports of calls not seen before. A
// warning's calls are kept whether or not the report changes its
// delivery: an official called three times has one delivery and three
// calls.
func (l *Ledger) RecordCalls(ctx context.Context, reports []warning.Report) ([]warning.Report, error) {
	byWarning := map[string][]warning.Report{}
	var order []string
	for _, r := range reports {
		if r.Call == nil {
			continue
		}
		if _, ok := byWarning[r.Ref.WarningID]; !ok {
			order = append(order, r.Ref.WarningID)
		}
		byWarning[r.Ref.WarningID] = append(byWarning[r.Ref.WarningID], r)
	}
	var fresh []warning.Report
	for _, id := range order {
		rs := byWarning[id]
		args := make([]any, 0, 5*len(rs))
		for _, r := range rs {
			c := r.Call
			at := r.At
			if at.IsZero() {
				at = l.now()
			}
			account := c.Account
			if account == "" {
				account = "unknown"
			}
			callID := r.ProviderID
			if callID == "" {
				callID = r.Ref.RecipientID + "@" + ms36(at)
			}
			v := strings.Join([]string{r.Ref.RecipientID, string(c.Outcome), c.Keys,
				strconv.FormatInt(c.Ring.Milliseconds(), 10), strconv.FormatInt(c.Talk.Milliseconds(), 10),
				strconv.Itoa(c.Billed), strings.ReplaceAll(account, "|", "_"), ms36(at)}, "|")
			args = append(args, callID, v, string(c.Outcome), account, c.Billed)
		}
		res, err := recordCallsScript.Run(ctx, l.rdb, []string{l.callsKey(id), l.progressKey(id)}, args...).Int64Slice()
		if err != nil {
			return fresh, fmt.Errorf("ledger: record calls of %s: %w", id, err)
		}
		for i, v := range res {
			if v == 1 {
				fresh = append(fresh, rs[i])
			}
		}
	}
	return fresh, nil
}

// Calls returns a warning's calls by person id, each person's in the order
// they ended.
func (l *Ledger) Calls(ctx context.Context, warningID string) (map[string][]CallRecord, error) {
	m, err := l.rdb.HGetAll(ctx, l.callsKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: calls of %s: %w", warningID, err)
	}
	out := map[string][]CallRecord{}
	for id, v := range m {
		f := strings.Split(v, "|")
		if len(f) != 8 {
			continue
		}
		ring, _ := strconv.ParseInt(f[3], 10, 64)
		talk, _ := strconv.ParseInt(f[4], 10, 64)
		billed, _ := strconv.Atoi(f[5])
		ended, _ := strconv.ParseInt(f[7], 36, 64)
		out[f[0]] = append(out[f[0]], CallRecord{CallID: id, PersonID: f[0], Outcome: warning.CallOutcome(f[1]), Keys: f[2],
			Ring: time.Duration(ring) * time.Millisecond, Talk: time.Duration(talk) * time.Millisecond,
			Billed: billed, Account: f[6], Ended: time.UnixMilli(ended)})
	}
	for _, cs := range out {
		slices.SortFunc(cs, func(a, b CallRecord) int { return a.Ended.Compare(b.Ended) })
	}
	return out, nil
}

// CallSummary says what a person's calls came to, as the 未叫应 list
// shows it: each outcome with how often, the most frequent first, e.g.
// 无人接听×3 or 无人接听×2，占线×1.
func CallSummary(calls []CallRecord) string {
	n := map[warning.CallOutcome]int{}
	var order []warning.CallOutcome
	for _, c := range calls {
		if n[c.Outcome] == 0 {
			order = append(order, c.Outcome)
		}
		n[c.Outcome]++
	}
	slices.SortStableFunc(order, func(a, b warning.CallOutcome) int { return n[b] - n[a] })
	parts := make([]string, len(order))
	for i, o := range order {
		parts[i] = o.Chinese() + "×" + strconv.Itoa(n[o])
	}
	return strings.Join(parts, "，")
}
