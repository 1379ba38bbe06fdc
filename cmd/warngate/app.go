package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"warngate/accounts"
	"warngate/api"
	"warngate/channels"
	"warngate/channels/sim"
	"warngate/config"
	"warngate/dispatcher"
	"warngate/duty"
	"warngate/internal/link"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
)

// app is one wired gateway: state, queue, providers and API.
type app struct {
	cfg        *config.Config
	log        *slog.Logger
	rdb        redis.UniversalClient
	mini       *miniredis.Miniredis
	ledger     *ledger.Ledger
	dispatcher *dispatcher.Dispatcher
	registry   *prometheus.Registry
	sim        *sim.Provider
	simSecret  string
	tree       *region.Tree
	roster     region.Roster // the newest version this process has loaded
	rosters    *roster.Store
	duty       *duty.Store
	policy     *policy.Policy
	checklists *policy.Checklists
	links      *link.Signer
	providers  *providers
	accounts   *accounts.Store
	closers    []func()
	// stop ends what runs in the background, before Redis closes.
	stop []func()
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loadWorld reads the division tree, roster and policy named by the
// configuration, reporting every problem at once.
func loadWorld(cfg *config.Config) (*region.Tree, region.Roster, *policy.Policy, *policy.Checklists, error) {
	var errs []error
	tree := region.Kunming()
	if cfg.Regions.File != "" {
		f, err := os.Open(cfg.Regions.File)
		if err != nil {
			errs = append(errs, fmt.Errorf("regions.file: %w", err))
		} else {
			t, err := region.LoadTree(f)
			f.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("regions.file %s: %w", cfg.Regions.File, err))
			} else {
				tree = t
			}
		}
	}
	for i, u := range cfg.Users {
		if d, ok := tree.Get(u.Division); u.Division != "" && (!ok || d.Level == region.Province) {
			errs = append(errs, fmt.Errorf("users[%d] (%s): division: %s is not a division of this gateway's tree below the province", i, u.Name, u.Division))
		}
	}
	var roster region.Roster
	if cfg.Roster.People != "" || cfg.Roster.Devices != "" || cfg.Roster.Households != "" {
		missing := false
		for _, f := range []struct{ setting, path string }{
			{"roster.people", cfg.Roster.People}, {"roster.devices", cfg.Roster.Devices}, {"roster.households", cfg.Roster.Households},
		} {
			if f.path == "" {
				continue
			}
			fh, err := os.Open(f.path)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.setting, err))
				missing = true
				continue
			}
			fh.Close()
		}
		if !missing {
			r, err := region.LoadRosterFiles(tree, cfg.Roster.People, cfg.Roster.Devices, cfg.Roster.Households)
			if err != nil {
				errs = append(errs, err)
			}
			roster = r
		}
	} else {
		d := cfg.Roster.Demo
		roster = region.Demo(tree, region.DemoOptions{ResidentsPerVillage: d.ResidentsPerVillage, WeChatShare: d.WeChatShare, HouseholdsPerVillage: d.HouseholdsPerVillage})
	}
	pol := policy.Default()
	if cfg.PolicyFile != "" {
		p, err := policy.Load(cfg.PolicyFile)
		if err != nil {
			errs = append(errs, err)
		} else {
			pol = p
		}
	}
	checklists := policy.DefaultChecklists()
	if cfg.ChecklistsFile != "" {
		c, err := policy.LoadChecklists(cfg.ChecklistsFile)
		if err != nil {
			errs = append(errs, err)
		} else {
			checklists = c
		}
	}
	return tree, roster, pol, checklists, errors.Join(errs...)
}

