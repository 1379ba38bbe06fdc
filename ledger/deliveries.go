package ledger

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// A delivery is stored as one field of a hash per (warning, channel),
// recipient id → value:
//
//	byte 0      state: P while handed to a provider, then D, F or X
//	byte 1      audience code (warning.Audience.Code)
//	bytes 2-13  division code
//	"|" unix milliseconds in base 36
//	"|" the claim generation (P), or the failure reason (F, X)
//
// A value is about 25 bytes; the audience and division ride along so that a
// report, which names only the recipient, can move the right counters.
//
// Sending is recorded per batch, not per recipient: a claim opens a
// generation "<batch>.<random>", and once the provider has accepted, the
// generation is marked sent in a small hash beside the deliveries. A P whose
// generation is marked sent is a sent delivery. Reports that arrive before
// their generation is marked are counted as sent by the report and noted,
// so the batch record does not count them again.

// handing is the state byte of a claimed delivery.
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

// countLua accumulates counter moves per (audience, division) tag and
// applies them at the end, one HINCRBY per distinct field. The fields match
// counterFields.
const countLua = `
local moves, reasons = {}, {}
local function count(tag, what, n)
  local m = moves[tag]
  if not m then m = {}; moves[tag] = m end
  m[what] = (m[what] or 0) + n
end
local function reason(r)
  reasons[r] = (reasons[r] or 0) + 1
end
local function flush(key, ch)
  local sums = {}
  for tag, m in pairs(moves) do
    local aud = AUD[string.sub(tag, 1, 1)] or "unknown"
    local div = string.sub(tag, 2)
    for what, n in pairs(m) do
      if n ~= 0 then
        local f1 = "c|" .. ch .. "|" .. what
        local f2 = "a|" .. ch .. "|" .. aud .. "|" .. what
        sums[f1] = (sums[f1] or 0) + n
        sums[f2] = (sums[f2] or 0) + n
        redis.call("HINCRBY", key, "d|" .. div .. "|" .. what, n)
      end
    end
  end
  for r, n in pairs(reasons) do sums["r|" .. ch .. "|" .. r] = n end
  for f, n in pairs(sums) do redis.call("HINCRBY", key, f, n) end
end
`

// bulkLua reads and writes many fields of one hash in few calls: inside a
// script one HMGET of a thousand fields costs far less than a thousand HGETs.
// sentGen tells, with a cache, whether a claim generation is marked sent.
const bulkLua = `
local CHUNK = 3000
local function mget(key, ids)
  local out = {}
  for i = 1, #ids, CHUNK do
    local part = redis.call("HMGET", key, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
    for j = 1, #part do out[i + j - 1] = part[j] end
  end
  return out
end
local function mset(key, kv)
  for i = 1, #kv, CHUNK * 2 do
    redis.call("HSET", key, unpack(kv, i, math.min(i + CHUNK * 2 - 1, #kv)))
  end
end
local function mdel(key, ids)
  for i = 1, #ids, CHUNK do
    redis.call("HDEL", key, unpack(ids, i, math.min(i + CHUNK - 1, #ids)))
  end
end
local sentCache = {}
local function sentGen(key, g)
  local v = sentCache[g]
  if v == nil then
    v = redis.call("HGET", key, g) == "s"
    sentCache[g] = v
  end
  return v
end
-- claimOf splits a claimed value "P<tag 13>|<ts>|<gen>" with plain finds:
-- patterns cost far more per call.
local function claimOf(c)
  local bar = string.find(c, "|", 16, true)
  if not bar then return 0, "" end
  return tonumber(string.sub(c, 16, bar - 1), 36) or 0, string.sub(c, bar + 1)
end
`

