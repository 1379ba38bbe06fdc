package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/dispatcher"
	"warngate/internal/kannelbox"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// The benches' city-wide warnings name the city: the API refuses the
// province above it as outside the gateway's city.
func TestBenchCityCode(t *testing.T) {
	if got := benchCity(region.Kunming()); got != "530100000000" {
		t.Fatalf("city-wide warnings name %s, want the city 530100000000", got)
	}
}

// A negative scrape interval is refused with the flag named, before
// anything is measured.
func TestBenchRefusesNegativeIdleScrape(t *testing.T) {
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--idle-only", "--idle-scrape", "-1s"}, func(string) string { return "" }, &out, &errs)
	if code == 0 || !strings.Contains(out.String()+errs.String(), "--idle-scrape: 0 or more") {
		t.Fatalf("bench exited %d: %s%s; want --idle-scrape named", code, out.String(), errs.String())
	}
}

// A batch count out of dispatch.concurrency's range is refused with the
// flag named, not the setting the bench would have made of it.
func TestBenchRefusesConcurrencyOutOfRange(t *testing.T) {
	for _, n := range []string{"-1", "257"} {
		var out, errs bytes.Buffer
		code := run([]string{"bench", "--concurrency", n}, func(string) string { return "" }, &out, &errs)
		if code == 0 || !strings.Contains(out.String()+errs.String(), "--concurrency: 1 to 256") {
			t.Errorf("--concurrency %s: bench exited %d: %s%s; want --concurrency named", n, code, out.String(), errs.String())
		}
	}
}

