package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/region"
)

// idleFigures are what an idle gateway costs.
type idleFigures struct {
	commandsPerSecond float64
	cpuPercent        float64
	// pickup is the longest time from accepting a warning issued while the
	// workers were stopped to its first official's message at the provider.
	pickup time.Duration
}

// line is the figures' part of the summary line.
func (f idleFigures) line() string {
	return fmt.Sprintf("idle_redis_commands_per_second=%.1f idle_cpu_percent=%.2f idle_pickup_ms=%d",
		f.commandsPerSecond, f.cpuPercent, f.pickup.Milliseconds())
}

// benchIdle waits until the gateway's workers stop for want of work (or,
// with stop 0, for them to settle), then counts Redis's commands and the
// process's processor time over window, reading the gateway's metrics every
// scrape meanwhile. Then, pickups times, it issues a
// red warning for a village to the stopped workers and times its first
// official's message, waiting for them to stop again before the next.
func benchIdle(ctx context.Context, a *app, rdb redis.UniversalClient, window, stop, scrape time.Duration, pickups int,
	post func(area string) (string, time.Time, error), firstOfficial func(id string) (time.Duration, bool), stdout io.Writer) (idleFigures, error) {
	var f idleFigures
	// A gateway that has sent on every channel and level has all its
	// queues registered, and every scrape of its metrics reads them all.
	if err := a.dispatcher.RegisterQueues(ctx); err != nil {
		return f, err
	}
	if err := waitStopped(a, stop, 0); err != nil {
		return f, err
	}
	c0, err := totalCommands(ctx, rdb)
	if err != nil {
		return f, err
	}
	cpu0, t0 := processCPU(), time.Now()
	scrapes := 0
	if scrape > 0 {
		// As Prometheus would: the first scrape at once, then every scrape.
		tick := time.NewTicker(scrape)
		end := time.After(window)
	watch:
		for {
			a.registry.Gather()
			scrapes++
			select {
			case <-tick.C:
			case <-end:
				break watch
			}
		}
		tick.Stop()
	} else {
		time.Sleep(window)
	}
	cpu1, t1 := processCPU(), time.Now()
	c1, err := totalCommands(ctx, rdb)
	if err != nil {
		return f, err
	}
	// The bench's first INFO counts in the second's total.
	f.commandsPerSecond = float64(c1-c0-1) / t1.Sub(t0).Seconds()
	f.cpuPercent = 100 * (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds()
	if stop > 0 && gauge(a, "warngate_workers_polling") != 0 {
		return f, fmt.Errorf("bench: the workers started while nothing was queued")
	}
	fmt.Fprintf(stdout, "  idle:                  %.1f Redis commands/s, %.2f %% of a core over %s (workers stop after %s without work; 0 never), metrics read %d times\n",
		f.commandsPerSecond, f.cpuPercent, window, stop, scrapes)

	tree := a.tree
	villages := villageCodes(tree)
	var lat []time.Duration
	var stops float64
	for i := range pickups {
		if i > 0 {
			if err := waitStopped(a, stop, stops); err != nil {
				return f, err
			}
		}
		stops = counter(a, "warngate_workers_idle_stops_total")
		id, _, err := post(villages[(i*131)%len(villages)])
		if err != nil {
			return f, err
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			if d, ok := firstOfficial(id); ok {
				lat = append(lat, d)
				break
			}
			if time.Now().After(deadline) {
				return f, fmt.Errorf("bench: warning %s issued to idle workers: no official reached after 30s", id)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if len(lat) > 0 {
		parts := make([]string, len(lat))
		for i, d := range lat {
			parts[i] = d.Round(time.Millisecond).String()
			f.pickup = max(f.pickup, d)
		}
		fmt.Fprintf(stdout, "  warning to idle workers: first official after %s\n", strings.Join(parts, ", "))
	}
	return f, nil
}

// waitStopped waits until the workers stopped for want of work more than
// stops times; with stop 0 (they never stop) until the work of a moment
// ago has settled.
func waitStopped(a *app, stop time.Duration, stops float64) error {
	if stop <= 0 {
		time.Sleep(3 * time.Second)
		return nil
	}
	deadline := time.Now().Add(stop + time.Minute)
	for counter(a, "warngate_workers_idle_stops_total") <= stops || gauge(a, "warngate_workers_polling") != 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the workers still poll %s after the last work", stop+time.Minute)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// gauge reads a gauge of the app's registry; -1 when it has none.
func gauge(a *app, name string) float64 {
	mfs, _ := a.registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// counter reads a counter of the app's registry; -1 when it has none.
func counter(a *app, name string) float64 {
	mfs, _ := a.registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// totalCommands is Redis's count of the commands it has processed.
func totalCommands(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.InfoMap(ctx, "stats").Result()
	if err != nil {
		return 0, err
	}
	v, ok := info["Stats"]["total_commands_processed"]
	if !ok {
		return 0, fmt.Errorf("bench: INFO stats has no total_commands_processed")
	}
	return strconv.ParseInt(v, 10, 64)
}

// processCPU is the processor time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// villageCodes lists the tree's villages.
func villageCodes(tree *region.Tree) []string {
	var out []string
	tree.Walk(tree.Root().Code, func(d *region.Division) bool {
		if d.Level == region.Village {
			out = append(out, d.Code)
		}
		return true
	})
	return out
}
