package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"warngate/config"
	"warngate/dispatcher"
)

// When Redis goes away the gateway's metrics say so — Redis down, not
// ready, queues unreadable — instead of the queue series just vanishing.
func TestMetricsSayRedisIsDown(t *testing.T) {
	addr := redisProc(t, t.TempDir(), "redis")
	cfg := config.Default()
	cfg.Redis.URL = "redis://" + addr + "/0"
	cfg.LinkKey, cfg.AdminToken, cfg.Simulator.Secret = "0123456789abcdef0123", "t0ken", "s3cret-sim"
	on := true
	cfg.Simulator.Enabled = &on
	if err := cfg.Finish(); err != nil {
		t.Fatal(err)
	}
	w, err := preflight(cfg, roleServe, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	srv := httptest.NewServer(a.handler())
	defer srv.Close()
	scrape := func() string {
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	up := []string{"warngate_redis_up 1", "warngate_ready 1", "warngate_queue_stats_up 1"}
	for _, want := range up {
		if m := scrape(); !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("with Redis: no %q", want)
		}
	}
	// The client's pool holds a connection for each task the workers may
	// run at once, and says when commands wait for one all the same.
	workers := dispatcher.TaskWorkers(nil)
	if got := a.rdb.(*redis.Client).Options().PoolSize; got < workers {
		t.Errorf("Redis pool of %d connections for %d task workers", got, workers)
	}
	for _, want := range []string{"\nwarngate_redis_pool_waits_total ", "\nwarngate_redis_pool_wait_seconds_total ", "\nwarngate_redis_pool_connections "} {
		if m := scrape(); !strings.Contains(m, want) {
			t.Errorf("with Redis: no %q", strings.TrimSpace(want))
		}
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	c.ShutdownNoSave(context.Background())
	c.Close()
	m := scrape()
	for _, want := range []string{"warngate_redis_up 0", "warngate_ready 0", "warngate_queue_stats_up 0"} {
		if !strings.Contains(m, "\n"+want+"\n") {
			t.Errorf("without Redis: no %q", want)
		}
	}
}
