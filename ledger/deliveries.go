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

// A delivery is stored as one field of a small hash, one bucket of the
// warning's deliveries on a channel (see buckets.go), recipient id → value:
//
//	byte 0      state: P while handed to a provider, then D, F or X;
//	            R when re-opened to be sent again (see Reopen)
//	byte 1      audience code (warning.Audience.Code)
//	bytes 2-13  division code
//	"|" unix milliseconds in base 36
//	"|" the chunk generation (P), the failure reason (F, X), or the
//	    resend round that re-opened it (R; absent in values stored
//	    before rounds were named)
//
// A value is about 25 bytes; the audience and division ride along so that a
// report, which names only the recipient, can move the right counters.
//
// A batch is handed to its provider by one attempt at a time, in chunks,
// and sending is recorded per chunk, not per recipient. An attempt holds
// the batch's lock ("<batch>.<token>"); each chunk it hands over gets a
// generation "<batch>.<token>.<k>", written into its recipients' values
// and marked in a small hash beside the deliveries: "u" while the chunk is
// with the provider, "s" once the provider's answer is recorded. A P whose
// generation is marked "s" is a sent delivery.
//
// So a worker that dies leaves exactly the chunks it was handing over in
// "u": their recipients are the only ones whose fate the ledger does not
// know, and the next attempt is told who they are (Chunk.Uncertain) to ask
// the provider before sending again. Reports that arrive before their
// chunk is marked sent are counted as sent by the report and noted, so the
// chunk record does not count them again.
//
// An attempt handles only what its own batch handed over: a P whose
// generation names another batch is that batch's business, neither
// uncertain nor taken, however long it stays with the provider. The batch
// a recipient failed in may still be retrying when a resend round
// re-opens it; the R names the round (Reopen), and only that round's
// batches (ResendBase) take it, so that the retry and the resend batch,
// which hold different locks, never both send to it. An R naming no round
// is taken by any batch that names it.

// handing is the state byte of a delivery handed to a provider.
const handing = 'P'

// reopened is the state byte of a failed or expired delivery put back to
// be sent again.
const reopened = 'R'

// ResendBase spaces the batch numbers of resend rounds from the plan's and
// from each other: resend round r numbers its batches r*ResendBase + k,
// k from 1 (a plan never has a million batches on a channel), so a
// batch's round is its number / ResendBase, 0 for the plan's.
const ResendBase = 1_000_000

// roundLua gives, from a lock holder "<batch>.<token>", the prefix that
// the generations of the batch's chunks start with, "<batch>.", and the
// batch's resend round; ownsR tells whether a re-opened value
// "R<tag 13>|<ts>[|<round>]" is for that round (or names none).
var roundLua = fmt.Sprintf(`
local function batchOf(holder)
  local prefix = string.sub(holder, 1, string.find(holder, ".", 1, true))
  return prefix, math.floor(tonumber(string.sub(prefix, 1, #prefix - 1)) / %d)
end
local function ownsR(c, round)
  local bar = string.find(c, "|", 16, true)
  local r = bar and tonumber(string.sub(c, bar + 1))
  return r == nil or r == round
end
`, ResendBase)

// reopenedFor tells whether a re-opened value v may be taken by a batch
// of resend round (0 for the plan's): it names that round, or none.
func reopenedFor(v string, round int) bool {
	if len(v) <= 15 {
		return true
	}
	_, r, ok := strings.Cut(v[15:], "|")
	if !ok {
		return true
	}
	n, err := strconv.Atoi(r)
	return err != nil || n == round
}

// Entry is one recipient of a batch as the ledger sees it.
type Entry struct {
	RecipientID string
	Audience    warning.Audience
	Division    string // 12-digit division code
	Bucket      string // warning.Recipient.Bucket; "" in plans made before buckets
}

