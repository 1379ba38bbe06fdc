package ledger

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"warngate/warning"
)

// Buckets. A warning's deliveries on a channel are spread over small
// hashes, "<deliveries>:<bucket>", one per bucket a plan gave its
// recipients (warning.Bucket): the recipients of one kind in one village,
// about the plan's bucket target (warning.BucketsFor, PinPlan) to a bucket
// by a hash of their id. Redis keeps a hash that small packed (a
// listpack), where a delivery costs its id and its value and a few bytes
// more, against 60 to 80 in one large hash. A batch's recipients come
// village by village, so that a chunk of a thousand touches two dozen
// buckets: the scripts read and write a bucket in one call, as they did
// the one hash.
//
// A delivery ref carries its bucket (warning.Ref.Bucket), so a report
// needs no lookup. Whoever has only a recipient (a visit, a household's
// mark, a village's list) finds the bucket with the plan's directory,
// {id}:bk: "<kind><division>" → the number of buckets (SetBuckets,
// Locate). A plan made before buckets has no directory, and its
// deliveries stay in the one hash (bucket "").

// SetBuckets records a plan's bucket directory (policy.Summary.Buckets).
// The same plan run again writes the same numbers.
func (l *Ledger) SetBuckets(ctx context.Context, warningID string, dir map[string]int) error {
	if len(dir) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(dir))
	for g, m := range dir {
		args = append(args, g, m)
	}
	if err := l.rdb.HSet(ctx, l.directoryKey(warningID), args...).Err(); err != nil {
		return fmt.Errorf("ledger: bucket directory of %s: %w", warningID, err)
	}
	return nil
}

// Locate fills in the bucket of every entry that has none, from the
// plan's directory; an entry whose kind and division the plan did not
// reach (or a plan made before buckets) keeps none.
func (l *Ledger) Locate(ctx context.Context, warningID string, entries []Entry) error {
	var groups []string
	seen := map[string]bool{}
	for _, e := range entries {
		if e.Bucket != "" {
			continue
		}
		if g := warning.BucketGroup(e.Audience, e.Division); !seen[g] {
			seen[g] = true
			groups = append(groups, g)
		}
	}
	if len(groups) == 0 {
		return nil
	}
	vals, err := l.rdb.HMGet(ctx, l.directoryKey(warningID), groups...).Result()
	if err != nil {
		return fmt.Errorf("ledger: bucket directory of %s: %w", warningID, err)
	}
	dir := make(map[string]int, len(groups))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			if m, err := strconv.Atoi(s); err == nil {
				dir[groups[i]] = m
			}
		}
	}
	for i := range entries {
		e := &entries[i]
		if e.Bucket != "" {
			continue
		}
		g := warning.BucketGroup(e.Audience, e.Division)
		if m, ok := dir[g]; ok {
			e.Bucket = warning.Bucket(g, e.RecipientID, m)
		}
	}
	return nil
}

// located gives the ids and buckets of entries, the buckets of those
// without one found in the plan's directory (Locate); entries is left as
// it is.
func (l *Ledger) located(ctx context.Context, warningID string, entries []Entry) (ids, buckets []string, err error) {
	es := slices.Clone(entries)
	if err := l.Locate(ctx, warningID, es); err != nil {
		return nil, nil, err
	}
	ids, buckets = make([]string, len(es)), make([]string, len(es))
	for i, e := range es {
		ids[i], buckets[i] = e.RecipientID, e.Bucket
	}
	return ids, buckets, nil
}

// bucketKeys lists every bucket a warning's deliveries on a channel may be
// in: the one hash of a plan made before buckets, then each bucket of the
// directory.
func (l *Ledger) bucketKeys(ctx context.Context, warningID string, ch warning.Channel) ([]string, error) {
	dir, err := l.rdb.HGetAll(ctx, l.directoryKey(warningID)).Result()
	if err != nil {
		return nil, fmt.Errorf("ledger: bucket directory of %s: %w", warningID, err)
	}
	keys := []string{l.deliveryKey(warningID, ch)}
	for g, v := range dir {
		m, err := strconv.Atoi(v)
		if err != nil {
			continue
		}
		for i := range max(m, 1) {
			keys = append(keys, l.bucketKey(warningID, ch, warning.BucketName(g, i)))
		}
	}
	return keys, nil
}

