package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"warngate/config"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// crashBench sizes the crash bench.
type crashBench struct {
	redisURL   string
	n          int  // deliveries of the city-wide warning, about
	kills      int  // runs, one kill each
	workers    int  // worker processes while the warning fans out
	noQuery    bool // the simulator cannot be asked what it accepted
	prefix     string
	stderr     io.Writer
	stdout     io.Writer
	dir        string
	killPoints []float64
}

// crashRun is what one kill did.
type crashRun struct {
	at        float64                 // share of deliveries sent at the kill
	tasks     int                     // tasks the killed worker was running
	resumed   float64                 // seconds from the kill until the last of them ran again
	twice     map[warning.Channel]int // recipients the provider accepted more than once
	planned   int64
	delivered int64
}

// benchCrash fans a city-wide red warning out through worker processes of
// this binary and kills one with SIGKILL in the middle, once per run: it
// counts the recipients the simulator accepted twice (from its own record
// in Redis) and the seconds from the kill until every task the killed
// worker ran was running again elsewhere.
func benchCrash(ctx context.Context, o crashBench) error {
	dir, err := os.MkdirTemp("", "warngate-crash-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	o.dir = dir
	o.prefix = "wg"
	tree := region.Kunming()
	perVillage := int(math.Ceil(float64(o.n) / 1.5 / float64(countVillages(tree, benchCity(tree)))))
	query := "asked (status query)"
	if o.noQuery {
		query = "not asked (no status query)"
	}
	fmt.Fprintf(o.stdout, "crash: city-wide red warning, %d residents per village, %d workers, one killed with SIGKILL per run; provider %s; Redis %s\n",
		perVillage, o.workers, query, config.Redis{URL: o.redisURL}.Redacted())
	var runs []crashRun
	for k := range o.kills {
		at := o.killPoints[k%len(o.killPoints)]
		r, err := o.run(ctx, k+1, perVillage, at)
		if err != nil {
			return fmt.Errorf("run %d: %w", k+1, err)
		}
		runs = append(runs, r)
		var twice []string
		for _, ch := range warning.Channels {
			if n := r.twice[ch]; n > 0 {
				twice = append(twice, fmt.Sprintf("%s %d", ch, n))
			}
		}
		if len(twice) == 0 {
			twice = []string{"nobody"}
		}
		fmt.Fprintf(o.stdout, "  kill %d at %2.0f%% sent: %d tasks of the killed worker running again after %.1f s; sent twice: %s; %d of %d delivered\n",
			k+1, 100*r.at, r.tasks, r.resumed, strings.Join(twice, ", "), r.delivered, r.planned)
	}
	maxDup, total, maxResume := 0, 0, 0.0
	for _, r := range runs {
		for _, n := range r.twice {
			maxDup = max(maxDup, n)
			total += n
		}
		maxResume = max(maxResume, r.resumed)
	}
	fmt.Fprintf(o.stdout, "crash_kills=%d crash_duplicates_max=%d crash_duplicates_total=%d crash_resume_seconds_max=%.1f\n",
		len(runs), maxDup, total, maxResume)
	return nil
}

// run is one fan-out with one kill: start the gateway's processes, issue
// the warning, kill a worker once the share at is sent, wait for its tasks
// to run again and the warning to complete, and count who was sent twice.
func (o crashBench) run(ctx context.Context, k, perVillage int, at float64) (crashRun, error) {
	opt, err := redis.ParseURL(o.redisURL)
	if err != nil {
		return crashRun{}, err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if err := rdb.FlushDB(ctx).Err(); err != nil {
		return crashRun{}, err
	}
	g, err := o.startGateway(k, perVillage)
	defer g.stop()
	if err != nil {
		return crashRun{}, o.withLogs(k, err)
	}
	id, err := postWarning(g.base, "crash-bench", benchCity(region.Kunming()))
	if err != nil {
		return crashRun{}, o.withLogs(k, err)
	}
	l := ledger.New(rdb, o.prefix, nil)
	t, err := waitTotals(ctx, l, id, 10*time.Minute, func(t ledger.Counts, planned bool) bool {
		return planned && float64(t.Sent) >= at*float64(t.Planned)
	})
	if err != nil {
		return crashRun{}, o.withLogs(k, err)
	}
	r := crashRun{at: float64(t.Sent) / float64(t.Planned)}
	killed, tasks, err := o.kill(ctx, g, rdb)
	if err != nil {
		return r, err
	}
	r.tasks = len(tasks)
	// A supervisor starts another in its place.
	if _, err := g.spawn("replacement", "worker", "--metrics", "", "--config", g.cfg); err != nil {
		return r, err
	}
	if r.resumed, err = waitResumed(rdb, tasks, killed); err != nil {
		return r, o.withLogs(k, err)
	}
	if t, err = waitTotals(ctx, l, id, 10*time.Minute, func(t ledger.Counts, _ bool) bool { return t.Done() }); err != nil {
		return r, o.withLogs(k, err)
	}
	r.planned, r.delivered = t.Planned, t.Delivered
	if t.Delivered != t.Planned {
		return r, o.withLogs(k, fmt.Errorf("%d of %d deliveries not delivered: %+v", t.Planned-t.Delivered, t.Planned, t))
	}
	r.twice, err = acceptedTwice(ctx, rdb, o.prefix+":sim:acc:"+id+"/")
	return r, err
}

// crashGateway is one run's API and worker processes.
type crashGateway struct {
	dir, cfg, base string
	k              int
	env            []string
	procs, workers []*exec.Cmd
}

// startGateway writes a run's configuration and starts the API and the
// workers, all on the same Redis, and waits for the API.
func (o crashBench) startGateway(k, perVillage int) (*crashGateway, error) {
	addr, err := freePort()
	if err != nil {
		return &crashGateway{}, err
	}
	g := &crashGateway{dir: o.dir, k: k, base: "http://" + addr, cfg: filepath.Join(o.dir, fmt.Sprintf("run%d.yaml", k))}
	body := fmt.Sprintf("redis: {url: %q}\nroster: {demo: {residents_per_village: %d, wechat_share: 0.5, households_per_village: 3}}\n"+
		"simulator: {enabled: true, secret: crash-bench-sim, report_delay: 0s, failure_rate: 0, status_query: %v, unanswered_calls: 0}\n"+
		"approval: {admin_token_bypass: [orange, red]}\nlog: {level: warn}\n", // the bench is automation
		o.redisURL, perVillage, !o.noQuery)
	if err := os.WriteFile(g.cfg, []byte(body), 0o600); err != nil {
		return g, err
	}
	g.env = []string{"WARNGATE_ADMIN_TOKEN=crash-bench", "WARNGATE_LINK_KEY=crash-bench-link-key-0123", "WARNGATE_PUBLIC_URL=" + g.base, "GOGC=400"}
	if _, err := g.spawn("api", "serve", "--no-workers", "--listen", addr, "--config", g.cfg); err != nil {
		return g, err
	}
	for i := range o.workers {
		w, err := g.spawn(fmt.Sprint("worker", i), "worker", "--metrics", "", "--config", g.cfg)
		if err != nil {
			return g, err
		}
		g.workers = append(g.workers, w)
	}
	return g, waitReady(g.base + "/readyz")
}

// spawn starts a process of this binary, its output in the run's log.
func (g *crashGateway) spawn(name string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(filepath.Join(g.dir, fmt.Sprintf("run%d-%s.log", g.k, name)))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g.procs = append(g.procs, cmd)
	return cmd, nil
}

// stop ends the run's processes, as a service manager would.
func (g *crashGateway) stop() {
	for _, p := range g.procs {
		p.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range g.procs {
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
}

// waitTotals polls a warning's totals until done says so.
func waitTotals(ctx context.Context, l *ledger.Ledger, id string, within time.Duration, done func(ledger.Counts, bool) bool) (ledger.Counts, error) {
	deadline := time.Now().Add(within)
	for {
		t, planned, err := l.Totals(ctx, id)
		if err != nil || done(t, planned) {
			return t, err
		}
		if time.Now().After(deadline) {
			return t, fmt.Errorf("not there after %s: %+v", within, t)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// crashTask is a task the killed worker was running: where the janitor
// queues it again, and under which id.
type crashTask struct{ queue, resumedID string }

// kill kills the first worker with SIGKILL and lists the tasks it was
// running: its heartbeats, which stay in Redis until a janitor takes them,
// of tasks asynq still has as running.
func (o crashBench) kill(ctx context.Context, g *crashGateway, rdb *redis.Client) (time.Time, []crashTask, error) {
	victim := g.workers[0]
	victim.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	victim.Wait()
	members, err := rdb.ZRange(ctx, o.prefix+":running", 0, -1).Result()
	if err != nil {
		return killed, nil, err
	}
	insp := asynq.NewInspectorFromRedisClient(rdb)
	var tasks []crashTask
	for _, m := range members {
		f := strings.Split(m, "|")
		if len(f) != 4 || !strings.HasPrefix(f[2], strconv.Itoa(victim.Process.Pid)+".") {
			continue
		}
		// A task it had just finished still has its heartbeat.
		if info, err := insp.GetTaskInfo(f[0], f[1]); err != nil || info.State != asynq.TaskStateActive {
			continue
		}
		base, _, _ := strings.Cut(f[1], "~")
		queue := f[0]
		if ch, _, ok := strings.Cut(queue, "."); ok {
			queue = dispatcher.QueueName(warning.Channel(ch), dispatcher.TierUrgent) // where the janitor puts a batch
		}
		tasks = append(tasks, crashTask{queue, base + "~" + f[3]})
	}
	return killed, tasks, nil
}

// waitResumed waits until every task runs again (its copy is no longer
// pending) and returns the seconds from the kill until the last did.
func waitResumed(rdb *redis.Client, tasks []crashTask, killed time.Time) (float64, error) {
	insp := asynq.NewInspectorFromRedisClient(rdb)
	running := map[string]bool{}
	last := 0.0
	for len(running) < len(tasks) {
		for _, tk := range tasks {
			if running[tk.resumedID] {
				continue
			}
			if info, err := insp.GetTaskInfo(tk.queue, tk.resumedID); err == nil && info.State != asynq.TaskStatePending {
				running[tk.resumedID] = true
				last = time.Since(killed).Seconds()
			}
		}
		if time.Since(killed) > 5*time.Minute {
			return last, fmt.Errorf("%d of the killed worker's %d tasks not running again after 5 minutes", len(tasks)-len(running), len(tasks))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last, nil
}

// acceptedTwice counts, per channel, the recipients the simulator accepted
// more than once.
func acceptedTwice(ctx context.Context, rdb *redis.Client, prefix string) (map[warning.Channel]int, error) {
	seen, err := acceptedBySim(ctx, rdb, prefix)
	if err != nil {
		return nil, err
	}
	out := map[warning.Channel]int{}
	for ch, ids := range seen {
		for _, n := range ids {
			if n > 1 {
				out[ch]++
			}
		}
	}
	return out, nil
}

// acceptedBySim counts, per channel and recipient, how often the simulator
// accepted a message, from its own record: one key per hand-over,
// "<prefix><channel>/<chunk>", holding the recipients a line each.
func acceptedBySim(ctx context.Context, rdb redis.UniversalClient, prefix string) (map[warning.Channel]map[string]int, error) {
	seen := map[warning.Channel]map[string]int{}
	scan := func(ctx context.Context, node *redis.Client) error {
		iter := node.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			ch := warning.Channel(strings.Split(strings.TrimPrefix(key, prefix), "/")[0])
			v, err := node.Get(ctx, key).Result()
			if err != nil {
				return err
			}
			if seen[ch] == nil {
				seen[ch] = map[string]int{}
			}
			for id := range strings.SplitSeq(v, "\n") {
				if id != "" {
					seen[ch][id]++
				}
			}
		}
		return iter.Err()
	}
	switch c := rdb.(type) {
	case *redis.Client:
		return seen, scan(ctx, c)
	case *redis.ClusterClient:
		// The keys share a slot: one master holds them all.
		var mu sync.Mutex
		err := c.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return scan(ctx, node)
		})
		return seen, err
	}
	return nil, fmt.Errorf("acceptedBySim: %T", rdb)
}

// withLogs adds the tail of a run's process logs to an error.
func (o crashBench) withLogs(k int, err error) error {
	logs, _ := filepath.Glob(filepath.Join(o.dir, fmt.Sprintf("run%d-*.log", k)))
	slices.Sort(logs)
	var b strings.Builder
	for _, p := range logs {
		body, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSpace(string(body)), "\n")
		fmt.Fprintf(&b, "\n--- %s (last lines)\n%s", filepath.Base(p), strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return fmt.Errorf("%w%s", err, b.String())
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitReady(url string) error {
	for range 600 {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered", url)
}

// postWarning issues a red warning for area and returns its id.
func postWarning(base, token, area string) (string, error) {
	body := fmt.Sprintf(`{"hazard":"rainstorm","level":"red","areas":[%q],"headline":"暴雨红色预警（崩溃测试）","description":"crash bench","status":"actual","expires":%q}`,
		area, time.Now().Add(2*time.Hour).Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return "", fmt.Errorf("POST /api/v1/warnings: %s: %s", resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || out.ID == "" {
		return "", errors.Join(errors.New("POST /api/v1/warnings: no id"), err)
	}
	return out.ID, nil
}
