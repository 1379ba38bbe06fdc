package voice_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels/voice"
	"warngate/internal/redistest"
	"warngate/warning"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func lines(t *testing.T, c *clock) *voice.Lines {
	rdb := redistest.Client(t, redistest.DBVoice)
	return voice.NewLines(rdb, prefix(t), c.now)
}

// prefix is a key prefix of the test's own, new for every run.
func prefix(t *testing.T) string { return "t-" + t.Name() + "-" + voice.NewID() }

func TestLinesLimitCallsAndNeverCallOnePhoneTwice(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1700000000, 0)}
	l := lines(t, c)
	a, got, err := l.TryAcquire(ctx, "trunk", 2, "13800000001", time.Minute)
	if err != nil || got != voice.Got || a.ID == "" || a.Account != "trunk" || a.Phone != "13800000001" {
		t.Fatalf("first call: %+v %v %v", a, got, err)
	}
	// The same number, on this account or another, waits for its call.
	for _, account := range []string{"trunk", "aliyun-backup"} {
		if _, got, _ := l.TryAcquire(ctx, account, 2, "13800000001", time.Minute); got != voice.PhoneBusy {
			t.Errorf("the same phone on %s: %v, want PhoneBusy", account, got)
		}
	}
	b, got, _ := l.TryAcquire(ctx, "trunk", 2, "13800000002", time.Minute)
	if got != voice.Got {
		t.Fatalf("second line: %v", got)
	}
	if _, got, _ := l.TryAcquire(ctx, "trunk", 2, "13800000003", time.Minute); got != voice.LinesFull {
		t.Errorf("third call on two lines: %v, want LinesFull", got)
	}
	if n, _ := l.InUse(ctx, "trunk"); n != 2 {
		t.Errorf("in use %d", n)
	}
	if err := l.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	l.Release(ctx, a) // twice is harmless
	if n, _ := l.InUse(ctx, "trunk"); n != 1 {
		t.Errorf("in use after release %d", n)
	}
	if _, got, _ := l.TryAcquire(ctx, "trunk", 2, "13800000001", time.Minute); got != voice.Got {
		t.Errorf("after its call ended, the phone: %v", got)
	}
	_ = b
}

func TestLinesOfADeadProcessComeFree(t *testing.T) {
	ctx := context.Background()
	c := &clock{t: time.Unix(1700000000, 0)}
	l := lines(t, c)
	dead, _, _ := l.TryAcquire(ctx, "trunk", 1, "13800000001", 30*time.Second)
	alive, _, _ := l.TryAcquire(ctx, "other", 1, "13800000002", 30*time.Second)
	c.add(20 * time.Second)
	if ok, err := l.Extend(ctx, alive, 30*time.Second); !ok || err != nil {
		t.Fatalf("extend: %v %v", ok, err)
	}
	c.add(15 * time.Second) // the dead process's lease ran out; the living one's not
	if _, got, _ := l.TryAcquire(ctx, "trunk", 1, "13800000001", 30*time.Second); got != voice.Got {
		t.Errorf("line and phone of a dead process: %v, want them free", got)
	}
	if _, got, _ := l.TryAcquire(ctx, "other", 1, "13800000003", 30*time.Second); got != voice.LinesFull {
		t.Errorf("an extended lease was lost: %v", got)
	}
	if ok, _ := l.Extend(ctx, dead, time.Minute); ok {
		t.Error("a lease that ran out and was taken was extended")
	}
	// The newer lease keeps the phone when the dead one is released late.
	l.Release(ctx, dead)
	if _, got, _ := l.TryAcquire(ctx, "x", 1, "13800000001", time.Minute); got != voice.PhoneBusy {
		t.Errorf("a late release freed the phone of another call: %v", got)
	}
}

