package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// A delivery is stored as one hash field, recipient id → value:
//
//	byte 0      state (P while handed to a provider, then S, D, F or X)
//	byte 1      audience code (warning.Audience.Code)
//	bytes 2-13  division code
//	"|" unix milliseconds in base 36 "|" provider id or failure reason
//
// A value is about 25 bytes; the audience and division ride along so that a
// report, which names only the recipient, can move the right counters.

// handing is the state of a delivery claimed by a worker that is calling
// the provider. It is never shown outside the ledger: it counts as queued.
const handing = 'P'

// Entry is one recipient of a batch as the ledger sees it.
type Entry struct {
	RecipientID string
	Audience    warning.Audience
	Division    string // 12-digit division code
}

func (e Entry) tag() (string, error) {
	if len(e.Division) != 12 {
		return "", fmt.Errorf("ledger: recipient %s: division %q is not a 12-digit code", e.RecipientID, e.Division)
	}
	return string([]byte{e.Audience.Code()}) + e.Division, nil
}

// audienceTable is the Lua table that turns an audience code back into its name.
var audienceTable = func() string {
	var b strings.Builder
	b.WriteString("local AUD = {")
	for _, a := range warning.Audiences {
		fmt.Fprintf(&b, "[%q]=%q,", string([]byte{a.Code()}), string(a))
	}
	b.WriteString("}\n")
	return b.String()
}()

// countLua accumulates counter moves in a table and applies them at the end,
// one HINCRBY per distinct field. The fields match counterFields.
const countLua = `
local moves = {}
local function count(ch, cur, what)
  local aud = AUD[string.sub(cur, 2, 2)] or "unknown"
  local div = string.sub(cur, 3, 14)
  local f1 = "c|" .. ch .. "|" .. what
  local f2 = "a|" .. ch .. "|" .. aud .. "|" .. what
  local f3 = "d|" .. div .. "|" .. what
  moves[f1] = (moves[f1] or 0) + 1
  moves[f2] = (moves[f2] or 0) + 1
  moves[f3] = (moves[f3] or 0) + 1
end
local function flush(key)
  for f, n in pairs(moves) do redis.call("HINCRBY", key, f, n) end
end
`

// claimScript marks recipients as being handed to a provider, skipping those
// already handled. It returns the number of recipients held by another live
// claim, then the 1-based positions it claimed. A claim left by a worker that
// died (older than the lease) is taken over.
// KEYS: deliveries. ARGV: now ms, lease ms, now base36, then (id, tag) pairs.
var claimScript = redis.NewScript(`
local now, lease, ts = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local claimed = {0}
for i = 4, #ARGV, 2 do
  local v = "P" .. ARGV[i+1] .. "|" .. ts
  if redis.call("HSETNX", KEYS[1], ARGV[i], v) == 1 then
    claimed[#claimed+1] = (i - 2) / 2
  else
    local cur = redis.call("HGET", KEYS[1], ARGV[i])
    if string.sub(cur, 1, 1) == "P" then
      local at = tonumber(string.match(cur, "|(%w+)") or "0", 36) or 0
      if now - at > lease then
        redis.call("HSET", KEYS[1], ARGV[i], v)
        claimed[#claimed+1] = (i - 2) / 2
      else
        claimed[1] = claimed[1] + 1
      end
    end
  end
end
return claimed
`)

// recordScript applies the outcome of a send. Only a recipient that is
// claimed (or, for expiry, untouched) moves; anything later is left alone.
// KEYS: deliveries, progress. ARGV: channel, now base36, then (id, state, tag, extra).
// State Q releases a claim.
var recordScript = redis.NewScript(audienceTable + countLua + `
local ch, ts = ARGV[1], ARGV[2]
local moved = 0
for i = 3, #ARGV, 4 do
  local id, st, tag, extra = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local cur = redis.call("HGET", KEYS[1], id)
  local c = cur and string.sub(cur, 1, 1)
  if st == "Q" then
    if c == "P" then redis.call("HDEL", KEYS[1], id) end
  elseif (not cur) or c == "P" then
    local v = st .. tag .. "|" .. ts
    if extra ~= "" then v = v .. "|" .. extra end
    redis.call("HSET", KEYS[1], id, v)
    if st == "S" then
      count(ch, v, "sent")
    elseif st == "D" then
      count(ch, v, "sent"); count(ch, v, "delivered")
    elseif st == "F" then
      count(ch, v, "failed")
      local r = "r|" .. ch .. "|" .. extra
      moves[r] = (moves[r] or 0) + 1
    elseif st == "X" then
      count(ch, v, "expired")
    end
    moved = moved + 1
  end
end
flush(KEYS[2])
return moved
`)