// lockScript takes a batch's lock for a claim generation unless another
// live generation holds it. The lock is a field of the batches hash,
// "lock:<batch>" → "<gen>|<expiry ms>". Returns 1 when taken.
// KEYS: batches. ARGV: lock field, gen, now ms, lease ms.
var lockScript = redis.NewScript(`
local cur = redis.call("HGET", KEYS[1], ARGV[1])
if cur then
  local bar = string.find(cur, "|", 1, true)
  local until_ms = tonumber(string.sub(cur, bar + 1)) or 0
  if string.sub(cur, 1, bar - 1) ~= ARGV[2] and until_ms > tonumber(ARGV[3]) then return 0 end
end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2] .. "|" .. (tonumber(ARGV[3]) + tonumber(ARGV[4])))
return 1
`)

// recordScript applies the outcome of a send: the generation is marked sent
// with the counts of what the provider accepted, per tag, less the reports
// that came first; then per-recipient outcomes (failed, expired, delivered at
// once, or released for a retry) move recipients still claimed by this
// generation, or untouched ones for expiry.
// What the provider bills for the accepted messages is counted per account
// with the marking, so exactly once however often the outcome is recorded.
// The batch's lock is released if this generation holds it.
// KEYS: deliveries, batches, early, progress.
// ARGV: channel, now base36, generation, number of sent groups, number of
// billed accounts, (tag, n) per group, (account, messages, segments) per
// billed account, then (id, state, tag, extra) per outcome. State Q
// releases a claim.
var recordScript = redis.NewScript(audienceTable + countLua + bulkLua + `
local ch, ts, gen, ngroups, nbills = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local bills = 6 + 2 * ngroups
local moved = 0
if gen ~= "" then
  local dot = string.find(gen, ".", 1, true)
  local lock = "lock:" .. string.sub(gen, 1, dot - 1)
  local held = redis.call("HGET", KEYS[2], lock)
  if held and string.sub(held, 1, #gen + 1) == gen .. "|" then redis.call("HDEL", KEYS[2], lock) end
end
if ngroups > 0 and redis.call("HGET", KEYS[2], gen) ~= "s" then
  redis.call("HSET", KEYS[2], gen, "s")
  for i = 6, 5 + 2 * ngroups, 2 do
    local tag, n = ARGV[i], tonumber(ARGV[i+1])
    local early = tonumber(redis.call("HGET", KEYS[3], gen .. "|" .. tag) or "0")
    count(tag, "sent", n - early)
    moved = moved + n
  end
  for i = bills, bills + 3 * nbills - 1, 3 do
    local f = "b|" .. ch .. "|" .. ARGV[i] .. "|"
    redis.call("HINCRBY", KEYS[4], f .. "messages", ARGV[i+1])
    redis.call("HINCRBY", KEYS[4], f .. "segments", ARGV[i+2])
  end
end
local first = bills + 3 * nbills
local ids = {}
for i = first, #ARGV, 4 do ids[#ids+1] = ARGV[i] end
local cur = mget(KEYS[1], ids)
local kv, del, done = {}, {}, {}
for k = 1, #ids do
  local i = first + 4 * (k - 1)
  local id, st, tag, extra = ids[k], ARGV[i+1], ARGV[i+2], ARGV[i+3]
  local c = cur[k]
  local mine = false
  if c and string.sub(c, 1, 1) == "P" then
    local _, g = claimOf(c)
    mine = (g == gen) or (gen == "" and not sentGen(KEYS[2], g))
  end
  if done[id] then
    -- the same recipient twice in one call: the first decides
  elseif st == "Q" then
    if mine then del[#del+1] = id end
  elseif (not c) or mine then
    local v = st .. tag .. "|" .. ts
    if extra ~= "" then v = v .. "|" .. extra end
    kv[#kv+1] = id
    kv[#kv+1] = v
    if st == "D" then
      count(tag, "sent", 1); count(tag, "delivered", 1)
    elseif st == "F" then
      count(tag, "failed", 1)
      reason(extra)
    elseif st == "X" then
      count(tag, "expired", 1)
    end
    moved = moved + 1
  end
  done[id] = true
end
if #kv > 0 then mset(KEYS[1], kv) end
if #del > 0 then mdel(KEYS[1], del) end
flush(KEYS[4], ch)
return moved
`)

