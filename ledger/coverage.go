package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Coverage: whether each resident of a warning was reached by at least one
// channel, kept by the same scripts that record deliveries, so that a
// resident counts once however many channels reach them. Which channels
// reached a resident, and when, are their delivered deliveries: nothing is
// stored per person for it, save a grid worker's visit.
//
//	{id}:cov   counters: "v|<division>|reached" residents reached at least
//	           once, "v|<division>|devices" loudspeakers and screens that
//	           played or showed the warning (the village's coverage, never a
//	           person's)
//	{id}:cv    residents a grid worker reached on a visit: id → ms b36
//	{id}:fb    residents put on their village's call list because no channel
//	           reached them (Fallback): id → "o" (on the list) or "v" (a
//	           visit started) followed by the entry as JSON
//	{id}:fbc   the residents the next early fallback check looks at: those a
//	           channel failed since the last one, or AllResidents, each
//	           scored with when it was named (a sorted set)
//
// A resident's first delivery — none of their other channels delivered,
// no visit — increments their division's counter and takes them off the
// fallback list unless a visit started.

func (l *Ledger) coverKey(id string) string    { return l.prefix + ":{" + id + "}:cov" }
func (l *Ledger) visitKey(id string) string    { return l.prefix + ":{" + id + "}:cv" }
func (l *Ledger) fallbackKey(id string) string { return l.prefix + ":{" + id + "}:fb" }
func (l *Ledger) candidatesKey(id string) string {
	return l.prefix + ":{" + id + "}:fbc"
}

// personChannels are the channels a resident can be reached on.
var personChannels = []warning.Channel{warning.SMS, warning.WeChat, warning.WeCom}

// coverKeys are the keys the delivery scripts need for coverage, after
// their own four: counters, visits, fallback list, then the deliveries of
// every person channel.
func (l *Ledger) coverKeys(id string) []string {
	keys := []string{l.coverKey(id), l.visitKey(id), l.fallbackKey(id)}
	for _, ch := range personChannels {
		keys = append(keys, l.deliveryKey(id, ch))
	}
	return keys
}

