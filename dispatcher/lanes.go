package dispatcher

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/hashslot"
)

// On a Redis Cluster, asynq keeps each queue in the slot its name hashes
// to, and a warning's keys are in the slot of its id. The queues come in
// lanes, one per shard: a lane's queues are named "{<tag>}<queue>"
// ("{s4}sms.red"), where "{<tag>" — what Redis hashes in asynq's key
// "asynq:{{s4}sms.red}:pending" — falls in a slot of that shard, so that
// all of a lane's queues share one slot. A warning's tasks go to the lane
// of the shard that holds the warning: a shard that fails stalls its own
// warnings and no other. Each worker runs one group of servers per lane,
// so that the servers reading the other shards go on; and the idle sweep
// looks at a lane in one script.
//
// On one Redis there is one lane, with the plain queue names.

// lanes maps warnings to lanes from the cluster's slot map, read again
// every laneRefresh (after resharding, a warning's slot may belong to
// another shard; the queues of a lane that no shard matches any more are
// still read, see all).
type lanes struct {
	cc        *redis.ClusterClient // nil on one Redis
	sharedKey string               // a key of the shard every process needs

	mu      sync.Mutex
	read    time.Time
	shards  []laneShard // by first slot
	extra   []string    // tags of lanes found in asynq's queues, matching no shard now
	readErr error
}

type laneShard struct {
	ranges [][2]int // slots, inclusive
	tag    string
}

const laneRefresh = 30 * time.Second

func newLanes(rdb redis.UniversalClient, sharedKey string) *lanes {
	cc, _ := rdb.(*redis.ClusterClient)
	if cc != nil {
		cc.AddHook(serverStateHook{})
	}
	return &lanes{cc: cc, sharedKey: sharedKey}
}

// queue is the name of base's queue in the lane of a warning.
func (l *lanes) queue(ctx context.Context, warningID, base string) (string, error) {
	if l.cc == nil {
		return base, nil
	}
	shards, err := l.load(ctx)
	if err != nil {
		return "", err
	}
	slot := hashslot.Of(warningID)
	for _, s := range shards {
		if s.has(slot) {
			return "{" + s.tag + "}" + base, nil
		}
	}
	return "", fmt.Errorf("dispatcher: no Redis Cluster shard serves slot %d", slot)
}

// sameLane is base's queue in the lane of queue.
func sameLane(queue, base string) string {
	if strings.HasPrefix(queue, "{") {
		if i := strings.IndexByte(queue, '}'); i > 0 {
			return queue[:i+1] + base
		}
	}
	return base
}

// tags lists the lanes' tags: one per shard, then those of lanes that no
// shard matches any more but hold queues; [""] on one Redis.
func (l *lanes) tags(ctx context.Context) ([]string, error) {
	if l.cc == nil {
		return []string{""}, nil
	}
	shards, err := l.load(ctx)
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, s := range shards {
		tags = append(tags, s.tag)
	}
	l.mu.Lock()
	tags = append(tags, l.extra...)
	l.mu.Unlock()
	return tags, nil
}

// laneQueue is base's queue in the lane of tag.
func laneQueue(tag, base string) string {
	if tag == "" {
		return base
	}
	return "{" + tag + "}" + base
}

func (l *lanes) load(ctx context.Context) ([]laneShard, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shards != nil && time.Since(l.read) < laneRefresh {
		return l.shards, nil
	}
	// Asked of the shard every process needs: any node would do, but a
	// command without a key goes to one at random, which may hang.
	var slots []redis.ClusterSlot
	node, err := l.cc.MasterForKey(ctx, l.sharedKey)
	if err == nil {
		slots, err = node.ClusterSlots(ctx).Result()
	}
	if err != nil {
		if l.shards != nil {
			return l.shards, nil // the last map read, while the cluster answers again
		}
		return nil, fmt.Errorf("dispatcher: read the Redis Cluster's slots: %w", err)
	}
	l.shards = shardsOf(slots)
	l.read = time.Now()
	// Lanes of an earlier slot map whose queues asynq still lists.
	l.extra = nil
	if qs, err := l.cc.SMembers(ctx, asynqQueues).Result(); err == nil {
		known := map[string]bool{}
		for _, s := range l.shards {
			known[s.tag] = true
		}
		for _, q := range qs {
			if !strings.HasPrefix(q, "{") {
				continue
			}
			if i := strings.IndexByte(q, '}'); i > 1 && !known[q[1:i]] {
				known[q[1:i]] = true
				l.extra = append(l.extra, q[1:i])
			}
		}
		sort.Strings(l.extra)
	}
	return l.shards, nil
}

// shardsOf groups the slot ranges by master and gives each shard its tag:
// the first "s<n>" such that "{s<n>" hashes to one of its slots.
func shardsOf(slots []redis.ClusterSlot) []laneShard {
	byMaster := map[string]*laneShard{}
	var order []*laneShard
	for _, s := range slots {
		if len(s.Nodes) == 0 {
			continue
		}
		id := s.Nodes[0].ID
		if id == "" {
			id = s.Nodes[0].Addr
		}
		sh := byMaster[id]
		if sh == nil {
			sh = &laneShard{}
			byMaster[id] = sh
			order = append(order, sh)
		}
		sh.ranges = append(sh.ranges, [2]int{int(s.Start), int(s.End)})
	}
	for _, sh := range order {
		sort.Slice(sh.ranges, func(i, j int) bool { return sh.ranges[i][0] < sh.ranges[j][0] })
	}
	sort.Slice(order, func(i, j int) bool { return order[i].ranges[0][0] < order[j].ranges[0][0] })
	shards := make([]laneShard, len(order))
	for i, sh := range order {
		for n := 0; ; n++ {
			tag := "s" + strconv.Itoa(n)
			if sh.has(hashslot.Of("{" + tag)) {
				sh.tag = tag
				break
			}
		}
		shards[i] = *sh
	}
	return shards
}