// reportScript applies provider reports. A report for a delivery that is
// final already is a duplicate; one for a recipient never handed over is
// unknown and changes nothing.
// KEYS: deliveries, progress. ARGV: channel, then (id, state, at base36, reason).
// Returns {applied, number of unknown, unknown ids..., duplicate ids...}.
var reportScript = redis.NewScript(audienceTable + countLua + `
local ch = ARGV[1]
local applied = 0
local unknown, dup = {}, {}
for i = 2, #ARGV, 4 do
  local id, st, at, reason = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local cur = redis.call("HGET", KEYS[1], id)
  if not cur then
    unknown[#unknown+1] = id
  else
    local c = string.sub(cur, 1, 1)
    if c == "P" or c == "S" then
      local v = st .. string.sub(cur, 2, 14) .. "|" .. at
      if reason ~= "" then v = v .. "|" .. reason end
      redis.call("HSET", KEYS[1], id, v)
      if c == "P" then count(ch, v, "sent") end
      if st == "D" then
        count(ch, v, "delivered")
      else
        count(ch, v, "failed")
        local r = "r|" .. ch .. "|" .. reason
        moves[r] = (moves[r] or 0) + 1
      end
      applied = applied + 1
    else
      dup[#dup+1] = id
    end
  end
end
flush(KEYS[2])
local out = {applied, #unknown}
for _, id in ipairs(unknown) do out[#out+1] = id end
for _, id in ipairs(dup) do out[#out+1] = id end
return out
`)

func base36ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 36) }

// Claim marks the entries as being handed to a provider and returns the
// indexes of those this caller may send to: entries already sent or final
// are skipped, so a batch that runs again never sends twice. Entries claimed
// by another worker within lease are counted in held: the caller must try
// them again later, since that worker may die. A claim older than lease is
// taken over.
func (l *Ledger) Claim(ctx context.Context, warningID string, ch warning.Channel, entries []Entry, lease time.Duration) (claimed []int, held int, err error) {
	now := l.now()
	args := make([]any, 0, 3+2*len(entries))
	args = append(args, now.UnixMilli(), lease.Milliseconds(), base36ms(now))
	for _, e := range entries {
		tag, err := e.tag()
		if err != nil {
			return nil, 0, err
		}
		args = append(args, e.RecipientID, tag)
	}
	res, err := claimScript.Run(ctx, l.rdb, []string{l.deliveryKey(warningID, ch)}, args...).Int64Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("ledger: claim %s/%s: %w", warningID, ch, err)
	}
	claimed = make([]int, len(res)-1)
	for i, n := range res[1:] {
		claimed[i] = int(n) - 1
	}
	return claimed, int(res[0]), nil
}

// Outcome is what happened to one claimed entry.
type Outcome struct {
	Entry
	// State is warning.Sent, warning.Delivered, warning.Failed,
	// warning.Expired, or warning.Queued to release the claim for a retry.
	State warning.DeliveryState
	// Extra is the provider's message id (Sent) or the reason (Failed, Expired).
	Extra string
}

// Record applies the outcomes of a send and moves the counters. It changes
// only entries that are claimed or untouched, so it is safe to repeat.
func (l *Ledger) Record(ctx context.Context, warningID string, ch warning.Channel, outs []Outcome) (moved int, err error) {
	if len(outs) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2+4*len(outs))
	args = append(args, string(ch), base36ms(l.now()))
	for _, o := range outs {
		tag, err := o.tag()
		if err != nil {
			return 0, err
		}
		extra := o.Extra
		if o.State == warning.Failed || o.State == warning.Expired {
			extra = cleanReason(extra)
		} else {
			extra = strings.ReplaceAll(extra, "|", "_")
		}
		args = append(args, o.RecipientID, string(rune(o.State)), tag, extra)
	}
	n, err := recordScript.Run(ctx, l.rdb, []string{l.deliveryKey(warningID, ch), l.progressKey(warningID)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("ledger: record %s/%s: %w", warningID, ch, err)
	}
	return n, nil
}

