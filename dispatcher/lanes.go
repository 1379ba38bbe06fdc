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
	cc *redis.ClusterClient // nil on one Redis

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

func newLanes(rdb redis.UniversalClient) *lanes {
	cc, _ := rdb.(*redis.ClusterClient)
	return &lanes{cc: cc}
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
	slots, err := l.cc.ClusterSlots(ctx).Result()
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
	if qs, err := l.cc.SMembers(ctx, "asynq:queues").Result(); err == nil {
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
