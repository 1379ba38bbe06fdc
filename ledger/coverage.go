package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Coverage: whether each resident of a warning was reached by at least one
// channel, kept by the same scripts that record deliveries, so that a
// resident counts once however many channels reach them.
//
//	{id}:cov   counters: "v|<division>|reached" residents reached at least
//	           once, "v|<division>|devices" loudspeakers and screens that
//	           played or showed the warning (the village's coverage, never a
//	           person's)
//	{id}:cp    resident id → "<channel code><ms b36>" per channel that
//	           reached them, first first: "S1kz3…W1kz4…"
//	{id}:fb    residents put on their village's call list because no channel
//	           reached them (Fallback): id → "o" (on the list) or "v" (a
//	           visit started) followed by the entry as JSON
//
// A resident's first delivery increments their division's counter and takes
// them off the fallback list unless a visit started.

func (l *Ledger) coverKey(id string) string    { return l.prefix + ":{" + id + "}:cov" }
func (l *Ledger) reachKey(id string) string    { return l.prefix + ":{" + id + "}:cp" }
func (l *Ledger) fallbackKey(id string) string { return l.prefix + ":{" + id + "}:fb" }

// channelCodes are the one-letter codes of channels in a resident's reach
// record: upper case, so that they never meet the base-36 times between them.
var channelCodes = map[warning.Channel]byte{
	warning.SMS: 'S', warning.WeChat: 'W', warning.WeCom: 'C', warning.Broadcast: 'B',
	warning.Screen: 'D', warning.CallList: 'L', warning.Voice: 'V',
}

func channelOfCode(b byte) warning.Channel {
	for ch, c := range channelCodes {
		if c == b {
			return ch
		}
	}
	return ""
}

// coverLua collects the deliveries that reach someone during a script
// (reached) and applies them at the end (coverFlush): one HMGET of the
// residents' reach records and of the fallback list, one HSET, and the
// counters. It needs audienceTable and bulkLua.
var coverLua = func() string {
	var b strings.Builder
	b.WriteString("local CHC = {")
	for _, ch := range warning.Channels {
		fmt.Fprintf(&b, "[%q]=%q,", string(ch), string(channelCodes[ch]))
	}
	fmt.Fprintf(&b, "}\nlocal RES, LOUD, SCR = %q, %q, %q\n",
		string(warning.Residents.Code()), string(warning.Loudspeakers.Code()), string(warning.Screens.Code()))
	b.WriteString(`
local reachIds, reachTags, reachTs, devReach = {}, {}, {}, {}
local function reached(tag, id, ts)
  local a = string.sub(tag, 1, 1)
  if a == RES then
    reachIds[#reachIds+1] = id
    reachTags[#reachTags+1] = tag
    reachTs[#reachTs+1] = ts
  elseif a == LOUD or a == SCR then
    local f = "v|" .. string.sub(tag, 2) .. "|devices"
    devReach[f] = (devReach[f] or 0) + 1
  end
end
local function coverFlush(covKey, personKey, fbKey, ch)
  local code = CHC[ch] or "?"
  local sums = {}
  for f, n in pairs(devReach) do sums[f] = n end
  local drop = 0
  if #reachIds > 0 then
    local prev = mget(personKey, reachIds)
    -- Nobody is on the fallback list before its deadline, as a rule.
    local fb = {}
    if redis.call("EXISTS", fbKey) == 1 then fb = mget(fbKey, reachIds) end
    local kv, del, seen = {}, {}, {}
    for k = 1, #reachIds do
      local id, p = reachIds[k], prev[k]
      if not seen[id] then
        seen[id] = true
        if not p then
          kv[#kv+1] = id
          kv[#kv+1] = code .. reachTs[k]
          local f = "v|" .. string.sub(reachTags[k], 2) .. "|reached"
          sums[f] = (sums[f] or 0) + 1
          if fb[k] and string.byte(fb[k], 1) == 111 then -- "o": nobody visits yet
            del[#del+1] = id
          end
        elseif not string.find(p, code, 1, true) then
          kv[#kv+1] = id
          kv[#kv+1] = p .. code .. reachTs[k]
        end
      end
    end
    if #kv > 0 then mset(personKey, kv) end
    if #del > 0 then mdel(fbKey, del) end
    drop = #del
  end
  for f, n in pairs(sums) do redis.call("HINCRBY", covKey, f, n) end
  return drop
end
`)
	return b.String()
}()

// coverScript records that residents were reached other than by a provider's
// report: a grid worker's visit to a resident on the fallback list.
// KEYS: cover, reach, fallback. ARGV: channel, then (id, tag, ts b36).
var coverScript = redis.NewScript(audienceTable + bulkLua + coverLua + `
for i = 2, #ARGV, 3 do reached(ARGV[i+1], ARGV[i], ARGV[i+2]) end
return coverFlush(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
`)

