package dispatcher

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/config"
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

// On a Redis Cluster, asynq's heartbeat writes to the shard of its list of
// servers, and a server's processor waits for its heartbeater to take each
// task it starts: a heartbeat that waited out a hung shard would stall
// every lane's servers. Against a node that takes connections and never
// answers, the commands on asynq's server keys give up within a second or
// two, while the client's read timeout is a minute.
func TestServerStateGivesUpOnAHungShard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	rdb, err := config.Redis{URL: "redis-cluster://" + ln.Addr().String() + "?read_timeout=60s&max_retries=0"}.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	newLanes(rdb, "{wg}")

	ctx := context.Background()
	for _, cmd := range []redis.Cmder{
		redis.NewIntCmd(ctx, "zadd", "asynq:servers", 1, "asynq:servers:{h:1:x}"),
		redis.NewIntCmd(ctx, "zadd", "asynq:workers", 1, "asynq:workers:{h:1:x}"),
		redis.NewCmd(ctx, "evalsha", "0123456789abcdef0123456789abcdef01234567", 2, "asynq:servers:{h:1:x}", "asynq:workers:{h:1:x}"),
	} {
		done := make(chan error, 1)
		go func() { done <- rdb.Process(ctx, cmd) }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%v: answered by a node that says nothing", cmd.Args())
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%v still waits on the hung node after 20 s", cmd.Args())
		}
	}
	// Other commands keep the deadline they are given.
	if !isServerState(redis.NewCmd(ctx, "evalsha", "x", 1, "asynq:servers:{h:1:x}")) || isServerState(redis.NewCmd(ctx, "zadd", "asynq:{sms}:pending")) ||
		isServerState(redis.NewCmd(ctx, "evalsha", "x", 1, "asynq:{s0}sms:lease")) {
		t.Error("isServerState takes the wrong commands")
	}
}
