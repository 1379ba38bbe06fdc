package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	"warngate/channels/kannel"
	"warngate/channels/sim"
	"warngate/config"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// bench fans one city-wide red warning out to about N deliveries on a real
// Redis through the simulators, end to end over HTTP, and compares it with
// one asynq task per recipient.
func bench(args []string, env func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", firstNonEmpty(env("WARNGATE_REDIS_URL"), "redis://127.0.0.1:6379/15"), "a Redis database the bench may empty (it refuses a database that holds keys unless --flush)")
	n := fs.Int("recipients", 1_000_000, "deliveries to fan out")
	naive := fs.Int("naive", 50_000, "recipients for the one-task-per-recipient comparison; 0 skips it")
	flush := fs.Bool("flush", false, "empty the database first even if it holds keys")
	samples := fs.Int("samples", 100, "small red warnings issued during and after the fan-out to measure time to the first official")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the fan-out (or of --providers) to this file")
	trace := fs.Bool("trace", false, "print progress twice a second to stderr")
	providersOnly := fs.Bool("providers", false, "measure the SMS adapters against their fakes and the callback endpoint instead (recipients default 100000)")
	logLevel := fs.String("log-level", "error", "gateway log level during the bench")
	kannelN := fs.Int("kannel-n", 20_000, "with --providers: about how many SMS go to 五华区's residents through a real Kannel, many numbers a call; 0 skips Kannel")
	kannelPerCall := fs.Int("kannel-per-call", kannel.DefaultNumbersPerCall, "with --providers: numbers per sendsms call (kannel.numbers_per_call)")
	kannelSingleN := fs.Int("kannel-single-n", 5_000, "with --providers: about how many SMS then go through Kannel one sendsms call each (kannel.single), for comparison; 0 skips it")
	kannelBoxN := fs.Int("kannel-box-n", 20_000, "with --providers: about how many SMS then go through Kannel over a connection to bearerbox's smsbox-port (kannel.transport: box); 0 skips it")
	kannelOnly := fs.Bool("kannel-only", false, "with --providers: measure Kannel only")
	voiceOfficials := fs.Int("voice-officials", 500, "with --providers: officials called through the Alibaba Cloud voice fake, each answering and pressing 1; 0 skips the voice line")
	voiceLines := fs.Int("voice-lines", 100, "with --providers: the voice account's lines (calls at once)")
	voiceCall := fs.Duration("voice-call", 15*time.Second, "with --providers: how long each call lasts")
	voiceScale := fs.Float64("voice-scale", 1, "with --providers: run the calls this many times faster and give the figures back in the product's time")
	voiceOnly := fs.Bool("voice-only", false, "with --providers: measure the voice line only")
	// With two smsboxes bearerbox spreads the delivery reports over both:
	// the reports come faster, the sendsms calls, served by the first,
	// slower, for the same processor time per SMS.
	kannelSmsboxes := fs.Int("kannel-smsboxes", 1, "with --providers: smsboxes connected to Kannel's bearerbox (sendsms goes to the first; delivery reports come through all)")
	chunk := fs.Int("chunk", 0, "recipients per provider call on every channel (dispatch.chunk_size; with --providers, SMS only); 0 keeps the default")
	uncertain := fs.Int("uncertain-bound", 0, "with --providers: recipients of a channel a process may have at once with a provider that cannot be asked (dispatch.uncertain_bound); 0 keeps the default")
	batches := fs.Int("concurrency", 0, "batches in flight per channel on every channel of the fan-out (dispatch.concurrency); 0 keeps the default")
	reportTurns := fs.Int("report-concurrency", 0, "report requests recorded at once (dispatch.report_concurrency); 0 keeps the default")
	crash := fs.Bool("crash", false, "kill a worker process with SIGKILL in the middle of a city-wide fan-out, once per run, and count who was sent twice and how long the killed worker's tasks waited (recipients default 544650)")
	kills := fs.Int("kills", 5, "with --crash: runs, one kill each")
	workers := fs.Int("workers", 2, "with --crash: worker processes during the fan-out")
	noQuery := fs.Bool("no-query", false, "with --crash: the simulator cannot be asked what it accepted, as most SMS gateways")
	// 32 sendsms calls at once (8 batches × 4) keep smsbox busy with room for
	// its delivery reports; more take the SMS no faster and report slower.
	kannelConcurrency := fs.Int("kannel-concurrency", kannel.DefaultConcurrency, "with --providers: the Kannel adapter's sendsms calls at once per batch (kannel.concurrency)")
	kannelBatches := fs.Int("kannel-batches", 8, "with --providers: SMS batches the workers send through Kannel at once (dispatch.concurrency.sms)")
	ackOnly := fs.Bool("ack", false, "measure how late 叫应 reminders and escalations come instead, with a short red deadline")
	ackWarnings := fs.Int("ack-warnings", 100, "with --ack: red warnings for single villages, issued over --ack-spread")
	ackSpread := fs.Duration("ack-spread", 10*time.Second, "with --ack: the time over which the village warnings are issued")
	ackDeadline := fs.Duration("ack-deadline", 4*time.Second, "with --ack: the red rule's ack_deadline")
	ackTries := fs.Int("ack-tries", 2, "with --ack: the red rule's ack_tries")
	ackCityWide := fs.Bool("ack-citywide", true, "with --ack: issue a city-wide red warning first")
	rosterOnly := fs.Bool("roster", false, "measure the roster instead: import --residents and --officials as one CSV through the API, and Redis's bytes per person")
	residents := fs.Int("residents", 1_000_000, "with --roster: residents in the imported roster")
	officials := fs.Int("officials", 50_000, "with --roster: officials in the imported roster")
	idle := fs.Bool("idle", false, "measure an idle gateway too, after the fan-out: Redis commands/s and processor time once the workers stopped for want of work, and a warning's pickup by stopped workers")
	idleOnly := fs.Bool("idle-only", false, "measure only the idle gateway (a small demo roster)")
	idleStop := fs.Duration("idle-stop", 10*time.Second, "dispatch.idle_stop of the bench's workers: 0 never stops them")
	idleWindow := fs.Duration("idle-window", 30*time.Second, "with --idle: how long the idle gateway is measured")
	idleScrape := fs.Duration("idle-scrape", 15*time.Second, "with --idle: read the gateway's metrics this often while it is measured, as Prometheus scrapes /metrics (deploy/prometheus: 15s); 0 never")
	idlePickups := fs.Int("idle-pickups", 3, "with --idle: warnings issued one at a time to the stopped workers")
	clusterOnly := fs.Bool("cluster", false, "measure a Redis Cluster instead: a red warning for each county at once (--recipients in all), on a cluster (--cluster-url, or one the bench starts from redis-server on loopback) and then on the single Redis (--redis)")
	clusterURL := fs.String("cluster-url", "", "with --cluster: a Redis Cluster the bench may empty, as redis.url takes it (redis-cluster://host:port?addr=…); empty starts one")
	clusterMasters := fs.Int("cluster-masters", 3, "with --cluster and no --cluster-url: masters of the cluster the bench starts")
	clusterReplicas := fs.Int("cluster-replicas", 0, "with --cluster and no --cluster-url: replicas of each master")
	simRedis := fs.String("sim-redis", "", "with --cluster: a Redis database the bench may empty for the provider simulator's records (simulator.redis); empty takes the database before --redis's on its server")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *batches < 0 || *batches > 256 {
		return errors.New("--concurrency: 1 to 256 batches per channel, or 0 for dispatch.concurrency's default")
	}
	if *idleStop < 0 || (*idleStop > 0 && *idleStop < time.Second) || *idleWindow < time.Second || *idlePickups < 0 || *idleScrape < 0 {
		return errors.New("--idle-stop: 0 or at least 1s; --idle-window: at least 1s; --idle-pickups: 0 or more; --idle-scrape: 0 or more")
	}
	if *n < 1000 {
		return errors.New("--recipients: use at least 1000")
	}
	if *kannelN < 0 || *kannelSingleN < 0 || *kannelBoxN < 0 {
		return errors.New("--kannel-n, --kannel-single-n and --kannel-box-n: use 0 to skip, or a number of recipients such as 20000")
	}
	if *kannelSmsboxes < 1 || *kannelSmsboxes > 8 {
		return errors.New("--kannel-smsboxes: use 1 to 8")
	}
	if *kannelPerCall < 1 || *kannelPerCall > kannel.MaxNumbersPerCall {
		return fmt.Errorf("--kannel-per-call: use 1 to %d", kannel.MaxNumbersPerCall)
	}
	if *kannelConcurrency < 1 || *kannelConcurrency > 256 || *kannelBatches < 1 || *kannelBatches > 256 {
		return errors.New("--kannel-concurrency and --kannel-batches: use 1 to 256")
	}
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	ctx := context.Background()
	probe := redis.NewClient(opt)
	size, err := probe.DBSize(ctx).Result()
	if err != nil {
		probe.Close()
		return fmt.Errorf("redis %s: %w", *redisURL, err)
	}
	if size > 0 && !*flush {
		probe.Close()
		return fmt.Errorf("redis database %d holds %d keys; the bench empties its database: point --redis at an empty one or pass --flush", opt.DB, size)
	}
	probe.FlushDB(ctx)
	probe.Close()
	if *ackOnly {
		if *ackWarnings < 1 || *ackTries < 1 || *ackTries > 10 || *ackDeadline < time.Second || *ackSpread < 0 {
			return errors.New("--ack-warnings: at least 1; --ack-tries: 1 to 10; --ack-deadline: at least 1s; --ack-spread: not negative")
		}
		return benchAck(ctx, ackBench{redisURL: *redisURL, warnings: *ackWarnings, spread: *ackSpread,
			deadline: *ackDeadline, tries: *ackTries, cityWide: *ackCityWide}, stdout, stderr)
	}
	if *rosterOnly {
		if *residents < 0 || *officials < 1000 {
			return errors.New("--residents: use 0 or more; --officials: use at least 1000")
		}
		return benchRoster(ctx, rosterBench{redisURL: *redisURL, residents: *residents, officials: *officials}, stdout, stderr)
	}
	if *clusterOnly {
		count := *n
		if !isSet(fs, "recipients") {
			count = 300_000
		}
		if *clusterMasters < 1 || *clusterMasters > 16 || *clusterReplicas < 0 || *clusterReplicas > 2 {
			return errors.New("--cluster-masters: 1 to 16; --cluster-replicas: 0 to 2")
		}
		return benchCluster(ctx, clusterBench{redisURL: *redisURL, clusterURL: *clusterURL, masters: *clusterMasters,
			replicas: *clusterReplicas, simRedis: *simRedis, n: count, trace: *trace, stdout: stdout, stderr: stderr})
	}
	if *crash {
		count := *n
		if !isSet(fs, "recipients") {
			count = 544_650
		}
		if *kills < 1 || *workers < 2 {
			return errors.New("--kills: at least 1; --workers: at least 2, so that one survives the kill")
		}
		return benchCrash(ctx, crashBench{redisURL: *redisURL, n: count, kills: *kills, workers: *workers, noQuery: *noQuery,
			killPoints: []float64{0.2, 0.35, 0.5, 0.65, 0.8}, stdout: stdout, stderr: stderr})
	}
	if *providersOnly {
		count := *n
		if !isSet(fs, "recipients") {
			count = 100_000
		}
		if *cpuprofile != "" {
			stop, err := startCPUProfile(*cpuprofile)
			if err != nil {
				return err
			}
			defer stop()
		}
		return benchProviders(ctx, providersBench{redisURL: *redisURL, n: count,
			kannelN: *kannelN, kannelPerCall: *kannelPerCall, kannelSingleN: *kannelSingleN, kannelBoxN: *kannelBoxN, kannelOnly: *kannelOnly, kannelSmsboxes: *kannelSmsboxes,
			kannelConcurrency: *kannelConcurrency, kannelBatches: *kannelBatches, smsChunk: *chunk, uncertainBound: *uncertain, voiceOnly: *voiceOnly,
			voice: voiceBench{redisURL: *redisURL, officials: *voiceOfficials, lines: *voiceLines, call: *voiceCall, scale: *voiceScale}}, stdout, stderr)
	}
	// A fan-out allocates briskly and keeps little: collect less often, as a
	// deployment would with GOGC=400 (see the README).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	tree := region.Kunming()
	villages := countVillages(tree, benchCity(tree))
	// A red warning reaches each resident by SMS, and half of them by WeChat too.
	perVillage := int(math.Ceil(float64(*n) / 1.5 / float64(villages)))
	if *idleOnly {
		perVillage = 5
	}

	cfg := config.Default()
	cfg.Approval.AdminTokenBypass = []string{"orange", "red"} // the bench is automation
	cfg.Redis.URL = *redisURL
	cfg.Roster.Demo = config.DemoRoster{ResidentsPerVillage: perVillage, WeChatShare: 0.5, HouseholdsPerVillage: 3}
	cfg.Simulator.ReportDelay = 0
	cfg.Simulator.FailureRate = 0
	// Every official answers the shipped red policy's calls (the bench
	// counts what was not delivered as lost), and presses 1 at once. A
	// simulated call ends 2 s after the key (the thanks); with the default
	// 3 s before it, the 300 township officials called at the start of the
	// fan-out finished 5.2 s after accept, and a faster fan-out's figure
	// was the calls' length, not the gateway's.
	cfg.Simulator.UnansweredCalls = new(float64)
	cfg.Simulator.CallKeyDelay = config.Duration(benchCallKeyDelay)
	cfg.Simulator.Secret = "bench"
	on := true
	cfg.Simulator.Enabled = &on
	cfg.LinkKey = "bench-link-key-0123456789"
	cfg.AdminToken = "bench"
	cfg.Log.Level = *logLevel
	cfg.Dispatch.IdleStop = config.Duration(*idleStop)
	if *batches != 0 {
		cfg.Dispatch.Concurrency = map[string]int{}
		for _, ch := range warning.Channels {
			cfg.Dispatch.Concurrency[string(ch)] = *batches
		}
	}
	if *reportTurns > 0 {
		cfg.Dispatch.ReportConcurrency = *reportTurns
	}
	if *chunk > 0 {
		cfg.Dispatch.ChunkSize = map[string]int{}
		for _, ch := range warning.Channels {
			cfg.Dispatch.ChunkSize[string(ch)] = *chunk
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg.Listen = ln.Addr().String()
	cfg.PublicURL = ""
	if err := cfg.Finish(); err != nil {
		return err
	}
	w, err := preflight(cfg, roleServe, nil)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log, stderr)
	a, err := newApp(cfg, w, log)
	if err != nil {
		return err
	}
	defer a.close()
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer stopHTTP(srv)

	// Time to the first official: when a warning's first official batch reaches the provider.
	var mu sync.Mutex
	accepted := map[string]time.Time{}
	firstOfficial := map[string]time.Duration{}
	a.sim.OnAccept(func(b *channels.Batch, at time.Time) {
		if len(b.Recipients) == 0 || !b.Recipients[0].Audience.Official() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if _, done := firstOfficial[b.Warning.ID]; !done {
			firstOfficial[b.Warning.ID] = at.Sub(b.Warning.Accepted)
		}
	})

	wctx, stopWorkers := context.WithCancel(ctx)
	workersDone := make(chan error, 1)
	go func() { workersDone <- a.dispatcher.Run(wctx) }()
	defer func() { stopWorkers(); <-workersDone }()

	hc := &http.Client{Timeout: 30 * time.Second}
	base := "http://" + cfg.Listen
	post := func(area string) (string, time.Time, error) {
		body := fmt.Sprintf(`{"hazard":"rainstorm","level":"red","areas":[%q],"headline":"暴雨红色预警（性能测试）","description":"bench","status":"actual","expires":%q}`,
			area, time.Now().Add(2*time.Hour).Format(time.RFC3339))
		req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/warnings", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench")
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return "", time.Time{}, err
		}
		defer resp.Body.Close()
		var out struct {
			ID       string    `json:"id"`
			Accepted time.Time `json:"accepted"`
		}
		if resp.StatusCode != http.StatusAccepted {
			b, _ := io.ReadAll(resp.Body)
			return "", time.Time{}, fmt.Errorf("POST /api/v1/warnings: %s: %s", resp.Status, b)
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return "", time.Time{}, err
		}
		return out.ID, out.Accepted, nil
	}

	if *cpuprofile != "" {
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	official := func(id string) (time.Duration, bool) {
		mu.Lock()
		defer mu.Unlock()
		d, ok := firstOfficial[id]
		return d, ok
	}
	if *idleOnly {
		f, err := benchIdle(ctx, a, a.rdb, *idleWindow, *idleStop, *idleScrape, *idlePickups, post, official, stdout)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, f.line())
		return nil
	}
	memBefore := usedMemory(ctx, a.rdb)
	cpuBefore := readCPU(ctx, a.rdb, nil)
	poolBefore := *a.rdb.PoolStats()
	perChannel := dispatcher.DefaultConcurrency
	if *batches > 0 {
		perChannel = *batches
	}
	fmt.Fprintf(stdout, "fan-out: city-wide red warning, %d residents per village in %d villages, %d batches at once per channel, Redis %s\n",
		perVillage, villages, perChannel, cfg.Redis.Redacted())
	start := time.Now()
	bigID, _, err := post(benchCity(tree))
	if err != nil {
		return err
	}
	mu.Lock()
	accepted[bigID] = start
	mu.Unlock()

	// Small red warnings for single villages while the big one fans out.
	var villageCodes []string
	tree.Walk(benchCity(tree), func(d *region.Division) bool {
		if d.Level == region.Village {
			villageCodes = append(villageCodes, d.Code)
		}
		return true
	})
	var small []string
	var issued atomic.Int64
	sampleDone := make(chan struct{})
	fanoutDone := make(chan struct{})
	go func() {
		defer close(sampleDone)
		for i := 0; i < *samples; i++ {
			select {
			case <-fanoutDone:
				if i >= *samples/2 {
					return
				}
			default:
			}
			id, at, err := post(villageCodes[(i*97)%len(villageCodes)])
			if err != nil {
				fmt.Fprintln(stderr, "bench: sample warning:", err)
				continue
			}
			mu.Lock()
			accepted[id] = at
			mu.Unlock()
			small = append(small, id)
			issued.Add(1)
			time.Sleep(100 * time.Millisecond)
		}
	}()

	var total int64
	lastTrace := time.Now()
	for {
		t, planned, err := a.ledger.Totals(ctx, bigID)
		if err != nil {
			return err
		}
		if *trace && time.Since(lastTrace) >= 500*time.Millisecond {
			lastTrace = time.Now()
			q, _ := a.dispatcher.Backlog(ctx)
			fmt.Fprintf(stderr, "%6.1fs planned=%v sent=%d delivered=%d tasks=%d\n", time.Since(start).Seconds(), planned, t.Sent, t.Delivered, q)
		}
		if planned && t.Done() {
			total = t.Planned
			if t.Delivered != t.Planned {
				return fmt.Errorf("bench: %d of %d deliveries failed or expired: %+v%s", t.Planned-t.Delivered, t.Planned, t, failureReasons(ctx, a.ledger, bigID))
			}
			break
		}
		if time.Since(start) > 30*time.Minute {
			return fmt.Errorf("bench: fan-out not done after 30 minutes: %+v", t)
		}
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cpu := readCPU(ctx, a.rdb, nil).sub(cpuBefore)
	pool := a.rdb.PoolStats()
	close(fanoutDone)
	<-sampleDone
	// Let the small warnings finish, then measure memory with the queue drained.
	for _, id := range small {
		for {
			t, planned, _ := a.ledger.Totals(ctx, id)
			if *trace && time.Since(lastTrace) >= 500*time.Millisecond {
				lastTrace = time.Now()
				q, _ := a.dispatcher.Backlog(ctx)
				fmt.Fprintf(stderr, "%6.1fs planned=%v sent=%d delivered=%d tasks=%d\n", time.Since(start).Seconds(), planned, t.Sent, t.Delivered, q)
			}
			if planned && t.Done() {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitDrained(ctx, a)
	// What the simulator keeps (its record of what it accepted) is the
	// provider's, not the gateway's: a real provider keeps it at home.
	dropKeys(ctx, a.rdb, cfg.Redis.Prefix+":sim:*")
	var smallTotal int64
	for _, id := range small {
		t, _, _ := a.ledger.Totals(ctx, id)
		smallTotal += t.Planned
	}
	memAfter := usedMemory(ctx, a.rdb)
	rate := float64(total) / elapsed.Seconds()
	bytesPer := float64(memAfter-memBefore) / float64(total+smallTotal)

	mu.Lock()
	var lat []time.Duration
	for _, d := range firstOfficial {
		lat = append(lat, d)
	}
	mu.Unlock()
	slices.Sort(lat)
	p50, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
	if *trace {
		traceSlowest(stderr, firstOfficial, accepted, &mu, bigID, start)
	}

	fmt.Fprintf(stdout, "  deliveries:            %d in %s\n", total, elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  end to end:            %.0f recipients/s (HTTP accept to every delivery report recorded)\n", rate)
	fmt.Fprintf(stdout, "  redis memory:          %.1f bytes per delivery (%d deliveries kept, queue drained)\n", bytesPer, total+smallTotal)
	fmt.Fprintf(stdout, "  first official:        p50 %s, p99 %s over %d warnings (%d issued during the fan-out)\n",
		p50.Round(time.Millisecond), p99.Round(time.Millisecond), len(lat), issued.Load())
	fmt.Fprintf(stdout, "  redis connections:     %d open, %d waits for one (%s in all)\n", pool.TotalConns,
		pool.WaitCount-poolBefore.WaitCount, time.Duration(pool.WaitDurationNs-poolBefore.WaitDurationNs).Round(time.Millisecond))
	redisUS, gatewayUS := perDelivery(cpu.redis, total), perDelivery(cpu.gateway, total)
	fmt.Fprintf(stdout, "  processor time:        Redis %.1f µs a delivery (its one thread doing nothing else: %.0f recipients/s), gateway and simulator %.1f µs\n",
		redisUS, 1e6/redisUS, gatewayUS)
	machine := cpu.share(redisHere(ctx, a.rdb))
	fmt.Fprintf(stdout, "  machine:               %s\n", machine)
	var idleLine string
	if *idle {
		// Warnings issued to idle workers are reported apart, not in the
		// p99 above.
		f, err := benchIdle(ctx, a, a.rdb, *idleWindow, *idleStop, *idleScrape, *idlePickups, post, official, stdout)
		if err != nil {
			return err
		}
		idleLine = " " + f.line()
	}

	ratio := 0.0
	if *naive > 0 {
		stopWorkers()
		<-workersDone
		workersDone <- nil
		nrate, err := benchNaive(ctx, a.rdb, *naive, sim.New(sim.Config{}, hc, log))
		if err != nil {
			return err
		}
		ratio = rate / nrate
		fmt.Fprintf(stdout, "  naive (task/recipient): %.0f recipients/s over %d recipients; batched is %.1fx faster\n", nrate, *naive, ratio)
	}
	fmt.Fprintf(stdout, "recipients_per_second=%.0f naive_ratio=%.1f bytes_per_recipient=%.0f first_official_p99_ms=%d redis_us_per_delivery=%.1f gateway_us_per_delivery=%.1f%s%s\n",
		rate, ratio, bytesPer, p99.Milliseconds(), redisUS, gatewayUS, machine.keys(), idleLine)
	return nil
}

// perDelivery is d shared among n deliveries, in microseconds.
func perDelivery(d time.Duration, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(n)
}

// traceSlowest prints the five warnings whose first official waited
// longest, each with when it was accepted after the fan-out began: what
// sets the p99 is one of them.
func traceSlowest(w io.Writer, first map[string]time.Duration, accepted map[string]time.Time, mu *sync.Mutex, bigID string, start time.Time) {
	mu.Lock()
	defer mu.Unlock()
	ids := slices.Collect(maps.Keys(first))
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(first[b], first[a]) })
	for _, id := range ids[:min(5, len(ids))] {
		what := "a village"
		if id == bigID {
			what = "the city-wide warning"
		}
		at := "?"
		if t, ok := accepted[id]; ok {
			at = fmt.Sprintf("%.1fs", t.Sub(start).Seconds())
		}
		fmt.Fprintf(w, "slow first official: %s after %s, %s accepted at %s\n", id, first[id].Round(time.Millisecond), what, at)
	}
}

// startCPUProfile writes a CPU profile of this process to path until stop.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// failureReasons says, for a bench whose deliveries did not all arrive,
// why the ledger says they failed: "; reasons: sms 用户关机 12, …".
func failureReasons(ctx context.Context, l *ledger.Ledger, warningID string) string {
	p, err := l.Progress(ctx, warningID)
	if err != nil {
		return "; reasons not read: " + err.Error()
	}
	var parts []string
	for _, ch := range slices.Sorted(maps.Keys(p.Reasons)) {
		for _, r := range slices.Sorted(maps.Keys(p.Reasons[ch])) {
			parts = append(parts, fmt.Sprintf("%s %s %d", ch, r, p.Reasons[ch][r]))
		}
	}
	if len(parts) == 0 {
		return "; no failure reason recorded (expired or still with the provider)"
	}
	return "; reasons: " + strings.Join(parts, ", ")
}

func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) int64 {
	n, _ := strconv.ParseInt(rdb.InfoMap(ctx, "memory").Item("Memory", "used_memory"), 10, 64)
	return n
}

// dropKeys deletes the keys matching pattern.
func dropKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
		if len(keys) == 1000 {
			rdb.Del(ctx, keys...)
			keys = keys[:0]
		}
	}
	if len(keys) > 0 {
		rdb.Del(ctx, keys...)
	}
}

