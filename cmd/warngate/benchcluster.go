package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/rediscluster"
	"warngate/region"
)

// clusterBench runs the same mix of warnings on a Redis Cluster and on the
// single Redis, one after the other in the same run: a red warning for each
// of the city's counties at once.
type clusterBench struct {
	redisURL   string // the single Redis, a database the bench may empty
	clusterURL string // a cluster the bench may empty; empty starts one
	masters    int
	replicas   int
	simRedis   string // the simulator's Redis; empty: otherDB(redisURL)
	n          int    // deliveries of the mix, about
	trace      bool
	stdout     io.Writer
	stderr     io.Writer
}

// clusterRun is what one run of the mix measured.
type clusterRun struct {
	deliveries int64
	elapsed    time.Duration
	shards     []shardCommands // by master address; one for the single Redis
	gatewayCPU time.Duration   // this process's: gateway and simulator
}

type shardCommands struct {
	addr       string
	commands   int64
	cpu        time.Duration // the master's own count (INFO cpu)
	warnings   int
	deliveries int64
	shared     bool // holds the keys no warning owns (roster, users, limits)
}

// perDelivery is processor time per delivery of the run, in µs.
func (r clusterRun) perDelivery(d time.Duration) float64 { return perDelivery(d, r.deliveries) }

func (r clusterRun) rate() float64 { return float64(r.deliveries) / r.elapsed.Seconds() }

// balance is how far the busiest shard's share of the commands exceeds the
// even share, in percent of the even share.
func (r clusterRun) balance() float64 {
	var total, most int64
	for _, s := range r.shards {
		total += s.commands
		most = max(most, s.commands)
	}
	if total == 0 || len(r.shards) == 0 {
		return 0
	}
	even := float64(total) / float64(len(r.shards))
	return (float64(most) - even) / even * 100
}

func benchCluster(ctx context.Context, o clusterBench) error {
	url := o.clusterURL
	if url == "" {
		if !rediscluster.Available() {
			return fmt.Errorf("bench --cluster: redis-server not found: apt-get install -y redis-server, or give --cluster-url")
		}
		fmt.Fprintf(o.stdout, "starting a Redis Cluster: %d masters with %d replicas each, on loopback\n", o.masters, o.replicas)
		c, err := rediscluster.Start(ctx, rediscluster.Options{Masters: o.masters, Replicas: o.replicas})
		if err != nil {
			return fmt.Errorf("bench --cluster: %w", err)
		}
		defer c.Stop()
		url = c.URL()
	}
	tree := region.Kunming()
	city := benchCity(tree)
	villages := countVillages(tree, city)
	// Each resident gets an SMS, half of them a WeChat message too.
	perVillage := max(1, int(math.Ceil(float64(o.n)/1.5/float64(villages))))
	var counties []string
	if d, ok := tree.Get(city); ok {
		for _, c := range d.Children {
			counties = append(counties, c.Code)
		}
	}
	fmt.Fprintf(o.stdout, "mix: a red warning for each of %d counties at once, %d residents per village in %d villages\n", len(counties), perVillage, villages)

	cluster, err := o.run(ctx, url, perVillage, counties)
	if err != nil {
		return fmt.Errorf("on the cluster: %w", err)
	}
	o.report("cluster", cluster)
	single, err := o.run(ctx, o.redisURL, perVillage, counties)
	if err != nil {
		return fmt.Errorf("on the single Redis: %w", err)
	}
	o.report("single Redis", single)
	fmt.Fprintf(o.stdout, "cluster_shards=%d shard_balance_pct=%.1f cluster_recipients_per_second=%.0f single_recipients_per_second=%.0f\n",
		len(cluster.shards), cluster.balance(), cluster.rate(), single.rate())
	return nil
}

func (o clusterBench) report(name string, r clusterRun) {
	fmt.Fprintf(o.stdout, "  %-13s %d deliveries in %s: %.0f recipients/s\n", name+":", r.deliveries, r.elapsed.Round(time.Millisecond), r.rate())
	var total int64
	for _, s := range r.shards {
		total += s.commands
	}
	if len(r.shards) > 1 && total > 0 {
		for _, s := range r.shards {
			shared := ""
			if s.shared {
				shared = "; and the keys no warning owns"
			}
			fmt.Fprintf(o.stdout, "    shard %s: %d commands, %.1f%%; %d warnings, %d deliveries%s\n", s.addr, s.commands, float64(s.commands)*100/float64(total), s.warnings, s.deliveries, shared)
		}
		fmt.Fprintf(o.stdout, "    busiest shard %.1f%% above the even share\n", r.balance())
	}
	var redisCPU time.Duration
	for _, s := range r.shards {
		redisCPU += s.cpu
	}
	fmt.Fprintf(o.stdout, "    processor time per delivery: Redis %.1f µs (all masters), this process %.1f µs (gateway and simulator)\n",
		r.perDelivery(redisCPU), r.perDelivery(r.gatewayCPU))
}

