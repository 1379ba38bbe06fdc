package kannel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"warngate/channels"
	"warngate/warning"
)

// The box transport: the adapter connects to bearerbox's smsbox-port as a
// box of its own, as smsbox does, and hands it each SMS as a message of
// Kannel's box protocol (boxproto.go). Bearerbox answers each with an ack
// on the same connection and sends the delivery reports back on it: no
// sendsms call, no dlr-url callback, and smsbox's work per message is
// gone. Replies from phones still go through smsbox's sms-service: the
// adapter identifies itself with a box id (smsbox-id), and bearerbox
// hands messages from phones only to boxes without one.

// Timing of the box connection.
const (
	boxDialTimeout    = 5 * time.Second
	boxHeartbeatEvery = 30 * time.Second
	boxRetryMin       = 200 * time.Millisecond
	boxRetryMax       = 5 * time.Second
	boxWaitConnected  = 2 * time.Second
	// boxAnswerWarn is how long a new connection waits for bearerbox's
	// answer to its check before the wait is logged.
	boxAnswerWarn = 5 * time.Second
	// boxReportRetry is how long a group of reports that could not be
	// recorded waits before it is recorded again; it stays unacknowledged
	// meanwhile, so bearerbox keeps it.
	boxReportRetry = time.Second
	// boxGroupFull ends a group's wait: over half of what bearerbox sends
	// a connection before acks (smsbox-max-pending, default 100), so
	// that it goes on sending while the group is recorded.
	boxGroupFull = 64
)

// errBoxClosed is the cause of a session ended by Close.
var errBoxClosed = errors.New("kannel: box connection closed")

// boxLink keeps a connection to bearerbox, dialling again after it is lost.
type boxLink struct {
	addr, id string
	log      *slog.Logger
	sink     atomic.Pointer[reportSinkBox]

	mu      sync.Mutex
	sess    *boxSession   // nil while not connected
	lastErr error         // why not connected
	up      chan struct{} // closed when a session starts, then replaced

	// connects counts the connections bearerbox answered, for the
	// gateway's metrics.
	connects atomic.Int64

	reports chan boxReport
	// gatherFor is how long a group of reports waits for more to join it
	// (gatherFor of the HTTP recorder, unless a test says otherwise).
	gatherFor time.Duration
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	started   bool
}

type reportSinkBox struct{ sink channels.ReportSink }

// boxReport is a delivery report read on a session, to be recorded and
// then acknowledged on that session.
type boxReport struct {
	sess *boxSession
	m    *boxSMSMsg
}

