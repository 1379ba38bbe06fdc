package dispatcher_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"warngate/dispatcher"
	"warngate/ledger"
)

// Workers whose look for work fails count it: after one, every queue
// server polls, which an operator sees as Redis busier than the work
// explains, and warngate_workers_sweep_failures_total says why.
func TestFailedSweepsCounted(t *testing.T) {
	gone := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer gone.Close()
	m := dispatcher.NewMetrics(prometheus.NewRegistry())
	d := dispatcher.New(dispatcher.Config{IdleSweep: 100 * time.Millisecond, IdleStop: time.Second},
		dispatcher.Deps{Redis: gone, Ledger: ledger.New(gone, "gone", nil), Metrics: m, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(m.SweepFailures) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if testutil.ToFloat64(m.SweepFailures) == 0 {
		t.Error("no failed look for work counted with Redis gone")
	}
	cancel()
	<-done
}