// newApp wires a gateway from a configuration that passed preflight, with
// the world preflight loaded.
func newApp(cfg *config.Config, w *world, log *slog.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log}
	tree, roster, pol, checklists := w.tree, w.roster, w.policy, w.checklists
	a.tree, a.roster, a.policy, a.checklists = tree, roster, pol, checklists
	linkKey := string(cfg.LinkKey)
	if linkKey == "" { // the embedded mode: preflight requires one otherwise
		linkKey = randomToken()
	}
	var err error
	if a.links, err = link.New([]byte(linkKey), nil); err != nil {
		return nil, err
	}

	if cfg.Embedded() {
		a.mini = miniredis.NewMiniRedis()
		if err := a.mini.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		a.closers = append(a.closers, a.mini.Close)
		a.rdb = redis.NewClient(&redis.Options{Addr: a.mini.Addr()})
		// miniredis keeps time only when told to: advance it so that keys
		// with a TTL (idempotency keys, asynq's server heartbeats) expire.
		stop := make(chan struct{})
		go func() {
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					a.mini.FastForward(time.Second)
				}
			}
		}()
		a.closers = append(a.closers, func() { close(stop) })
	} else {
		a.rdb, err = cfg.Redis.ClientFor(dispatcher.TaskWorkers(concurrencyOf(cfg)))
		if err != nil {
			return nil, err
		}
		// On a Redis Cluster, the master of the keys shared by every
		// warning: a PING would go to any master, one that may be down
		// while the others serve. The client asks the seeds for the slot
		// map in a random order, and a seed that hangs (a stopped master)
		// holds it for its read timeout and retries before it asks the
		// next: the check waits long enough to get past a few of them.
		wait := 5 * time.Second
		if cfg.Redis.Cluster() {
			wait = startupClusterWait
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		var ping redis.Cmdable = a.rdb
		if cc, ok := a.rdb.(*redis.ClusterClient); ok {
			ping, err = cc.MasterForKey(ctx, cfg.Redis.SharedPrefix(""))
		}
		if err == nil {
			err = ping.Ping(ctx).Err()
		}
		if err != nil {
			a.rdb.Close()
			return nil, fmt.Errorf("redis %s does not answer: %w", cfg.Redis.Redacted(), err)
		}
	}

	if a.accounts, err = a.newAccounts(); err != nil {
		return nil, err
	}
	if err := a.startRoster(roster); err != nil {
		return nil, err
	}

	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.ledger = ledger.New(a.rdb, cfg.Redis.Prefix, nil)
	if !cfg.Embedded() {
		a.ledger.RequireReplicas(cfg.Redis.RequiredReplicas(), time.Second)
	}
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "redis_up",
		Help: "Whether Redis answered a PING within a second when scraped (1) or not (0).",
	}, func() float64 {
		if a.pingRedis(context.Background()) != nil {
			return 0
		}
		return 1
	}))
	// Commands that waited for one of the pool's connections: a pool too
	// small for the process's work (redis.url's pool_size) shows here.
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "warngate", Name: "redis_pool_waits_total",
		Help: "Redis commands (or pipelines) that waited for a free connection of the client's pool.",
	}, func() float64 { return float64(a.rdb.PoolStats().WaitCount) }))
	a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "warngate", Name: "redis_pool_wait_seconds_total",
		Help: "Time Redis commands spent waiting for a free connection of the client's pool.",
	}, func() float64 { return float64(a.rdb.PoolStats().WaitDurationNs) / 1e9 }))
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "redis_pool_connections",
		Help: "Connections the Redis client's pool holds open now.",
	}, func() float64 { return float64(a.rdb.PoolStats().TotalConns) }))
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "redis_replica_missing_seconds",
		Help: "How long the Redis replicas required by redis.replicas have not confirmed writes; 0 while they do.",
	}, func() float64 {
		if _, since := a.ledger.Replication(); !since.IsZero() {
			return time.Since(since).Seconds()
		}
		return 0
	}))

	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "simulator_enabled",
		Help: "1 while channels without a provider go to the built-in simulator, which notifies nobody; else 0.",
	}, func() float64 {
		if cfg.SimulatorOn() {
			return 1
		}
		return 0
	}))
	// Every process serves the roster version it has loaded: processes
	// that disagree for longer than a poll have lost Redis or their memory.
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "roster_version",
		Help: "The roster version this process serves to new warnings and lookups (0: the configured base roster).",
	}, func() float64 { return float64(a.rosters.Info().Number) }))

	notifiers := map[warning.Channel]channels.Notifier{}
	if cfg.SimulatorOn() {
		a.simSecret = string(cfg.Simulator.Secret)
		if a.simSecret == "" { // the embedded mode: preflight requires one otherwise
			a.simSecret = randomToken()
		}
		var simulated []string
		for _, ch := range warning.Channels {
			if !slices.ContainsFunc(cfg.Providers, func(p config.Provider) bool { return p.Channel == string(ch) }) {
				simulated = append(simulated, string(ch))
			}
		}
		log.Warn("SIMULATOR ON: channels without a provider go to the built-in simulator and NOBODY IS NOTIFIED on them; "+
			"set simulator.enabled: false and configure providers to warn people", "channels", strings.Join(simulated, ","))
		// Reports arrive in bursts: keep enough connections to the gateway
		// open that a burst does not open and close one per report.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		hc := &http.Client{Timeout: 15 * time.Second, Transport: tr}
		simRedis, simPrefix := a.rdb, cfg.Redis.SharedPrefix("sim")
		if cfg.Simulator.Redis != "" {
			own := config.Redis{URL: cfg.Simulator.Redis, Prefix: cfg.Redis.Prefix}
			c, err := own.Client()
			if err != nil {
				return nil, fmt.Errorf("simulator.redis: %w", err)
			}
			a.closers = append(a.closers, func() { c.Close() })
			simRedis, simPrefix = c, own.SharedPrefix("sim")
		}
		a.sim = sim.New(sim.Config{
			CallbackURL: cfg.PublicURL + "/callbacks/sim", Secret: a.simSecret,
			ReportDelay: time.Duration(cfg.Simulator.ReportDelay), FailureRate: cfg.Simulator.FailureRate,
			AcceptLog: cfg.Simulator.AcceptLog, HangAfter: cfg.Simulator.HangAfter, HangAccepting: cfg.Simulator.HangAccepting,
			Redis: simRedis, Prefix: simPrefix,
			NoQuery: cfg.Simulator.StatusQuery != nil && !*cfg.Simulator.StatusQuery,
			Voice:   sim.VoiceConfig{NoAnswer: simNoAnswer(cfg.Simulator.UnansweredCalls), KeyDelay: time.Duration(cfg.Simulator.CallKeyDelay)},
		}, hc, log)
		for _, ch := range warning.Channels {
			notifiers[ch] = a.sim
		}
	}
	a.providers, err = buildProviders(cfg, a.rdb, a.ledger, log)
	if err != nil {
		return nil, err
	}
	// A worker's connection to Kannel's bearerbox (the box transport): a
	// 0 while workers run means the account sends nothing.
	for name, k := range a.providers.kannelBoxes {
		labels := prometheus.Labels{"account": name}
		a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "warngate", Name: "kannel_box_connected", ConstLabels: labels,
			Help: "Whether this process's connection to Kannel's bearerbox (transport: box) is up and answered by bearerbox (1) or not (0, also in a process that runs no workers).",
		}, func() float64 {
			if _, up, _ := k.BoxState(); up {
				return 1
			}
			return 0
		}))
		a.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "warngate", Name: "kannel_box_connects_total", ConstLabels: labels,
			Help: "Connections this process has made to Kannel's bearerbox (transport: box) that bearerbox answered: more than one means it lost one and connected again.",
		}, func() float64 {
			_, _, n := k.BoxState()
			return float64(n)
		}))
	}
	a.closers = append(a.closers, a.providers.close)
	metrics := dispatcher.NewMetrics(a.registry)
	for ch, list := range a.providers.routes {
		notifiers[ch] = dispatcher.NewRoute(ch, list, dispatcher.RouteConfig{
			Failures: cfg.Failover.Failures, OpenFor: time.Duration(cfg.Failover.OpenFor), Prefix: cfg.Redis.SharedPrefix(""),
			ReportWindow: time.Duration(cfg.Failover.ReportWindow), Reported: a.ledger.Reported,
			Opened: func(provider, reason string) { metrics.CircuitsOpened.WithLabelValues(provider, reason).Inc() },
		}, a.rdb, log, nil)
	}
	chunks := map[warning.Channel]int{}
	for ch, n := range cfg.Dispatch.ChunkSize {
		chunks[warning.Channel(ch)] = n
	}
	a.dispatcher = dispatcher.New(dispatcher.Config{
		Concurrency:       concurrencyOf(cfg),
		ChunkSize:         chunks,
		Prefix:            cfg.Redis.SharedPrefix(""),
		ProviderTimeout:   time.Duration(cfg.Dispatch.ProviderTimeout),
		MaxRetry:          cfg.Dispatch.MaxRetry,
		PollInterval:      time.Duration(cfg.Dispatch.PollInterval),
		IdleSweep:         time.Duration(cfg.Dispatch.IdleSweep),
		IdleStop:          idleStop(cfg.Dispatch.IdleStop),
		ReportConcurrency: cfg.Dispatch.ReportConcurrency,
		UncertainBound:    cfg.Dispatch.UncertainBound,
		AckURL:            a.ackURL,
	}, dispatcher.Deps{
		Redis: a.rdb, Ledger: a.ledger, Policy: pol, Tree: tree, Roster: a.roster, Rosters: a.rosters, Checklists: checklists,
		Notifiers: notifiers, Metrics: metrics, Log: log, OnDuty: a.duty.OnDutyIn,
	})
	a.registry.MustRegister(a.dispatcher.NewQueueCollector())
	return a, nil
}