// coverLua collects the deliveries that reach someone during a script
// (reached) and applies them at the end (coverFlush): a resident not
// delivered on another channel nor visited counts for their division, with
// one HMGET per other channel and bucket for all of them. A script that
// goes bucket by bucket counts each bucket's residents as it goes
// (reachedIn) instead, its reads straight from its own lists. It needs
// bulkLua and bucketLua. K is the index of the counters key in KEYS; the
// person channels' deliveries follow the fallback list; self is the
// script's own deliveries key, whose values it has already written.
var coverLua = fmt.Sprintf(`
local RES, LOUD, SCR = %q, %q, %q
local RESB = string.byte(RES)
local reachIds, reachBkts, reachTags, devReach = {}, {}, {}, {}
local function reached(tag, id, b)
  local a = string.sub(tag, 1, 1)
  if a == RES then
    reachIds[#reachIds+1] = id
    reachBkts[#reachBkts+1] = b
    reachTags[#reachTags+1] = tag
  elseif a == LOUD or a == SCR then
    local f = "v|" .. string.sub(tag, 2) .. "|devices"
    devReach[f] = (devReach[f] or 0) + 1
  end
end
-- handedOver tells whether any batch was handed over on the channel of a
-- deliveries key: one that none was has no deliveries to read. Its batches
-- hash is "<prefix>:{id}:b:<ch>" beside "<prefix>:{id}:d:<ch>".
local function handedOver(key)
  local at = string.find(key, ":d:[^:]*$")
  return redis.call("EXISTS", string.sub(key, 1, at) .. "b" .. string.sub(key, at + 2)) == 1
end
-- firstReach returns the positions of ids (in buckets bkts) reached for
-- the first time.
local function firstReach(ids, bkts, K, self)
  local before = {}
  local order, groups, fields
  if redis.call("EXISTS", KEYS[K+1]) == 1 then
    local vals = mget(KEYS[K+1], ids)
    for k = 1, #ids do
      if vals[k] then before[k] = true end
    end
  end
  for i = K + 3, #KEYS do
    if KEYS[i] ~= self and handedOver(KEYS[i]) then
      if not order then
        -- grouped once for every channel
        order, groups = byBucket(bkts)
        fields = {}
        for _, b in ipairs(order) do
          local g, f = groups[b], {}
          for j = 1, #g do f[j] = ids[g[j]] end
          fields[b] = f
        end
      end
      for _, b in ipairs(order) do
        local g, f = groups[b], fields[b]
        local vals
        if #f <= CHUNK then
          vals = redis.call("HMGET", keyOf(KEYS[i], b), unpack(f))
        else
          vals = mget(keyOf(KEYS[i], b), f)
        end
        for j = 1, #g do
          local v = vals[j]
          if v and string.byte(v, 1) == 68 then before[g[j]] = true end -- "D"
        end
      end
    end
  end
  local out, seen = {}, {}
  for k = 1, #ids do
    if not before[k] and not seen[ids[k]] then out[#out+1] = k end
    seen[ids[k]] = true
  end
  return out
end
-- What reachedIn needs to know once per script: whether anyone was
-- visited, whether there is a fallback list, and the other person
-- channels that have deliveries.
local covSums, covReady, covVisits, covFallback, covOthers = {}, false, false, false, {}
local covField = {}
local function coverReady(K, self)
  if covReady then return end
  covReady = true
  covVisits = redis.call("EXISTS", KEYS[K+1]) == 1
  covFallback = redis.call("EXISTS", KEYS[K+2]) == 1
  for i = K + 3, #KEYS do
    if KEYS[i] ~= self and handedOver(KEYS[i]) then covOthers[#covOthers+1] = KEYS[i] end
  end
end
-- reachedIn counts the residents ids (at most CHUNK, distinct, with their
-- tags) of bucket b, just delivered, that nothing reached before.
local function reachedIn(K, self, b, ids, tags)
  local n = #ids
  if n == 0 then return end
  coverReady(K, self)
  local before = {}
  if covVisits then
    local vals = redis.call("HMGET", KEYS[K+1], unpack(ids))
    for j = 1, n do if vals[j] then before[j] = true end end
  end
  for _, key in ipairs(covOthers) do
    local vals = redis.call("HMGET", keyOf(key, b), unpack(ids))
    for j = 1, n do
      local v = vals[j]
      if v and string.byte(v, 1) == 68 then before[j] = true end -- "D"
    end
  end
  local fb = covFallback and redis.call("HMGET", KEYS[K+2], unpack(ids))
  local del, nd = {}, 0
  for j = 1, n do
    if not before[j] then
      local tag = tags[j]
      local f = covField[tag]
      if not f then f = "v|" .. string.sub(tag, 2) .. "|reached"; covField[tag] = f end
      covSums[f] = (covSums[f] or 0) + 1
      if fb and fb[j] and string.byte(fb[j], 1) == 111 then nd = nd + 1; del[nd] = ids[j] end -- "o": nobody visits yet
    end
  end
  if nd > 0 then redis.call("HDEL", KEYS[K+2], unpack(del)) end
end
local function coverFlush(K, self)
  local sums = {}
  for f, n in pairs(devReach) do sums[f] = n end
  for f, n in pairs(covSums) do sums[f] = (sums[f] or 0) + n end
  if #reachIds > 0 then
    local first = firstReach(reachIds, reachBkts, K, self)
    local fb = {}
    if #first > 0 and redis.call("EXISTS", KEYS[K+2]) == 1 then fb = mget(KEYS[K+2], reachIds) end
    local del = {}
    for _, k in ipairs(first) do
      local f = "v|" .. string.sub(reachTags[k], 2) .. "|reached"
      sums[f] = (sums[f] or 0) + 1
      if fb[k] and string.byte(fb[k], 1) == 111 then del[#del+1] = reachIds[k] end -- "o": nobody visits yet
    end
    if #del > 0 then mdel(KEYS[K+2], del) end
  end
  for f, n in pairs(sums) do redis.call("HINCRBY", KEYS[K], f, n) end
end
`, string(warning.Residents.Code()), string(warning.Loudspeakers.Code()), string(warning.Screens.Code()))

