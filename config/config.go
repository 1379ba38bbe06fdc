// Package config loads warngate's YAML configuration, applies defaults and
// environment overrides, and validates it, reporting every problem at once
// with what to fix. It reads files; it starts nothing.
package config

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"
)

// Secret is a string that never prints.
type Secret string

// String implements fmt.Stringer.
func (Secret) String() string { return "<secret>" }

// GoString implements fmt.GoStringer.
func (Secret) GoString() string { return "<secret>" }

// MarshalYAML keeps secrets out of printed configuration.
func (s Secret) MarshalYAML() (any, error) {
	if s == "" {
		return "", nil
	}
	return "<secret>", nil
}

// Duration is a time.Duration written as "30s" in YAML.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler. Its error is a *yaml.TypeError,
// so that the decoder goes on and reports the rest of the file too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not a duration such as 30s or 5m", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Config is the whole configuration.
type Config struct {
	// Listen is the HTTP address. Env WARNGATE_LISTEN. Default 127.0.0.1:8080.
	Listen string `yaml:"listen"`
	// PublicURL is how providers' callbacks and officials' phones reach the
	// gateway. Default http://<listen>.
	PublicURL string `yaml:"public_url"`
	// TrustedProxies are the reverse proxies (IPs or CIDRs) whose
	// X-Forwarded-For is believed. Default none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Redis          Redis    `yaml:"redis"`
	// AdminToken is the bootstrap bearer token. Env WARNGATE_ADMIN_TOKEN.
	AdminToken     Secret `yaml:"admin_token"`
	AdminTokenFile string `yaml:"admin_token_file"`
	// LinkKey signs officials' confirmation links. Required with a real
	// Redis (API and workers must agree); generated in the embedded mode.
	LinkKey     Secret `yaml:"link_key"`
	LinkKeyFile string `yaml:"link_key_file"`
	// PolicyFile is the dissemination policy; empty means the built-in one.
	PolicyFile string `yaml:"policy_file"`
	// ChecklistsFile holds the response checklist templates; empty means
	// the built-in ones.
	ChecklistsFile string    `yaml:"checklists_file"`
	Regions        Regions   `yaml:"regions"`
	Roster         Roster    `yaml:"roster"`
	Dispatch       Dispatch  `yaml:"dispatch"`
	Simulator      Simulator `yaml:"simulator"`
	// Providers are the real (or faked) provider accounts; a channel with
	// none goes to the simulator while it is on.
	Providers []Provider `yaml:"providers"`

	// Secrets already read from their files: Finish may run more than once.
	adminFromFile, linkFromFile bool
	// file is the configuration file and lines the line of each setting in
	// it, by path ("dispatch.max_retry", "providers[0].kannel"), so that a
	// problem is reported where it is.
	file  string
	lines map[string]int

	Failover Failover `yaml:"failover"`
	Log      Log      `yaml:"log"`
	// Users sign in to the console; see users.go.
	Users []User `yaml:"users"`
	// SessionKey signs console sessions. Required with users and a real
	// Redis (API processes must agree); generated in the embedded mode.
	SessionKey     Secret   `yaml:"session_key"`
	SessionKeyFile string   `yaml:"session_key_file"`
	Approval       Approval `yaml:"approval"`
}

// Approval says which warnings wait for a second person before they go out.
// Orange and red warnings from people (and their API tokens) always do.
type Approval struct {
	// AdminTokenBypass lists the levels (orange, red) whose warnings from
	// the bootstrap admin token go out without a second person. Default
	// [orange]: a red warning from automation waits for an approver.
	AdminTokenBypass []string `yaml:"admin_token_bypass"`
}