// idleStop is dispatch.idle_stop for the dispatcher, whose zero is the
// default: 0s there means never.
func idleStop(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// startRoster opens the live roster. Roster files in the configuration are
// the first import only: when Redis holds no roster yet they become its
// first version, and later changes go through the API. Without files the
// generated demo roster is served as version 0, and never written to Redis
// unless someone changes it. The process then follows the current version.
func (a *app) startRoster(configured region.Roster) error {
	files := a.cfg.Roster.People != "" || a.cfg.Roster.Devices != "" || a.cfg.Roster.Households != ""
	var base region.Roster
	if !files {
		base = configured
	}
	a.rosters = roster.New(a.rdb, roster.Options{Prefix: a.cfg.Redis.SharedPrefix(""), Tree: a.tree, Base: base, Log: a.log})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seeded := false
	if files {
		var err error
		if seeded, err = a.rosters.Seed(ctx, configured, "system", "roster files of the configuration"); err != nil {
			return fmt.Errorf("roster: first import of the roster files: %w", err)
		}
	}
	_, n, err := a.rosters.Current(ctx)
	if err != nil {
		return err
	}
	switch {
	case seeded:
		a.log.Info("roster files imported as the roster's first version; change the roster through the API from now on")
		entry := ledger.AuditEntry{Who: "system", Action: "roster_import", Target: "files", Detail: fmt.Sprintf("roster files of the configuration: version 0 → %d", n)}
		if err := ledger.New(a.rdb, a.cfg.Redis.Prefix, nil).Audit(ctx, entry); err != nil {
			a.log.Warn("audit not written", "action", entry.Action, "err", err)
		}
	case files:
		a.log.Info("roster files not imported: Redis holds the roster already; change it through the API", "version", n)
	}
	a.roster = a.rosters.Live()
	a.duty = duty.New(a.rdb, duty.Options{Prefix: a.cfg.Redis.SharedPrefix(""), Tree: a.tree, Roster: func(ctx context.Context) (region.Roster, error) {
		r, _, err := a.rosters.Current(ctx)
		return r, err
	}})
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.rosters.Watch(wctx, RosterPoll, 10*time.Minute)
	}()
	a.stop = append(a.stop, func() { stop(); <-done })
	return nil
}