func newBoxLink(addr, id string, log *slog.Logger) *boxLink {
	l := &boxLink{addr: addr, id: id, log: log, up: make(chan struct{}), reports: make(chan boxReport, 1024),
		gatherFor: gatherFor, lastErr: errors.New("not connected yet")}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// start connects in the background, and records reports into sink. A
// second start only changes the sink.
func (l *boxLink) start(sink channels.ReportSink) {
	l.sink.Store(&reportSinkBox{sink})
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started || l.ctx.Err() != nil {
		return
	}
	l.started = true
	l.wg.Add(2)
	go func() { defer l.wg.Done(); l.run() }()
	go func() { defer l.wg.Done(); l.recordReports() }()
}

// close ends the connection for good.
func (l *boxLink) close() {
	l.cancel()
	l.mu.Lock()
	s := l.sess
	l.mu.Unlock()
	if s != nil {
		s.end(errBoxClosed)
	}
	l.wg.Wait()
}

// run dials bearerbox and serves sessions until close.
func (l *boxLink) run() {
	wait := boxRetryMin
	failing := false
	for l.ctx.Err() == nil {
		s, err := l.dial()
		if err != nil {
			l.mu.Lock()
			l.lastErr = err
			l.mu.Unlock()
			if !failing {
				l.log.Error("kannel: cannot connect to bearerbox's smsbox-port; trying again", "addr", l.addr, "err", err)
				failing = true
			}
			l.pause(&wait)
			continue
		}
		served := make(chan error, 1)
		go func() { served <- s.serve(l.ctx, l.reports) }()
		answered, err := l.awaitAnswer(s.answered(), served, errNotAnswered)
		if answered {
			if failing {
				l.log.Info("kannel: connected to bearerbox again", "addr", l.addr)
			}
			failing, wait = false, boxRetryMin
			l.connects.Add(1)
		}
		if err == nil {
			err = l.use(s, served)
		}
		l.mu.Lock()
		l.sess, l.lastErr = nil, err
		l.mu.Unlock()
		if l.ctx.Err() == nil {
			if !failing {
				l.log.Error("kannel: connection to bearerbox lost; connecting again", "addr", l.addr, "err", err)
				failing = true
			}
			l.pause(&wait)
		}
	}
}

// pause waits *wait, or until the link is closed, and doubles *wait up to
// boxRetryMax.
func (l *boxLink) pause(wait *time.Duration) {
	select {
	case <-time.After(*wait):
	case <-l.ctx.Done():
	}
	*wait = min(2**wait, boxRetryMax)
}

// errNotAnswered is why a connection is not used yet: bearerbox has not
// answered its check.
var errNotAnswered = errors.New("connected, but bearerbox has not answered yet (it starts reading one new box connection a second, so after its restart the last of many workers waits as many seconds; or it is suspended)")

// errStalled is why a connection is no longer used: bearerbox acknowledged
// none of a batch's messages in time.
var errStalled = errors.New("bearerbox acknowledged none of a batch's messages in time (it is suspended, or overloaded): nothing more goes on the connection until it answers a new check")

// use offers the answered session s to Notify until it ends (its error,
// from served, is returned). When a batch gets none of its acks in time,
// bearerbox may have stopped reading the connection (an operator
// suspended it, or it is overloaded): what is written meanwhile waits
// unread, and every retry would add its copy, all sent once bearerbox
// reads again. So the session is taken back, a new check goes out, and it
// is offered again once bearerbox answers that.
func (l *boxLink) use(s *boxSession, served <-chan error) error {
	for {
		l.mu.Lock()
		l.sess = s
		close(l.up)
		l.up = make(chan struct{})
		l.mu.Unlock()
		select {
		case err := <-served:
			return err
		case <-s.stalled:
		}
		l.mu.Lock()
		l.sess = nil
		l.mu.Unlock()
		l.log.Warn("kannel: bearerbox acknowledged none of a batch's messages in time; nothing more goes on the connection until it answers a new check",
			"addr", l.addr)
		if err := s.sendCheck(nil, l.id); err != nil {
			return <-served
		}
		if _, err := l.awaitAnswer(s.answered(), served, errStalled); err != nil {
			return err
		}
		// A stall signalled meanwhile is of a batch written before the
		// check, which bearerbox has read since: it is stale.
		select {
		case <-s.stalled:
		default:
		}
		l.log.Info("kannel: bearerbox answers the connection again", "addr", l.addr)
	}
}

// awaitAnswer waits until answered is closed (bearerbox answered the
// session's check, see dial), or the session ends (its error comes on
// served, and is returned, with whether the check was answered before);
// why is the reason Notify gives meanwhile.
// Until then bearerbox may not be reading the connection at all: it
// accepts a box connection, then sleeps a second before the next, and the
// kernel completes connections meanwhile. A batch written to a connection
// bearerbox does not read yet would go unanswered, be sent again
// elsewhere, and then be sent by bearerbox too when it gets to it.
func (l *boxLink) awaitAnswer(answered <-chan struct{}, served <-chan error, why error) (bool, error) {
	l.mu.Lock()
	l.lastErr = why
	l.mu.Unlock()
	warn := time.NewTimer(boxAnswerWarn)
	defer warn.Stop()
	for {
		select {
		case <-answered:
			return true, nil
		case err := <-served:
			// An answer and then the end (bearerbox shutting down) may
			// be read together: the connection counts all the same.
			select {
			case <-answered:
				return true, err
			default:
				return false, err
			}
		case <-warn.C:
			l.log.Warn("kannel: bearerbox has not answered the connection's check yet; waiting", "addr", l.addr, "waited", boxAnswerWarn, "why", why)
		}
	}
}

// dial connects, identifies the box and sends the connection's check.
func (l *boxLink) dial() (*boxSession, error) {
	d := net.Dialer{Timeout: boxDialTimeout}
	c, err := d.DialContext(l.ctx, "tcp", l.addr)
	if err != nil {
		return nil, err
	}
	s := &boxSession{c: c, w: bufio.NewWriterSize(c, 64<<10), waiting: map[string]boxWaiter{}, done: make(chan struct{}),
		stalled: make(chan struct{}, 1)}
	if err := s.sendCheck(appendAdmin(nil, cmdIdentify, l.id), l.id); err != nil {
		c.Close()
		return nil, fmt.Errorf("identify as box %q: %w", l.id, err)
	}
	return s, nil
}

// sendCheck writes frames, then a check: an SMS that expired long ago,
// which bearerbox refuses without routing it (validity is checked first)
// and answers with an ack, once it reads the connection. Bearerbox logs
// each ("validity expired", and an EXPIRED SMS line in its access log).
func (s *boxSession) sendCheck(frames []byte, boxID string) error {
	check := &boxSMSMsg{sender: "warngate", receiver: "0", msgdata: []byte("warngate: connection check"), time: time.Now().Unix(),
		id: uuid.NewString(), smsType: smsMTPush, coding: undefined, validity: 1, boxcID: boxID}
	s.mu.Lock()
	s.checkID, s.checked = check.id, make(chan struct{})
	s.mu.Unlock()
	return s.write(appendSMS(frames, check))
}

// answered returns the channel closed when bearerbox answers the last
// check sent.
func (s *boxSession) answered() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checked
}