// coverScript records that residents were reached on a visit by a grid
// worker. KEYS: cover, visits, fallback, person channels' deliveries.
// ARGV: ts b36, then (id, bucket, tag).
var coverScript = redis.NewScript(bulkLua + bucketLua + coverLua + `
local ids, kv = {}, {}
for i = 2, #ARGV, 3 do
  reached(ARGV[i+2], ARGV[i], ARGV[i+1])
  ids[#ids+1] = ARGV[i]
end
-- counted before the visits are written, so that a visit counts only
-- when nothing reached the resident before
coverFlush(1, "")
local prev = mget(KEYS[2], ids)
for k = 1, #ids do
  if not prev[k] then kv[#kv+1] = ids[k]; kv[#kv+1] = ARGV[1] end
end
if #kv > 0 then mset(KEYS[2], kv) end
return 1
`)

// Cover records that the entries (residents) were reached on a visit at at.
// Those reached before keep their first channel and count once.
func (l *Ledger) Cover(ctx context.Context, warningID string, at time.Time, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	entries = slices.Clone(entries)
	if err := l.Locate(ctx, warningID, entries); err != nil {
		return err
	}
	args := make([]any, 0, 1+3*len(entries))
	args = append(args, base36ms(at))
	for _, e := range entries {
		tag, err := e.tag()
		if err != nil {
			return err
		}
		args = append(args, e.RecipientID, e.Bucket, tag)
	}
	if err := coverScript.Run(ctx, l.rdb, l.coverKeys(warningID), args...).Err(); err != nil {
		return fmt.Errorf("ledger: cover %s: %w", warningID, err)
	}
	return nil
}

// uncoverScript undoes a grid worker's visit to a resident of the fallback
// list, marked reached and then corrected to not reached: the visit goes;
// when no person channel delivered to the resident, so that the visit was
// what counted them, their division's counter goes down by one and they
// are on the call list again, their visit started. A resident whom no
// visit reached (never marked reached, or corrected already) is left as
// is, so a repeated correction changes nothing. KEYS: cover, visits,
// fallback, person channels' deliveries. ARGV: id, counter field, the
// fallback entry's value should it have gone, the resident's bucket.
// Returns 1 when the resident no longer counts as reached, 2 when a
// channel still reaches them, 0 when there was no visit to undo.
var uncoverScript = redis.NewScript(`
if redis.call("HDEL", KEYS[2], ARGV[1]) == 0 then return 0 end
for i = 4, #KEYS do
  local key = KEYS[i]
  if ARGV[4] ~= "" then key = key .. ":" .. ARGV[4] end
  local v = redis.call("HGET", key, ARGV[1])
  if v and string.byte(v, 1) == 68 then return 2 end -- "D": delivered
end
local n = tonumber(redis.call("HGET", KEYS[1], ARGV[2]) or "0")
if n > 0 then redis.call("HINCRBY", KEYS[1], ARGV[2], -1) end
local fb = redis.call("HGET", KEYS[3], ARGV[1])
if not fb then
  redis.call("HSET", KEYS[3], ARGV[1], ARGV[3])
elseif string.sub(fb, 1, 1) ~= "v" then
  redis.call("HSET", KEYS[3], ARGV[1], "v" .. string.sub(fb, 2))
end
return 1
`)