// Cover records that the entries (residents) were reached on a channel at
// at: a visit by a grid worker, say. Those reached before keep their first
// channel and count once.
func (l *Ledger) Cover(ctx context.Context, warningID string, ch warning.Channel, at time.Time, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	args := make([]any, 0, 1+3*len(entries))
	args = append(args, string(ch))
	for _, e := range entries {
		tag, err := e.tag()
		if err != nil {
			return err
		}
		args = append(args, e.RecipientID, tag, base36ms(at))
	}
	if err := coverScript.Run(ctx, l.rdb, []string{l.coverKey(warningID), l.reachKey(warningID), l.fallbackKey(warningID)}, args...).Err(); err != nil {
		return fmt.Errorf("ledger: cover %s: %w", warningID, err)
	}
	return nil
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

// ChannelReach is one channel that reached a resident, and when.
type ChannelReach struct {
	Channel warning.Channel `json:"channel"`
	At      time.Time       `json:"at"`
}

// PersonReach returns, for each resident id, the channels that reached
// them, first first; nil for one not reached. One Redis call.
func (l *Ledger) PersonReach(ctx context.Context, warningID string, ids []string) ([][]ChannelReach, error) {
	out := make([][]ChannelReach, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := l.rdb.HMGet(ctx, l.reachKey(warningID), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: reach of %s: %w", warningID, err)
	}
	for i, v := range vals {
		s, _ := v.(string)
		out[i] = decodeReach(s)
	}
	return out, nil
}

func decodeReach(s string) []ChannelReach {
	var out []ChannelReach
	for len(s) > 0 {
		code := s[0]
		end := 1
		for end < len(s) && (s[end] < 'A' || s[end] > 'Z') {
			end++
		}
		ms, _ := strconv.ParseInt(s[1:end], 36, 64)
		out = append(out, ChannelReach{Channel: channelOfCode(code), At: time.UnixMilli(ms)})
		s = s[end:]
	}
	return out
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
// reached meanwhile or are on it already. KEYS: reach, fallback. ARGV:
// (id, value) pairs. Returns the number added.
var addFallbackScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call("HEXISTS", KEYS[1], ARGV[i]) == 0 and redis.call("HSETNX", KEYS[2], ARGV[i], ARGV[i+1]) == 1 then
    n = n + 1
  end
end
return n
`)

// AddFallback puts residents on their villages' call lists, skipping those
// reached meanwhile and those listed already; it returns how many it added.
func (l *Ledger) AddFallback(ctx context.Context, warningID string, entries []FallbackEntry) (int, error) {
	added := 0
	for start := 0; start < len(entries); start += 1000 {
		part := entries[start:min(start+1000, len(entries))]
		args := make([]any, 0, 2*len(part))
		for _, e := range part {
			b, err := json.Marshal(e)
			if err != nil {
				return added, err
			}
			args = append(args, e.PersonID, "o"+string(b))
		}
		n, err := addFallbackScript.Run(ctx, l.rdb, []string{l.reachKey(warningID), l.fallbackKey(warningID)}, args...).Int()
		if err != nil {
			return added, fmt.Errorf("ledger: fallback list of %s: %w", warningID, err)
		}
		added += n
	}
	return added, nil
}

// Fallback returns the residents on a warning's fallback list by id.
func (l *Ledger) Fallback(ctx context.Context, warningID string) (map[string]FallbackEntry, error) {
	m, err := l.rdb.HGetAll(ctx, l.fallbackKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: fallback list of %s: %w", warningID, err)
	}
	out := make(map[string]FallbackEntry, len(m))
	for id, v := range m {
		if e, ok := decodeFallback(v); ok {
			out[id] = e
		}
	}
	return out, nil
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

// DeliveriesOf loads the deliveries of many recipients on one channel in
// one Redis call; one never planned or handed over is Queued with no
// audience. A delivery handed over reads as Queued too (Delivery tells sent
// from sending; this does not need to).
func (l *Ledger) DeliveriesOf(ctx context.Context, warningID string, ch warning.Channel, ids []string) ([]Delivery, error) {
	out := make([]Delivery, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	vals, err := l.rdb.HMGet(ctx, l.deliveryKey(warningID, ch), ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: deliveries of %s/%s: %w", warningID, ch, err)
	}
	for i, v := range vals {
		ref := warning.Ref{WarningID: warningID, Channel: ch, RecipientID: ids[i]}
		s, _ := v.(string)
		if s == "" {
			out[i] = Delivery{Ref: ref, State: warning.Queued}
			continue
		}
		out[i], _ = decodeDelivery(ref, s)
	}
	return out, nil
}