// stall says a batch got none of its acks in time.
func (s *boxSession) stall() {
	select {
	case s.stalled <- struct{}{}:
	default:
	}
}

// connected says whether a session is up.
func (l *boxLink) connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sess != nil
}

// session returns the current session, waiting up to boxWaitConnected
// (within ctx) for one.
func (l *boxLink) session(ctx context.Context) (*boxSession, error) {
	t := time.NewTimer(boxWaitConnected)
	defer t.Stop()
	for {
		l.mu.Lock()
		s, up, lastErr, started := l.sess, l.up, l.lastErr, l.started
		l.mu.Unlock()
		switch {
		case !started:
			return nil, errors.New("kannel: the box connection is not started: the worker has not attached the adapter yet")
		case s != nil:
			return s, nil
		}
		select {
		case <-up:
		case <-t.C:
			l.mu.Lock()
			lastErr = l.lastErr
			l.mu.Unlock()
			return nil, fmt.Errorf("kannel: no connection to bearerbox at %s to send on: %w", l.addr, lastErr)
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-l.ctx.Done():
			return nil, errBoxClosed
		}
	}
}

// recordReports records the reports read on every session in groups, and
// acknowledges each once it is recorded. A group is what arrives within
// gatherFor of its first report, up to boxGroupFull: bearerbox sends each
// report as its SMS centre makes it, and taking only what had arrived
// made groups of 16 on average in the bench's box run (50 with the wait).
func (l *boxLink) recordReports() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		var group []boxReport
		select {
		case r := <-l.reports:
			group = append(group, r)
		case <-l.ctx.Done():
			return
		}
		t.Reset(l.gatherFor)
	gather:
		for len(group) < boxGroupFull {
			select {
			case r := <-l.reports:
				group = append(group, r)
			case <-t.C:
				break gather
			}
		}
		t.Stop()
		l.recordGroup(group)
	}
}

// recordGroup records a group until it is recorded or its sessions are
// gone (bearerbox then sends the reports again, to this box or another
// with the same id), then acknowledges each on its session.
func (l *boxLink) recordGroup(group []boxReport) {
	var reps []warning.Report
	for _, r := range group {
		if rep, ok := l.report(r.m); ok {
			reps = append(reps, rep)
		}
	}
	for len(reps) > 0 {
		ctx, cancel := context.WithTimeout(l.ctx, recordTimeout)
		err := l.sink.Load().sink.Record(ctx, reps)
		cancel()
		if err == nil {
			break
		}
		alive := false
		for _, r := range group {
			alive = alive || !r.sess.ended()
		}
		if !alive || l.ctx.Err() != nil {
			l.log.Error("kannel: delivery reports not recorded; bearerbox sends them again", "reports", len(reps), "err", err)
			return
		}
		l.log.Error("kannel: delivery reports not recorded; trying again", "reports", len(reps), "err", err)
		select {
		case <-time.After(boxReportRetry):
		case <-l.ctx.Done():
			return
		}
	}
	bySess := map[*boxSession][]byte{}
	for _, r := range group {
		bySess[r.sess] = appendAck(bySess[r.sess], ackSuccess, r.m.id, r.m.time)
	}
	for s, acks := range bySess {
		if err := s.write(acks); err != nil && !s.ended() {
			l.log.Warn("kannel: acknowledging delivery reports", "err", err)
		}
	}
}