// run issues the mix on a gateway over the Redis at url and waits until
// every delivery is recorded.
func (o clusterBench) run(ctx context.Context, url string, perVillage int, counties []string) (clusterRun, error) {
	none := 0
	// The simulator keeps its records in a Redis of its own, as a provider
	// does at home: the commands counted are the gateway's.
	simRedis := o.simRedis
	if simRedis == "" {
		var err error
		if simRedis, err = otherDB(o.redisURL); err != nil {
			return clusterRun{}, err
		}
	}
	g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: url, perVillage: perVillage, replicas: &none, answerCalls: true, simRedis: simRedis}, o.stderr)
	if err != nil {
		return clusterRun{}, err
	}
	defer g.stop()
	before, err := shardStats(ctx, g.a.rdb)
	if err != nil {
		return clusterRun{}, err
	}
	cpu0 := processCPU()
	start := time.Now()
	ids := make([]string, len(counties))
	errs := make([]error, len(counties))
	var wg sync.WaitGroup
	for i, c := range counties {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = g.post(c)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return clusterRun{}, err
		}
	}
	var run clusterRun
	placed := map[string]*shardCommands{}
	last := time.Now()
	for _, id := range ids {
		for {
			t, planned, err := g.a.ledger.Totals(ctx, id)
			if err != nil {
				return clusterRun{}, err
			}
			if planned && t.Done() {
				if t.Delivered != t.Planned {
					return clusterRun{}, fmt.Errorf("warning %s: %d of %d deliveries failed or expired", id, t.Planned-t.Delivered, t.Planned)
				}
				run.deliveries += t.Planned
				addr := "single"
				if cc, ok := g.a.rdb.(*redis.ClusterClient); ok {
					if n, err := cc.MasterForKey(ctx, "{"+id+"}"); err == nil {
						addr = n.Options().Addr
					}
				}
				if placed[addr] == nil {
					placed[addr] = &shardCommands{}
				}
				placed[addr].warnings++
				placed[addr].deliveries += t.Planned
				break
			}
			if o.trace && time.Since(last) > time.Second {
				last = time.Now()
				fmt.Fprintf(o.stderr, "%6.1fs warning %s: planned=%v sent=%d delivered=%d of %d\n", time.Since(start).Seconds(), id, planned, t.Sent, t.Delivered, t.Planned)
			}
			if time.Since(start) > 20*time.Minute {
				return clusterRun{}, fmt.Errorf("warning %s not done after 20 minutes: %+v", id, t)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	run.elapsed = time.Since(start)
	run.gatewayCPU = processCPU() - cpu0
	after, err := shardStats(ctx, g.a.rdb)
	if err != nil {
		return clusterRun{}, err
	}
	sharedAddr := ""
	if cc, ok := g.a.rdb.(*redis.ClusterClient); ok {
		if n, err := cc.MasterForKey(ctx, g.a.cfg.Redis.SharedPrefix("")); err == nil {
			sharedAddr = n.Options().Addr
		}
	}
	for addr, n := range after {
		sc := shardCommands{addr: addr, commands: n.commands - before[addr].commands, cpu: n.cpu - before[addr].cpu, shared: addr == sharedAddr}
		if p := placed[addr]; p != nil {
			sc.warnings, sc.deliveries = p.warnings, p.deliveries
		}
		run.shards = append(run.shards, sc)
	}
	slices.SortFunc(run.shards, func(a, b shardCommands) int { return strings.Compare(a.addr, b.addr) })
	return run, nil
}

// otherDB is the database before the given one on the same Redis (14 for
// 15), for the simulator.
func otherDB(url string) (string, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return "", err
	}
	db := opt.DB - 1
	if db < 0 {
		db = 1
	}
	u := strings.TrimSuffix(url, "/"+strconv.Itoa(opt.DB))
	if i := strings.LastIndex(u, "/"); i > len("redis://") {
		u = u[:i]
	}
	return u + "/" + strconv.Itoa(db), nil
}

// shardStat is a master's count of commands processed and of processor
// time used so far.
type shardStat struct {
	commands int64
	cpu      time.Duration
}

// shardStats reads each master's counts.
func shardStats(ctx context.Context, rdb redis.UniversalClient) (map[string]shardStat, error) {
	out := map[string]shardStat{}
	var mu sync.Mutex
	read := func(ctx context.Context, c *redis.Client) error {
		info, err := c.InfoMap(ctx, "stats", "cpu").Result()
		if err != nil {
			return err
		}
		var st shardStat
		st.commands, _ = strconv.ParseInt(info["Stats"]["total_commands_processed"], 10, 64)
		st.cpu = redisCPU(info["CPU"])
		mu.Lock()
		out[c.Options().Addr] = st
		mu.Unlock()
		return nil
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		return out, c.ForEachMaster(ctx, read)
	case *redis.Client:
		return out, read(ctx, c)
	}
	return nil, fmt.Errorf("bench: %T", rdb)
}

// flushAll empties the Redis at url: every master of a cluster, or the
// database of a single Redis.
func flushAll(ctx context.Context, url string) error {
	if strings.HasPrefix(url, "redis-cluster://") || strings.HasPrefix(url, "rediss-cluster://") {
		o, err := redis.ParseClusterURL(strings.Replace(url, "-cluster://", "://", 1))
		if err != nil {
			return err
		}
		c := redis.NewClusterClient(o)
		defer c.Close()
		return c.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return err
	}
	c := redis.NewClient(opt)
	defer c.Close()
	return c.FlushDB(ctx).Err()
}
