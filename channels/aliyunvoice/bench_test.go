package aliyunvoice_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"warngate/channels/aliyunvoice"
	"warngate/channels/aliyunvoice/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// BenchmarkCallsOnTheAccountsLines calls 500 officials on an account of 100
// lines whose calls last one second (WARNGATE_BENCH_CALL, e.g. 15s), each
// official pressing 1 at its end:
// the time for all of them to be called and to confirm, the share of line
// time spent in calls, and the pushes taken per second with their p99.
func BenchmarkCallsOnTheAccountsLines(b *testing.B) {
	const officials, lines = 500, 100
	talk := time.Second
	if d, err := time.ParseDuration(os.Getenv("WARNGATE_BENCH_CALL")); err == nil {
		talk = d
	}
	for range b.N {
		r := newRig(b, fake.Options{Lines: lines, Default: fake.Behavior{Answer: true, Keys: "1", KeyAfter: talk}},
			func(c *aliyunvoice.Config) { c.Lines = lines })
		numbers := make([]string, officials)
		for i := range numbers {
			numbers[i] = fmt.Sprintf("1380%07d", i)
		}
		bt := channeltest.ChannelBatch(warning.Voice, warning.TownshipOfficials, numbers...)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*talk+time.Minute)
		if _, _, err := r.a.Notify(ctx, bt); err != nil {
			b.Fatal(err)
		}
		cancel()
		for deadline := time.Now().Add(2*talk + time.Minute); len(r.sink.Confirmations()) < officials; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d confirmed", len(r.sink.Confirmations()), officials)
			}
		}
		elapsed := time.Since(start)
		channeltest.WaitFor(b, "every call's record", func() bool { return len(r.sink.Reports()) == officials })
		b.ReportMetric(elapsed.Seconds(), "s/500-confirmed")
		b.ReportMetric(100*float64(officials)*talk.Seconds()/(lines*elapsed.Seconds()), "%lines-busy")
		if r.f.MostActive() > lines || r.f.Overflows() > 0 {
			b.Errorf("%d calls at once, %d over the line limit", r.f.MostActive(), r.f.Overflows())
		}
		r.mu.Lock()
		took := slices.Clone(r.took)
		r.mu.Unlock()
		slices.Sort(took)
		b.ReportMetric(float64(len(took))/elapsed.Seconds(), "pushes/s")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "ms-p99-push")
	}
}
