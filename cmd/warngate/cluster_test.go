package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/hashslot"
	"warngate/internal/rediscluster"
	"warngate/internal/redistest"
	"warngate/region"
	"warngate/warning"
)

// On a Redis Cluster of three masters with a replica each, warnings spread
// over the shards, each with its keys and its tasks on one. A shard that
// hangs stalls its own warnings only: the others are accepted and
// delivered meanwhile. A master killed in the middle of a fan-out is
// replaced by its replica, and every warning completes with nobody lost and
// nobody texted twice.
func TestServeOnRedisCluster(t *testing.T) {
	if !rediscluster.Available() {
		if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") != "" {
			t.Fatal("redis-server is missing: apt-get install -y redis-server")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server")
	}
	ctx := context.Background()
	dir := t.TempDir()
	c, err := rediscluster.Start(ctx, rediscluster.Options{Masters: 3, Replicas: 1, NodeTimeout: time.Second, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	defer cc.Close()

	// The shard to hang and then to kill holds warnings only: the keys
	// every warning shares (the roster, the list of warnings to plan, the
	// simulator's record, asynq's list of queues) are on the other two.
	// rediscluster splits the slots evenly, masters first.
	shardOf := func(slot int) int { return slot * 3 / hashslot.Slots }
	victim, best := 0, -1
	for sh := range 3 {
		// asynq's list of queues above all; its servers' and workers'
		// heartbeats if it can be helped.
		score := 0
		for key, weight := range map[string]int{"asynq:queues": 4, "asynq:servers": 1, "asynq:workers": 1} {
			if shardOf(hashslot.Of(key)) != sh {
				score += weight
			}
		}
		if score > best {
			victim, best = sh, score
		}
	}
	prefix := ""
	for n := 0; prefix == ""; n++ {
		p := fmt.Sprint("wg", n)
		if shardOf(hashslot.Of("{"+p+"}")) != victim && shardOf(hashslot.Of("{"+p+":sim}")) != victim {
			prefix = p
		}
	}
	master, replica := c.Nodes[victim], c.Nodes[3+victim]

	addr := freeAddr(t)
	base := "http://" + addr
	cfg := writeConfig(t, dir, "warngate.yaml", fmt.Sprintf(`
redis: {url: %q, prefix: %s}
roster: {demo: {residents_per_village: 1, households_per_village: 1}}
log: {level: warn}
simulator: {enabled: true, secret: s3cret-sim, report_delay: 0s, failure_rate: 0, unanswered_calls: 0}
`, c.URL(), prefix)+automation)
	env := []string{"WARNGATE_ADMIN_TOKEN=t0ken", "WARNGATE_LINK_KEY=0123456789abcdef0123", "WARNGATE_PUBLIC_URL=" + base}
	start(t, dir, env, "serve", "--no-workers", "--listen", addr, "--config", cfg)
	waitHTTP(t, base+"/readyz")
	// The workers start as the victim is made to hang: a worker that
	// meets a hung seed first waits past it.
	workers := []*proc{
		start(t, dir, env, "worker", "--metrics", "", "--config", cfg),
		start(t, dir, env, "worker", "--metrics", "", "--config", cfg),
	}

	tree := region.Kunming()
	var counties, towns []string
	city, _ := tree.Get("530100000000")
	for _, county := range city.Children {
		counties = append(counties, county.Code)
		for _, town := range county.Children {
			towns = append(towns, town.Code)
		}
	}
	onVictim := func(id string) bool { return shardOf(hashslot.Of(id)) == victim }
	// issue sends a red warning for an area, again while the API says it
	// was not accepted (its shard does not answer).
	issue := func(area string, accepted func(id string) bool) string {
		t.Helper()
		for range 20 {
			code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"`+area+`"`))
			if code == 202 && accepted(w["id"].(string)) {
				return w["id"].(string)
			}
			if code != 202 && code != 503 {
				t.Fatalf("POST %s: %d %v", area, code, w)
			}
		}
		t.Fatalf("no warning for %s was accepted where wanted", area)
		return ""
	}

	t0 := time.Now()
	// The victim's master and replica hang: warnings on the other shards
	// are accepted and delivered meanwhile; one on the victim is refused
	// with "send it again".
	if err := c.Pause(master); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(replica); err != nil {
		t.Fatal(err)
	}
	var meanwhile []string
	for i := range 2 {
		meanwhile = append(meanwhile, issue(towns[3+i], func(id string) bool { return !onVictim(id) }))
	}
	for _, id := range meanwhile {
		waitComplete(t, base, "t0ken", id, 60*time.Second)
	}
	t.Logf("delivered meanwhile at %s", time.Since(t0))
	for i, w := range workers {
		if !w.running() {
			t.Errorf("worker %d exited while a shard hung", i+1)
		}
	}
	refused := false
	for range 20 {
		code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"`+towns[6]+`"`))
		if code == 503 {
			refused = true
			break
		}
		if code != 202 || onVictim(w["id"].(string)) {
			t.Fatalf("a warning accepted on the hung shard: %d %v", code, w)
		}
	}
	if !refused {
		t.Error("no warning was refused in 20 tries: none fell on the hung shard")
	}
	if err := c.Resume(master); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(replica); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitOK(ctx, 30*time.Second); err != nil {
		t.Fatalf("the cluster did not recover: %v", err)
	}

	t.Logf("recovered at %s", time.Since(t0))
	// A red warning for each of six counties, placed over the shards by
	// their size; the victim's master is killed while they fan out. The
	// shard of the shared keys also carries every official's list of
	// warnings awaiting confirmation, which placement counts: with one
	// resident a village, officials outweigh residents and that shard may
	// get none, but the two others must share the counties.
	var ids []string
	anyShard := func(string) bool { return true }
	for _, county := range counties[:6] {
		ids = append(ids, issue(county, anyShard))
	}
	perShard := map[int]int{}
	for _, id := range ids {
		perShard[shardOf(hashslot.Of(id))]++
	}
	shared := shardOf(hashslot.Of("{" + prefix + "}"))
	for sh := range 3 {
		if sh != shared && perShard[sh] == 0 {
			loads, _ := cc.HGetAll(ctx, "{"+prefix+"}:placement").Result()
			t.Fatalf("six county warnings on the shards: %v; want some on shard %d (the shared keys are on %d; placement loads %v)", perShard, sh, shared, loads)
		}
	}
	t.Logf("issued at %s", time.Since(t0))
	c.Kill(master)
	nm := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer nm.Close()
	for i := 0; ; i++ {
		if role, _ := nm.Do(ctx, "ROLE").Slice(); len(role) > 0 && role[0] == "master" {
			break
		}
		if i == 600 {
			t.Fatal("the replica never took over")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// What the dead master took and did not pass on is gone, task states
	// among them: a task finished there may be running again on the new
	// master, under a lease nobody renews, which asynq gives back after
	// 30 s and a minute. Move the leases on and start a worker, whose
	// recoverer looks at once.
	t.Logf("took over at %s", time.Since(t0))
	expireLeases(t, nm)
	start(t, dir, env, "worker", "--metrics", "", "--config", cfg)
	for _, id := range ids {
		p := waitComplete(t, base, "t0ken", id, 90*time.Second)
		total := p["total"].(map[string]any)
		if total["planned"].(float64) == 0 || total["delivered"].(float64) != total["planned"].(float64) {
			t.Errorf("warning %s: %v; want every planned delivery delivered", id, total)
		}
	}

	t.Logf("complete at %s", time.Since(t0))
	// Nobody was handed to the provider twice.
	for _, id := range ids {
		seen, err := acceptedBySim(ctx, cc, "{"+prefix+":sim}:acc:"+id+"/")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for ch, rs := range seen {
			for r, k := range rs {
				n++
				if k > 1 {
					t.Errorf("warning %s: %s accepted %d times on %s", id, r, k, ch)
				}
			}
		}
		_, p := call(t, "GET", base+"/api/v1/warnings/"+id+"/progress", "t0ken", "")
		sent := 0.0
		for ch, v := range p["channels"].(map[string]any) {
			if ch != string(warning.Voice) {
				sent += v.(map[string]any)["planned"].(float64)
			}
		}
		if float64(n) < sent {
			t.Errorf("warning %s: the simulator accepted %d recipients of %v planned", id, n, sent)
		}
	}
	if t.Failed() {
		for _, n := range c.Nodes {
			t.Logf("node %s (master of %s)", n.Addr, strings.TrimSpace(n.Master))
		}
	}
}

// bench --cluster starts its own cluster when given no address, spreads a
// red warning for each county over its shards and prints its figures on
// the line the README documents.
func TestBenchCluster(t *testing.T) {
	if !rediscluster.Available() {
		if os.Getenv("WARNGATE_TEST_REDIS_REQUIRED") != "" {
			t.Fatal("redis-server is missing: apt-get install -y redis-server")
		}
		t.Skip("redis-server is not installed: apt-get install -y redis-server")
	}
	url, _ := realRedis(t)
	o, _ := redistest.Options(t, redistest.DBBenchSim)
	sim := fmt.Sprintf("redis://%s/%d", o.Addr, o.DB)
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--cluster", "--recipients", "20000", "--redis", url, "--sim-redis", sim, "--flush"},
		func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench exited %d: %s%s", code, out.String(), errs.String())
	}
	m := regexp.MustCompile(`(?m)^cluster_shards=(\d+) shard_balance_pct=([\d.]+) cluster_recipients_per_second=(\d+) single_recipients_per_second=(\d+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no figures line in:\n%s", out.String())
	}
	if m[1] != "3" {
		t.Errorf("cluster_shards=%s, want 3 (the cluster the bench starts)", m[1])
	}
	if m[3] == "0" || m[4] == "0" {
		t.Errorf("a run delivered nothing: %s", m[0])
	}
	// Every shard served some of the mix, and one holds the shared keys.
	if n := strings.Count(out.String(), "    shard 127.0.0.1:"); n != 3 {
		t.Errorf("%d shard lines, want 3:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "; and the keys no warning owns") {
		t.Errorf("no shard is said to hold the shared keys:\n%s", out.String())
	}
	for _, l := range regexp.MustCompile(`shard 127\.0\.0\.1:\d+: (\d+) commands`).FindAllStringSubmatch(out.String(), -1) {
		if l[1] == "0" {
			t.Errorf("a shard served no commands:\n%s", out.String())
		}
	}
	t.Log(m[0])
}