// reportScript applies provider reports. A report for a delivery that is
// final already is a duplicate; one for a recipient never handed over is
// unknown and changes nothing. The caller sends each recipient once per call.
// KEYS: deliveries, batches, early, progress.
// ARGV: channel, then (id, state, "<at base36>[|reason]") per report.
// Returns {applied, number of unknown, unknown ids..., duplicate ids...}.
var reportScript = redis.NewScript(audienceTable + countLua + bulkLua + `
local ch = ARGV[1]
local ids = {}
for i = 2, #ARGV, 3 do ids[#ids+1] = ARGV[i] end
local cur = mget(KEYS[1], ids)
local applied = 0
local unknown, dup, kv, early = {}, {}, {}, {}
local lastGen, lastSent = nil, false
for k = 1, #ids do
  local i = 2 + 3 * (k - 1)
  local st, rest = ARGV[i+1], ARGV[i+2]
  local c = cur[k]
  if not c then
    unknown[#unknown+1] = ids[k]
  elseif string.byte(c, 1) == 80 then -- "P"
    local tag = string.sub(c, 2, 14)
    kv[#kv+1] = ids[k]
    kv[#kv+1] = st .. tag .. "|" .. rest
    -- Most reports of a call share one generation: compare in place
    -- before cutting the generation out of the value.
    local bar = string.find(c, "|", 16, true) or #c
    if not (lastGen and #c - bar == #lastGen and string.find(c, lastGen, bar + 1, true)) then
      lastGen = string.sub(c, bar + 1)
      lastSent = sentGen(KEYS[2], lastGen)
    end
    if not lastSent then
      count(tag, "sent", 1)
      local f = lastGen .. "|" .. tag
      early[f] = (early[f] or 0) + 1
    end
    if st == "D" then
      count(tag, "delivered", 1)
    else
      count(tag, "failed", 1)
      local b = string.find(rest, "|", 1, true)
      reason(b and string.sub(rest, b + 1) or "unknown")
    end
    applied = applied + 1
  else
    dup[#dup+1] = ids[k]
  end
end
if #kv > 0 then mset(KEYS[1], kv) end
for f, n in pairs(early) do redis.call("HINCRBY", KEYS[3], f, n) end
flush(KEYS[4], ch)
local out = {applied, #unknown}
for _, id in ipairs(unknown) do out[#out+1] = id end
for _, id in ipairs(dup) do out[#out+1] = id end
return out
`)

func base36ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 36) }

// Claim is a worker's hold on the recipients of one batch attempt.
type Claim struct {
	// Gen names this attempt; Record needs it.
	Gen string
	// Indexes are the positions in the entries this worker may send to.
	Indexes []int
	// Held counts entries claimed by another worker within the lease: the
	// caller must try them again later, since that worker may die.
	Held int
}

