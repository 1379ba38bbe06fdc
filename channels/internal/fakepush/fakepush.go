// Package fakepush is what the fake broadcast platform
// (channels/broadcast/fake) and the fake screen cloud (channels/screen/fake)
// share: refusing a signed request whose nonce was used before, and posting
// callbacks in the background, a few times over, until the fake closes.
// Each fake keeps its provider's protocol: signatures, headers, bodies and
// answers.
package fakepush

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// nonceTTL is how long Nonces remembers a nonce: longer than the five
// minutes a signed request's timestamp may be off.
const nonceTTL = 10 * time.Minute

// Nonces remembers the nonces of signed requests, to refuse a request sent
// again. The zero value is ready; it is safe for concurrent use.
type Nonces struct {
	mu     sync.Mutex
	seen   map[string]time.Time
	pruned time.Time
}

// Fresh reports whether nonce is new, and remembers it.
func (n *Nonces) Fresh(nonce string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.seen[nonce]; ok {
		return false
	}
	if n.seen == nil {
		n.seen = map[string]time.Time{}
	}
	n.seen[nonce] = time.Now()
	if time.Since(n.pruned) > time.Minute {
		for old, at := range n.seen {
			if time.Since(at) > nonceTTL {
				delete(n.seen, old)
			}
		}
		n.pruned = time.Now()
	}
	return true
}

// Attempts is how many times Push posts a callback that is not taken.
const Attempts = 4

// Pusher runs a fake's callbacks in the background until Close. The zero
// value is ready; it is safe for concurrent use.
type Pusher struct {
	mu     sync.Mutex
	closed bool
	stop   chan struct{}
	wg     sync.WaitGroup
	seq    atomic.Int64
}

// stopped returns the channel Close closes. Callers hold p.mu.
func (p *Pusher) stopped() chan struct{} {
	if p.stop == nil {
		p.stop = make(chan struct{})
	}
	return p.stop
}

// Go runs f in the background unless the pusher is closed.
func (p *Pusher) Go(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		f()
	}()
}

// Sleep waits for d and reports whether the pusher is still open; it
// returns false as soon as the pusher closes.
func (p *Pusher) Sleep(d time.Duration) bool {
	p.mu.Lock()
	stop := p.stopped()
	p.mu.Unlock()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// Push calls send until it succeeds, Attempts times at most, waiting
// 200 ms, then 400 ms and so on in between, and returns send's last
// error. It gives up early when the pusher closes.
func (p *Pusher) Push(send func() error) error {
	var err error
	for attempt := 1; attempt <= Attempts; attempt++ {
		if err = send(); err == nil {
			return nil
		}
		if attempt == Attempts || !p.Sleep(time.Duration(attempt)*200*time.Millisecond) {
			break
		}
	}
	return err
}

// Nonce returns a nonce for a callback, a new one each call.
func (p *Pusher) Nonce() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatInt(p.seq.Add(1), 36)
}

// Close stops callbacks that wait for their time and waits for those
// under way. Later calls do nothing.
func (p *Pusher) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.stopped())
	p.mu.Unlock()
	p.wg.Wait()
}