// ReportResult counts what a set of reports did.
type ReportResult struct {
	Applied    int
	Duplicates []warning.Ref
	Unknown    []warning.Ref
}

// ApplyReports records provider reports (Delivered or Failed). The same
// report twice changes nothing; a report for a delivery the ledger never
// handed over is returned as unknown.
func (l *Ledger) ApplyReports(ctx context.Context, reports []warning.Report) (ReportResult, error) {
	type group struct {
		id string
		ch warning.Channel
	}
	groups := make(map[group][]any)
	var order []group
	for _, r := range reports {
		if r.State != warning.Delivered && r.State != warning.Failed {
			return ReportResult{}, fmt.Errorf("ledger: report for %s: state %s is not delivered or failed", r.Ref, r.State)
		}
		g := group{r.Ref.WarningID, r.Ref.Channel}
		args, ok := groups[g]
		if !ok {
			args = []any{string(g.ch)}
			order = append(order, g)
		}
		at := r.At
		if at.IsZero() {
			at = l.now()
		}
		reason := ""
		if r.State == warning.Failed {
			reason = cleanReason(r.Reason)
		}
		groups[g] = append(args, r.Ref.RecipientID, string(rune(r.State)), base36ms(at), reason)
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(order))
	for i, g := range order {
		cmds[i] = reportScript.EvalSha(ctx, pipe, []string{l.deliveryKey(g.id, g.ch), l.progressKey(g.id)}, groups[g]...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return ReportResult{}, fmt.Errorf("ledger: apply reports: %w", err)
	}
	var res ReportResult
	for i, g := range order {
		vals, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			vals, err = reportScript.Run(ctx, l.rdb, []string{l.deliveryKey(g.id, g.ch), l.progressKey(g.id)}, groups[g]...).Slice()
		}
		if err != nil {
			return res, fmt.Errorf("ledger: apply reports for %s/%s: %w", g.id, g.ch, err)
		}
		res.Applied += int(vals[0].(int64))
		nUnknown := int(vals[1].(int64))
		for i, v := range vals[2:] {
			ref := warning.Ref{WarningID: g.id, Channel: g.ch, RecipientID: v.(string)}
			if i < nUnknown {
				res.Unknown = append(res.Unknown, ref)
			} else {
				res.Duplicates = append(res.Duplicates, ref)
			}
		}
	}
	return res, nil
}

// Delivery is the recorded state of one delivery.
type Delivery struct {
	Ref      warning.Ref
	State    warning.DeliveryState
	Audience warning.Audience
	Division string
	At       time.Time
	// Extra is the provider id of a sent delivery or the reason of a failed one.
	Extra string
}

// Delivery loads one delivery; a delivery never handed over is Queued.
func (l *Ledger) Delivery(ctx context.Context, ref warning.Ref) (Delivery, error) {
	v, err := l.rdb.HGet(ctx, l.deliveryKey(ref.WarningID, ref.Channel), ref.RecipientID).Result()
	if err == redis.Nil {
		return Delivery{Ref: ref, State: warning.Queued}, nil
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("ledger: load delivery %s: %w", ref, err)
	}
	return decodeDelivery(ref, v), nil
}

// Deliveries calls fn for every recorded delivery of a warning on a channel,
// in no particular order, until fn returns false.
func (l *Ledger) Deliveries(ctx context.Context, warningID string, ch warning.Channel, fn func(Delivery) bool) error {
	key := l.deliveryKey(warningID, ch)
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			ref := warning.Ref{WarningID: warningID, Channel: ch, RecipientID: kv[i]}
			if !fn(decodeDelivery(ref, kv[i+1])) {
				return nil
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

func decodeDelivery(ref warning.Ref, v string) Delivery {
	d := Delivery{Ref: ref, State: warning.DeliveryState(v[0])}
	if d.State == handing {
		d.State = warning.Queued
	}
	if len(v) >= 14 {
		d.Audience, _ = warning.AudienceFromCode(v[1])
		d.Division = v[2:14]
	}
	if len(v) > 15 {
		rest := v[15:]
		ts, extra, _ := strings.Cut(rest, "|")
		if ms, err := strconv.ParseInt(ts, 36, 64); err == nil {
			d.At = time.UnixMilli(ms)
		}
		d.Extra = extra
	}
	return d
}