// Claim marks the entries of batch as being handed to a provider and
// returns those this caller may send to: entries already sent or final are
// skipped, so a batch that runs again never sends twice. One worker at a
// time holds a batch: while another's claim is younger than lease, every
// entry is held and the caller must try again later (that worker may die).
// A claim older than lease is taken over.
//
// Holding the batch makes the claim itself safe without a script: only the
// lock is taken atomically, and the entries are read and written with plain
// bulk commands, which cost Redis a fraction of a script's per-field work.
func (l *Ledger) Claim(ctx context.Context, warningID string, ch warning.Channel, batch int, entries []Entry, lease time.Duration) (Claim, error) {
	now := l.now()
	var rnd [4]byte
	rand.Read(rnd[:])
	gen := strconv.Itoa(batch) + "." + strconv.FormatUint(uint64(binary.LittleEndian.Uint32(rnd[:])), 36)
	dkey, bkey := l.deliveryKey(warningID, ch), l.batchKey(warningID, ch)
	fail := func(err error) (Claim, error) {
		return Claim{}, fmt.Errorf("ledger: claim %s/%s/%d: %w", warningID, ch, batch, err)
	}
	ok, err := lockScript.Run(ctx, l.rdb, []string{bkey}, lockField(batch), gen, now.UnixMilli(), lease.Milliseconds()).Int()
	if err != nil {
		return fail(err)
	}
	if ok == 0 {
		return Claim{Gen: gen, Held: len(entries)}, nil
	}
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.RecipientID
	}
	cur, err := l.rdb.HMGet(ctx, dkey, ids...).Result()
	if err != nil {
		return fail(err)
	}
	// Claims left by earlier attempts: sent if their generation was marked.
	var gens []string
	for _, v := range cur {
		if s, ok := v.(string); ok && len(s) > 0 && s[0] == handing {
			if _, g := decodeDelivery(warning.Ref{}, s); g != "" && !slices.Contains(gens, g) {
				gens = append(gens, g)
			}
		}
	}
	sent := map[string]bool{}
	if len(gens) > 0 {
		marks, err := l.rdb.HMGet(ctx, bkey, gens...).Result()
		if err != nil {
			return fail(err)
		}
		for i, m := range marks {
			sent[gens[i]] = m == "s"
		}
	}
	suffix := "|" + base36ms(now) + "|" + gen
	c := Claim{Gen: gen}
	kv := make([]any, 0, 2*len(entries))
	seen := make(map[string]bool, len(entries))
	for i, e := range entries {
		s, _ := cur[i].(string)
		take := s == ""
		if len(s) > 0 && s[0] == handing {
			_, g := decodeDelivery(warning.Ref{}, s)
			take = !sent[g]
		}
		if !take || seen[e.RecipientID] {
			continue
		}
		tag, err := e.tag()
		if err != nil {
			return Claim{}, err
		}
		seen[e.RecipientID] = true
		c.Indexes = append(c.Indexes, i)
		kv = append(kv, e.RecipientID, "P"+tag+suffix)
	}
	if len(kv) > 0 {
		if err := l.rdb.HSet(ctx, dkey, kv...).Err(); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

func lockField(batch int) string { return "lock:" + strconv.Itoa(batch) }

// Outcome is what happened to one claimed entry.
type Outcome struct {
	Entry
	// State is warning.Sent, warning.Delivered, warning.Failed,
	// warning.Expired, or warning.Queued to release the claim for a retry.
	State warning.DeliveryState
	// Extra is the reason (Failed, Expired).
	Extra string
	// Account is the provider account that took a Sent outcome (empty
	// means DefaultAccount), and Segments what it bills for it (SMS
	// parts); zero when not billed.
	Account  string
	Segments int
}

// DefaultAccount names the account of a channel whose notifier is a single
// provider rather than a route of named accounts.
const DefaultAccount = "default"

// Bill is what one provider account charges for a warning on a channel:
// messages accepted and the parts it bills (an SMS of 71 to 134 Chinese
// characters is two).
type Bill struct {
	Messages int64 `json:"messages"`
	Segments int64 `json:"segments"`
}

// Record applies the outcomes of a claim generation (gen from Claim; empty
// for expiring entries nobody claimed) and moves the counters. It is safe
// to repeat: a generation is marked sent once, and only entries still
// claimed by it (or untouched) move.
func (l *Ledger) Record(ctx context.Context, warningID string, ch warning.Channel, gen string, outs []Outcome) (moved int, err error) {
	if len(outs) == 0 && gen == "" {
		return 0, nil
	}
	sent := map[string]int{}
	var sentOrder []string
	bills := map[string]*Bill{}
	var billOrder []string
	rest := make([]any, 0, 4*len(outs))
	for _, o := range outs {
		tag, err := o.tag()
		if err != nil {
			return 0, err
		}
		if o.State == warning.Sent {
			if _, ok := sent[tag]; !ok {
				sentOrder = append(sentOrder, tag)
			}
			sent[tag]++
			if o.Segments > 0 {
				acct := o.Account
				if acct == "" {
					acct = DefaultAccount
				}
				if bills[acct] == nil {
					bills[acct] = &Bill{}
					billOrder = append(billOrder, acct)
				}
				bills[acct].Messages++
				bills[acct].Segments += int64(o.Segments)
			}
			continue
		}
		extra := ""
		if o.State == warning.Failed || o.State == warning.Expired {
			extra = cleanReason(o.Extra)
		}
		rest = append(rest, o.RecipientID, string(rune(o.State)), tag, extra)
	}
	if len(sent) > 0 && gen == "" {
		return 0, fmt.Errorf("ledger: record %s/%s: sent outcomes need the claim generation", warningID, ch)
	}
	args := make([]any, 0, 5+2*len(sent)+3*len(bills)+len(rest))
	args = append(args, string(ch), base36ms(l.now()), gen, len(sent), len(bills))
	for _, tag := range sentOrder {
		args = append(args, tag, sent[tag])
	}
	for _, acct := range billOrder {
		args = append(args, acct, bills[acct].Messages, bills[acct].Segments)
	}
	args = append(args, rest...)
	n, err := recordScript.Run(ctx, l.rdb, []string{l.deliveryKey(warningID, ch), l.batchKey(warningID, ch), l.earlyKey(warningID, ch), l.progressKey(warningID)}, args...).Int()
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
	seen := make(map[warning.Ref]bool, len(reports))
	var res ReportResult
	var order []group
	for _, r := range reports {
		if seen[r.Ref] {
			res.Duplicates = append(res.Duplicates, r.Ref)
			continue
		}
		seen[r.Ref] = true
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
		rest := base36ms(at)
		if r.State == warning.Failed {
			rest += "|" + cleanReason(r.Reason)
		}
		groups[g] = append(args, r.Ref.RecipientID, string(rune(r.State)), rest)
	}
	keys := func(g group) []string {
		return []string{l.deliveryKey(g.id, g.ch), l.batchKey(g.id, g.ch), l.earlyKey(g.id, g.ch), l.progressKey(g.id)}
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(order))
	for i, g := range order {
		cmds[i] = reportScript.EvalSha(ctx, pipe, keys(g), groups[g]...)
	}
	var wait *redis.Cmd
	if l.repl.required > 0 {
		wait = l.waitCmd(ctx, pipe)
	}
	if _, err := pipe.Exec(ctx); err != nil && !redis.HasErrorPrefix(err, "NOSCRIPT") {
		return ReportResult{}, fmt.Errorf("ledger: apply reports: %w", err)
	}
	unconfirmed := false // written on another connection than the WAIT's
	for i, g := range order {
		vals, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			vals, err = reportScript.Run(ctx, l.rdb, keys(g), groups[g]...).Slice()
			unconfirmed = true
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
	if wait != nil {
		// The provider is answered "try again" and sends the reports once
		// more; those that were kept then count as duplicates.
		if unconfirmed {
			return res, fmt.Errorf("ledger: apply reports: %w (scripts were reloaded)", ErrNotReplicated)
		}
		if err := l.confirmed(wait); err != nil {
			return res, fmt.Errorf("ledger: apply reports: %w", err)
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
	// Extra is the reason of a failed or expired delivery.
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
	d, gen := decodeDelivery(ref, v)
	if gen != "" {
		s, err := l.rdb.HGet(ctx, l.batchKey(ref.WarningID, ref.Channel), gen).Result()
		if err != nil && err != redis.Nil {
			return Delivery{}, fmt.Errorf("ledger: load delivery %s: %w", ref, err)
		}
		if s == "s" {
			d.State = warning.Sent
		}
	}
	return d, nil
}

// Deliveries calls fn for every recorded delivery of a warning on a channel,
// in no particular order, until fn returns false.
func (l *Ledger) Deliveries(ctx context.Context, warningID string, ch warning.Channel, fn func(Delivery) bool) error {
	key := l.deliveryKey(warningID, ch)
	sentGens, err := l.rdb.HGetAll(ctx, l.batchKey(warningID, ch)).Result()
	if err != nil {
		return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
	}
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, key, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			ref := warning.Ref{WarningID: warningID, Channel: ch, RecipientID: kv[i]}
			d, gen := decodeDelivery(ref, kv[i+1])
			if gen != "" && sentGens[gen] == "s" {
				d.State = warning.Sent
			}
			if !fn(d) {
				return nil
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// decodeDelivery decodes a stored value; for a claimed delivery it also
// returns the claim generation, which decides whether it was sent.
func decodeDelivery(ref warning.Ref, v string) (d Delivery, gen string) {
	d = Delivery{Ref: ref, State: warning.DeliveryState(v[0])}
	if len(v) >= 14 {
		d.Audience, _ = warning.AudienceFromCode(v[1])
		d.Division = v[2:14]
	}
	if len(v) > 15 {
		ts, extra, _ := strings.Cut(v[15:], "|")
		if ms, err := strconv.ParseInt(ts, 36, 64); err == nil {
			d.At = time.UnixMilli(ms)
		}
		d.Extra = extra
	}
	if d.State == handing {
		d.State, gen, d.Extra = warning.Queued, d.Extra, ""
	}
	return d, gen
}

// Reached reports, for each recipient, whether a warning's message on a
// channel was handed to the provider or delivered: an update sends those a
// short change notice instead of the full text.
func (l *Ledger) Reached(ctx context.Context, warningID string, ch warning.Channel, ids []string) ([]bool, error) {
	out := make([]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := l.rdb.HMGet(ctx, l.deliveryKey(warningID, ch), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: reached %s/%s: %w", warningID, ch, err)
	}
	for i, v := range vals {
		s, _ := v.(string)
		out[i] = s != "" && (s[0] == handing || s[0] == byte(warning.Delivered))
	}
	return out, nil
}

func (l *Ledger) providerTasksKey(id string, ch warning.Channel) string {
	return l.prefix + ":{" + id + "}:t:" + string(ch)
}

// AddProviderIDs remembers provider message ids of a warning on a channel,
// for channels whose messages are cancelled at the provider.
func (l *Ledger) AddProviderIDs(ctx context.Context, warningID string, ch warning.Channel, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return l.rdb.SAdd(ctx, l.providerTasksKey(warningID, ch), args...).Err()
}

// ProviderIDs returns what AddProviderIDs remembered.
func (l *Ledger) ProviderIDs(ctx context.Context, warningID string, ch warning.Channel) ([]string, error) {
	return l.rdb.SMembers(ctx, l.providerTasksKey(warningID, ch)).Result()
}

// ExternalID maps an originator's (sender, identifier) pair, as in CAP, to
// a warning id, so that later updates and cancels find it.
func (l *Ledger) externalKey() string { return l.prefix + ":ext" }

// SetExternalID records the warning issued for a sender's identifier.
func (l *Ledger) SetExternalID(ctx context.Context, sender, identifier, warningID string) error {
	return l.rdb.HSet(ctx, l.externalKey(), sender+"|"+identifier, warningID).Err()
}

// FindExternalID returns the warning issued for a sender's identifier.
func (l *Ledger) FindExternalID(ctx context.Context, sender, identifier string) (string, error) {
	id, err := l.rdb.HGet(ctx, l.externalKey(), sender+"|"+identifier).Result()
	if err == redis.Nil {
		return "", fmt.Errorf("%s from %s: %w", identifier, sender, ErrNotFound)
	}
	return id, err
}

// Reported tells, for each delivery, whether the provider's report (or a
// final answer) has come back: it is delivered or failed. A failover that
// watches for providers gone silent asks this of a few sampled deliveries.
func (l *Ledger) Reported(ctx context.Context, refs []warning.Ref) ([]bool, error) {
	out := make([]bool, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	cmds := make([]*redis.StringCmd, len(refs))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, ref := range refs {
			cmds[i] = p.HGet(ctx, l.deliveryKey(ref.WarningID, ref.Channel), ref.RecipientID)
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("ledger: reported: %w", err)
	}
	for i, c := range cmds {
		v, _ := c.Result()
		out[i] = v != "" && (v[0] == byte(warning.Delivered) || v[0] == byte(warning.Failed))
	}
	return out, nil
}
