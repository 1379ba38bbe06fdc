package hashslot

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/rediscluster"
)

// The slots Redis's documentation gives, and those a Redis server
// computes for keys with and without hash tags.
func TestOf(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":                   0x31C3 % Slots, // CRC16/XMODEM check value
		"foo":                         12182,
		"{user1000}.following":        Of("user1000"),
		"foo{}{bar}":                  Of("foo{}{bar}"),
		"foo{{bar}}zap":               Of("{bar"),
		"asynq:{{s4}sms.red}:pending": Of("{s4"),
		"wg:{mxa5cdsj3i42u}:d:sms":    Of("mxa5cdsj3i42u"),
	} {
		if got := Of(key); got != want {
			t.Errorf("Of(%q) = %d, want %d", key, got, want)
		}
	}
	if !rediscluster.Available() {
		if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") != "" {
			t.Fatal("redis-server is missing: apt-get install -y redis-server")
		}
		t.Skip("no redis-server to compare with")
	}
	// CLUSTER KEYSLOT answers in cluster mode only: a cluster of one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := rediscluster.Start(ctx, rediscluster.Options{Masters: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Stop()
	c := redis.NewClient(&redis.Options{Addr: cl.Addrs()[0]})
	defer c.Close()
	for _, key := range []string{"foo", "asynq:{{s4}sms.red}:pending", "wg:{mxa5cdsj3i42u}:w", "{wg}:unplanned", "asynq:queues", "a{b}c{d}", "x{}y", "{}", "{a"} {
		want, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := Of(key); got != int(want) {
			t.Errorf("Of(%q) = %d, Redis says %d", key, got, want)
		}
	}
}
