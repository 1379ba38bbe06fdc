package wechat_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/channels/wechat"
	"warngate/channels/wechat/fake"
	"warngate/internal/channeltest"
	"warngate/internal/redistest"
	"warngate/warning"
)

// testDB is this package's Redis database, so packages testing in parallel
// do not see each other's keys.
const testDB = redistest.DBWeChat

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

// oaBatch is the sample warning's batch for residents following the
// official account at openids.
func oaBatch(openids ...string) *channels.Batch {
	return channeltest.ChannelBatch(warning.WeChat, warning.Residents, openids...)
}

// workBatch is the sample warning's batch for township officials at WeCom
// userids.
func workBatch(userids ...string) *channels.Batch {
	return channeltest.ChannelBatch(warning.WeCom, warning.TownshipOfficials, userids...)
}

// eventSink is a sink that finds msgid 200163836, the one of eventXML, as
// ref.
func eventSink(ref warning.Ref) *channeltest.Sink {
	return &channeltest.Sink{Provider: "wechat", IDs: map[string]warning.Ref{"200163836": ref}}
}

// startFake starts the fake WeChat and WeCom APIs, for the accounts of
// oaConfig and workConfig unless cfg names others, closed when t ends.
func startFake(t *testing.T, cfg fake.Config) (*fake.Server, *httptest.Server) {
	t.Helper()
	if cfg.AppID == "" {
		cfg.AppID, cfg.AppSecret, cfg.Token, cfg.TemplateIDs = appID, appSecret, srvToken, []string{"TPL-warning"}
	}
	if cfg.CorpID == "" {
		cfg.CorpID, cfg.CorpSecret, cfg.AgentID = corpID, corpSecret, agentID
	}
	f := fake.New(cfg, hc(), quiet())
	t.Cleanup(f.Close)
	return f, channeltest.Serve(t, f)
}

// tokenThen answers requests for path, where an access token is fetched,
// with the answer tok, and hands the others to send.
func tokenThen(path, tok string, send http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			io.WriteString(w, tok)
			return
		}
		send(w, r)
	}
}

// oaAPI starts a stand-in for the official account's API that hands out
// the access token tok and has send answer every other request.
func oaAPI(t *testing.T, tok string, send http.HandlerFunc) *httptest.Server {
	return channeltest.Serve(t, tokenThen("/cgi-bin/token", `{"access_token":"`+tok+`","expires_in":7200}`, send))
}

// workAPI starts a stand-in for the WeCom API that hands out the access
// token T and has send answer every other request.
func workAPI(t *testing.T, send http.HandlerFunc) *httptest.Server {
	return channeltest.Serve(t, tokenThen("/cgi-bin/gettoken", `{"errcode":0,"errmsg":"ok","access_token":"T","expires_in":7200}`, send))
}

// hangUp closes the connection without an answer.
func hangUp(w http.ResponseWriter, _ *http.Request) {
	conn, _, _ := w.(http.Hijacker).Hijack()
	conn.Close()
}

// newOA returns the official account of cfg, logging to log.
func newOA(t *testing.T, cfg wechat.OfficialAccountConfig, rdb redis.UniversalClient, log *slog.Logger) *wechat.OfficialAccount {
	t.Helper()
	oa, err := wechat.NewOfficialAccount(cfg, hc(), rdb, log)
	if err != nil {
		t.Fatal(err)
	}
	return oa
}

// newWork returns the WeCom app of cfg, logging to log.
func newWork(t *testing.T, cfg wechat.WorkConfig, rdb redis.UniversalClient, log *slog.Logger) *wechat.Work {
	t.Helper()
	wk, err := wechat.NewWork(cfg, hc(), rdb, log)
	if err != nil {
		t.Fatal(err)
	}
	return wk
}

// logs is what a logger of newLog wrote, for leak checks.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns what was written so far.
func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newLog returns a logger of every level and what it writes.
func newLog() (*slog.Logger, *logs) {
	l := &logs{}
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})), l
}

// checkHidden fails t if any of secrets is in err or in the log.
func checkHidden(t *testing.T, err error, log *logs, secrets ...string) {
	t.Helper()
	for _, secret := range secrets {
		if (err != nil && strings.Contains(err.Error(), secret)) || strings.Contains(log.String(), secret) {
			t.Errorf("%q leaked:\nerr: %v\nlog: %s", secret, err, log)
		}
	}
}

// quiet is the logger of tests that do not look at logs.
func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func hc() *http.Client { return &http.Client{Timeout: 5 * time.Second} }
