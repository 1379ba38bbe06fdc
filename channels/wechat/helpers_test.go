package wechat_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/warning"
)

// testDB is this package's Redis database, so packages testing in parallel
// do not see each other's keys.
const testDB = 6

// testRedis returns a client of the Redis at 127.0.0.1:6379 (or
// WARNGATE_TEST_REDIS), database 6, and a random key prefix whose keys are
// deleted after the test. Without a Redis it falls back to miniredis, unless
// WARNGATE_TEST_REDIS_REQUIRED=1.
func testRedis(t *testing.T) (redis.UniversalClient, string) {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "wgtest:" + hex.EncodeToString(b) + ":"
	addr := os.Getenv("WARNGATE_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	var opt *redis.Options
	if strings.Contains(addr, "://") {
		o, err := redis.ParseURL(addr)
		if err != nil {
			t.Fatalf("WARNGATE_TEST_REDIS: %v", err)
		}
		opt = o
	} else {
		opt = &redis.Options{Addr: addr}
	}
	opt.DB = testDB
	var rdb *redis.Client
	if err := redisReachable(opt); err != nil {
		if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") == "1" {
			t.Fatalf("Redis at %s: %v", addr, err)
		}
		mr := miniredis.RunT(t)
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr(), DB: testDB})
	} else {
		rdb = redis.NewClient(opt)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		rdb.Close()
	})
	return rdb, prefix
}

var (
	probeOnce sync.Once
	probeErr  error
)

// redisReachable pings the test Redis once per test binary.
func redisReachable(opt *redis.Options) error {
	probeOnce.Do(func() {
		o := *opt
		o.MaxRetries = -1
		o.DialTimeout = 300 * time.Millisecond
		c := redis.NewClient(&o)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		probeErr = c.Ping(ctx).Err()
	})
	return probeErr
}

// sink is a channels.ReportSink that resolves provider ids from receipts.
type sink struct {
	mu         sync.Mutex
	index      map[string]warning.Ref
	reports    []warning.Report
	calls      int
	failRecord error
}

func newSink() *sink { return &sink{index: map[string]warning.Ref{}} }

func (s *sink) learn(b *channels.Batch, rs []channels.Receipt) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if r.ProviderID != "" {
			s.index[r.ProviderID] = b.Ref(r.Index)
		}
	}
}

func (s *sink) Record(ctx context.Context, reps []warning.Report) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.failRecord != nil {
		return s.failRecord
	}
	s.reports = append(s.reports, reps...)
	return nil
}

func (s *sink) Resolve(ctx context.Context, provider string, ids []string) (map[string]warning.Ref, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	out := map[string]warning.Ref{}
	for _, id := range ids {
		if r, ok := s.index[id]; ok && provider == "wechat" {
			out[id] = r
		}
	}
	return out, nil
}

func (s *sink) got() []warning.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]warning.Report(nil), s.reports...)
}

func (s *sink) touched() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// waitFor polls cond until it holds or the test times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testWarning() *warning.Warning {
	return &warning.Warning{
		ID: "w1", Hazard: warning.Rainstorm, Level: warning.Red, Status: warning.StatusActual,
		Headline:    "五华区暴雨红色预警",
		Description: "预计未来3小时五华区将出现100毫米以上降雨。",
		Instruction: "停止户外活动，远离河道和低洼地带。",
		Issued:      time.Date(2026, 7, 1, 10, 0, 0, 0, time.FixedZone("CST", 8*3600)),
		Expires:     time.Now().Add(time.Hour),
		State:       warning.StateActive,
	}
}

func batch(ch warning.Channel, aud warning.Audience, addrs ...string) *channels.Batch {
	b := &channels.Batch{ID: "w1/" + string(ch) + "/0", Channel: ch, Notice: channels.NoticeFull, Warning: testWarning()}
	for i, a := range addrs {
		b.Recipients = append(b.Recipients, warning.Recipient{ID: "r" + string(rune('a'+i)), Address: a, Audience: aud, Division: "530102001001"})
	}
	return b
}

// logBuffer captures a logger's output for leak checks.
func logBuffer() (*slog.Logger, *bytes.Buffer, *sync.Mutex) {
	var buf bytes.Buffer
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), &buf, &mu
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// quiet is the logger of tests that do not look at logs.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func hc() *http.Client { return &http.Client{Timeout: 5 * time.Second} }