func TestDialPlacesEveryCallAsLinesComeFree(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	l := lines(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	phones := make([]string, 12)
	for i := range phones {
		phones[i] = fmt.Sprintf("138000001%02d", i)
	}
	phones[5] = phones[4] // one person twice in the batch: never both at once
	var inCall, most, placed atomic.Int32
	var mu sync.Mutex
	calling := map[string]bool{}
	var wg sync.WaitGroup
	d := voice.Dial{Lines: l, Account: "trunk", N: 3, TTL: time.Minute, Poll: time.Millisecond}
	left, err := d.Each(ctx, phones, func(i int, lease voice.Lease) (bool, error) {
		mu.Lock()
		if calling[lease.Phone] {
			t.Errorf("%s called twice at once", lease.Phone)
		}
		calling[lease.Phone] = true
		mu.Unlock()
		n := inCall.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		placed.Add(1)
		wg.Add(1)
		go func() { // the call goes on, then ends and frees its line
			defer wg.Done()
			inCall.Add(-1)
			mu.Lock()
			calling[lease.Phone] = false
			mu.Unlock()
			l.Release(context.Background(), lease)
		}()
		return true, nil
	})
	wg.Wait()
	if err != nil || len(left) != 0 || placed.Load() != 12 {
		t.Fatalf("placed %d, left %v, err %v", placed.Load(), left, err)
	}
	if most.Load() > 3 {
		t.Errorf("%d calls at once on 3 lines", most.Load())
	}
}

func TestDialGivesUpWhenTheBatchTimeRunsOut(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	l := lines(t, c)
	if _, got, _ := l.TryAcquire(context.Background(), "trunk", 1, "13900000000", time.Hour); got != voice.Got {
		t.Fatal("no line")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	d := voice.Dial{Lines: l, Account: "trunk", N: 1, TTL: time.Minute, Poll: time.Millisecond}
	left, err := d.Each(ctx, []string{"13800000001", "13800000002"}, func(int, voice.Lease) (bool, error) {
		t.Error("placed a call on a busy line")
		return true, nil
	})
	if !errors.Is(err, voice.ErrNoLine) || !errors.Is(err, context.DeadlineExceeded) || fmt.Sprint(left) != "[0 1]" {
		t.Errorf("left %v, err %v", left, err)
	}
}

func TestDialReleasesTheLineOfACallNotPlaced(t *testing.T) {
	c := &clock{t: time.Unix(1700000000, 0)}
	l := lines(t, c)
	ctx := context.Background()
	d := voice.Dial{Lines: l, Account: "trunk", N: 1, TTL: time.Minute, Poll: time.Millisecond}
	stop := errors.New("provider refuses every call")
	left, err := d.Each(ctx, []string{"13800000001", "13800000002", "13800000003"}, func(i int, _ voice.Lease) (bool, error) {
		if i == 1 {
			return false, stop
		}
		return false, nil
	})
	if !errors.Is(err, stop) || fmt.Sprint(left) != "[2]" {
		t.Errorf("left %v, err %v", left, err)
	}
	if n, _ := l.InUse(ctx, "trunk"); n != 0 {
		t.Errorf("%d lines held by calls never placed", n)
	}
}

func TestCallsConfirmOnceAndEndOnce(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBVoice)
	calls := voice.NewCalls(rdb, prefix(t), "aliyun_voice", time.Hour)
	ref := warning.Ref{WarningID: "w1", Channel: warning.Voice, RecipientID: "p1"}
	rec := voice.Record{CallID: "116^1", Ref: ref, Lease: voice.Lease{Account: "a", Phone: "13800000001", ID: "abc"}, Placed: time.UnixMilli(1700000000000)}
	if err := calls.Put(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, err := calls.Press(ctx, "forged", "1", "e1"); !errors.Is(err, voice.ErrUnknownCall) {
		t.Errorf("press on an unknown call: %v", err)
	}
	p, err := calls.Press(ctx, "116^1", "2", "t1/2")
	if err != nil || p.Confirm || p.Replayed || p.Record.Keys != "2" {
		t.Errorf("press 2: %+v %v", p, err)
	}
	p, _ = calls.Press(ctx, "116^1", "1", "t2/1")
	if !p.Confirm || p.Replayed || p.Record.Keys != "21" || p.Record.Ref != ref || p.Record.Lease != rec.Lease || !p.Record.Placed.Equal(rec.Placed) {
		t.Errorf("press 1: %+v", p)
	}
	// The confirmation did not complete (the sink failed, the push was
	// given up, the process died): the same push again confirms, and adds
	// no key.
	if p, _ = calls.Press(ctx, "116^1", "1", "t2/1"); !p.Replayed || !p.Confirm || p.Record.Keys != "21" || p.Record.Confirmed {
		t.Errorf("the same push again, not confirmed yet: %+v", p)
	}
	if err := calls.MarkConfirmed(ctx, "116^1"); err != nil {
		t.Fatal(err)
	}
	if p, _ = calls.Press(ctx, "116^1", "1", "t2/1"); !p.Replayed || p.Confirm || p.Record.Keys != "21" || !p.Record.Confirmed {
		t.Errorf("the same push again, confirmed: %+v", p)
	}
	if p, _ = calls.Press(ctx, "116^1", "1", "t3/1"); p.Confirm || p.Replayed || p.Record.Keys != "211" {
		t.Errorf("a second 1: %+v", p)
	}
	// A call is ended once its report was taken: not before.
	if r, err := calls.Get(ctx, "116^1"); err != nil || r.Ended || !r.Confirmed {
		t.Errorf("before its end: %+v %v", r, err)
	}
	if err := calls.MarkEnded(ctx, "116^1"); err != nil {
		t.Fatal(err)
	}
	if r, err := calls.Get(ctx, "116^1"); err != nil || !r.Ended {
		t.Errorf("after its end: %+v %v", r, err)
	}
	// Marking a call whose record is gone does not make it again.
	if err := calls.MarkEnded(ctx, "forged"); err != nil {
		t.Fatal(err)
	}
	if _, err := calls.Get(ctx, "forged"); !errors.Is(err, voice.ErrUnknownCall) {
		t.Errorf("a call marked after its record was gone: %v", err)
	}
}

func TestFindWaitsForACallBeingKept(t *testing.T) {
	ctx := context.Background()
	calls := voice.NewCalls(redistest.Client(t, redistest.DBVoice), prefix(t), "tencent_voice", time.Hour)
	ref := warning.Ref{WarningID: "w1", Channel: warning.Voice, RecipientID: "p1"}
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		time.Sleep(100 * time.Millisecond) // the API's answer on its way to the process that placed the call
		calls.Put(ctx, voice.Record{CallID: "c1", Ref: ref, Lease: voice.Lease{Account: "a", Phone: "13800000001", ID: "x"}})
	}()
	r, err := calls.Find(ctx, "c1")
	<-kept
	if err != nil || r.Ref != ref {
		t.Errorf("find: %+v %v", r, err)
	}
	if _, err := calls.Find(ctx, "never"); !errors.Is(err, voice.ErrUnknownCall) {
		t.Errorf("a call never kept: %v", err)
	}
}