// waitDrained waits, 30 s at most, for the tasks due to be done: the
// checks a plan schedules for later stay queued.
func waitDrained(ctx context.Context, a *app) {
	for i := 0; i < 600; i++ {
		if n, err := a.dispatcher.Due(ctx); err == nil && n == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// benchCallKeyDelay is how long the fan-out bench's officials listen to a
// simulated call before pressing 1.
const benchCallKeyDelay = 100 * time.Millisecond

var naiveWarning = &warning.Warning{ID: "naive", Headline: "暴雨红色预警", Level: warning.Red}

// benchNaive runs one asynq task per recipient: the task carries the
// recipient, the handler hands it to a provider stand-in and writes its
// receipt. It returns recipients per second, enqueue to last receipt.
func benchNaive(ctx context.Context, rdb redis.UniversalClient, n int, provider channels.Notifier) (float64, error) {
	client := asynq.NewClientFromRedisClient(rdb)
	var done atomic.Int64
	finished := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("naive:sms", func(ctx context.Context, t *asynq.Task) error {
		var r warning.Recipient
		if err := json.Unmarshal(t.Payload(), &r); err != nil {
			return err
		}
		if _, _, err := provider.Notify(ctx, &channels.Batch{ID: r.ID, Channel: warning.SMS, Warning: naiveWarning, Recipients: []warning.Recipient{r}}); err != nil {
			return err
		}
		if err := rdb.HSet(ctx, "naive:deliveries", r.ID, "D|"+strconv.FormatInt(time.Now().UnixMilli(), 36)).Err(); err != nil {
			return err
		}
		if done.Add(1) == int64(n) {
			close(finished)
		}
		return nil
	})
	servers := make([]*asynq.Server, 2)
	for i := range servers {
		servers[i] = asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: 32, Queues: map[string]int{"naive": 1},
			TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.ErrorLevel,
		})
		if err := servers[i].Start(mux); err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, s := range servers {
			s.Shutdown()
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf bytes.Buffer
			for i := w; i < n; i += 8 {
				buf.Reset()
				json.NewEncoder(&buf).Encode(warning.Recipient{ID: "r" + strconv.Itoa(i), Address: fmt.Sprintf("199%08d", i), Audience: warning.Residents, Division: "530102001001"})
				if _, err := client.EnqueueContext(ctx, asynq.NewTask("naive:sms", buf.Bytes()), asynq.Queue("naive")); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	select {
	case <-finished:
	case <-time.After(10 * time.Minute):
		return 0, fmt.Errorf("naive: %d of %d done after 10 minutes", done.Load(), n)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// benchCity is the division the benches warn and fill: the city, not the
// province the division tree may hang from, which a warning may not name.
func benchCity(tree *region.Tree) string {
	root := tree.Root()
	if root.Level == region.Province && len(root.Children) == 1 {
		root = root.Children[0]
	}
	return root.Code
}