func (s laneShard) has(slot int) bool {
	for _, r := range s.ranges {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// Placement. On a Redis Cluster a warning's shard is chosen with its id: the
// shard with the least recent work, work being the people and devices in
// the warnings' areas, halved every placementHalfLife. A county-by-county
// burst of warnings then spreads evenly over the shards, rather than as
// the dice of their ids fall.

const placementHalfLife = 10 * time.Minute

// placeScript decays every shard's load, picks the least loaded and adds
// the new warning's size to it, and its officials' share to the shard of
// the shared keys (their lists of warnings awaiting confirmation are
// there). KEYS: the loads hash. ARGV: now ms, half life ms, size, shared
// tag, shared share, tags... Returns the chosen tag.
var placeScript = redis.NewScript(`
local now, half, size = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local loads = {}
local best
for i = 6, #ARGV do
  local tag = ARGV[i]
  local v = redis.call("HGET", KEYS[1], tag)
  local load = 0
  if v then
    local l, at = string.match(v, "([^|]+)|(.+)")
    load = tonumber(l) * math.pow(0.5, math.max(0, now - tonumber(at)) / half)
  end
  loads[tag] = load
  if not best or load < loads[best] then best = tag end
end
loads[best] = loads[best] + size
if loads[ARGV[4]] then loads[ARGV[4]] = loads[ARGV[4]] + tonumber(ARGV[5]) end
for tag, load in pairs(loads) do
  redis.call("HSET", KEYS[1], tag, tostring(load) .. "|" .. ARGV[1])
end
redis.call("PEXPIRE", KEYS[1], math.floor(half * 8))
return best
`)

// newID returns an id for a warning of size recipients, officials of them:
// on a Redis Cluster one whose slot is on the least loaded shard.
func (d *Dispatcher) newID(ctx context.Context, now time.Time, size, officials int) string {
	if d.lanes.cc == nil {
		return NewID(now)
	}
	shards, err := d.lanes.load(ctx)
	if err != nil || len(shards) == 0 {
		return NewID(now)
	}
	// An official's pending list costs the shared keys' shard two
	// commands (ZADD, PEXPIRE); a delivery costs its warning's shard about
	// half a command, its hand-over and report being written hundreds to a
	// script (measured by bench --cluster): an official weighs four.
	shared := ""
	for _, s := range shards {
		if s.has(hashslot.Of(d.cfg.Prefix)) {
			shared = s.tag
		}
	}
	args := []any{now.UnixMilli(), placementHalfLife.Milliseconds(), size, shared, 4 * officials}
	for _, s := range shards {
		args = append(args, s.tag)
	}
	tag, err := placeScript.Run(ctx, d.rdb, []string{d.cfg.Prefix + ":placement"}, args...).Text()
	if err != nil {
		d.log.Warn("placement: shard loads not read; the id chooses the shard", "err", err)
		return NewID(now)
	}
	for _, s := range shards {
		if s.tag != tag {
			continue
		}
		// One id in as many as there are shards falls on it.
		id := NewID(now)
		for range 64 * len(shards) {
			if s.has(hashslot.Of(id)) {
				break
			}
			id = NewID(now)
		}
		return id
	}
	return NewID(now)
}

// asynq keeps a few keys for every queue and server: "asynq:servers" and
// "asynq:workers" list the servers, and each server's heartbeat writes to
// both. On a Redis Cluster they sit on one shard. A heartbeat that waits
// on that shard when it hangs holds up its server: asynq's processor hands
// each task it starts to the heartbeater and waits for it to take it, so
// every lane's servers would stall with the one shard. serverStateTimeout
// bounds those commands instead: a heartbeat missed is a line missing from
// the list of servers for a few seconds; the leases it extends come after
// it, in their own lane.
const serverStateTimeout = time.Second

// serverStateHook gives asynq's commands on its servers' keys
// serverStateTimeout. The client must honour contexts' deadlines
// (ContextTimeoutEnabled, which config sets for a cluster).
type serverStateHook struct{}

func (serverStateHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (serverStateHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isServerState(cmd) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, serverStateTimeout)
			defer cancel()
		}
		return next(ctx, cmd)
	}
}

func (serverStateHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// isServerState reports whether cmd is on asynq's lists of servers and
// workers or on one server's entries in them: "asynq:servers",
// "asynq:servers:{…}", "asynq:workers", "asynq:workers:{…}".
func isServerState(cmd redis.Cmder) bool {
	args := cmd.Args()
	i := 1
	switch strings.ToLower(cmd.Name()) {
	case "eval", "evalsha", "evalsha_ro", "eval_ro":
		i = 3
	}
	if len(args) <= i {
		return false
	}
	key, _ := args[i].(string)
	return strings.HasPrefix(key, "asynq:servers") || strings.HasPrefix(key, "asynq:workers")
}