// Uncover undoes a visit recorded by Cover for a resident on the fallback
// list whose mark was corrected to not reached, in one script: the visit
// is removed and, unless a channel delivered to the resident (then they
// stay reached), they leave their village's reached count and are on the
// call list to visit again. It reports whether the resident no longer
// counts as reached; undoing a visit twice is harmless.
func (l *Ledger) Uncover(ctx context.Context, warningID string, e FallbackEntry) (bool, error) {
	en := []Entry{{RecipientID: e.PersonID, Audience: warning.Residents, Division: e.Village}}
	tag, err := en[0].tag()
	if err != nil {
		return false, err
	}
	if err := l.Locate(ctx, warningID, en); err != nil {
		return false, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	field := "v|" + tag[1:] + "|reached"
	n, err := uncoverScript.Run(ctx, l.rdb, l.coverKeys(warningID), e.PersonID, field, "v"+string(b), en[0].Bucket).Int()
	if err != nil {
		return false, fmt.Errorf("ledger: uncover %s/%s: %w", warningID, e.PersonID, err)
	}
	return n == 1, nil
}

// DivisionReach is what reached the people and devices of one division.
type DivisionReach struct {
	// Reached counts residents reached by at least one channel.
	Reached int64
	// Devices counts loudspeakers and screens that played or showed it.
	Devices int64
}

// Coverage returns a warning's reach per division (the divisions residents
// and devices belong to, villages as a rule), in one Redis call.
func (l *Ledger) Coverage(ctx context.Context, warningID string) (map[string]DivisionReach, error) {
	m, err := l.rdb.HGetAll(ctx, l.coverKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: coverage of %s: %w", warningID, err)
	}
	out := make(map[string]DivisionReach, len(m)/2+1)
	for f, v := range m {
		rest, ok := strings.CutPrefix(f, "v|")
		if !ok {
			continue
		}
		div, what, _ := strings.Cut(rest, "|")
		n, _ := strconv.ParseInt(v, 10, 64)
		r := out[div]
		switch what {
		case "reached":
			r.Reached = n
		case "devices":
			r.Devices = n
		}
		out[div] = r
	}
	return out, nil
}

// ChannelReach is one channel that reached a resident, and when. A visit
// by a grid worker is warning.CallList.
type ChannelReach struct {
	Channel warning.Channel `json:"channel"`
	At      time.Time       `json:"at"`
}

// PersonReach returns, for each resident (an entry with id and
// division), the channels that reached them, first first; nil for one not
// reached. Two Redis round trips: the buckets, then every channel's.
func (l *Ledger) PersonReach(ctx context.Context, warningID string, residents []Entry) ([][]ChannelReach, error) {
	out := make([][]ChannelReach, len(residents))
	if len(residents) == 0 {
		return out, nil
	}
	ids, buckets, err := l.located(ctx, warningID, residents)
	if err != nil {
		return nil, err
	}
	order, groups := groupByBucket(buckets)
	pipe := l.rdb.Pipeline()
	cmds := make([][]*redis.SliceCmd, len(personChannels))
	for i, ch := range personChannels {
		cmds[i] = make([]*redis.SliceCmd, len(order))
		for j, b := range order {
			fields := make([]string, len(groups[b]))
			for x, k := range groups[b] {
				fields[x] = ids[k]
			}
			cmds[i][j] = pipe.HMGet(ctx, l.bucketKey(warningID, ch, b), fields...)
		}
	}
	visits := pipe.HMGet(ctx, l.visitKey(warningID), ids...)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ledger: reach of %s: %w", warningID, err)
	}
	for i, ch := range personChannels {
		for j, b := range order {
			for x, v := range cmds[i][j].Val() {
				s, _ := v.(string)
				if s == "" || s[0] != byte(warning.Delivered) {
					continue
				}
				k := groups[b][x]
				d, _ := decodeDelivery(warning.Ref{WarningID: warningID, Channel: ch, RecipientID: ids[k], Bucket: b}, s)
				out[k] = append(out[k], ChannelReach{Channel: ch, At: d.At})
			}
		}
	}
	for k, v := range visits.Val() {
		if s, _ := v.(string); s != "" {
			ms, _ := strconv.ParseInt(s, 36, 64)
			out[k] = append(out[k], ChannelReach{Channel: warning.CallList, At: time.UnixMilli(ms)})
		}
	}
	for _, r := range out {
		slices.SortStableFunc(r, func(a, b ChannelReach) int { return a.At.Compare(b.At) })
	}
	return out, nil
}

// FallbackEntry is a resident put on their village's call list because no
// electronic channel reached them in time.
type FallbackEntry struct {
	PersonID   string    `json:"id"`
	Name       string    `json:"name"`
	Village    string    `json:"village"`
	GridWorker string    `json:"grid_worker,omitempty"` // person id
	Phone      string    `json:"phone,omitempty"`
	Reasons    []string  `json:"reasons"`
	At         time.Time `json:"at"`
	// Visiting is set once a grid worker marked the entry: a delivery
	// report that comes later no longer takes it off the list.
	Visiting bool `json:"-"`
}