// The fan-out bench warns the city (not the province its division tree
// hangs from, which a warning may not name) and prints its figures.
func TestBenchFanOutSmall(t *testing.T) {
	url, _ := realRedis(t)
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--redis", url, "--flush", "--recipients", "20000", "--naive", "0", "--samples", "3", "--concurrency", "3"},
		func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), ", 3 batches at once per channel,") {
		t.Errorf("--concurrency 3 not in the run's heading:\n%s", out.String())
	}
	m := regexp.MustCompile(`(?m)^recipients_per_second=(\d+) naive_ratio=[\d.]+ bytes_per_recipient=\d+ first_official_p99_ms=\d+ redis_us_per_delivery=([\d.]+) gateway_us_per_delivery=([\d.]+) cpu_idle_pct=(\d+) cpu_steal_pct=(\d+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no figures line in:\n%s", out.String())
	}
	for i, what := range []string{"recipients a second", "Redis's processor time a delivery", "the gateway's processor time a delivery"} {
		if v, _ := strconv.ParseFloat(m[i+1], 64); v <= 0 {
			t.Errorf("%s: %s, want more than 0, in:\n%s", what, m[i+1], out.String())
		}
	}
	// The machine's line: other processes are named when Redis runs here.
	if idle, _ := strconv.Atoi(m[4]); idle > 100 {
		t.Errorf("cpu_idle_pct=%d, want a share of at most 100", idle)
	}
	if !regexp.MustCompile(`(?m)^  machine: +\d+ cores, \d+% idle, \d+% stolen by the hypervisor(, \d+% busy with other processes)?$`).MatchString(out.String()) {
		t.Errorf("no line of the machine's use in:\n%s", out.String())
	}
}

// The crash bench's gateway is configured as a trial must be: the
// simulator on (a real Redis runs it only when asked) and its red warnings
// released without a second person. Either missing, it waited for a fan-out
// that never came.
func TestBenchCrashSmall(t *testing.T) {
	url, _ := realRedis(t)
	t.Setenv("WARNGATE_TEST_EXEC", "1") // the processes it starts are this binary
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--crash", "--kills", "1", "--recipients", "20000", "--redis", url, "--flush"},
		func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench --crash exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "sent twice: nobody") || !strings.Contains(out.String(), "crash_kills=1") {
		t.Errorf("no kill with nobody sent twice in:\n%s", out.String())
	}
}

// A fan-out bench that ends with deliveries missing says why, from the
// ledger's failure reasons, so that a failed run can be read.
func TestBenchFailureNamesReasons(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBCommand)
	l := ledger.New(rdb, redistest.Prefix(t, "bf"), nil)
	ctx := context.Background()
	const wid = "wfail"
	h, err := l.Lock(ctx, wid, warning.SMS, 1, "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var entries []ledger.Entry
	for _, id := range []string{"r1", "r2", "r3"} {
		entries = append(entries, ledger.Entry{RecipientID: id, Audience: warning.Residents, Division: "530102001001"})
	}
	c, err := l.Begin(ctx, h, entries, false)
	if err != nil {
		t.Fatal(err)
	}
	outs := []ledger.Outcome{{Entry: entries[0], State: warning.Failed, Extra: "用户关机"}, {Entry: entries[1], State: warning.Failed, Extra: "用户关机"}, {Entry: entries[2], State: warning.Failed, Extra: "空号"}}
	if _, err := l.Record(ctx, wid, warning.SMS, c.Gen, outs); err != nil {
		t.Fatal(err)
	}
	if got, want := failureReasons(ctx, l, wid), "; reasons: sms 用户关机 2, sms 空号 1"; got != want {
		t.Fatalf("failureReasons = %q, want %q", got, want)
	}
	if got := failureReasons(ctx, l, "none"); !strings.Contains(got, "no failure reason") {
		t.Fatalf("a warning without failures: %q", got)
	}
}

// A bench gateway stops as serve does: a request in flight (a provider's
// last push) finishes with Redis still open, instead of finding it closed
// under it and logging a report not marked.
func TestBenchGatewayStopsAfterRequestsInFlight(t *testing.T) {
	url, _ := realRedis(t)
	entered, finished := make(chan struct{}), make(chan error, 1)
	var rdb redis.UniversalClient
	var ready sync.WaitGroup
	ready.Add(1)
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/in-flight" {
				h.ServeHTTP(w, r)
				return
			}
			ready.Wait()
			close(entered)
			time.Sleep(300 * time.Millisecond)
			finished <- rdb.Ping(context.Background()).Err()
		})
	}
	g, err := startBenchGateway(context.Background(), benchGatewayOptions{redisURL: url, perVillage: 1, wrap: wrap}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	rdb = g.a.rdb
	ready.Done()
	go http.Get(g.base + "/in-flight")
	<-entered
	g.stop()
	select {
	case err := <-finished:
		if err != nil {
			t.Fatalf("the request in flight found Redis %v", err)
		}
	default:
		t.Fatal("the gateway stopped before the request in flight finished")
	}
}

// The providers bench says how many chunks a run handed over on a channel
// and their average size, from the gateway's own metric, other channels
// apart.
func TestBenchCallsOf(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := dispatcher.NewMetrics(reg)
	if got := callsOf(reg, "sms"); got != "no chunks handed over" {
		t.Fatalf("before any call: %q", got)
	}
	for _, n := range []float64{100, 50, 50, 12} {
		m.CallRecipients.WithLabelValues("sms").Observe(n)
	}
	m.CallRecipients.WithLabelValues("wechat").Observe(1000)
	if got, want := callsOf(reg, "sms"), "4 chunks handed over, 53.0 recipients each on average"; got != want {
		t.Fatalf("callsOf = %q; want %q", got, want)
	}
}

// The providers bench sends through a real Kannel three ways (many
// numbers a sendsms call, a connection to bearerbox, one number a call)
// and prints each on its summary line, every SMS delivered.
func TestBenchKannelSmall(t *testing.T) {
	kannelbox.Require(t)
	url, _ := realRedis(t)
	var out, errs bytes.Buffer
	code := run([]string{"bench", "--providers", "--kannel-only", "--redis", url, "--flush", "--kannel-n", "600", "--kannel-box-n", "600", "--kannel-single-n", "150"},
		func(string) string { return "" }, &out, &errs)
	if code != 0 {
		t.Fatalf("bench exited %d: %s%s", code, out.String(), errs.String())
	}
	if !strings.Contains(out.String(), "each its own message over a connection to bearerbox") {
		t.Errorf("no run over a connection to bearerbox in:\n%s", out.String())
	}
	m := regexp.MustCompile(`(?m)^kannel_sent_per_second=(\d+) kannel_reported_per_second=(\d+) kannel_single_sent_per_second=(\d+) kannel_box_sent_per_second=(\d+) kannel_box_reported_per_second=(\d+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no Kannel figures line in:\n%s", out.String())
	}
	for i, key := range []string{"kannel_sent_per_second", "kannel_reported_per_second", "kannel_single_sent_per_second", "kannel_box_sent_per_second", "kannel_box_reported_per_second"} {
		if v, _ := strconv.Atoi(m[i+1]); v <= 0 {
			t.Errorf("%s=%s, want more than 0", key, m[i+1])
		}
	}
}
