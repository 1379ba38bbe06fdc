package wechat

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/silenceper/wechat/v2/cache"
	"github.com/silenceper/wechat/v2/util"
)

// The SDK's HTTP hooks are package variables of its util package. They are
// installed once, and read what they need from these atomics, so that later
// configuration (a test's new server) never races with a request in flight.
var (
	sdkOnce   sync.Once
	sdkBase   atomic.Pointer[string]
	sdkClient atomic.Pointer[http.Client]
)

// configureSDK points the SDK's token requests at base (empty: WeChat
// itself) through hc. One process has one base URL: a later call with a
// different non-empty base replaces it, and says so.
func configureSDK(base string, hc *http.Client, log *slog.Logger) {
	sdkOnce.Do(func() {
		util.SetURIModifier(rewriteHost)
		util.DefaultHTTPClient = &http.Client{Transport: sdkTransport{}}
	})
	sdkClient.Store(hc)
	if base == "" {
		return
	}
	base = strings.TrimRight(base, "/")
	if old := sdkBase.Swap(&base); old != nil && *old != base {
		log.Warn("wechat: base URL replaced; one process has one WeChat base URL", "old", *old, "new", base)
	}
}

// rewriteHost is the SDK's URI modifier.
func rewriteHost(uri string) string {
	b := sdkBase.Load()
	if b == nil || *b == "" {
		return uri
	}
	for _, host := range []string{OfficialAccountHost, WorkHost} {
		if rest, ok := strings.CutPrefix(uri, host); ok {
			return *b + rest
		}
	}
	return uri
}

// sdkTransport sends the SDK's requests with the client given to New, so
// its timeout and transport apply.
type sdkTransport struct{}

func (sdkTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	hc := sdkClient.Load()
	if hc == nil {
		return nil, errors.New("wechat: SDK used before New")
	}
	return hc.Do(req)
}

// apiURL joins the configured base (or the real host) and a path.
func apiURL(base, host, path string) string {
	if base == "" {
		return host + path
	}
	return strings.TrimRight(base, "/") + path
}

// RedisCache implements the SDK's cache.Cache and cache.ContextCache over a
// go-redis v9 client (the SDK's own cache.Redis uses go-redis v8). Values
// are stored as JSON, as the SDK's cache does, under Prefix+key.
type RedisCache struct {
	rdb    redis.UniversalClient
	prefix string
	// Timeout bounds the calls made without a context (the SDK's token
	// code calls Get and Set without one).
	timeout time.Duration
}

var _ cache.ContextCache = (*RedisCache)(nil)

// NewRedisCache returns a cache whose keys start with prefix.
func NewRedisCache(rdb redis.UniversalClient, prefix string) *RedisCache {
	return &RedisCache{rdb: rdb, prefix: prefix, timeout: 3 * time.Second}
}

func (c *RedisCache) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

// Get implements cache.Cache; it returns nil when the key is missing or
// Redis does not answer.
func (c *RedisCache) Get(key string) any {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.GetContext(ctx, key)
}

// GetContext implements cache.ContextCache.
func (c *RedisCache) GetContext(ctx context.Context, key string) any {
	b, err := c.rdb.Get(ctx, c.prefix+key).Bytes()
	if err != nil {
		return nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil
	}
	return v
}

// minTTL is how long a value with no usable timeout is kept. The SDK stores
// tokens for expires_in minus 1500 s, which is negative when a server grants
// short tokens; such a token is still cached briefly rather than forever,
// and an invalid-token answer drops it.
const minTTL = time.Minute

// Set implements cache.Cache.
func (c *RedisCache) Set(key string, val any, timeout time.Duration) error {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.SetContext(ctx, key, val, timeout)
}

// SetContext implements cache.ContextCache.
func (c *RedisCache) SetContext(ctx context.Context, key string, val any, timeout time.Duration) error {
	b, err := json.Marshal(val)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = minTTL
	}
	return c.rdb.Set(ctx, c.prefix+key, b, timeout).Err()
}

// IsExist implements cache.Cache.
func (c *RedisCache) IsExist(key string) bool {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.IsExistContext(ctx, key)
}

// IsExistContext implements cache.ContextCache.
func (c *RedisCache) IsExistContext(ctx context.Context, key string) bool {
	n, err := c.rdb.Exists(ctx, c.prefix+key).Result()
	return err == nil && n > 0
}

// Delete implements cache.Cache.
func (c *RedisCache) Delete(key string) error {
	ctx, cancel := c.ctx()
	defer cancel()
	return c.DeleteContext(ctx, key)
}

// DeleteContext implements cache.ContextCache.
func (c *RedisCache) DeleteContext(ctx context.Context, key string) error {
	return c.rdb.Del(ctx, c.prefix+key).Err()
}

// dropScript deletes a key only while it still holds the given value.
var dropScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// dropToken deletes the cached token under key if it is still tok, so that
// twenty goroutines seeing the same expired token drop it once and a fresh
// token fetched meanwhile survives.
func (c *RedisCache) dropToken(ctx context.Context, key, tok string) error {
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	return dropScript.Run(ctx, c.rdb, []string{c.prefix + key}, string(b)).Err()
}