// startupClusterWait bounds the check, at start, that a Redis Cluster's
// master of the shared keys answers.
const startupClusterWait = 30 * time.Second

// RosterPoll is how often every process asks Redis for the roster's current
// version: a change reaches every worker within it, plus the load.
const RosterPoll = time.Second

// pingRedis checks, within a second, that Redis answers.
func (a *app) pingRedis(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return a.ledger.Ping(ctx)
}

// LinkValidity is how long an official's link works after its warning expires.
const LinkValidity = 24 * time.Hour

// ackURL is the link an official opens to confirm receipt.
func (a *app) ackURL(w *warning.Warning, ref warning.Ref) string {
	return a.cfg.PublicURL + "/a/" + a.links.Token(ref, w.Expires.Add(LinkValidity))
}

// handler returns the API.
func (a *app) handler() http.Handler {
	receivers := a.providers.receivers
	if a.cfg.SimulatorOn() {
		receivers = append(receivers, &sim.Receiver{Secret: a.simSecret})
	}
	ready := a.ledger.Ping
	// What /readyz answers, for Prometheus: a process can be up and refuse
	// warnings.
	a.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "warngate", Name: "ready",
		Help: "Whether this API process can take warnings, as /readyz answers (1), or not (0).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if ready(ctx) != nil {
			return 0
		}
		return 1
	}))
	return api.New(api.Options{
		Dispatcher: a.dispatcher, Ledger: a.ledger, Tree: a.tree, Roster: a.roster, Rosters: a.rosters, Duty: a.duty,
		Receivers: receivers, Replies: a.providers.replies, AdminToken: string(a.cfg.AdminToken), Registry: a.registry, Links: a.links,
		Log: a.log, Ready: ready, Embedded: a.cfg.Embedded(), Simulator: a.cfg.SimulatorOn(), PublicURL: a.cfg.PublicURL, TrustedProxies: a.cfg.TrustedProxies,
		Accounts: a.accounts, AdminTokenBypass: bypassLevels(a.cfg),
	})
}

// close releases everything in reverse order. Workers must have stopped:
// asynq panics if its Redis client closes under it.
func (a *app) close() {
	for _, stop := range a.stop {
		stop()
	}
	if a.sim != nil {
		a.sim.Close()
	}
	if a.rdb != nil {
		a.rdb.Close()
	}
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

func randomToken() string {
	var b [24]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func metricsHandler(a *app) http.Handler {
	return promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry})
}

// simNoAnswer turns simulator.unanswered_calls into the simulator's
// NoAnswer, whose zero means its default and a negative value none.
func simNoAnswer(f *float64) float64 {
	switch {
	case f == nil:
		return 0
	case *f == 0:
		return -1
	}
	return *f
}

// concurrencyOf is dispatch.concurrency by channel.
func concurrencyOf(cfg *config.Config) map[warning.Channel]int {
	conc := map[warning.Channel]int{}
	for ch, n := range cfg.Dispatch.Concurrency {
		conc[warning.Channel(ch)] = n
	}
	return conc
}
