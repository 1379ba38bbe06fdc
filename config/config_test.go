package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/config"
)

func write(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSecretsFromFilesSurviveASecondFinish(t *testing.T) {
	tok := write(t, "token", "s3cret-token\n")
	key := write(t, "key", "0123456789abcdef0123\n")
	cfg, err := config.Load(write(t, "c.yaml", "admin_token_file: "+tok+"\nlink_key_file: "+key+"\n"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Finish(); err != nil {
		t.Fatalf("second Finish: %v", err)
	}
	if cfg.AdminToken != "s3cret-token" || cfg.LinkKey != "0123456789abcdef0123" {
		t.Fatal("secrets not read from their files")
	}
	if s := cfg.AdminToken.String(); strings.Contains(s, "s3cret") {
		t.Fatalf("a secret prints: %s", s)
	}
}

func TestEveryProblemAtOnce(t *testing.T) {
	body := `listen: "nowhere"
redis: {url: "http://x", prefix: "a b"}
dispatch: {concurrency: {fax: 3}, chunk_size: {sms: 0, pager: 5}, provider_timeout: 1ms, idle_sweep: 20s, idle_stop: 500ms, report_concurrency: 0, uncertain_bound: 5000}
simulator: {failure_rate: 2, call_key_delay: -1s}
log: {level: loud}
providers:
  - {name: a, channel: sms, type: wechat}
  - {name: a, channel: sms, type: kannel, report_window: -1m}
  - {name: "sms|main", channel: sms, type: aliyun, fake: true}
  - {name: trunk, channel: sms, type: sip, fake: true, sip: {trunk: 10.0.0.5, lines: 30}}
  - {name: ali-voice, channel: voice, type: aliyun_voice, tencent_voice: {}}
failover: {report_window: 5s}
`
	_, err := config.Load(write(t, "c.yaml", body), func(string) string { return "" })
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		`listen: "nowhere": want host:port`,
		`redis.url: "http://x": want redis://host:port/db`,
		`redis.prefix: "a b"`,
		`dispatch.concurrency: unknown channel "fax"`,
		`dispatch.chunk_size.sms: 0: use 1 to 1000 recipients per provider call`,
		`dispatch.chunk_size: unknown channel "pager"`,
		`dispatch.provider_timeout: 1ms: use 1s to 5m`,
		`dispatch.idle_sweep: 20s: use 100ms to 10s`,
		`dispatch.idle_stop: 500ms: use 1s to 1h, or 0s to keep the workers polling`,
		`dispatch.report_concurrency: 0: use 1 to 256 report requests recorded at once`,
		`dispatch.uncertain_bound: 5000: use 1 to 1000 recipients a process may have at once with a provider that cannot be asked`,
		`simulator.failure_rate: 2`,
		`simulator.call_key_delay: -1s is negative`,
		`log.level: "loud"`,
		`providers[0] (a): type wechat sends on channel wechat, not sms`,
		`providers[1] (a): name used twice`,
		`providers[1] (a): type kannel needs a kannel: block`,
		`providers[1] (a): report_window -1m0s: must not be negative`,
		`failover.report_window 5s: use 1m or more`,
		`providers[2] (sms|main): name: use letters, digits`,
		`providers[3] (trunk): type sip sends on channel voice, not sms`,
		`providers[3] (trunk): sip has no fake`,
		`providers[4] (ali-voice): has a tencent_voice block but is of type aliyun_voice`,
		`providers[4] (ali-voice): type aliyun_voice needs a aliyun_voice: block`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	cfg, err := config.Load(write(t, "c.yaml", "failover: {report_window: 0s}\n"), func(string) string { return "" })
	if err != nil || cfg.Failover.ReportWindow != 0 {
		t.Errorf("report_window 0s must turn the check off: %v, %v", cfg.Failover.ReportWindow, err)
	}
	if cfg, _ := config.Load("", func(string) string { return "" }); cfg.Failover.ReportWindow != config.Duration(10*time.Minute) {
		t.Errorf("default report_window %v, want 10m", cfg.Failover.ReportWindow)
	}
	if _, err := config.Load(write(t, "c.yaml", "colour: red\n"), func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "line 1: colour: unknown setting") {
		t.Errorf("unknown key: %v", err)
	}
}

// Unknown keys come with the key likely meant, a wrong value does not stop
// the reading of the rest, and each problem is on its line.
func TestProblemsOnTheirLines(t *testing.T) {
	body := `listen: 127.0.0.1:8080
dispatch:
  provider_timeout: soon
  max_retry: many
  poll_intervl: 50ms
simulator:
  failure_rate: 0.5
failure_rate: 2
providers:
  - name: a
    channel: sms
    type: kannel
    kannel: {sendsms_url: http://k/, usrname: x}
log: {level: loud}
`
	cfg, err := config.Load(write(t, "c.yaml", body), func(string) string { return "" })
	if cfg == nil || err == nil {
		t.Fatalf("%v %v", cfg, err)
	}
	var p *config.Problems
	if !errors.As(err, &p) {
		t.Fatalf("not *config.Problems: %T", err)
	}
	var got []string
	for _, it := range p.Items {
		got = append(got, it.Error())
	}
	want := []string{
		`line 3: dispatch.provider_timeout: "soon" is not a duration such as 30s or 5m`,
		`line 4: dispatch.max_retry: "many" is text, but this setting wants a whole number`,
		`line 5: dispatch.poll_intervl: unknown setting; did you mean dispatch.poll_interval?`,
		`line 8: failure_rate: unknown setting; did you mean simulator.failure_rate? (check the indentation)`,
		`line 13: providers[0].kannel.usrname: unknown setting; did you mean providers[0].kannel.username?`,
		`line 14: log.level: "loud": use debug, info, warn or error`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if cfg.Simulator.FailureRate != 0.5 {
		t.Errorf("the rest of the file was not read: failure_rate %v", cfg.Simulator.FailureRate)
	}
}

// With a real Redis the simulator is off unless enabled; in the embedded
// mode it is on unless disabled.
func TestSimulatorOnlyWhenMeant(t *testing.T) {
	env := func(k string) string { return map[string]string{"WARNGATE_REDIS_URL": "redis://r:6379/0"}[k] }
	for _, tt := range []struct {
		body string
		env  func(string) string
		on   bool
	}{
		{"", func(string) string { return "" }, true},
		{"simulator: {enabled: false}\n", func(string) string { return "" }, false},
		{"", env, false},
		{"providers: []\n", env, false},
		{"simulator: {enabled: true, secret: s}\n", env, true},
	} {
		cfg, _ := config.Load(write(t, "c.yaml", tt.body), tt.env)
		if cfg.SimulatorOn() != tt.on {
			t.Errorf("%q with %s: simulator on %v, want %v", tt.body, cfg.Redis.URL, cfg.SimulatorOn(), tt.on)
		}
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	env := map[string]string{"WARNGATE_LISTEN": "127.0.0.1:9999", "WARNGATE_REDIS_URL": "redis://r:6379/2", "WARNGATE_ADMIN_TOKEN": "t", "WARNGATE_LINK_KEY": "0123456789abcdef0123", "WARNGATE_SIMULATOR_SECRET": "s"}
	cfg, err := config.Load("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:9999" || cfg.Redis.URL != "redis://r:6379/2" || cfg.PublicURL != "http://127.0.0.1:9999" || cfg.Embedded() {
		t.Fatalf("%+v", cfg)
	}
}

func TestRedisThroughSentinel(t *testing.T) {
	env := func(string) string { return "" }
	good := "redis://s1:26379/3?master_name=warngate&addr=s2:26379&password=m4ster-pw"
	cfg, err := config.Load(write(t, "c.yaml", "redis: {url: \""+good+"\"}\nlink_key: 0123456789abcdef0123\nsimulator: {secret: s}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Redis.Sentinel() {
		t.Fatal("a URL with master_name is not taken for Sentinel")
	}
	if r := cfg.Redis.Redacted(); strings.Contains(r, "m4ster-pw") || !strings.Contains(r, "master_name=warngate") {
		t.Fatalf("redacted URL %s", r)
	}
	c, err := cfg.Redis.Client()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = config.Load(write(t, "c.yaml", "redis: {url: \"redis://s1:26379/0?master_name=warngate&password=m4ster-pw\"}\n"), env)
	if err == nil || !strings.Contains(err.Error(), "name at least two Sentinels") || strings.Contains(err.Error(), "m4ster-pw") {
		t.Fatalf("one Sentinel: %v", err)
	}
	_, err = config.Load(write(t, "c.yaml", "redis: {url: \"redis://s1:26379/0?master_name=w&addr=s2:26379&colour=red\"}\n"), env)
	if err == nil || !strings.Contains(err.Error(), "colour") {
		t.Fatalf("unknown option: %v", err)
	}
}

func TestRedisCluster(t *testing.T) {
	env := func(string) string { return "" }
	good := "redis-cluster://:cl0ster-pw@n1:6379?addr=n2:6379&addr=n3:6379"
	cfg, err := config.Load(write(t, "c.yaml", "redis: {url: \""+good+"\"}\nlink_key: 0123456789abcdef0123\nsimulator: {secret: s}\n"), env)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Redis.Cluster() || cfg.Redis.Sentinel() {
		t.Fatal("a redis-cluster:// URL is not taken for a cluster")
	}
	if r := cfg.Redis.Redacted(); strings.Contains(r, "cl0ster-pw") {
		t.Fatalf("redacted URL %s", r)
	}
	// Replicas confirm writes by default, as through Sentinel.
	if n := cfg.Redis.RequiredReplicas(); n != 1 {
		t.Fatalf("required replicas %d, want 1", n)
	}
	// The keys no warning owns share a hash tag on a cluster only.
	if p := cfg.Redis.SharedPrefix(""); p != "{wg}" {
		t.Fatalf("shared prefix %q", p)
	}
	if p := cfg.Redis.SharedPrefix("sim"); p != "{wg:sim}" {
		t.Fatalf("shared prefix %q", p)
	}
	c, err := cfg.Redis.Client()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*redis.ClusterClient); !ok {
		t.Fatalf("client %T, want a cluster client", c)
	}
	c.Close()
	single := config.Redis{URL: "redis://r:6379/2"}
	if p := single.SharedPrefix(""); p != "wg" {
		t.Fatalf("single Redis: shared prefix %q, want the plain prefix", p)
	}
	// A cluster has database 0 only.
	_, err = config.Load(write(t, "c.yaml", "redis: {url: \"redis-cluster://:cl0ster-pw@n1:6379/3?addr=n2:6379\"}\n"), env)
	if err == nil || !strings.Contains(err.Error(), "only database 0") || strings.Contains(err.Error(), "cl0ster-pw") {
		t.Fatalf("cluster with a database: %v", err)
	}
}

// A process's Redis client has a connection for each task it may run at
// once, beside the client's default for the HTTP side, on one server,
// through Sentinel and on a cluster; a pool_size in the URL is the
// operator's and stays.
func TestRedisPoolHoldsTheWorkers(t *testing.T) {
	def := 10 * runtime.GOMAXPROCS(0)
	poolOf := func(c redis.UniversalClient) int {
		t.Helper()
		defer c.Close()
		switch c := c.(type) {
		case *redis.Client:
			return c.Options().PoolSize
		case *redis.ClusterClient:
			return c.Options().PoolSize
		}
		t.Fatalf("client %T", c)
		return 0
	}
	// 116 workers and the default; the URL's own size when it sets one.
	for _, c := range []struct {
		url  string
		want int
	}{
		{"redis://r:6379/2", 116 + def},
		{"redis://s1:26379/3?master_name=warngate&addr=s2:26379", 116 + def},
		{"redis-cluster://n1:6379?addr=n2:6379", 116 + def},
		{"redis://r:6379/2?pool_size=7", 7},
		{"redis://s1:26379/3?master_name=warngate&addr=s2:26379&pool_size=7", 7},
		{"redis-cluster://n1:6379?addr=n2:6379&pool_size=7", 7},
	} {
		client, err := config.Redis{URL: c.url}.ClientFor(116)
		if err != nil {
			t.Fatal(err)
		}
		if got := poolOf(client); got != c.want {
			t.Errorf("%s: pool of %d, want %d", c.url, got, c.want)
		}
	}
}
