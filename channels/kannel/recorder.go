package kannel

import (
	"context"
	"sync"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// pending is one delivery report waiting to be recorded.
type pending struct {
	sink channels.ReportSink
	// call and phone name the report of a call to several numbers, to be
	// resolved through the index; empty when rep.Ref is known.
	call, phone string
	rep         warning.Report
	// unknown is set when the index knows no delivery for call and phone.
	unknown bool
	err     error
	done    chan struct{}
}

// name names the report in a log, the number masked.
func (p *pending) name() string {
	if p.call != "" {
		return p.call + "/" + channels.MaskPhone(p.phone)
	}
	return p.rep.Ref.String()
}

// Group sizes of the recorder.
const (
	// maxGroup bounds the reports resolved and recorded together.
	maxGroup = 500
	// maxFlushers bounds the groups recorded at once.
	maxFlushers = 2
	// gatherFor is how long a group waits for reports to join it.
	gatherFor = 2 * time.Millisecond
	// recordTimeout bounds the recording of one group.
	recordTimeout = 10 * time.Second
)

// recorder records delivery reports in groups. Kannel calls the dlr-url
// once per report, hundreds at once, as its SMS centre's reports come in;
// resolving and recording each alone would cost the ledger a few round
// trips and a script per report. Instead a report joins a queue, and the
// request that finds fewer than maxFlushers groups being recorded records
// the queue, up to maxGroup at a time, until it is empty. Before taking a
// group it waits gatherFor, unless a full group is there: a group is what
// arrived meanwhile and while the one before was recorded (a report waits
// 2 ms more; five thousand a second come in groups of ten or more, not of
// about three). Every request answers only once its own report is
// recorded, so nothing is acknowledged unrecorded.
type recorder struct {
	mu       sync.Mutex
	queue    []*pending
	flushers int
	// gather waits for reports to join a group; nil waits gatherFor.
	gather func()
}

// record queues p and returns once it is recorded or ctx ends.
func (q *recorder) record(ctx context.Context, p *pending) error {
	p.done = make(chan struct{})
	q.mu.Lock()
	q.queue = append(q.queue, p)
	flush := q.flushers < maxFlushers
	if flush {
		q.flushers++
	}
	q.mu.Unlock()
	if flush {
		q.flush(ctx)
	}
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// flush records queued groups until the queue is empty.
func (q *recorder) flush(ctx context.Context) {
	// The group is recorded even when the request that records it is
	// cancelled: the others are waiting for it.
	ctx = context.WithoutCancel(ctx)
	for {
		q.mu.Lock()
		if len(q.queue) < maxGroup {
			q.mu.Unlock()
			if q.gather != nil {
				q.gather()
			} else {
				time.Sleep(gatherFor)
			}
			q.mu.Lock()
		}
		n := min(len(q.queue), maxGroup)
		if n == 0 {
			q.flushers--
			q.mu.Unlock()
			return
		}
		group := q.queue[:n:n]
		q.queue = q.queue[n:]
		if len(q.queue) == 0 {
			q.queue = nil
		}
		q.mu.Unlock()
		bySink := map[channels.ReportSink][]*pending{}
		var order []channels.ReportSink
		for _, p := range group {
			if _, ok := bySink[p.sink]; !ok {
				order = append(order, p.sink)
			}
			bySink[p.sink] = append(bySink[p.sink], p)
		}
		for _, sink := range order {
			rctx, cancel := context.WithTimeout(ctx, recordTimeout)
			recordGroup(rctx, sink, bySink[sink])
			cancel()
		}
		for _, p := range group {
			close(p.done)
		}
	}
}

// recordGroup resolves the reports of calls to several numbers and records
// the reports of one sink.
func recordGroup(ctx context.Context, sink channels.ReportSink, ps []*pending) {
	var ids []string
	for _, p := range ps {
		if p.call != "" {
			ids = append(ids, indexID(p.call, p.phone))
		}
	}
	if len(ids) > 0 {
		refs, err := sink.Resolve(ctx, IndexName, ids)
		if err != nil {
			for _, p := range ps {
				p.err = err
			}
			return
		}
		for _, p := range ps {
			if p.call == "" {
				continue
			}
			ref, ok := refs[indexID(p.call, p.phone)]
			p.rep.Ref, p.unknown = ref, !ok
		}
	}
	reps := make([]warning.Report, 0, len(ps))
	for _, p := range ps {
		if !p.unknown {
			reps = append(reps, p.rep)
		}
	}
	if len(reps) == 0 {
		return
	}
	if err := sink.Record(ctx, reps); err != nil {
		for _, p := range ps {
			if !p.unknown {
				p.err = err
			}
		}
	}
}