// EntryOf is the ledger's entry for a planned recipient.
func EntryOf(r warning.Recipient) Entry {
	return Entry{RecipientID: r.ID, Audience: r.Audience, Division: r.Division, Bucket: r.Bucket}
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
local function reason(r, n)
  reasons[r] = (reasons[r] or 0) + (n or 1)
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
// sentGen tells, with a cache, whether a chunk generation is marked sent.
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
-- claimOf splits a handed-over value "P<tag 13>|<ts>|<gen>" with plain
-- finds: patterns cost far more per call.
local function claimOf(c)
  local bar = string.find(c, "|", 16, true)
  if not bar then return 0, "" end
  return tonumber(string.sub(c, 16, bar - 1), 36) or 0, string.sub(c, bar + 1)
end
`

// lockScript takes a batch's lock for an attempt unless another live
// attempt holds it. The lock is a field of the batches hash,
// "lock:<batch>" → "<holder>|<expiry ms>". Returns 1 when taken.
// KEYS: batches. ARGV: lock field, holder, now ms, lease ms.
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

// unlockScript releases a batch's lock if the holder named holds it.
// KEYS: batches. ARGV: lock field, holder. Returns 1 when released.
var unlockScript = redis.NewScript(`
local cur = redis.call("HGET", KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, #ARGV[2] + 1) == ARGV[2] .. "|" then
  redis.call("HDEL", KEYS[1], ARGV[1])
  return 1
end
return 0
`)

// beginScript hands a chunk over: while the holder still holds the lock
// (extending it), it marks the entries that are neither sent nor final as
// handed over under the chunk's generation, and the generation as being
// sent ("u"). Entries an earlier attempt on the batch left in a generation
// not marked sent are uncertain: they are taken only with retake, and
// otherwise reported with their generation so that the caller can ask the
// provider. Entries another batch handed over, and re-opened ones for
// another resend round, are not the batch's: they are skipped.
// KEYS: deliveries, batches. ARGV: lock field, holder, now ms, lease ms,
// chunk generation, now base36, retake ("1" or "0"), then (id, bucket,
// tag) triples.
// Returns {0} when the lock is lost, else {1, codes, uncertain gens...}
// with one code per entry: t taken, u uncertain, s sent or final, o
// another batch's, d the same recipient earlier in the chunk.
var beginScript = redis.NewScript(bulkLua + bucketLua + roundLua + `
local held = redis.call("HGET", KEYS[2], ARGV[1])
if not held or string.sub(held, 1, #ARGV[2] + 1) ~= ARGV[2] .. "|" then return {0} end
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. "|" .. (tonumber(ARGV[3]) + tonumber(ARGV[4])))
local gen, ts, retake = ARGV[5], ARGV[6], ARGV[7] == "1"
local prefix, round = batchOf(ARGV[2])
local ids, bkts = {}, {}
for i = 8, #ARGV, 3 do ids[#ids+1] = ARGV[i]; bkts[#bkts+1] = ARGV[i+1] end
local cur = bget(KEYS[1], bkts, ids)
local codes, kv, gens, seen = {}, {}, {}, {}
for k = 1, #ids do
  local c, code = cur[k], "s"
  if seen[ids[k]] then
    code = "d"
  elseif not c then
    code = "t"
  elseif string.byte(c, 1) == 82 then -- "R"
    code = ownsR(c, round) and "t" or "o"
  elseif string.byte(c, 1) == 80 then -- "P"
    local _, g = claimOf(c)
    if string.sub(g, 1, #prefix) ~= prefix then
      code = "o"
    elseif not sentGen(KEYS[2], g) then
      if retake then code = "t" else code = "u"; gens[#gens+1] = g end
    end
  end
  if code == "t" then
    kv[#kv+1] = bkts[k]
    kv[#kv+1] = ids[k]
    kv[#kv+1] = "P" .. ARGV[7 + 3 * k] .. "|" .. ts .. "|" .. gen
  end
  seen[ids[k]] = true
  codes[k] = code
end
if #kv > 0 then
  bset(KEYS[1], kv)
  redis.call("HSET", KEYS[2], gen, "u")
end
local out = {1, table.concat(codes)}
for _, g in ipairs(gens) do out[#out+1] = g end
return out
`)

// handOverScript marks a chunk as being handed over when the caller has
// already chosen its entries: while the holder still holds the lock
// (extending it), the generation is marked "u" and the entries' values,
// built by the caller, are written, one HMGET and one HSET per bucket
// straight from the arguments. An entry is written only if it is still as
// the caller may have read it: not stored, or re-opened ("R"). Another
// batch holding the same recipient (a plan run again cuts its groups
// otherwise) may have handed it over since the caller read it: that entry
// is left to it. In fresh mode the caller has read nothing: the chunk is
// written only if none of its entries is stored at all, else nothing is
// written and the script returns {2}, for the caller to read and choose.
// KEYS: deliveries, batches. ARGV: lock field, holder, now ms, lease ms,
// chunk generation, mode ("f" fresh, "" chosen), then per group: bucket,
// n, the n ids, and the n (id, value) pairs. Returns {0} when the lock is
// lost, {2} when a fresh chunk was not, else {1, the positions (from 1, in
// the order of the arguments) of the entries left}.
var handOverScript = redis.NewScript(bucketLua + `
local held = redis.call("HGET", KEYS[2], ARGV[1])
if not held or string.sub(held, 1, #ARGV[2] + 1) ~= ARGV[2] .. "|" then return {0} end
local fresh = ARGV[6] == "f"
if fresh then
  local i = 7
  while i <= #ARGV do
    local n = tonumber(ARGV[i+1])
    local cur = redis.call("HMGET", keyOf(KEYS[1], ARGV[i]), unpack(ARGV, i + 2, i + 1 + n))
    for j = 1, n do
      if cur[j] then return {2} end
    end
    i = i + 2 + 3 * n
  end
end
redis.call("HSET", KEYS[2], ARGV[1], ARGV[2] .. "|" .. (tonumber(ARGV[3]) + tonumber(ARGV[4])))
if #ARGV > 6 then redis.call("HSET", KEYS[2], ARGV[5], "u") end
local out = {1}
local i, pos = 7, 0
while i <= #ARGV do
  local key, n = keyOf(KEYS[1], ARGV[i]), tonumber(ARGV[i+1])
  local pairs0 = i + 2 + n
  local clash, cur = false, nil
  if not fresh then
    cur = redis.call("HMGET", key, unpack(ARGV, i + 2, i + 1 + n))
    for j = 1, n do
      local c = cur[j]
      if c and string.byte(c, 1) ~= 82 then clash = true; break end -- not "R"
    end
  end
  if not clash then
    redis.call("HSET", key, unpack(ARGV, pairs0, pairs0 + 2 * n - 1))
  else
    local kv, nkv = {}, 0
    for j = 1, n do
      local c = cur[j]
      if (not c) or string.byte(c, 1) == 82 then
        kv[nkv+1] = ARGV[pairs0 + 2 * j - 2]
        kv[nkv+2] = ARGV[pairs0 + 2 * j - 1]
        nkv = nkv + 2
      else
        out[#out+1] = pos + j
      end
    end
    if nkv > 0 then redis.call("HSET", key, unpack(kv)) end
  end
  pos = pos + n
  i = pairs0 + 2 * n
end
return out
`)

// recordScript applies the outcome of a chunk: the generation is marked
// sent with the counts of what the provider accepted, per tag, less the
// reports that came first; then per-recipient outcomes (sent, failed,
// expired, delivered at once, or released for a retry) move recipients
// still handed over under this generation, or untouched ones for expiry.
// Marking a whole chunk sent needs the holder to hold the batch's lock:
// without it the script returns -1, and the caller records its sent
// recipients one by one (S), which only moves those still its own.
// What the provider bills for the accepted messages is counted per account
// with the marking, so exactly once however often the outcome is recorded.
// Residents delivered at once count for coverage (coverLua).
// KEYS: deliveries, batches, early, progress, then coverKeys.
// ARGV: channel, now base36, generation, lock field, holder, number of sent
// groups, number of billed accounts, (tag, n) per group, (account,
// messages, segments) per billed account, then (id, bucket, state, tag,
// extra) per outcome. State Q releases a recipient.
var recordScript = redis.NewScript(audienceTable + countLua + bulkLua + bucketLua + coverLua + `
local ch, ts, gen, lockf, holder = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ngroups, nbills = tonumber(ARGV[6]), tonumber(ARGV[7])
local bills = 8 + 2 * ngroups
if ngroups > 0 and lockf ~= "" then
  local held = redis.call("HGET", KEYS[2], lockf)
  if not held or string.sub(held, 1, #holder + 1) ~= holder .. "|" then return -1 end
end
local moved = 0
local marked = gen ~= "" and redis.call("HGET", KEYS[2], gen) == "s"
if ngroups > 0 and not marked then
  redis.call("HSET", KEYS[2], gen, "s")
  for i = 8, 7 + 2 * ngroups, 2 do
    local tag, n = ARGV[i], tonumber(ARGV[i+1])
    local early = tonumber(redis.call("HGET", KEYS[3], gen .. "|" .. tag) or "0")
    count(tag, "sent", n - early)
    moved = moved + n
  end
end
local first = bills + 3 * nbills
local ids, bkts = {}, {}
for i = first, #ARGV, 5 do ids[#ids+1] = ARGV[i]; bkts[#bkts+1] = ARGV[i+1] end
local cur = bget(KEYS[1], bkts, ids)
local kv, del, done = {}, {}, {}
local sentOne = false
for k = 1, #ids do
  local i = first + 5 * (k - 1)
  local id, b, st, tag, extra = ids[k], bkts[k], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local c = cur[k]
  local mine = false
  if c and string.byte(c, 1) == 80 then
    local _, g = claimOf(c)
    mine = (g == gen) or (gen == "" and not sentGen(KEYS[2], g))
  end
  local open = (not c) or string.byte(c, 1) == 82
  if done[id] then
    -- the same recipient twice in one call: the first decides
  elseif st == "Q" then
    if mine then del[#del+1] = b; del[#del+1] = id end
  elseif st == "S" then
    if mine then
      kv[#kv+1] = b
      kv[#kv+1] = id
      kv[#kv+1] = "P" .. tag .. "|" .. ts .. "|" .. gen
      count(tag, "sent", 1)
      sentOne = true
      moved = moved + 1
    end
  elseif open or mine then
    local v = st .. tag .. "|" .. ts
    if extra ~= "" then v = v .. "|" .. extra end
    kv[#kv+1] = b
    kv[#kv+1] = id
    kv[#kv+1] = v
    if st == "D" then
      count(tag, "sent", 1); count(tag, "delivered", 1)
      reached(tag, id, b)
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
if sentOne and not marked then redis.call("HSET", KEYS[2], gen, "s") end
if not marked and (ngroups > 0 or sentOne) then
  for i = bills, bills + 3 * nbills - 1, 3 do
    local f = "b|" .. ch .. "|" .. ARGV[i] .. "|"
    redis.call("HINCRBY", KEYS[4], f .. "messages", ARGV[i+1])
    redis.call("HINCRBY", KEYS[4], f .. "segments", ARGV[i+2])
  end
end
if #kv > 0 then bset(KEYS[1], kv) end
if #del > 0 then bdel(KEYS[1], del) end
flush(KEYS[4], ch)
coverFlush(5, KEYS[1])
return moved
`)

// reportScript applies provider reports. A report for a delivery that is
// final already is a duplicate; one for a recipient never handed over is
// unknown and changes nothing. A late report for a delivery re-opened to be
// sent again settles it. The caller sends each recipient once per call. A
// resident delivered counts for coverage (coverLua).
// The reports come grouped by bucket, so that each group is read with one
// HMGET and written with one HSET straight from the arguments, and its
// residents delivered are looked up on the other channels in the same
// bucket (reachedIn).
// KEYS: deliveries, batches, early, progress, then coverKeys.
// ARGV: channel, then per group: bucket, n, the n reports' state bytes as
// one string, the n recipient ids, the n "<at base36>[|reason]". Returns
// {applied, number of unknown, unknown positions..., duplicate
// positions...}, positions counting reports from 1 in the order of the
// arguments.
var reportScript = redis.NewScript(audienceTable + countLua + bulkLua + bucketLua + coverLua + `
local ch = ARGV[1]
local applied, pos = 0, 0
local unknown, dup, early = {}, {}, {}
local lastGen, lastSent = nil, false
local i = 2
while i <= #ARGV do
  local b, n, sts = ARGV[i], tonumber(ARGV[i+1]), ARGV[i+2]
  local at = i + 3
  local key = keyOf(KEYS[1], b)
  local cur = redis.call("HMGET", key, unpack(ARGV, at, at + n - 1))
  local kv, nkv = {}, 0
  local rids, rtags, nr = {}, {}, 0
  for j = 1, n do
    local c = cur[j]
    local b1 = c and string.byte(c, 1)
    pos = pos + 1
    if not c then
      unknown[#unknown+1] = pos
    elseif b1 == 80 or b1 == 82 then -- "P", "R"
      local tag = string.sub(c, 2, 14)
      local id = ARGV[at + j - 1]
      local delivered = string.byte(sts, j) == 68 -- "D"
      local rest = ARGV[at + n + j - 1]
      kv[nkv+1] = id
      kv[nkv+2] = (delivered and "D" or "F") .. tag .. "|" .. rest
      nkv = nkv + 2
      if b1 == 80 then
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
      end
      if delivered then
        count(tag, "delivered", 1)
        if string.byte(tag, 1) == RESB then
          nr = nr + 1
          rids[nr] = id
          rtags[nr] = tag
        else
          reached(tag, id, b)
        end
      else
        count(tag, "failed", 1)
        local r = string.find(rest, "|", 1, true)
        reason(r and string.sub(rest, r + 1) or "unknown")
      end
      applied = applied + 1
    else
      dup[#dup+1] = pos
    end
  end
  if nkv > 0 then redis.call("HSET", key, unpack(kv)) end
  reachedIn(5, KEYS[1], b, rids, rtags)
  i = at + 2 * n
end
for f, n in pairs(early) do redis.call("HINCRBY", KEYS[3], f, n) end
flush(KEYS[4], ch)
coverFlush(5, KEYS[1])
local out = {applied, #unknown}
for _, k in ipairs(unknown) do out[#out+1] = k end
for _, k in ipairs(dup) do out[#out+1] = k end
return out
`)

// reopenScript puts failed or expired deliveries back to be sent again:
// their value becomes R, naming the resend round unless it is "", and
// their failed or expired counters fall, so they show as pending.
// Deliveries already re-opened are returned too, given to the round named.
// KEYS: deliveries, progress. ARGV: channel, now base36, state bytes to
// re-open (e.g. "FX"), round, then (id, bucket) pairs. Returns the
// positions (from 1) of the deliveries re-opened.
var reopenScript = redis.NewScript(audienceTable + countLua + bulkLua + bucketLua + `
local ch, ts, states = ARGV[1], ARGV[2], ARGV[3]
local owner = ARGV[4] ~= "" and "|" .. ARGV[4] or ""
local ids, bkts = {}, {}
for i = 5, #ARGV, 2 do ids[#ids+1] = ARGV[i]; bkts[#bkts+1] = ARGV[i+1] end
local cur = bget(KEYS[1], bkts, ids)
local kv, out = {}, {}
for k = 1, #ids do
  local c = cur[k]
  local st = c and string.sub(c, 1, 1)
  if st == "R" then
    if owner ~= "" then
      kv[#kv+1] = bkts[k]
      kv[#kv+1] = ids[k]
      kv[#kv+1] = "R" .. string.sub(c, 2, 14) .. "|" .. ts .. owner
    end
    out[#out+1] = k
  elseif st and string.find(states, st, 1, true) then
    local tag = string.sub(c, 2, 14)
    if st == "F" then
      count(tag, "failed", -1)
      local b = string.find(c, "|", 16, true)
      reason(b and string.sub(c, b + 1) or "unknown", -1)
    else
      count(tag, "expired", -1)
    end
    kv[#kv+1] = bkts[k]
    kv[#kv+1] = ids[k]
    kv[#kv+1] = "R" .. tag .. "|" .. ts .. owner
    out[#out+1] = k
  end
end
if #kv > 0 then bset(KEYS[1], kv) end
flush(KEYS[2], ch)
return out
`)

func base36ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 36) }

// Errors of the hand-over.
var (
	// ErrHeld is returned by Lock while another attempt, which may yet
	// die, holds the batch: try again later.
	ErrHeld = errors.New("batch held by another worker")
	// ErrLockLost is returned when the batch's lock was taken from the
	// holder (it was taken for dead): it must hand nothing more over.
	ErrLockLost = errors.New("batch lock lost: another worker took the batch over")
)

// Hold is one attempt's hold on a batch: its lock, and the chunks it hands
// over. It is not safe for concurrent use.
type Hold struct {
	WarningID string
	Channel   warning.Channel
	Batch     int
	// Gen names the attempt: "<batch>.<token>".
	Gen    string
	lease  time.Duration
	chunks int
	// readFirst is set once a chunk of this hold found an entry stored:
	// the hold's later chunks are read before they are written.
	readFirst bool
}

// Chunk is the part of a batch that Begin handed over.
type Chunk struct {
	// Gen is the chunk's generation, "<hold gen>.<k>": record with it.
	Gen string
	// Taken are the positions, in the entries given to Begin, now marked
	// as handed over: send them, then Record.
	Taken []int
	// Uncertain are entries an earlier attempt was handing over when it
	// stopped, with that chunk's generation: the provider may have them.
	Uncertain []Uncertain
	// Skipped counts entries sent or final already.
	Skipped int
}

// Uncertain is an entry whose chunk was with the provider when its attempt
// stopped.
type Uncertain struct {
	Index int    // position in the entries given to Begin
	Gen   string // the generation of the chunk it was in
}

// HoldGen names an attempt on a batch: token must be short and unique to
// the attempt (it is part of every delivery value the attempt writes).
func HoldGen(batch int, token string) string { return strconv.Itoa(batch) + "." + token }

// Lock takes a batch's lock for one attempt named by token, or returns
// ErrHeld while another attempt's lock is younger than its lease. A lock
// older than its lease is taken over: its holder is taken for dead.
func (l *Ledger) Lock(ctx context.Context, warningID string, ch warning.Channel, batch int, token string, lease time.Duration) (*Hold, error) {
	h := &Hold{WarningID: warningID, Channel: ch, Batch: batch, Gen: HoldGen(batch, token), lease: lease}
	ok, err := lockScript.Run(ctx, l.rdb, []string{l.batchKey(warningID, ch)}, lockField(batch), h.Gen, l.now().UnixMilli(), lease.Milliseconds()).Int()
	if err != nil {
		return nil, fmt.Errorf("ledger: lock %s/%s/%d: %w", warningID, ch, batch, err)
	}
	if ok == 0 {
		return nil, ErrHeld
	}
	return h, nil
}

// Unlock releases a batch's lock if the attempt gen (a Hold's Gen) still
// holds it. A worker that finds another's attempt dead breaks its lock so.
func (l *Ledger) Unlock(ctx context.Context, warningID string, ch warning.Channel, batch int, gen string) error {
	if err := unlockScript.Run(ctx, l.rdb, []string{l.batchKey(warningID, ch)}, lockField(batch), gen).Err(); err != nil {
		return fmt.Errorf("ledger: unlock %s/%s/%d: %w", warningID, ch, batch, err)
	}
	return nil
}

// Begin marks the next chunk of the hold's batch as being handed to the
// provider and extends the lock: the entries neither sent nor final are
// taken, the rest skipped. Entries an earlier attempt on the batch left
// with the provider are returned as uncertain, not taken, unless retake:
// ask the provider about them first, then Begin again with those to send
// (or to record as sent) and retake. Entries that are another batch's (it
// handed them over, or they were re-opened for another resend round) are
// skipped, with or without retake. Returns ErrLockLost when the lock was
// taken over.
//
// One chunk at a time is meant: record a chunk before beginning the next,
// so that a crash leaves only the chunk with the provider uncertain.
func (l *Ledger) Begin(ctx context.Context, h *Hold, entries []Entry, retake bool) (Chunk, error) {
	c := Chunk{Gen: h.Gen + "." + strconv.FormatInt(int64(h.chunks), 36)}
	if len(entries) == 0 {
		return c, nil
	}
	h.chunks++
	if !retake {
		return l.begin(ctx, h, c, entries)
	}
	now := l.now()
	rt := "0"
	if retake {
		rt = "1"
	}
	args := make([]any, 0, 7+3*len(entries))
	args = append(args, lockField(h.Batch), h.Gen, now.UnixMilli(), h.lease.Milliseconds(), c.Gen, base36ms(now), rt)
	for _, e := range entries {
		tag, err := e.tag()
		if err != nil {
			return Chunk{}, err
		}
		args = append(args, e.RecipientID, e.Bucket, tag)
	}
	res, err := beginScript.Run(ctx, l.rdb, []string{l.deliveryKey(h.WarningID, h.Channel), l.batchKey(h.WarningID, h.Channel)}, args...).Slice()
	if err != nil {
		return Chunk{}, fmt.Errorf("ledger: begin %s: %w", c.Gen, err)
	}
	if res[0].(int64) == 0 {
		return Chunk{}, fmt.Errorf("ledger: begin %s/%s/%s: %w", h.WarningID, h.Channel, c.Gen, ErrLockLost)
	}
	codes, gens := res[1].(string), res[2:]
	for i := range len(codes) {
		switch codes[i] {
		case 't':
			c.Taken = append(c.Taken, i)
		case 'u':
			c.Uncertain = append(c.Uncertain, Uncertain{Index: i, Gen: gens[0].(string)})
			gens = gens[1:]
		default:
			c.Skipped++
		}
	}
	return c, nil
}

func lockField(batch int) string { return "lock:" + strconv.Itoa(batch) }

// begin is Begin without retake, the path every chunk takes. A batch's
// chunks are new in the ledger unless an earlier attempt handed some over
// or a resend round re-opened them, so the chunk is first offered whole in
// fresh mode, which writes it only if none of its entries is stored; the
// first chunk of a hold found otherwise is read and chosen (chosen), as
// are the hold's later chunks.
func (l *Ledger) begin(ctx context.Context, h *Hold, c Chunk, entries []Entry) (Chunk, error) {
	if !h.readFirst {
		seen := make(map[string]bool, len(entries))
		take, tags := make([]int, 0, len(entries)), make([]string, 0, len(entries))
		for i, e := range entries {
			if seen[e.RecipientID] {
				continue
			}
			seen[e.RecipientID] = true
			tag, err := e.tag()
			if err != nil {
				return Chunk{}, err
			}
			take, tags = append(take, i), append(tags, tag)
		}
		fc := c
		fc.Taken, fc.Skipped = take, len(entries)-len(take)
		done, err := l.handOver(ctx, h, &fc, entries, tags, true)
		if err != nil {
			return Chunk{}, err
		}
		if done {
			return fc, nil
		}
		h.readFirst = true
	}
	return l.chosen(ctx, h, c, entries)
}

// chosen reads a chunk's entries and chooses those to hand over: the
// entries are read and chosen here, and the script only writes them, with
// the lock held. Choosing outside the script saves Redis, the fan-out's
// bottleneck, the per-entry work; what it risks is an entry changing
// between the read and the write. Nobody hands over an entry of a locked
// batch but its holder, and a report only settles entries handed over
// before, which are never taken here. Another batch holding the same
// recipient (a plan run again cuts its groups otherwise than the first
// run) may hand it over in between: the script writes only entries still
// unclaimed or re-opened, and those it leaves are not taken. What remains
// is an attempt that found the warning ended expiring the batch in those
// microseconds, as the claim this replaces risked too, and a newer resend
// round re-opening an entry that this batch, of an older round, then
// takes: the newer round's batch finds it handed over, and skips it.
func (l *Ledger) chosen(ctx context.Context, h *Hold, c Chunk, entries []Entry) (Chunk, error) {
	ids, buckets := make([]string, len(entries)), make([]string, len(entries))
	for i, e := range entries {
		ids[i], buckets[i] = e.RecipientID, e.Bucket
	}
	cur, err := l.hmget(ctx, h.WarningID, h.Channel, ids, buckets)
	if err != nil {
		return Chunk{}, fmt.Errorf("ledger: begin %s: %w", c.Gen, err)
	}
	// Entries this batch handed over before: sent if their chunk was
	// marked so. Those of other batches are theirs.
	prefix, round := strconv.Itoa(h.Batch)+".", h.Batch/ResendBase
	var gens []string
	for _, v := range cur {
		if s, ok := v.(string); ok && len(s) > 0 && s[0] == handing {
			if _, g := decodeDelivery(warning.Ref{}, s); strings.HasPrefix(g, prefix) && !slices.Contains(gens, g) {
				gens = append(gens, g)
			}
		}
	}
	sent := map[string]bool{}
	if len(gens) > 0 {
		marks, err := l.rdb.HMGet(ctx, l.batchKey(h.WarningID, h.Channel), gens...).Result()
		if err != nil {
			return Chunk{}, fmt.Errorf("ledger: begin %s: %w", c.Gen, err)
		}
		for i, m := range marks {
			sent[gens[i]] = m == "s"
		}
	}
	seen := make(map[string]bool, len(entries))
	var tags []string
	for i, e := range entries {
		s, _ := cur[i].(string)
		switch {
		case seen[e.RecipientID]:
			c.Skipped++
			continue
		case s == "":
		case s[0] == reopened:
			if !reopenedFor(s, round) {
				c.Skipped++
				seen[e.RecipientID] = true
				continue
			}
		case s[0] == handing:
			if _, g := decodeDelivery(warning.Ref{}, s); !strings.HasPrefix(g, prefix) {
				c.Skipped++
			} else if !sent[g] {
				c.Uncertain = append(c.Uncertain, Uncertain{Index: i, Gen: g})
			} else {
				c.Skipped++
			}
			seen[e.RecipientID] = true
			continue
		default:
			c.Skipped++
			seen[e.RecipientID] = true
			continue
		}
		tag, err := e.tag()
		if err != nil {
			return Chunk{}, err
		}
		seen[e.RecipientID] = true
		c.Taken = append(c.Taken, i)
		tags = append(tags, tag)
	}
	if _, err := l.handOver(ctx, h, &c, entries, tags, false); err != nil {
		return Chunk{}, err
	}
	return c, nil
}

// handOver writes c.Taken (positions in entries, with their tags) as
// handed over under the chunk's generation, one HSET per bucket in
// handOverScript. Entries another batch handed over since they were read
// leave c.Taken for c.Skipped. In fresh mode nothing is written if any
// entry is stored, and done is false.
func (l *Ledger) handOver(ctx context.Context, h *Hold, c *Chunk, entries []Entry, tags []string, fresh bool) (done bool, err error) {
	take := c.Taken
	tb := make([]string, len(take))
	for j, i := range take {
		tb[j] = entries[i].Bucket
	}
	border, members := groupByBucket(tb)
	mode := ""
	if fresh {
		mode = "f"
	}
	now := l.now()
	suffix := "|" + base36ms(now) + "|" + c.Gen
	args := make([]any, 0, 6+3*len(take)+2*len(border))
	args = append(args, lockField(h.Batch), h.Gen, now.UnixMilli(), h.lease.Milliseconds(), c.Gen, mode)
	order := make([]int, 0, len(take)) // positions in take, in the order of the arguments
	for _, b := range border {
		for idx := members[b]; len(idx) > 0; {
			part := idx[:min(len(idx), perBucketCommand)]
			idx = idx[len(part):]
			args = append(args, b, len(part))
			for _, j := range part {
				args = append(args, entries[take[j]].RecipientID)
			}
			for _, j := range part {
				args = append(args, entries[take[j]].RecipientID, "P"+tags[j]+suffix)
				order = append(order, j)
			}
		}
	}
	res, err := handOverScript.Run(ctx, l.rdb, []string{l.deliveryKey(h.WarningID, h.Channel), l.batchKey(h.WarningID, h.Channel)}, args...).Int64Slice()
	if err != nil {
		return false, fmt.Errorf("ledger: begin %s: %w", c.Gen, err)
	}
	if len(res) == 0 || res[0] == 0 {
		return false, fmt.Errorf("ledger: begin %s/%s/%s: %w", h.WarningID, h.Channel, c.Gen, ErrLockLost)
	}
	if res[0] == 2 {
		return false, nil
	}
	if left := res[1:]; len(left) > 0 {
		// Handed over by another batch since they were read: theirs.
		gone := make(map[int]bool, len(left))
		for _, p := range left {
			gone[take[order[p-1]]] = true
		}
		c.Taken = slices.DeleteFunc(c.Taken, func(i int) bool { return gone[i] })
		c.Skipped += len(left)
	}
	return true, nil
}

// ResendRound numbers the rounds of sending again on a warning's channel,
// from 1, so that each round's batches get numbers of their own
// (ResendBase) and take only the deliveries re-opened for it (ReopenFor).
func (l *Ledger) ResendRound(ctx context.Context, warningID string, ch warning.Channel) (int, error) {
	n, err := l.rdb.HIncrBy(ctx, l.batchKey(warningID, ch), "resends", 1).Result()
	if err != nil {
		return 0, fmt.Errorf("ledger: resend round of %s/%s: %w", warningID, ch, err)
	}
	return int(n), nil
}

// Reopen puts deliveries of a warning on a channel back to be sent again
// when their state is one of states (warning.Failed, warning.Expired):
// they count as pending again, and the next batch that names them sends
// them. Deliveries re-opened earlier and not sent since are returned too.
// It names no resend round: a resend uses ReopenFor.
func (l *Ledger) Reopen(ctx context.Context, warningID string, ch warning.Channel, refs []warning.Ref, states []warning.DeliveryState) ([]warning.Ref, error) {
	return l.ReopenFor(ctx, warningID, ch, 0, refs, states)
}

// ReopenFor is Reopen for resend round (from ResendRound; 0 names none):
// only the round's batches (numbered round*ResendBase + k) take the
// deliveries, not the batch they failed in, which may still be retrying.
// Deliveries re-opened earlier and not sent since are given to the round.
func (l *Ledger) ReopenFor(ctx context.Context, warningID string, ch warning.Channel, round int, refs []warning.Ref, states []warning.DeliveryState) ([]warning.Ref, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	var sb strings.Builder
	for _, s := range states {
		if s != warning.Failed && s != warning.Expired {
			return nil, fmt.Errorf("ledger: reopen: state %s: only failed or expired deliveries are sent again", s)
		}
		sb.WriteByte(byte(s))
	}
	owner := ""
	if round > 0 {
		owner = strconv.Itoa(round)
	}
	args := make([]any, 0, 4+2*len(refs))
	args = append(args, string(ch), base36ms(l.now()), sb.String(), owner)
	for _, r := range refs {
		args = append(args, r.RecipientID, r.Bucket)
	}
	at, err := reopenScript.Run(ctx, l.rdb, []string{l.deliveryKey(warningID, ch), l.progressKey(warningID)}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("ledger: reopen %s/%s: %w", warningID, ch, err)
	}
	out := make([]warning.Ref, len(at))
	for i, k := range at {
		out[i] = refs[k-1]
	}
	return out, nil
}

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

// Record applies the outcomes of a chunk (gen from Begin; empty for
// expiring entries nobody handed over) and moves the counters. It is safe
// to repeat: a chunk is marked sent once, and only entries still handed
// over under it (or untouched) move.
//
// When the hold's lock was taken over meanwhile, the recipients the
// provider accepted are recorded one by one, those still the chunk's own,
// and the error is ErrLockLost: hand nothing more over.
func (l *Ledger) Record(ctx context.Context, warningID string, ch warning.Channel, gen string, outs []Outcome) (moved int, err error) {
	if len(outs) == 0 && gen == "" {
		return 0, nil
	}
	n, err := l.record(ctx, warningID, ch, gen, outs, false)
	if err != nil || n >= 0 {
		return n, err
	}
	n, err = l.record(ctx, warningID, ch, gen, outs, true)
	if err != nil {
		return n, err
	}
	return n, fmt.Errorf("ledger: record %s/%s/%s: %w", warningID, ch, gen, ErrLockLost)
}

// record runs recordScript; it returns -1 when the whole chunk cannot be
// marked sent for want of the lock. oneByOne records sent outcomes per
// recipient instead.
func (l *Ledger) record(ctx context.Context, warningID string, ch warning.Channel, gen string, outs []Outcome, oneByOne bool) (int, error) {
	sent := map[string]int{}
	var sentOrder []string
	bills := map[string]*Bill{}
	var billOrder []string
	rest := make([]any, 0, 5*len(outs))
	for _, o := range outs {
		tag, err := o.tag()
		if err != nil {
			return 0, err
		}
		if o.State == warning.Sent {
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
			if oneByOne {
				rest = append(rest, o.RecipientID, o.Bucket, "S", tag, "")
				continue
			}
			if _, ok := sent[tag]; !ok {
				sentOrder = append(sentOrder, tag)
			}
			sent[tag]++
			continue
		}
		extra := ""
		if o.State == warning.Failed || o.State == warning.Expired {
			extra = cleanReason(o.Extra)
		}
		rest = append(rest, o.RecipientID, o.Bucket, string(rune(o.State)), tag, extra)
	}
	if (len(sent) > 0 || oneByOne) && gen == "" {
		return 0, fmt.Errorf("ledger: record %s/%s: sent outcomes need the chunk generation", warningID, ch)
	}
	lockf, holder := "", ""
	if gen != "" {
		// "<batch>.<token>.<k>": the batch names the lock, all but the
		// chunk number its holder.
		batch, _, _ := strings.Cut(gen, ".")
		lockf, holder = "lock:"+batch, gen[:strings.LastIndexByte(gen, '.')]
	}
	args := make([]any, 0, 7+2*len(sent)+3*len(bills)+len(rest))
	args = append(args, string(ch), base36ms(l.now()), gen, lockf, holder, len(sent), len(bills))
	for _, tag := range sentOrder {
		args = append(args, tag, sent[tag])
	}
	for _, acct := range billOrder {
		args = append(args, acct, bills[acct].Messages, bills[acct].Segments)
	}
	args = append(args, rest...)
	n, err := recordScript.Run(ctx, l.rdb, append([]string{l.deliveryKey(warningID, ch), l.batchKey(warningID, ch), l.earlyKey(warningID, ch), l.progressKey(warningID)},
		l.coverKeys(warningID)...), args...).Int()
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

// perBucketCommand bounds the deliveries of one bucket that the hand-over
// script reads or writes in one command (an HMGET or HSET from its
// arguments): a hash of the plans made before buckets holds a whole
// channel. A report script takes fewer (reportsPerScript).
const perBucketCommand = 1000

// reportsPerScript bounds the reports one report script applies. Redis
// runs a script alone: one of a provider's thousand reports held it 2 – 15
// ms while other warnings' commands waited; calls of 250, pipelined, let
// Redis serve others between them, for about the same work in all.
const reportsPerScript = 250

// ApplyReports records provider reports (Delivered or Failed). The same
// report twice changes nothing; a report for a delivery the ledger never
// handed over is returned as unknown.
func (l *Ledger) ApplyReports(ctx context.Context, reports []warning.Report) (ReportResult, error) {
	type group struct {
		id string
		ch warning.Channel
	}
	type report struct {
		ref  warning.Ref
		st   byte
		rest string
	}
	byGroup := make(map[group][]report)
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
		if _, ok := byGroup[g]; !ok {
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
		byGroup[g] = append(byGroup[g], report{r.Ref, byte(r.State), rest})
	}
	// Each warning and channel's reports go to script calls of at most
	// reportsPerScript, grouped by bucket; a call's refs name them in the
	// order of its arguments.
	type call struct {
		g    group
		args []any
		refs []warning.Ref
	}
	var calls []call
	for _, g := range order {
		rs := byGroup[g]
		buckets := make([]string, len(rs))
		for i, r := range rs {
			buckets[i] = r.ref.Bucket
		}
		border, members := groupByBucket(buckets)
		c, left := -1, len(rs)
		for _, b := range border {
			idx := members[b]
			for len(idx) > 0 {
				if c < 0 || len(calls[c].refs) == reportsPerScript {
					n := min(reportsPerScript, left)
					calls = append(calls, call{g: g, args: make([]any, 0, 1+2*n+3*len(border)), refs: make([]warning.Ref, 0, n)})
					c = len(calls) - 1
					calls[c].args = append(calls[c].args, string(g.ch))
				}
				cl := &calls[c]
				part := idx[:min(len(idx), reportsPerScript-len(cl.refs))]
				idx = idx[len(part):]
				left -= len(part)
				sts := make([]byte, len(part))
				for j, k := range part {
					sts[j] = rs[k].st
				}
				cl.args = append(cl.args, b, len(part), string(sts))
				for _, k := range part {
					cl.args = append(cl.args, rs[k].ref.RecipientID)
					cl.refs = append(cl.refs, rs[k].ref)
				}
				for _, k := range part {
					cl.args = append(cl.args, rs[k].rest)
				}
			}
		}
	}
	keys := func(g group) []string {
		return append([]string{l.deliveryKey(g.id, g.ch), l.batchKey(g.id, g.ch), l.earlyKey(g.id, g.ch), l.progressKey(g.id)},
			l.coverKeys(g.id)...)
	}
	cmds := make([]*redis.Cmd, len(calls))
	firsts := make([]string, len(calls))
	for i, c := range calls {
		firsts[i] = l.deliveryKey(c.g.id, c.g.ch)
	}
	notConfirmed, err := l.pipelinedReplicated(ctx, firsts, func(p redis.Pipeliner, i int) {
		cmds[i] = reportScript.EvalSha(ctx, p, keys(calls[i].g), calls[i].args...)
	})
	if err != nil {
		return ReportResult{}, fmt.Errorf("ledger: apply reports: %w", err)
	}
	unconfirmed := false // written on another connection than the WAIT's
	for i, c := range calls {
		vals, err := cmds[i].Slice()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			vals, err = reportScript.Run(ctx, l.rdb, keys(c.g), c.args...).Slice()
			unconfirmed = true
		}
		if err != nil {
			return res, fmt.Errorf("ledger: apply reports for %s/%s: %w", c.g.id, c.g.ch, err)
		}
		res.Applied += int(vals[0].(int64))
		nUnknown := int(vals[1].(int64))
		for i, v := range vals[2:] {
			ref := c.refs[v.(int64)-1]
			if i < nUnknown {
				res.Unknown = append(res.Unknown, ref)
			} else {
				res.Duplicates = append(res.Duplicates, ref)
			}
		}
	}
	if l.repl.required > 0 {
		// The provider is answered "try again" and sends the reports once
		// more; those that were kept then count as duplicates.
		if unconfirmed {
			return res, fmt.Errorf("ledger: apply reports: %w (scripts were reloaded)", ErrNotReplicated)
		}
		if notConfirmed != nil {
			return res, fmt.Errorf("ledger: apply reports: %w", notConfirmed)
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
	// Reopened marks a failed or expired delivery put back to be sent
	// again (Reopen) and not handed over since; its State is Queued.
	Reopened bool
}

// Delivery loads one delivery; a delivery never handed over is Queued.
func (l *Ledger) Delivery(ctx context.Context, ref warning.Ref) (Delivery, error) {
	v, err := l.rdb.HGet(ctx, l.bucketKey(ref.WarningID, ref.Channel, ref.Bucket), ref.RecipientID).Result()
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
	sentGens, err := l.rdb.HGetAll(ctx, l.batchKey(warningID, ch)).Result()
	if err != nil {
		return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
	}
	keys, err := l.bucketKeys(ctx, warningID, ch)
	if err != nil {
		return err
	}
	base := l.deliveryKey(warningID, ch)
	yield := func(key string, kv map[string]string) bool {
		bucket := bucketOfKey(base, key)
		for id, v := range kv {
			ref := warning.Ref{WarningID: warningID, Channel: ch, RecipientID: id, Bucket: bucket}
			d, gen := decodeDelivery(ref, v)
			if gen != "" && sentGens[gen] == "s" {
				d.State = warning.Sent
			}
			if !fn(d) {
				return false
			}
		}
		return true
	}
	// The one hash of a plan made before buckets may be large: scanned.
	var cursor uint64
	for {
		kv, next, err := l.rdb.HScan(ctx, base, cursor, "", 1000).Result()
		if err != nil {
			return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
		}
		m := make(map[string]string, len(kv)/2)
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		if !yield(base, m) {
			return nil
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	// Buckets are small: read whole, a few hundred to a round trip.
	for part := range slices.Chunk(keys[1:], 256) {
		cmds := make([]*redis.MapStringStringCmd, len(part))
		_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range part {
				cmds[i] = p.HGetAll(ctx, k)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("ledger: scan deliveries %s/%s: %w", warningID, ch, err)
		}
		for i, c := range cmds {
			if !yield(part[i], c.Val()) {
				return nil
			}
		}
	}
	return nil
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
	switch d.State {
	case handing:
		d.State, gen, d.Extra = warning.Queued, d.Extra, ""
	case reopened:
		d.State, d.Reopened, d.Extra = warning.Queued, true, ""
	}
	return d, gen
}

// Reached reports, for each recipient, whether a warning's message on a
// channel was handed to the provider or delivered: an update sends those a
// short change notice instead of the full text.
func (l *Ledger) Reached(ctx context.Context, warningID string, ch warning.Channel, rs []warning.Recipient) ([]bool, error) {
	out := make([]bool, len(rs))
	if len(rs) == 0 {
		return out, nil
	}
	// The recipients' buckets are the older warning's, from its directory.
	entries := make([]Entry, len(rs))
	for i, r := range rs {
		entries[i] = Entry{RecipientID: r.ID, Audience: r.Audience, Division: r.Division}
	}
	ids, buckets, err := l.located(ctx, warningID, entries)
	if err != nil {
		return nil, err
	}
	vals, err := l.hmget(ctx, warningID, ch, ids, buckets)
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
func (l *Ledger) externalKey() string { return l.shared + ":ext" }

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
			cmds[i] = p.HGet(ctx, l.bucketKey(ref.WarningID, ref.Channel, ref.Bucket), ref.RecipientID)
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