// Redis says where state and queues live.
type Redis struct {
	// URL is redis://[user:password@]host:port/db or rediss://…. Empty runs
	// the embedded in-memory server, which keeps nothing. Env WARNGATE_REDIS_URL.
	//
	// With Redis Sentinel, the URL names a Sentinel and the master, the
	// others Sentinels as addr, and the master's password as password:
	// redis://sentinel-a:26379/0?master_name=warngate&addr=sentinel-b:26379&addr=sentinel-c:26379&password=…
	// (user and password before the host are the Sentinels' own, if any).
	// The gateway then follows the master through a failover.
	//
	// With Redis Cluster, the scheme is redis-cluster (rediss-cluster for
	// TLS), the host one seed node and the others as addr:
	// redis-cluster://[user:password@]node-a:6379?addr=node-b:6379&addr=node-c:6379
	URL string `yaml:"url"`
	// Prefix starts every ledger key. Default "wg".
	Prefix string `yaml:"prefix"`
	// Replicas is how many replicas must confirm holding a new warning
	// before the API accepts it (Redis WAIT): a failover then cannot lose
	// an accepted warning. Default 1 through Sentinel, 0 otherwise.
	Replicas *int `yaml:"replicas"`
}

// RequiredReplicas is Replicas or its default.
func (r Redis) RequiredReplicas() int {
	if r.Replicas != nil {
		return *r.Replicas
	}
	if r.Sentinel() || r.Cluster() {
		return 1
	}
	return 0
}

// Regions names the division tree.
type Regions struct {
	// File is a CSV of code,name,level,parent_code; empty means the shipped Kunming divisions.
	File string `yaml:"file"`
}

// Roster names who and what can be reached.
type Roster struct {
	People     string `yaml:"people"`
	Devices    string `yaml:"devices"`
	Households string `yaml:"households"`
	// Demo generates a roster when no files are given.
	Demo DemoRoster `yaml:"demo"`
}

// DemoRoster sizes the generated roster.
type DemoRoster struct {
	ResidentsPerVillage  int     `yaml:"residents_per_village"`
	WeChatShare          float64 `yaml:"wechat_share"`
	HouseholdsPerVillage int     `yaml:"households_per_village"`
}

// Dispatch tunes the workers.
type Dispatch struct {
	// Concurrency is batches at once per channel. Default 8 each.
	Concurrency map[string]int `yaml:"concurrency"`
	// ChunkSize is recipients per provider call, each chunk recorded
	// before the next is handed over. Default 500 where the provider can
	// be asked what it accepted (the simulator), else 100 over the
	// channel's concurrency: a worker killed at any instant leaves at most
	// 100 recipients of a channel possibly sent twice.
	ChunkSize       map[string]int `yaml:"chunk_size"`
	ProviderTimeout Duration       `yaml:"provider_timeout"`
	MaxRetry        int            `yaml:"max_retry"`
	PollInterval    Duration       `yaml:"poll_interval"`
	// IdleSweep is how often a worker whose queue servers stopped for
	// want of work looks for work in Redis. Default 1s.
	IdleSweep Duration `yaml:"idle_sweep"`
	// IdleStop is how long the queue servers poll without work before
	// they stop. Default 10s; 0s never stops them.
	IdleStop Duration `yaml:"idle_stop"`
	// ReportConcurrency is how many report requests a process records
	// in Redis at once; the others wait their turn in the process, not in
	// Redis's queue ahead of new warnings' commands. Default 2.
	ReportConcurrency int `yaml:"report_concurrency"`
	// UncertainBound is how many recipients of a channel a process may
	// have at once with a provider that cannot be asked what it accepted:
	// at most as many a crash leaves possibly sent twice. Its batches
	// share it, in chunks of up to as many, unless ChunkSize is set.
	// Default 100.
	UncertainBound int `yaml:"uncertain_bound"`
}