// report turns a message from bearerbox into a delivery report; false
// when it reports nothing to record.
func (l *boxLink) report(m *boxSMSMsg) (warning.Report, bool) {
	if m.smsType != smsReportMO {
		l.log.Error("kannel: a message from a phone came to the gateway's box and is dropped: route replies to smsbox (no smsbox-route naming the gateway's box id)",
			"from", channels.MaskPhone(m.sender), "box_id", l.id)
		return warning.Report{}, false
	}
	ref, err := warning.ParseRef(m.dlrURL)
	if err != nil {
		l.log.Warn("kannel: delivery report for a message the gateway did not send", "dlr_url", m.dlrURL)
		return warning.Report{}, false
	}
	rep := warning.Report{Ref: ref, At: time.Now(), ProviderID: m.foreignID}
	if m.time > 0 {
		rep.At = time.Unix(m.time, 0)
	}
	var final bool
	rep.State, rep.Reason, final = reportOutcome(int(m.dlrMask), string(m.msgdata))
	return rep, final
}

// boxSession is one connection to bearerbox.
type boxSession struct {
	c   net.Conn
	wmu sync.Mutex
	w   *bufio.Writer

	mu      sync.Mutex
	waiting map[string]boxWaiter // message id → who waits for its ack
	err     error
	done    chan struct{}

	// checkID is the id of the last check sent ("" once answered);
	// checked is closed when bearerbox answers it. Both under mu.
	checkID string
	checked chan struct{}
	// stalled is signalled when a batch got none of its acks in time.
	stalled chan struct{}
}

// boxWaiter is where an SMS's ack goes: its position in a batch.
type boxWaiter struct {
	acks chan<- boxAnswer
	at   int
}

// boxAnswer is bearerbox's ack of the SMS at a batch's position.
type boxAnswer struct {
	at   int
	nack int32
}

// write sends frames, flushed.
func (s *boxSession) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.c.SetWriteDeadline(time.Now().Add(boxDialTimeout))
	if _, err := s.w.Write(b); err != nil {
		s.end(err)
		return err
	}
	if err := s.w.Flush(); err != nil {
		s.end(err)
		return err
	}
	return nil
}

// end closes the session with err, once.
func (s *boxSession) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	s.err = err
	s.c.Close()
	close(s.done)
}

func (s *boxSession) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// expect registers where the acks of ids go; forget unregisters them.
func (s *boxSession) expect(ids []string, at []int, acks chan<- boxAnswer) {
	s.mu.Lock()
	for i, id := range ids {
		s.waiting[id] = boxWaiter{acks: acks, at: at[i]}
	}
	s.mu.Unlock()
}

func (s *boxSession) forget(ids []string) {
	s.mu.Lock()
	for _, id := range ids {
		delete(s.waiting, id)
	}
	s.mu.Unlock()
}

// serve reads the session's messages until it ends or ctx does: acks go
// to their waiters, reports to reports, and a heartbeat goes out now and
// then.
func (s *boxSession) serve(ctx context.Context, reports chan<- boxReport) error {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(boxHeartbeatEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				s.write(appendHeartbeat(nil, 0))
			case <-ctx.Done():
				s.end(errBoxClosed) // the read below returns
				return
			case <-stop:
				return
			}
		}
	}()
	r := bufio.NewReaderSize(quickAck(s.c), 64<<10)
	for {
		m, err := readBoxMsg(r)
		if err != nil {
			s.end(err)
			s.mu.Lock()
			err = s.err
			s.mu.Unlock()
			return err
		}
		switch {
		case m.ack != nil:
			s.mu.Lock()
			if s.checkID != "" && m.ack.id == s.checkID {
				close(s.checked)
				s.checkID = ""
				s.mu.Unlock()
				break
			}
			w, ok := s.waiting[m.ack.id]
			delete(s.waiting, m.ack.id)
			s.mu.Unlock()
			if ok {
				w.acks <- boxAnswer{at: w.at, nack: m.ack.nack}
			}
		case m.sms != nil:
			select {
			case reports <- boxReport{sess: s, m: m.sms}:
			case <-ctx.Done():
				s.end(errBoxClosed)
				return errBoxClosed
			}
		case m.admin == cmdShutdown || m.admin == cmdRestart:
			err := errors.New("bearerbox is shutting down")
			s.end(err)
			return err
		}
	}
}
