package wechat_test

import (
	"context"
	"testing"
	"time"

	"warngate/channels/wechat"
)

func TestRedisCache(t *testing.T) {
	rdb, prefix := testRedis(t)
	c := wechat.NewRedisCache(rdb, prefix)
	if c.Get("k") != nil || c.IsExist("k") {
		t.Fatal("empty cache has k")
	}
	if err := c.Set("k", "token-value", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, ok := c.Get("k").(string); !ok || v != "token-value" || !c.IsExist("k") {
		t.Errorf("get %v", c.Get("k"))
	}
	ctx := context.Background()
	if raw := rdb.Get(ctx, prefix+"k").Val(); raw != `"token-value"` {
		t.Errorf("stored %q: want JSON under the prefix, as the SDK's cache stores", raw)
	}
	if ttl := rdb.TTL(ctx, prefix+"k").Val(); ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Errorf("ttl %v", ttl)
	}
	// The SDK stores tokens for expires_in-1500 s: negative for short tokens.
	if err := c.Set("short", "t", -1300*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.TTL(ctx, prefix+"short").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("short-token ttl %v, want about a minute", ttl)
	}
	if err := c.Delete("k"); err != nil || c.IsExist("k") {
		t.Errorf("delete: %v", err)
	}
}