// addFallbackScript puts residents on the fallback list unless they were
// reached meanwhile or are on it already. KEYS: cover, visits, fallback,
// person channels' deliveries. ARGV: (id, bucket, value) triples. Returns
// the number added.
var addFallbackScript = redis.NewScript(bulkLua + bucketLua + coverLua + `
local ids, bkts = {}, {}
for i = 1, #ARGV, 3 do ids[#ids+1] = ARGV[i]; bkts[#bkts+1] = ARGV[i+1] end
local n = 0
for _, k in ipairs(firstReach(ids, bkts, 1, "")) do
  if redis.call("HSETNX", KEYS[3], ARGV[3*k-2], ARGV[3*k]) == 1 then n = n + 1 end
end
return n
`)

// AddFallback puts residents on their villages' call lists, skipping those
// reached meanwhile and those listed already; it returns how many it added.
func (l *Ledger) AddFallback(ctx context.Context, warningID string, entries []FallbackEntry) (int, error) {
	added := 0
	for start := 0; start < len(entries); start += 1000 {
		part := entries[start:min(start+1000, len(entries))]
		located := make([]Entry, len(part))
		for i, e := range part {
			located[i] = Entry{RecipientID: e.PersonID, Audience: warning.Residents, Division: e.Village}
		}
		if err := l.Locate(ctx, warningID, located); err != nil {
			return added, err
		}
		args := make([]any, 0, 3*len(part))
		for i, e := range part {
			b, err := json.Marshal(e)
			if err != nil {
				return added, err
			}
			args = append(args, e.PersonID, located[i].Bucket, "o"+string(b))
		}
		n, err := addFallbackScript.Run(ctx, l.rdb, l.coverKeys(warningID), args...).Int()
		if err != nil {
			return added, fmt.Errorf("ledger: fallback list of %s: %w", warningID, err)
		}
		added += n
	}
	return added, nil
}

// Fallback returns the residents on a warning's fallback list by id.
func (l *Ledger) Fallback(ctx context.Context, warningID string) (map[string]FallbackEntry, error) {
	out, err := decodedHash(ctx, l, l.fallbackKey(warningID), decodeFallback)
	if err != nil {
		return nil, fmt.Errorf("ledger: fallback list of %s: %w", warningID, err)
	}
	return out, nil
}

// AllResidents, among a warning's fallback candidates, asks the next early
// check to look at every resident of the warning.
const AllResidents = "*"

// Candidates are a sorted set, each scored with the Redis server's time
// (µs) it was last named at, so that a check forgets only those named
// before it read them: a resident named again while the check looks (their
// last channel failing meanwhile) stays for the next.

// addCandidatesScript names candidates. KEYS: candidates. ARGV: ids.
var addCandidatesScript = redis.NewScript(`
local t = redis.call("TIME")
local at = tonumber(t[1]) * 1000000 + tonumber(t[2])
local args = {}
for i = 1, #ARGV do args[#args+1] = at; args[#args+1] = ARGV[i] end
for i = 1, #args, 2000 do
  redis.call("ZADD", KEYS[1], unpack(args, i, math.min(i + 1999, #args)))
end
return at
`)

// readCandidatesScript returns the Redis server's time (µs) and the
// candidates. KEYS: candidates.
var readCandidatesScript = redis.NewScript(`
local t = redis.call("TIME")
local out = {tonumber(t[1]) * 1000000 + tonumber(t[2])}
for _, id in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do out[#out+1] = id end
return out
`)

// AddCandidates names residents (or AllResidents) for the next early
// fallback check of a warning to look at: those a channel just failed.
func (l *Ledger) AddCandidates(ctx context.Context, warningID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	if err := addCandidatesScript.Run(ctx, l.rdb, []string{l.candidatesKey(warningID)}, args...).Err(); err != nil {
		return fmt.Errorf("ledger: fallback candidates of %s: %w", warningID, err)
	}
	return nil
}