// Simulator configures the built-in provider simulator.
type Simulator struct {
	// Enabled sends every channel that has no provider to the simulator:
	// nobody is notified. Default true in the embedded mode, false with a
	// real Redis (see SimulatorOn).
	Enabled *bool `yaml:"enabled"`
	// Redis, when set, is a Redis of the simulator's own (a URL as
	// redis.url takes), as a real provider keeps its records at home; by
	// default it keeps them in the gateway's Redis.
	Redis       string   `yaml:"redis"`
	ReportDelay Duration `yaml:"report_delay"`
	FailureRate float64  `yaml:"failure_rate"`
	Secret      Secret   `yaml:"secret"`
	// AcceptLog appends every delivery the simulator accepts to a file.
	AcceptLog string `yaml:"accept_log"`
	// HangAfter makes the simulator hang after that many batches (fault drills).
	HangAfter int `yaml:"hang_after"`
	// HangAccepting makes the calls that hang take their batch first, as a
	// provider that accepts and never answers.
	HangAccepting bool `yaml:"hang_accepting"`
	// StatusQuery lets the simulator answer what it accepted, as a
	// provider's send-status query would. Default true; false makes it a
	// provider that cannot be asked (chunks then default smaller).
	StatusQuery *bool `yaml:"status_query"`
	// UnansweredCalls is the fraction of officials whose simulated calls
	// nobody answers. Default 0.25; 0 makes every official answer and
	// press 1 (the benches).
	UnansweredCalls *float64 `yaml:"unanswered_calls"`
	// CallKeyDelay is how long an official who answers a simulated call
	// listens before pressing 1. Default 3s; the fan-out bench makes it
	// short, so that the calls' length does not bound its figure.
	CallKeyDelay Duration `yaml:"call_key_delay"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error. Default info.
	Format string `yaml:"format"` // text or json. Default text.
}

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		Listen: "127.0.0.1:8080",
		Redis:  Redis{Prefix: "wg"},
		Roster: Roster{Demo: DemoRoster{ResidentsPerVillage: 20, WeChatShare: 0.5, HouseholdsPerVillage: 3}},
		Dispatch: Dispatch{
			ProviderTimeout:   Duration(30 * time.Second),
			MaxRetry:          12,
			PollInterval:      Duration(50 * time.Millisecond),
			IdleSweep:         Duration(time.Second),
			IdleStop:          Duration(10 * time.Second),
			ReportConcurrency: 2,
			UncertainBound:    100,
		},
		Simulator: Simulator{ReportDelay: Duration(500 * time.Millisecond), FailureRate: 0.01},
		Failover:  Failover{ReportWindow: Duration(10 * time.Minute)},
		Log:       Log{Level: "info", Format: "text"},
		Approval:  Approval{AdminTokenBypass: []string{"orange"}},
	}
}

// Load reads path (may be empty for defaults only), then applies the
// environment, then validates. It reports every problem at once, as a
// *Problems, each on its line of the file: the settings it does not know
// (with the one likely meant), values of the wrong type, and what Finish
// finds. The configuration is returned as far as it could be read, so that
// callers may check more; it is nil only when the file cannot be read or
// is not YAML at all.
func Load(path string, env func(string) string) (*Config, error) {
	c := Default()
	c.file = path
	var errs []error
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
		if len(doc.Content) > 0 {
			errs = append(errs, c.readNode(&doc)...)
			// Unknown keys are reported above, with what was meant; the
			// decoder skips them and reports wrong types, all of them.
			if err := doc.Decode(c); err != nil {
				errs = append(errs, c.typeProblems(err)...)
			}
		}
	}
	c.ApplyEnv(env)
	errs = append(errs, c.Finish())
	return c, c.Problems(errs...)
}

// ApplyEnv overrides settings from WARNGATE_* variables.
func (c *Config) ApplyEnv(env func(string) string) {
	if v := env("WARNGATE_LISTEN"); v != "" {
		c.Listen = v
	}
	if v := env("WARNGATE_REDIS_URL"); v != "" {
		c.Redis.URL = v
	}
	if v := env("WARNGATE_ADMIN_TOKEN"); v != "" {
		c.AdminToken = Secret(v)
	}
	if v := env("WARNGATE_LINK_KEY"); v != "" {
		c.LinkKey = Secret(v)
	}
	if v := env("WARNGATE_SESSION_KEY"); v != "" {
		c.SessionKey = Secret(v)
	}
	if v := env("WARNGATE_SIMULATOR_SECRET"); v != "" {
		c.Simulator.Secret = Secret(v)
	}
	if v := env("WARNGATE_PUBLIC_URL"); v != "" {
		c.PublicURL = v
	}
}

// Finish reads secret files, fills derived defaults and validates. Call it
// again after changing fields (command-line flags).
func (c *Config) Finish() error {
	var errs []error
	if c.AdminTokenFile != "" && !c.adminFromFile {
		if c.AdminToken != "" {
			errs = append(errs, errors.New("admin_token and admin_token_file: give one, not both"))
		} else if b, err := os.ReadFile(c.AdminTokenFile); err != nil {
			errs = append(errs, fmt.Errorf("admin_token_file: %w", err))
		} else {
			c.AdminToken = Secret(strings.TrimSpace(string(b)))
			c.adminFromFile = true
		}
	}
	if c.LinkKeyFile != "" && !c.linkFromFile {
		if c.LinkKey != "" {
			errs = append(errs, errors.New("link_key and link_key_file: give one, not both"))
		} else if b, err := os.ReadFile(c.LinkKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("link_key_file: %w", err))
		} else {
			c.LinkKey = Secret(strings.TrimSpace(string(b)))
			c.linkFromFile = true
		}
	}
	if c.LinkKey != "" && len(c.LinkKey) < 16 {
		errs = append(errs, errors.New("link_key: at least 16 characters; generate one with: head -c 24 /dev/urandom | base64"))
	}
	if c.PublicURL == "" {
		c.PublicURL = "http://" + c.Listen
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %q: want host:port, e.g. 127.0.0.1:8080", c.Listen))
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("public_url: %q: want an http(s) URL such as https://warn.example.gov.cn", c.PublicURL))
	}
	if c.Redis.URL != "" {
		u, err := url.Parse(c.Redis.URL)
		if c.Redis.Cluster() {
			if _, err := c.Redis.clusterOptions(); err != nil {
				errs = append(errs, fmt.Errorf("redis.url: %q: %w", redact(c.Redis.URL), err))
			}
		} else if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
			errs = append(errs, fmt.Errorf("redis.url: %q: want redis://host:port/db, rediss://…, or redis-cluster://host:port?addr=host:port…", redact(c.Redis.URL)))
		} else if _, _, err := c.Redis.options(); err != nil {
			errs = append(errs, fmt.Errorf("redis.url: %q: %w", redact(c.Redis.URL), err))
		}
	}
	if n := c.Redis.RequiredReplicas(); n < 0 || n > 5 {
		errs = append(errs, fmt.Errorf("redis.replicas: %d: use 0 to 5", n))
	}
	if strings.ContainsAny(c.Redis.Prefix, " {}:") || c.Redis.Prefix == "" {
		errs = append(errs, fmt.Errorf("redis.prefix: %q: use letters, digits, - or _", c.Redis.Prefix))
	}
	if c.Roster.Demo.ResidentsPerVillage < 0 || c.Roster.Demo.ResidentsPerVillage > 40000 {
		errs = append(errs, fmt.Errorf("roster.demo.residents_per_village: %d: use 0 to 40000", c.Roster.Demo.ResidentsPerVillage))
	}
	if s := c.Roster.Demo.WeChatShare; s < 0 || s > 1 {
		errs = append(errs, fmt.Errorf("roster.demo.wechat_share: %v: use a fraction from 0 to 1", s))
	}
	for _, ch := range slices.Sorted(maps.Keys(c.Dispatch.Concurrency)) {
		n := c.Dispatch.Concurrency[ch]
		if !knownChannel(ch) {
			errs = append(errs, fmt.Errorf("dispatch.concurrency: unknown channel %q: use wecom, sms, wechat, broadcast, screen, calllist or voice", ch))
		} else if n < 1 || n > 256 {
			errs = append(errs, fmt.Errorf("dispatch.concurrency.%s: %d: use 1 to 256", ch, n))
		}
	}
	for ch, n := range c.Dispatch.ChunkSize {
		if !knownChannel(ch) {
			errs = append(errs, fmt.Errorf("dispatch.chunk_size: unknown channel %q: use wecom, sms, wechat, broadcast, screen or calllist", ch))
		} else if n < 1 || n > 1000 {
			errs = append(errs, fmt.Errorf("dispatch.chunk_size.%s: %d: use 1 to 1000 recipients per provider call", ch, n))
		}
	}
	if d := time.Duration(c.Dispatch.ProviderTimeout); d < time.Second || d > 5*time.Minute {
		errs = append(errs, fmt.Errorf("dispatch.provider_timeout: %s: use 1s to 5m", d))
	}
	if d := time.Duration(c.Dispatch.PollInterval); d < 10*time.Millisecond || d > 5*time.Second {
		errs = append(errs, fmt.Errorf("dispatch.poll_interval: %s: use 10ms to 5s", d))
	}
	if d := time.Duration(c.Dispatch.IdleSweep); d < 100*time.Millisecond || d > 10*time.Second {
		errs = append(errs, fmt.Errorf("dispatch.idle_sweep: %s: use 100ms to 10s", d))
	}
	if d := time.Duration(c.Dispatch.IdleStop); d != 0 && (d < time.Second || d > time.Hour) {
		errs = append(errs, fmt.Errorf("dispatch.idle_stop: %s: use 1s to 1h, or 0s to keep the workers polling", d))
	}
	if n := c.Dispatch.ReportConcurrency; n < 1 || n > 256 {
		errs = append(errs, fmt.Errorf("dispatch.report_concurrency: %d: use 1 to 256 report requests recorded at once", n))
	}
	if n := c.Dispatch.UncertainBound; n < 1 || n > 1000 {
		errs = append(errs, fmt.Errorf("dispatch.uncertain_bound: %d: use 1 to 1000 recipients a process may have at once with a provider that cannot be asked", n))
	}
	if c.Dispatch.MaxRetry < 0 || c.Dispatch.MaxRetry > 100 {
		errs = append(errs, fmt.Errorf("dispatch.max_retry: %d: use 0 to 100", c.Dispatch.MaxRetry))
	}
	if r := c.Simulator.FailureRate; r < 0 || r > 1 {
		errs = append(errs, fmt.Errorf("simulator.failure_rate: %v: use a fraction from 0 to 1", r))
	}
	if r := c.Simulator.UnansweredCalls; r != nil && (*r < 0 || *r > 1) {
		errs = append(errs, fmt.Errorf("simulator.unanswered_calls: %v: use a fraction from 0 to 1 (0: every call answered)", *r))
	}
	if d := c.Simulator.CallKeyDelay; d < 0 {
		errs = append(errs, fmt.Errorf("simulator.call_key_delay: %s is negative: use a duration such as 3s, or leave it out for 3s", time.Duration(d)))
	}
	errs = append(errs, c.checkProviders()...)
	errs = append(errs, c.checkUsers()...)
	for i, l := range c.Approval.AdminTokenBypass {
		if l != "orange" && l != "red" {
			errs = append(errs, fmt.Errorf("approval.admin_token_bypass[%d]: %q: use orange or red (blue and yellow never wait)", i, l))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level: %q: use debug, info, warn or error", c.Log.Level))
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format: %q: use text or json", c.Log.Format))
	}
	return errors.Join(errs...)
}

// Embedded reports whether the gateway runs on its in-memory Redis.
func (c *Config) Embedded() bool { return c.Redis.URL == "" }

// SimulatorOn reports whether channels without a provider go to the
// built-in simulator, which notifies nobody: as simulator.enabled says, and
// when it says nothing, in the embedded mode only. With a real Redis it
// runs only when enabled explicitly, so that a production configuration
// never sends to it unawares.
func (c *Config) SimulatorOn() bool {
	if c.Simulator.Enabled != nil {
		return *c.Simulator.Enabled
	}
	return c.Embedded()
}

func knownChannel(s string) bool {
	switch s {
	case "wecom", "sms", "wechat", "broadcast", "screen", "calllist", "voice":
		return true
	}
	return false
}

// redact hides the password of a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// Sentinel reports whether the URL names a master found through Redis
// Sentinel (it has master_name).
func (r Redis) Sentinel() bool {
	u, err := url.Parse(r.URL)
	return err == nil && u.Query().Get("master_name") != ""
}

// Cluster reports whether the URL names a Redis Cluster's seed nodes.
func (r Redis) Cluster() bool {
	return strings.HasPrefix(r.URL, "redis-cluster://") || strings.HasPrefix(r.URL, "rediss-cluster://")
}

// clusterOptions parses a redis-cluster:// URL.
func (r Redis) clusterOptions() (*redis.ClusterOptions, error) {
	u := strings.Replace(r.URL, "-cluster://", "://", 1)
	if pu, err := url.Parse(u); err == nil && strings.Trim(pu.Path, "/") != "" && strings.Trim(pu.Path, "/") != "0" {
		return nil, errors.New("a cluster has only database 0: leave the path out")
	}
	o, err := redis.ParseClusterURL(u)
	if err != nil {
		return nil, err
	}
	// A command given a deadline gives up at it, not after the read
	// timeout and its retries: a shard that hangs must not hold what
	// bounds its waits on it (asynq's heartbeats, a new warning's store).
	o.ContextTimeoutEnabled = true
	return o, nil
}

// options parses the URL: one server's options, or the Sentinels'.
func (r Redis) options() (*redis.Options, *redis.FailoverOptions, error) {
	if !r.Sentinel() {
		o, err := redis.ParseURL(r.URL)
		return o, nil, err
	}
	o, err := redis.ParseFailoverURL(r.URL)
	if err != nil {
		return nil, nil, err
	}
	if len(o.SentinelAddrs) < 2 {
		// One Sentinel cannot tell a dead master from its own lost link.
		return nil, nil, errors.New("name at least two Sentinels, the others as addr=host:26379; three on separate machines is the usual set-up")
	}
	return nil, o, nil
}

// Client returns a client for the URL: one server, or the master that the
// Sentinels name, followed through failovers.
func (r Redis) Client() (redis.UniversalClient, error) {
	return r.ClientFor(0)
}

// ClientFor is Client for a process that runs up to workers tasks at once,
// each with a command in flight: unless the URL sets pool_size, the pool
// holds a connection for each of them beside the client's default (ten a
// processor), which serves the HTTP side. A pool smaller than what uses it
// makes commands queue in the process for a connection, a new warning's
// behind a fan-out's, on top of their wait in Redis.
func (r Redis) ClientFor(workers int) (redis.UniversalClient, error) {
	// The parsed options hold a pool size only when the URL sets one.
	size := func(p *int) {
		if workers > 0 && *p == 0 {
			*p = workers + 10*runtime.GOMAXPROCS(0)
		}
	}
	if r.Cluster() {
		o, err := r.clusterOptions()
		if err != nil {
			return nil, fmt.Errorf("redis.url %s: %w", r.Redacted(), err)
		}
		size(&o.PoolSize)
		return redis.NewClusterClient(o), nil
	}
	one, sentinels, err := r.options()
	if err != nil {
		return nil, fmt.Errorf("redis.url %s: %w", r.Redacted(), err)
	}
	if sentinels != nil {
		size(&sentinels.PoolSize)
		return redis.NewFailoverClient(sentinels), nil
	}
	size(&one.PoolSize)
	return redis.NewClient(one), nil
}

// SharedPrefix starts the keys that belong to no warning (users, the
// roster, duty schedules, rate limits, the workers' heartbeats): Prefix,
// in braces on a Redis Cluster, so that the scripts and transactions that
// touch several of them find them in one slot. A warning's keys carry its
// own id as their hash tag and spread over the shards.
func (r Redis) SharedPrefix(sub string) string {
	p := r.Prefix
	if p == "" {
		p = "wg"
	}
	if sub != "" {
		p += ":" + sub
	}
	if r.Cluster() {
		return "{" + p + "}"
	}
	return p
}

// Redacted returns the URL with any password hidden, for logs.
func (r Redis) Redacted() string { return redact(r.URL) }
