package dispatcher_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/warning"
)

// A provider that reports keeps its traffic: batches sent longer ago than
// the report window and never reported do not make it silent when one sent
// since then, still within the window, has its report.
func TestRouteNotSilentWhenANewerBatchIsReported(t *testing.T) {
	rdb := redistest.Client(t, redistest.DBDispatcher)
	prefix := fmt.Sprint("nr", time.Now().UnixNano())
	clock := &steppedClock{t: time.Now()}
	acct := &account{got: map[string]int{}}
	backup := &account{got: map[string]int{}}
	const window = 5 * time.Minute
	reported := &reportedRefs{}
	route := dispatcher.NewRoute(warning.SMS, []dispatcher.Provider{{Name: prefix + "a", Notifier: acct}, {Name: prefix + "b", Notifier: backup}},
		dispatcher.RouteConfig{Prefix: prefix, ReportWindow: window, SilentBatches: 2, Reported: reported.Reported},
		rdb, slog.New(slog.NewTextHandler(io.Discard, nil)), clock.now)
	send := func(n int) *channels.Batch {
		b := batchOf(3)
		b.Warning = &warning.Warning{ID: fmt.Sprint("w", n)}
		if _, _, err := route.Notify(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		clock.step(2 * time.Second)
		return b
	}
	// Batches 1 and 2 lose their reports; batch 3 is reported.
	send(1)
	send(2)
	clock.step(window - 30*time.Second)
	b3 := send(3)
	reported.add(b3.Ref(0))
	// 1 and 2 are now past the window, 3 is not yet.
	clock.step(time.Minute)
	send(4)
	if backup.calls != 0 || acct.calls != 4 {
		t.Fatalf("account reported on batch 3, after 1 and 2, but was taken for silent: account called %d times, backup %d; want 4 and 0", acct.calls, backup.calls)
	}
}