// Candidates returns the residents named for a warning's next early
// fallback check, in no order, and when they were read, for
// DropCandidates.
func (l *Ledger) Candidates(ctx context.Context, warningID string) (ids []string, read int64, err error) {
	vals, err := readCandidatesScript.Run(ctx, l.rdb, []string{l.candidatesKey(warningID)}).Slice()
	if err != nil || len(vals) == 0 {
		return nil, 0, fmt.Errorf("ledger: fallback candidates of %s: %v", warningID, err)
	}
	read, _ = vals[0].(int64)
	for _, v := range vals[1:] {
		if id, ok := v.(string); ok {
			ids = append(ids, id)
		}
	}
	return ids, read, nil
}

// DropCandidates forgets the candidates named before read (Candidates);
// read 0 forgets them all.
func (l *Ledger) DropCandidates(ctx context.Context, warningID string, read int64) error {
	var err error
	if read == 0 {
		err = l.rdb.Del(ctx, l.candidatesKey(warningID)).Err()
	} else {
		err = l.rdb.ZRemRangeByScore(ctx, l.candidatesKey(warningID), "-inf", "("+strconv.FormatInt(read, 10)).Err()
	}
	if err != nil {
		return fmt.Errorf("ledger: fallback candidates of %s: %w", warningID, err)
	}
	return nil
}

// FallbackEntryOf returns one resident's fallback entry, if listed.
func (l *Ledger) FallbackEntryOf(ctx context.Context, warningID, personID string) (FallbackEntry, bool, error) {
	v, err := l.rdb.HGet(ctx, l.fallbackKey(warningID), personID).Result()
	if err == redis.Nil {
		return FallbackEntry{}, false, nil
	}
	if err != nil {
		return FallbackEntry{}, false, fmt.Errorf("ledger: fallback entry %s/%s: %w", warningID, personID, err)
	}
	e, ok := decodeFallback(v)
	return e, ok, nil
}

func decodeFallback(v string) (FallbackEntry, bool) {
	var e FallbackEntry
	if len(v) < 2 || json.Unmarshal([]byte(v[1:]), &e) != nil {
		return e, false
	}
	e.Visiting = v[0] == 'v'
	return e, true
}

// startVisitScript marks a fallback entry as being visited. KEYS: fallback.
// ARGV: id. Returns 1 when the entry exists.
var startVisitScript = redis.NewScript(`
local v = redis.call("HGET", KEYS[1], ARGV[1])
if not v then return 0 end
if string.sub(v, 1, 1) ~= "v" then redis.call("HSET", KEYS[1], ARGV[1], "v" .. string.sub(v, 2)) end
return 1
`)

// StartVisit records that a grid worker began visiting a resident of the
// fallback list, so that a late delivery report leaves them on it. It
// reports whether the resident is on the list.
func (l *Ledger) StartVisit(ctx context.Context, warningID, personID string) (bool, error) {
	n, err := startVisitScript.Run(ctx, l.rdb, []string{l.fallbackKey(warningID)}, personID).Int()
	if err != nil {
		return false, fmt.Errorf("ledger: visit %s/%s: %w", warningID, personID, err)
	}
	return n == 1, nil
}

// DeliveriesOf loads the deliveries of many recipients (entries with id,
// audience and division) on one channel; one never planned or handed over
// is Queued with no audience. A delivery handed over reads as Queued too
// (Delivery tells sent from sending; this does not need to).
func (l *Ledger) DeliveriesOf(ctx context.Context, warningID string, ch warning.Channel, entries []Entry) ([]Delivery, error) {
	out := make([]Delivery, len(entries))
	if len(entries) == 0 {
		return out, nil
	}
	ids, buckets, err := l.located(ctx, warningID, entries)
	if err != nil {
		return nil, err
	}
	vals, err := l.hmget(ctx, warningID, ch, ids, buckets)
	if err != nil {
		return nil, fmt.Errorf("ledger: deliveries of %s/%s: %w", warningID, ch, err)
	}
	for i, v := range vals {
		ref := warning.Ref{WarningID: warningID, Channel: ch, RecipientID: ids[i], Bucket: buckets[i]}
		s, _ := v.(string)
		if s == "" {
			out[i] = Delivery{Ref: ref, State: warning.Queued}
			continue
		}
		out[i], _ = decodeDelivery(ref, s)
	}
	return out, nil
}
