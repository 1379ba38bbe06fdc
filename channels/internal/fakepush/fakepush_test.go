package fakepush

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestNoncesRefuseAReusedNonce(t *testing.T) {
	var n Nonces
	if !n.Fresh("a") || !n.Fresh("b") {
		t.Fatal("new nonces refused")
	}
	if n.Fresh("a") {
		t.Error("a reused nonce taken")
	}
}

func TestPushTriesAgainUntilTaken(t *testing.T) {
	var p Pusher
	defer p.Close()
	calls := 0
	err := p.Push(func() error {
		calls++
		if calls < 3 {
			return errors.New("not taken")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("err %v after %d calls, want nil after 3", err, calls)
	}
	calls = 0
	if err := p.Push(func() error { calls++; return errors.New("down") }); err == nil || calls != Attempts {
		t.Errorf("err %v after %d calls, want an error after %d", err, calls, Attempts)
	}
}

func TestCloseStopsWhatWaits(t *testing.T) {
	var p Pusher
	var slept, ran atomic.Bool
	p.Go(func() { slept.Store(p.Sleep(time.Hour)) })
	start := time.Now()
	p.Close()
	if slept.Load() || time.Since(start) > 5*time.Second {
		t.Error("Close did not end a sleep")
	}
	p.Go(func() { ran.Store(true) })
	p.Close()
	if ran.Load() {
		t.Error("ran after Close")
	}
	if p.Nonce() == p.Nonce() {
		t.Error("the same nonce twice")
	}
}
