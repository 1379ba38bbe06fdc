package dispatcher

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"warngate/internal/hashslot"
)

// Each shard of a cluster gets a lane whose queues all hash to one of its
// slots, and a warning's tasks go to the lane of the shard that holds the
// warning's keys.
func TestLanesFollowTheShards(t *testing.T) {
	slots := []redis.ClusterSlot{
		{Start: 10923, End: 16383, Nodes: []redis.ClusterNode{{ID: "c", Addr: "n3"}}},
		{Start: 0, End: 5460, Nodes: []redis.ClusterNode{{ID: "a", Addr: "n1"}}},
		{Start: 5461, End: 8000, Nodes: []redis.ClusterNode{{ID: "b", Addr: "n2"}}},
		{Start: 8001, End: 10922, Nodes: []redis.ClusterNode{{ID: "b", Addr: "n2"}}},
	}
	shards := shardsOf(slots)
	if len(shards) != 3 || len(shards[1].ranges) != 2 {
		t.Fatalf("shards %+v; want three, the second with two ranges", shards)
	}
	seen := map[string]bool{}
	for i, s := range shards {
		if seen[s.tag] {
			t.Fatalf("tag %s given twice", s.tag)
		}
		seen[s.tag] = true
		for _, base := range []string{QueueControl, QueueTimers, QueueName("sms", TierUrgent), QueueName("broadcast", TierBlue)} {
			q := laneQueue(s.tag, base)
			// asynq's keys are asynq:{<queue>}:…; all of a lane's share the slot.
			if slot := hashslot.Of("asynq:{" + q + "}:pending"); !s.has(slot) {
				t.Errorf("shard %d: queue %s is in slot %d, not the shard's", i, q, slot)
			}
			if got := sameLane(q, QueueName("sms", TierUrgent)); got != laneQueue(s.tag, QueueName("sms", TierUrgent)) {
				t.Errorf("sameLane(%s) = %s", q, got)
			}
		}
	}
	if got := sameLane("sms.red", "sms.urgent"); got != "sms.urgent" {
		t.Errorf("sameLane on one Redis = %s", got)
	}
	if got := laneQueue("", "sms.red"); got != "sms.red" {
		t.Errorf("laneQueue on one Redis = %s", got)
	}
}
