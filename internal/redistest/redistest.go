// Package redistest gives each test package a Redis database of its own.
//
// Tests talk to a real Redis: WARNGATE_TEST_REDIS (default
// redis://127.0.0.1:6379). When that server does not answer and
// WARNGATE_TEST_REDIS_REQUIRED is unset, the tests fall back to the embedded
// miniredis server; CI sets WARNGATE_TEST_REDIS_REQUIRED=1 so that it always
// runs against the real one.
package redistest

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Databases used by each package's tests, so that packages tested in
// parallel never see each other's keys.
const (
	DBLedger       = 1
	DBDispatcher   = 2
	DBAPI          = 3
	DBCommand      = 4
	DBChannels     = 5
	DBWeChat       = 6
	DBE2E          = 7
	DBAccounts     = 8
	DBRoster       = 9
	DBDuty         = 10
	DBVoice        = 11
	DBSIPVoice     = 12
	DBAliyunVoice  = 13
	DBTencentVoice = 14
	// DBBenchSim is the provider simulator's of the benches cmd/warngate's
	// tests run (bench --sim-redis).
	DBBenchSim = 15
)

var (
	once    sync.Once
	opts    *redis.Options
	mini    *miniredis.Miniredis
	initErr error
)

// Options returns the connection options for database db, flushing it the
// first time a process asks, and whether the server is the embedded one.
func Options(t testing.TB, db int) (*redis.Options, bool) {
	t.Helper()
	once.Do(func() {
		url := os.Getenv("WARNGATE_TEST_REDIS")
		if url == "" {
			url = "redis://127.0.0.1:6379"
		}
		o, err := redis.ParseURL(url)
		if err != nil {
			initErr = err
			return
		}
		o.DB = db
		c := redis.NewClient(o)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := c.Ping(ctx).Err(); err != nil {
			if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") != "" {
				initErr = err
				return
			}
			mini = miniredis.NewMiniRedis()
			if err := mini.Start(); err != nil {
				initErr = err
				return
			}
			opts = &redis.Options{Addr: mini.Addr()}
			return
		}
		if err := c.FlushDB(ctx).Err(); err != nil {
			initErr = err
			return
		}
		opts = o
	})
	if initErr != nil {
		t.Fatalf("test redis: %v", initErr)
	}
	o := *opts
	return &o, mini != nil
}

// Client returns a client on the package's database, closed when the test ends.
func Client(t testing.TB, db int) *redis.Client {
	t.Helper()
	o, _ := Options(t, db)
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// Prefix returns a key prefix of the test's own, name and a suffix new on
// every run, so that a test run again (go test -count) starts from none of
// the keys its last run left in the package's database.
func Prefix(t testing.TB, name string) string {
	t.Helper()
	return name + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
}
