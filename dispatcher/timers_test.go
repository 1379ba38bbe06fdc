package dispatcher

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
)

// A check handed out before its instant waits out the fraction of a second
// the queue's whole seconds cost, and no longer: one handed out earlier
// still goes back to the queue until its instant.
func TestAwaitDue(t *testing.T) {
	now := time.Date(2026, 7, 1, 2, 0, 0, 0, time.UTC)
	var slept []time.Duration
	d := &Dispatcher{now: func() time.Time { return now }, sleep: func(_ context.Context, d time.Duration) error {
		slept = append(slept, d)
		return nil
	}}
	ctx := context.Background()
	for _, tt := range []struct {
		due   time.Time
		err   error
		slept time.Duration
	}{
		{due: now.Add(400 * time.Millisecond), slept: 400 * time.Millisecond},
		{due: now.Add(d.maxEarly()), slept: d.maxEarly()},
		{due: now.Add(-time.Second)},
		{due: time.Time{}}, // queued before checks kept their instant
		{due: now.Add(3 * time.Second), err: errEarly},
	} {
		slept = nil
		err := d.awaitDue(ctx, tt.due)
		var got time.Duration
		if len(slept) > 0 {
			got = slept[0]
		}
		if err != tt.err || got != tt.slept || len(slept) > 1 {
			t.Errorf("due in %v: slept %v, %v; want %v, %v", tt.due.Sub(now), slept, err, tt.slept, tt.err)
		}
	}
	// Given back early, it is handed out again at its instant.
	due := time.Now().Add(3 * time.Second)
	payload, _ := json.Marshal(timerPayload{WarningID: "w", Due: due.UnixMilli()})
	if got := (&Dispatcher{cfg: Config{RetryDelay: RetryDelay}}).retryDelay(0, errEarly, asynq.NewTask(TypeEscalate, payload)); got < 2*time.Second || got > 3*time.Second {
		t.Errorf("an early check comes back in %v, want about 3s", got)
	}
}
