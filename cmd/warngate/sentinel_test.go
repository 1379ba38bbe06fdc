package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisProc starts a redis-server of its own on a free port; args are its
// configuration lines (a Sentinel's among them).
func redisProc(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") != "" {
			t.Fatal("redis-server is missing: apt-get install -y redis-server")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server")
	}
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	conf := filepath.Join(dir, name+".conf")
	body := fmt.Sprintf("port %s\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\nlogfile %s\n", port, dir, filepath.Join(dir, name+".log")) +
		strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{conf}
	if strings.HasPrefix(name, "sentinel") {
		args = append(args, "--sentinel")
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, name+".log"))
			t.Logf("%s log:\n%s", name, b)
		}
	})
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return addr
		}
		if i == 100 {
			t.Fatalf("%s never answered on %s", name, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Through Redis Sentinel, the gateway follows its Redis to the replica
// that the Sentinels promote: a red warning that was fanning out when the
// master changed completes, and the next warning is accepted and sent.
func TestServeFollowsSentinelFailover(t *testing.T) {
	dir := t.TempDir()
	master := redisProc(t, dir, "master")
	replica := redisProc(t, dir, "replica", "replicaof "+strings.Replace(master, ":", " ", 1))
	var sentinels []string
	for i := range 3 {
		sentinels = append(sentinels, redisProc(t, dir, fmt.Sprint("sentinel", i),
			"sentinel monitor wg "+strings.Replace(master, ":", " ", 1)+" 2",
			"sentinel down-after-milliseconds wg 1000",
			"sentinel failover-timeout wg 10000"))
	}
	s0 := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	defer s0.Close()
	ctx := context.Background()
	// Wait until the Sentinels know the replica and each other.
	for i := 0; ; i++ {
		reps, _ := s0.Replicas(ctx, "wg").Result()
		peers, _ := s0.Sentinels(ctx, "wg").Result()
		if len(reps) == 1 && len(peers) == 2 {
			break
		}
		if i == 300 {
			t.Fatalf("Sentinels never saw the replica and each other: %d replicas, %d peers", len(reps), len(peers))
		}
		time.Sleep(50 * time.Millisecond)
	}

	addr := freeAddr(t)
	base := "http://" + addr
	url := fmt.Sprintf("redis://%s/0?master_name=wg&addr=%s&addr=%s", sentinels[0], sentinels[1], sentinels[2])
	cfg := writeConfig(t, dir, "warngate.yaml", fmt.Sprintf(`
redis: {url: %q}
roster: {demo: {residents_per_village: 60}}
simulator: {enabled: true, secret: s3cret-sim, report_delay: 0s, failure_rate: 0}
`, url)+automation)
	env := []string{"WARNGATE_ADMIN_TOKEN=t0ken", "WARNGATE_LINK_KEY=0123456789abcdef0123", "WARNGATE_PUBLIC_URL=" + base}
	start(t, dir, env, "serve", "--no-workers", "--listen", addr, "--config", cfg)
	waitHTTP(t, base+"/readyz")
	start(t, dir, env, "worker", "--metrics", "", "--config", cfg)

	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102000000"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	checkEveryoneReached(t, base, "t0ken", waitComplete(t, base, "t0ken", w["id"].(string), 60*time.Second))

	// A warning issued while the Sentinels fail over: the replica is
	// promoted while the old master still takes writes, which it will drop
	// when it rejoins as a replica. Accepted must mean kept all the same.
	if err := s0.Failover(ctx, "wg").Err(); err != nil {
		t.Fatal(err)
	}
	var during []string
	for i := range 3 {
		code, w = call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(fmt.Sprintf(`"53010200100%d"`, i+1)))
		if code != 202 {
			t.Fatalf("POST during the failover: %d %v", code, w)
		}
		during = append(during, w["id"].(string))
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; ; i++ {
		m, err := s0.GetMasterAddrByName(ctx, "wg").Result()
		if err == nil && m[0]+":"+m[1] == replica {
			break
		}
		if i == 400 {
			t.Fatalf("the replica was never promoted: master %v", m)
		}
		time.Sleep(50 * time.Millisecond)
	}
	nm := redis.NewClient(&redis.Options{Addr: replica})
	defer nm.Close()
	if role, _ := nm.Do(ctx, "ROLE").Slice(); len(role) == 0 || role[0] != "master" {
		t.Fatalf("the promoted replica says it is %v", role)
	}
	// What the old master took after the promotion is gone, task states
	// among them: a task it finished is active again on the new master,
	// under a lease nobody renews. asynq gives it to a worker once the
	// lease is over (30 s) when its recoverer next looks (every minute, and
	// when a worker starts): move the leases on and start a second worker.
	old := redis.NewClient(&redis.Options{Addr: master})
	defer old.Close()
	for i := 0; ; i++ {
		if role, _ := old.Do(ctx, "ROLE").Slice(); len(role) > 0 && role[0] == "slave" {
			break // the old master takes no more writes
		}
		if i == 400 {
			t.Fatal("the old master never rejoined as a replica")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expireLeases(t, nm)
	start(t, dir, env, "worker", "--metrics", "", "--config", cfg)

	// The next warning, after the failover, goes to the new master too.
	code, w = call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102002001"`))
	if code != 202 {
		t.Fatalf("POST after the failover: %d %v", code, w)
	}
	for _, id := range append(during, w["id"].(string)) {
		waitComplete(t, base, "t0ken", id, 60*time.Second)
		if n, _ := nm.Exists(ctx, "wg:{"+id+"}:w").Result(); n != 1 {
			t.Errorf("accepted warning %s is not on the new master", id)
		}
	}
}

// expireLeases ends every asynq lease and batch lock at once, as if their
// time had run out.
func expireLeases(t *testing.T, rdb *redis.Client) {
	t.Helper()
	ctx := context.Background()
	keys, _ := rdb.Keys(ctx, "asynq:{*}:lease").Result()
	for _, k := range keys {
		ms, _ := rdb.ZRange(ctx, k, 0, -1).Result()
		for _, m := range ms {
			rdb.ZAdd(ctx, k, redis.Z{Score: 1, Member: m})
		}
	}
	locks, _ := rdb.Keys(ctx, "wg:{*}:b:*").Result()
	for _, k := range locks {
		fields, _ := rdb.HGetAll(ctx, k).Result()
		for f, v := range fields {
			if gen, _, ok := strings.Cut(v, "|"); ok && strings.HasPrefix(f, "lock:") {
				rdb.HSet(ctx, k, f, gen+"|1")
			}
		}
	}
}