// hmget reads the values of many recipients, each in its bucket, in one
// pipelined round trip with one HMGET per bucket; a value not stored is nil.
func (l *Ledger) hmget(ctx context.Context, warningID string, ch warning.Channel, ids, buckets []string) ([]any, error) {
	out := make([]any, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	order, groups := groupByBucket(buckets)
	cmds := make([]*redis.SliceCmd, len(order))
	_, err := l.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, b := range order {
			fields := make([]string, len(groups[b]))
			for j, k := range groups[b] {
				fields[j] = ids[k]
			}
			cmds[i] = p.HMGet(ctx, l.bucketKey(warningID, ch, b), fields...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, b := range order {
		for j, v := range cmds[i].Val() {
			out[groups[b][j]] = v
		}
	}
	return out, nil
}

// groupByBucket gives the distinct buckets in order of first appearance
// and, for each, the positions that name it.
func groupByBucket(buckets []string) ([]string, map[string][]int) {
	var order []string
	groups := map[string][]int{}
	for k, b := range buckets {
		if _, ok := groups[b]; !ok {
			order = append(order, b)
		}
		groups[b] = append(groups[b], k)
	}
	return order, groups
}

// bucketLua reads and writes many deliveries, each in its bucket, with one
// HMGET or HSET per bucket. base is the deliveries key of a warning and
// channel; a bucket's key is base .. ":" .. bucket, or base itself for "".
// It needs bulkLua.
const bucketLua = `
local BKEYS = {}
local function keyOf(base, b)
  if b == "" then return base end
  local t = BKEYS[base]
  if not t then t = {}; BKEYS[base] = t end
  local k = t[b]
  if not k then k = base .. ":" .. b; t[b] = k end
  return k
end
local function byBucket(bkts)
  local groups, order = {}, {}
  for k = 1, #bkts do
    local b = bkts[k]
    local g = groups[b]
    if not g then g = {}; groups[b] = g; order[#order+1] = b end
    g[#g+1] = k
  end
  return order, groups
end
-- bget reads ids[k] from bucket bkts[k] of base.
local function bget(base, bkts, ids)
  local out = {}
  local order, groups = byBucket(bkts)
  for _, b in ipairs(order) do
    local g, fields = groups[b], {}
    for j = 1, #g do fields[j] = ids[g[j]] end
    local vals = mget(keyOf(base, b), fields)
    for j = 1, #g do out[g[j]] = vals[j] end
  end
  return out
end
-- bset writes the (bucket, id, value) triples of kvb from position from
-- (1 when nil).
local function bset(base, kvb, from)
  local groups, order = {}, {}
  for i = from or 1, #kvb, 3 do
    local b = kvb[i]
    local g = groups[b]
    if not g then g = {}; groups[b] = g; order[#order+1] = b end
    g[#g+1] = kvb[i+1]; g[#g+1] = kvb[i+2]
  end
  for _, b in ipairs(order) do mset(keyOf(base, b), groups[b]) end
end
-- bdel deletes (bucket, id) pairs.
local function bdel(base, kb)
  local groups, order = {}, {}
  for i = 1, #kb, 2 do
    local b = kb[i]
    local g = groups[b]
    if not g then g = {}; groups[b] = g; order[#order+1] = b end
    g[#g+1] = kb[i+1]
  end
  for _, b in ipairs(order) do mdel(keyOf(base, b), groups[b]) end
end
`

// bucketOfKey returns the bucket a deliveries key names, given the
// channel's one hash.
func bucketOfKey(base, key string) string {
	if b, ok := strings.CutPrefix(key, base+":"); ok {
		return b
	}
	return ""
}

// RefFor names the delivery of a warning on a channel to a recipient known
// by id, audience and division, its bucket found in the plan's directory.
func (l *Ledger) RefFor(ctx context.Context, warningID string, ch warning.Channel, e Entry) (warning.Ref, error) {
	es := []Entry{e}
	if err := l.Locate(ctx, warningID, es); err != nil {
		return warning.Ref{}, err
	}
	return warning.Ref{WarningID: warningID, Channel: ch, RecipientID: e.RecipientID, Bucket: es[0].Bucket}, nil
}
