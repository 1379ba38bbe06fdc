package kannel

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"warngate/internal/channeltest"
	"warngate/warning"
)

// heldSink records only once released, and notes the size of each Record.
type heldSink struct {
	channeltest.Sink
	release chan struct{}
	mu      sync.Mutex
	sizes   []int
}

func (s *heldSink) Record(ctx context.Context, reports []warning.Report) error {
	s.mu.Lock()
	s.sizes = append(s.sizes, len(reports))
	s.mu.Unlock()
	<-s.release
	return s.Sink.Record(ctx, reports)
}

func (s *heldSink) records() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sizes)
}

// Reports that arrive while others are being recorded are recorded
// together, each request answering once its own is recorded.
func TestRecorderGroupsWhatArrivesMeanwhile(t *testing.T) {
	sink := &heldSink{release: make(chan struct{})}
	var q recorder
	var wg sync.WaitGroup
	send := func(i int) {
		wg.Go(func() {
			p := &pending{sink: sink, rep: warning.Report{Ref: warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: fmt.Sprint(i)}, State: warning.Delivered}}
			if err := q.record(context.Background(), p); err != nil {
				t.Errorf("report %d: %v", i, err)
			}
		})
	}
	// maxFlushers reports, each recorded alone and held.
	for i := range maxFlushers {
		send(i)
		channeltest.WaitFor(t, "a record per report", func() bool { return len(sink.records()) == i+1 })
	}
	// Forty more wait in the queue meanwhile.
	for i := range 40 {
		send(maxFlushers + i)
	}
	channeltest.WaitFor(t, "the queue", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.queue) == 40
	})
	if n := len(sink.Reports()); n != 0 {
		t.Fatalf("%d reports recorded before release", n)
	}
	close(sink.release)
	wg.Wait()
	want := append(slices.Repeat([]int{1}, maxFlushers), 40)
	if got := sink.records(); !slices.Equal(got, want) {
		t.Errorf("records of %v reports, want %v", got, want)
	}
	if n := len(sink.ByRef()); n != maxFlushers+40 {
		t.Errorf("%d reports recorded, want %d", n, maxFlushers+40)
	}
}

// Reports that arrive together are recorded together: a group waits for
// others to join it before it is taken (here until the test lets it go).
func TestRecorderGathersAGroup(t *testing.T) {
	sink := &heldSink{release: make(chan struct{})}
	close(sink.release)
	gate := make(chan struct{})
	q := recorder{gather: func() { <-gate }}
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			p := &pending{sink: sink, rep: warning.Report{Ref: warning.Ref{WarningID: "w1", Channel: warning.SMS, RecipientID: fmt.Sprint(i)}, State: warning.Delivered}}
			if err := q.record(context.Background(), p); err != nil {
				t.Errorf("report %d: %v", i, err)
			}
		})
	}
	channeltest.WaitFor(t, "every report queued", func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return len(q.queue) == 30
	})
	close(gate)
	wg.Wait()
	if got := sink.records(); !slices.Equal(got, []int{30}) {
		t.Errorf("records of %v reports, want one of 30", got)
	}
	if n := len(sink.ByRef()); n != 30 {
		t.Errorf("%d reports recorded, want 30", n)
	}
}
