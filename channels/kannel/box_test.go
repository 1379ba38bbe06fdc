package kannel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"warngate/channels"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// fakeBearerbox accepts box connections on loopback and speaks the box
// protocol, so that a test can answer what a real bearerbox does only
// when something goes wrong: a connection cut before the acks, a queue
// full, a shutdown. The real bearerbox is tested in box_integration_test.
type fakeBearerbox struct {
	t     *testing.T
	ln    net.Listener
	conns chan *fakeBoxConn
}

type fakeBoxConn struct {
	t  *testing.T
	c  net.Conn
	r  *bufio.Reader
	id string // the box id it identified with
}

func newFakeBearerbox(t *testing.T) *fakeBearerbox {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeBearerbox{t: t, ln: ln, conns: make(chan *fakeBoxConn, 4)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			f.conns <- &fakeBoxConn{t: t, c: c, r: bufio.NewReader(c)}
		}
	}()
	return f
}

// accept returns the next connection, once it has identified and its
// check has been answered, as bearerbox answers it: refused, expired.
func (f *fakeBearerbox) accept() *fakeBoxConn {
	f.t.Helper()
	c, check := f.acceptUnanswered()
	c.ack(check, ackFailed)
	return c
}

// acceptUnanswered returns the next connection once it has identified,
// and its check, not answered.
func (f *fakeBearerbox) acceptUnanswered() (*fakeBoxConn, *boxSMSMsg) {
	f.t.Helper()
	select {
	case c := <-f.conns:
		m := c.read()
		if m.admin != cmdIdentify {
			f.t.Fatalf("first message %+v, want identify", m)
		}
		c.id = m.adminBoxID
		check := c.read().sms
		if check == nil || check.validity <= 0 || check.validity > time.Now().Add(-time.Hour).Unix() || check.dlrURL != "" {
			f.t.Fatalf("second message %+v, want the connection check: an SMS expired long ago, no report asked", check)
		}
		return c, check
	case <-time.After(10 * time.Second):
		f.t.Fatal("no box connected")
		return nil, nil
	}
}

func (c *fakeBoxConn) read() boxMsg {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, err := readBoxMsg(c.r)
	if err != nil {
		c.t.Fatalf("read from the box: %v", err)
	}
	return m
}

// readSMS reads n messages, skipping heartbeats.
func (c *fakeBoxConn) readSMS(n int) []*boxSMSMsg {
	c.t.Helper()
	var out []*boxSMSMsg
	for len(out) < n {
		if m := c.read(); m.sms != nil {
			out = append(out, m.sms)
		}
	}
	return out
}

// readAck reads until the gateway's next ack, skipping its SMS.
func (c *fakeBoxConn) readAck() *boxAckMsg {
	c.t.Helper()
	for {
		if m := c.read(); m.ack != nil {
			return m.ack
		}
	}
}

// readNothing checks that the gateway writes nothing for a while: what
// names what it must not have written.
func (c *fakeBoxConn) readNothing(what string) {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if m, err := readBoxMsg(c.r); err == nil {
		c.t.Fatalf("the adapter wrote %+v %s", m, what)
	}
	c.r = bufio.NewReader(c.c) // past the deadline's error
}

// waitBoxUp waits until k's connection is up.
func waitBoxUp(t *testing.T, k *Kannel, what string) {
	t.Helper()
	channeltest.WaitFor(t, what, func() bool { _, up, _ := k.BoxState(); return up })
}

func (c *fakeBoxConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write to the box: %v", err)
	}
}

func (c *fakeBoxConn) ack(m *boxSMSMsg, nack int32) { c.write(appendAck(nil, nack, m.id, m.time)) }

// report sends a delivery report of m of type typ, as bearerbox makes one.
func (c *fakeBoxConn) report(m *boxSMSMsg, typ int32, reply string) *boxSMSMsg {
	r := &boxSMSMsg{sender: m.receiver, receiver: m.sender, msgdata: []byte(reply), time: time.Now().Unix(), smscID: "FAKE",
		foreignID: "smsc-" + m.id[:8], id: uuid.NewString(), smsType: smsReportMO, coding: undefined, dlrMask: typ, dlrURL: m.dlrURL, boxcID: m.boxcID}
	c.write(appendSMS(nil, r))
	return r
}

// newBoxKannel returns an adapter with the box transport to f, attached to
// sink.
func newBoxKannel(t *testing.T, addr string, sink channels.CallSink, index Index, timeout time.Duration) *Kannel {
	t.Helper()
	k, err := New(Config{Transport: TransportBox, BoxAddress: addr, From: "12379", Signature: "昆明市应急管理局",
		CallbackKey: "k3y-0123456789abcdef", Timeout: timeout}, http.DefaultClient, index, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	if sink != nil {
		k.Attach(sink)
	}
	return k
}

type notified struct {
	rcs   []channels.Receipt
	retry bool
	err   error
}

func notifyAsync(k *Kannel, b *channels.Batch) chan notified {
	out := make(chan notified, 1)
	go func() {
		rcs, retry, err := k.Notify(context.Background(), b)
		out <- notified{rcs, retry, err}
	}()
	return out
}

// decodeUCS2 decodes a message's UCS-2 text as the reply callback does.
func decodeUCS2(b []byte) string { return moText(string(b), "2", "UTF-16BE") }

// Each recipient is its own message carrying what bearerbox needs, and
// each ack maps to its receipt: taken, refused for good, refused for now
// (sent again with the batch's retry).
func TestBoxMessagesAndAcks(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c := f.accept()
	if c.id != BoxID {
		t.Errorf("identified as %q, want %q", c.id, BoxID)
	}
	b := channeltest.Batch("13800000001", "123", "+8613800000002", "13800000003")
	done := notifyAsync(k, b)
	msgs := c.readSMS(3)
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	ids := map[string]bool{}
	for j, i := range []int{0, 2, 3} {
		m := msgs[j]
		phone, _ := Phone(b.Recipients[i].Address)
		if m.receiver != phone || m.sender != "12379" || m.smsType != smsMTPush || m.coding != codingUCS2 || m.charset != "UTF-16BE" ||
			m.boxcID != BoxID || m.dlrMask != 19 || m.dlrURL != b.Ref(i).String() || !v4.MatchString(m.id) || ids[m.id] {
			t.Errorf("message %d: %+v (want its own version-4 UUID as id)", j, m)
		}
		ids[m.id] = true
		if got, want := decodeUCS2(m.msgdata), k.SMSText(b, b.Recipients[i]); got != want {
			t.Errorf("message %d says %q, want %q", j, got, want)
		}
	}
	c.ack(msgs[0], ackSuccess)
	c.ack(msgs[1], ackFailed)
	c.ack(msgs[2], ackFailedTmp)
	n := <-done
	if !n.retry || n.err == nil || !strings.Contains(n.err.Error(), "1 of 3 messages not taken") || !strings.Contains(n.err.Error(), "for now") {
		t.Errorf("retry=%v err=%v; want a retry for the message refused for now", n.retry, n.err)
	}
	channeltest.CheckReceipts(t, n.rcs, "SFF", map[int]string{
		1: "invalid number: want 11 digits starting with 1",
		2: "kannel: bearerbox refused the message for good (no route to an SMS centre, or its validity expired)",
	})
	if n.rcs[0].Index != 0 || n.rcs[0].Segments != 1 {
		t.Errorf("receipt %+v", n.rcs[0])
	}

	// A notice about the warning asks for no reports.
	b = channeltest.Batch("13800000001")
	b.Notice = channels.NoticeReminder
	done = notifyAsync(k, b)
	m := c.readSMS(1)[0]
	if m.dlrMask != undefined || m.dlrURL != "" {
		t.Errorf("reminder: dlr mask %d, url %q; want none", m.dlrMask, m.dlrURL)
	}
	c.ack(m, ackSuccess)
	if n := <-done; n.err != nil || len(n.rcs) != 1 || n.rcs[0].State != warning.Sent {
		t.Errorf("reminder: %+v", n)
	}
}

// The connection is cut after bearerbox acknowledged one message and
// reported another: the first is sent, the reported one too (nobody is
// texted twice), the third is left to the retry; the adapter connects
// again and the retry goes out on the new connection.
func TestBoxConnectionCutMidBatch(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 300*time.Millisecond)
	c := f.accept()
	b := channeltest.Batch("13800000001", "13800000002", "13800000003")
	done := notifyAsync(k, b)
	msgs := c.readSMS(3)
	c.ack(msgs[0], ackSuccess)
	rep := c.report(msgs[1], dlrDelivered, "")
	if a := c.readAck(); a.id != rep.id || a.nack != ackSuccess {
		t.Fatalf("ack %+v, want success for report %s", a, rep.id)
	}
	c.c.Close()
	n := <-done
	if !n.retry || n.err == nil || !strings.Contains(n.err.Error(), "1 of 3 messages not taken") {
		t.Fatalf("retry=%v err=%v; want a retry of one message", n.retry, n.err)
	}
	channeltest.CheckReceipts(t, n.rcs, "SS", nil)
	if r := sink.ByRef()[b.Ref(1)]; r.State != warning.Delivered || r.ProviderID != "smsc-"+msgs[1].id[:8] {
		t.Errorf("report of the second: %+v", r)
	}

	c = f.accept()
	retry := &channels.Batch{ID: b.ID, Channel: b.Channel, Warning: b.Warning, Recipients: b.Recipients[2:]}
	done = notifyAsync(k, retry)
	m := c.readSMS(1)[0]
	if m.receiver != "13800000003" {
		t.Errorf("the retry sent to %s", m.receiver)
	}
	c.ack(m, ackSuccess)
	if n := <-done; n.err != nil || len(n.rcs) != 1 || n.rcs[0].State != warning.Sent {
		t.Errorf("retry on the new connection: %+v", n)
	}
}

// Bearerbox takes the messages and never acknowledges them (stuck behind a
// full store, say): after Config.Timeout and the grace for reports, the
// one reported meanwhile counts as sent and the other is left to the
// retry, the error saying what did not come.
func TestBoxAcksThatNeverCome(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 200*time.Millisecond)
	c := f.accept()
	b := channeltest.Batch("13800000001", "13800000002")
	done := notifyAsync(k, b)
	msgs := c.readSMS(2)
	rep := c.report(msgs[0], dlrDelivered, "")
	if a := c.readAck(); a.id != rep.id {
		t.Fatalf("ack %+v, want the report's %s", a, rep.id)
	}
	n := <-done
	if !n.retry || n.err == nil || !strings.Contains(n.err.Error(), "1 of 2 messages not taken: kannel: bearerbox did not acknowledge 2 of 2 messages in 200ms") {
		t.Fatalf("retry=%v err=%v", n.retry, n.err)
	}
	channeltest.CheckReceipts(t, n.rcs, "S", nil)
}

// flakySink fails to record the first fails groups of reports.
type flakySink struct {
	channeltest.Sink
	fails    atomic.Int32
	recorded chan struct{}
	once     sync.Once
}

func (s *flakySink) Record(ctx context.Context, reps []warning.Report) error {
	if s.fails.Add(-1) >= 0 {
		return errors.New("redis: connection refused")
	}
	err := s.Sink.Record(ctx, reps)
	s.once.Do(func() { close(s.recorded) })
	return err
}

// A delivery report is acknowledged only once it is recorded: while the
// gateway cannot record it, bearerbox keeps it.
func TestBoxReportAckedOnlyOnceRecorded(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &flakySink{recorded: make(chan struct{})}
	sink.fails.Store(1)
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c := f.accept()
	b := channeltest.Batch("13800000001")
	done := notifyAsync(k, b)
	m := c.readSMS(1)[0]
	c.ack(m, ackSuccess)
	<-done
	rep := c.report(m, dlrFailed, "NACK/0x0000000b/Invalid Destination Address")
	a := c.readAck()
	select {
	case <-sink.recorded:
	default:
		t.Fatal("the report was acknowledged before it was recorded")
	}
	if a.id != rep.id {
		t.Fatalf("ack of %s, want the report's %s", a.id, rep.id)
	}
	r := sink.ByRef()[b.Ref(0)]
	if r.State != warning.Failed || r.Reason != "undelivered: NACK/0x0000000b/Invalid Destination Address" {
		t.Errorf("recorded %+v", r)
	}
}

// A message from a phone that bearerbox routes to the gateway's box (an
// smsbox-route naming its id) is acknowledged and recorded as nothing;
// accepted-by-the-SMS-centre reports record nothing either.
func TestBoxIgnoresWhatIsNotAReport(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c := f.accept()
	mo := &boxSMSMsg{sender: "13800000001", receiver: "12379", msgdata: []byte("1"), time: time.Now().Unix(), id: uuid.NewString(), smsType: smsMO, coding: undefined, dlrMask: undefined}
	c.write(appendSMS(nil, mo))
	smsc := &boxSMSMsg{sender: "13800000001", receiver: "12379", id: uuid.NewString(), smsType: smsReportMO, coding: undefined, dlrMask: dlrSMSC,
		dlrURL: warning.RefTo("w1", warning.SMS, warning.Recipient{ID: "r0"}).String()}
	c.write(appendSMS(nil, smsc))
	acked := map[string]bool{}
	for len(acked) < 2 {
		acked[c.readAck().id] = true
	}
	if !acked[mo.id] || !acked[smsc.id] {
		t.Errorf("acked %v, want %s and %s", acked, mo.id, smsc.id)
	}
	if n := len(sink.Reports()); n != 0 {
		t.Errorf("%d reports recorded, want none", n)
	}
}

// Bearerbox shutting down tells its boxes so; the adapter connects again,
// and meanwhile Notify asks for a retry with the reason.
func TestBoxReconnectsAfterShutdown(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c := f.accept()
	c.write(appendAdmin(nil, cmdShutdown, ""))
	c = f.accept()
	done := notifyAsync(k, channeltest.Batch("13800000001"))
	c.ack(c.readSMS(1)[0], ackSuccess)
	if n := <-done; n.err != nil || len(n.rcs) != 1 {
		t.Errorf("after reconnecting: %+v", n)
	}
	if box, up, connects := k.BoxState(); !box || !up || connects != 2 {
		t.Errorf("state after reconnecting: box=%v up=%v connects=%d; want true, true, 2", box, up, connects)
	}

	// Nobody listens any more: Notify waits briefly, then asks for a retry.
	f.ln.Close()
	c.c.Close()
	channeltest.WaitFor(t, "the adapter to see the connection gone", func() bool {
		k.box.mu.Lock()
		defer k.box.mu.Unlock()
		return k.box.sess == nil
	})
	_, retry, err := k.Notify(t.Context(), channeltest.Batch("13800000001"))
	if !retry || err == nil || !strings.Contains(err.Error(), "no connection to bearerbox at "+f.ln.Addr().String()) {
		t.Errorf("with bearerbox gone: retry=%v err=%v", retry, err)
	}
	if _, up, _ := k.BoxState(); up {
		t.Error("the connection is up with bearerbox gone")
	}
}

// The box settings are checked, each problem naming its field.
func TestBoxConfig(t *testing.T) {
	base := Config{Transport: TransportBox, BoxAddress: "127.0.0.1:13001", From: "12379", Signature: "昆明市应急管理局", CallbackKey: "k3y-0123456789abcdef"}
	if _, err := New(base, http.DefaultClient, &channeltest.Sink{}, nil); err != nil {
		t.Fatalf("box without sendsms settings: %v", err)
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.BoxAddress = "" }, "kannel.box_address: required with transport: box"},
		{func(c *Config) { c.BoxAddress = "bearerbox" }, `kannel.box_address: "bearerbox" is not host:port`},
		{func(c *Config) { c.From = "" }, "kannel.from: required with transport: box"},
		{func(c *Config) { c.BoxID = "two words" }, `kannel.box_id: "two words": a box id is one word`},
		{func(c *Config) { c.NumbersPerCall = 100 }, "kannel.numbers_per_call: with transport: box every number is its own message"},
		{func(c *Config) { c.Transport = "smpp" }, `kannel.transport: "smpp": use "sendsms"`},
	} {
		cfg := base
		tc.change(&cfg)
		if _, err := New(cfg, http.DefaultClient, &channeltest.Sink{}, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want %q, got %v", tc.want, err)
		}
	}
}

// What the box protocol writes, it reads back; a frame that does not
// parse is an error, not a message.
func TestBoxProtocolRoundTrip(t *testing.T) {
	m := &boxSMSMsg{sender: "12379", receiver: "13800000001", msgdata: ucs2("暴雨红色预警"), time: 1796685441, smscID: "FAKE",
		foreignID: "f1", id: uuid.NewString(), smsType: smsMTPush, coding: codingUCS2, validity: 1796689041, dlrMask: 19, dlrURL: "w1/sms/r0", charset: "UTF-16BE", boxcID: "warngate", metaData: "?smpp?"}
	b := appendSMS(nil, m)
	b = appendAck(b, ackFailedTmp, m.id, 7)
	b = appendAdmin(b, cmdIdentify, "warngate")
	b = appendHeartbeat(b, 3)
	r := bufio.NewReader(strings.NewReader(string(b)))
	got, err := readBoxMsg(r)
	if err != nil || got.sms == nil || !reflect.DeepEqual(got.sms, m) || decodeUCS2(got.sms.msgdata) != "暴雨红色预警" {
		t.Fatalf("sms: %+v %v", got.sms, err)
	}
	if got, err := readBoxMsg(r); err != nil || got.ack == nil || *got.ack != (boxAckMsg{nack: ackFailedTmp, time: 7, id: m.id}) {
		t.Fatalf("ack: %+v %v", got.ack, err)
	}
	if got, err := readBoxMsg(r); err != nil || got.admin != cmdIdentify || got.adminBoxID != "warngate" {
		t.Fatalf("admin: %+v %v", got, err)
	}
	if got, err := readBoxMsg(r); err != nil || got.sms != nil || got.ack != nil || got.admin != -1 {
		t.Fatalf("heartbeat: %+v %v", got, err)
	}
	for name, frame := range map[string][]byte{
		"truncated":   appendSMS(nil, m)[:60],
		"type 9":      {0, 0, 0, 4, 0, 0, 0, 9},
		"string long": {0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 99},
	} {
		if name == "truncated" {
			frame = append([]byte{0, 0, 0, 56}, frame[4:]...)
		}
		if _, err := readBoxMsg(bufio.NewReader(strings.NewReader(string(frame)))); !errors.Is(err, errBoxFrame) {
			t.Errorf("%s: %v, want a malformed message", name, err)
		}
	}
}

// Close returns whenever it comes: before the connection, while it is
// made, or after.
func TestBoxCloseWhileConnecting(t *testing.T) {
	f := newFakeBearerbox(t)
	for i := range 100 {
		k, err := New(Config{Transport: TransportBox, BoxAddress: f.ln.Addr().String(), From: "12379", Signature: "昆明市应急管理局",
			CallbackKey: "k3y-0123456789abcdef"}, http.DefaultClient, &channeltest.Sink{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		k.Attach(&channeltest.Sink{})
		if i%2 == 1 { // close as the connection is made
			c := <-f.conns
			go io.Copy(io.Discard, c.c)
		}
		done := make(chan struct{})
		go func() { k.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not return")
		}
	}
}

// Residents share a text and an official has their own (their link):
// each message carries its recipient's, and its parts are billed by it.
func TestBoxEachRecipientsText(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c := f.accept()
	b := channeltest.Batch("13800000001", "13800000002", "13800000003")
	b.Recipients[1].Audience = warning.VillageOfficials
	b.AckURL = func(r warning.Recipient) string { return "https://gw.example/a/" + r.ID }
	done := notifyAsync(k, b)
	msgs := c.readSMS(3)
	for i, m := range msgs {
		if got, want := decodeUCS2(m.msgdata), k.SMSText(b, b.Recipients[i]); got != want {
			t.Errorf("message %d says %q, want %q", i, got, want)
		}
		c.ack(m, ackSuccess)
	}
	n := <-done
	if n.err != nil || len(n.rcs) != 3 {
		t.Fatalf("%+v", n)
	}
	if k.SMSText(b, b.Recipients[1]) == k.SMSText(b, b.Recipients[0]) {
		t.Fatal("the official's text is the residents'")
	}
	for i, rc := range n.rcs {
		if want := channels.SMSSegments(k.SMSText(b, b.Recipients[i])); rc.Segments != want {
			t.Errorf("receipt %d: %d parts, want %d", i, rc.Segments, want)
		}
	}
}

// Until bearerbox answers the connection's check it may not be reading
// the connection at all (it starts reading one new box connection a
// second): the connection is not up, and Notify writes nothing to it. It
// asks for a retry instead, saying why; once the check is answered, the
// batch goes.
func TestBoxSendsNothingBeforeBearerboxReads(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 5*time.Second)
	c, check := f.acceptUnanswered()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if rcs, retry, err := k.Notify(ctx, channeltest.Batch("13800000001")); !retry || err == nil || len(rcs) != 0 {
		t.Errorf("before bearerbox answered: %d receipts, retry=%v err=%v; want a retry and no receipt", len(rcs), retry, err)
	}
	if _, up, connects := k.BoxState(); up || connects != 0 {
		t.Errorf("before bearerbox answered: up=%v connects=%d; want down, 0", up, connects)
	}
	if why := whyDown(k.box); !errors.Is(why, errNotAnswered) {
		t.Errorf("why not up: %v, want %v", why, errNotAnswered)
	}
	c.readNothing("before bearerbox answered its check")

	c.ack(check, ackFailed)
	waitBoxUp(t, k, "the connection up")
	c.ack(check, ackFailed)                    // again: nothing waits for it
	c.write(appendAck(nil, ackSuccess, "", 0)) // an ack of no message
	done := notifyAsync(k, channeltest.Batch("13800000001"))
	c.ack(c.readSMS(1)[0], ackSuccess)
	if n := <-done; n.err != nil || n.retry || len(n.rcs) != 1 || n.rcs[0].State != warning.Sent {
		t.Errorf("once answered: %+v", n)
	}
}

// Reports that arrive one by one are recorded together: a group takes
// what arrives within gatherFor of its first report, in one Record.
func TestBoxReportsRecordedInGroups(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), nil, sink, 5*time.Second)
	k.box.gatherFor = time.Second // the writes below take far less
	k.Attach(sink)
	c := f.accept()
	var phones []string
	for i := range 20 {
		phones = append(phones, fmt.Sprintf("138000001%02d", i))
	}
	b := channeltest.Batch(phones...)
	done := notifyAsync(k, b)
	ms := c.readSMS(len(phones))
	for _, m := range ms {
		c.ack(m, ackSuccess)
	}
	if n := <-done; n.err != nil || len(n.rcs) != len(phones) {
		t.Fatalf("Notify: %+v", n)
	}
	for _, m := range ms {
		c.report(m, dlrDelivered, "") // each its own write
	}
	channeltest.WaitFor(t, "every report recorded", func() bool { return len(sink.ByRef()) == len(phones) })
	if n := sink.Calls(); n != 1 {
		t.Errorf("%d reports arriving one by one were recorded in %d calls, want one", len(phones), n)
	}
	for range phones {
		c.readAck()
	}
}

// reportedHook is an Index whose Reported first runs hook.
type reportedHook struct {
	*channeltest.Sink
	hook func()
}

func (h *reportedHook) Reported(ctx context.Context, refs []warning.Ref) ([]bool, error) {
	h.hook()
	return h.Sink.Reported(ctx, refs)
}

// Bearerbox slower than the timeout is not gone: acks that come while
// Notify waits for the reports of the unanswered messages count, so a
// message it took late is not sent again, nor one it refused for good.
func TestBoxAcksThatComeLate(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	index := &reportedHook{Sink: sink}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, index, 100*time.Millisecond)
	c := f.accept()
	b := channeltest.Batch("13800000001", "13800000002", "13800000003", "13800000004")
	read := make(chan []*boxSMSMsg, 1)
	index.hook = func() {
		msgs := <-read
		// The timeout and the grace have passed: the first message is
		// reported, the second and third acknowledged at last; the
		// fourth stays unanswered. Reports are read after the acks before
		// them, so once the report is recorded the acks have come.
		c.c.Write(appendAck(appendAck(nil, ackSuccess, msgs[1].id, msgs[1].time), ackFailed, msgs[2].id, msgs[2].time))
		c.report(msgs[0], dlrDelivered, "")
		for deadline := time.Now().Add(10 * time.Second); len(sink.ByRef()) == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
	}
	done := notifyAsync(k, b)
	read <- c.readSMS(len(b.Recipients))
	n := <-done
	if !n.retry || n.err == nil || !strings.Contains(n.err.Error(), "1 of 4 messages not taken") {
		t.Fatalf("retry=%v err=%v; want a retry of the one message never answered", n.retry, n.err)
	}
	channeltest.CheckReceipts(t, n.rcs, "SSF", map[int]string{2: "kannel: bearerbox refused the message for good (no route to an SMS centre, or its validity expired)"})
}

// A batch none of whose messages bearerbox acknowledges in time (an
// operator suspended it: it stops reading its boxes) stalls the
// connection: nothing more is written on it, so retries do not pile up
// copies that bearerbox would send once it reads again, until it answers
// a new check.
func TestBoxStalledConnection(t *testing.T) {
	f := newFakeBearerbox(t)
	sink := &channeltest.Sink{}
	k := newBoxKannel(t, f.ln.Addr().String(), sink, sink, 100*time.Millisecond)
	c := f.accept()
	waitBoxUp(t, k, "the connection up")
	k.box.mu.Lock()
	sess := k.box.sess
	k.box.mu.Unlock()
	if n := <-notifyAsync(k, channeltest.Batch("13800000001", "13800000002")); !n.retry || len(n.rcs) != 0 {
		t.Fatalf("a batch not acknowledged: %+v, want a retry", n)
	}
	c.readSMS(2)
	check := c.readSMS(1)[0]
	if check.validity <= 0 || check.validity > time.Now().Add(-time.Hour).Unix() {
		t.Fatalf("after the stalled batch the adapter wrote %+v, want a new check", check)
	}
	if _, up, _ := k.BoxState(); up {
		t.Error("the connection is up while bearerbox answers nothing")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if rcs, retry, err := k.Notify(ctx, channeltest.Batch("13800000001", "13800000002")); !retry || err == nil || len(rcs) != 0 {
		t.Errorf("the retry while stalled: %d receipts, retry=%v err=%v; want a retry", len(rcs), retry, err)
	}
	if why := whyDown(k.box); !errors.Is(why, errStalled) {
		t.Errorf("why not up: %v, want %v", why, errStalled)
	}
	c.readNothing("on the stalled connection")

	// Another batch written before the check times out meanwhile: its
	// stall is stale once bearerbox answers the check written after it.
	sess.stall()
	c.ack(check, ackFailed)
	waitBoxUp(t, k, "the connection up again")
	c.readNothing("once bearerbox answered, want nothing (a stale stall)")
	done := notifyAsync(k, channeltest.Batch("13800000001"))
	c.ack(c.readSMS(1)[0], ackSuccess)
	if n := <-done; n.err != nil || n.retry || len(n.rcs) != 1 {
		t.Errorf("once answered: %+v", n)
	}
	if _, _, connects := k.BoxState(); connects != 1 {
		t.Errorf("%d connections, want the one", connects)
	}
}

// whyDown says why l has no session up.
func whyDown(l *boxLink) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastErr
}

// Bearerbox's answer to the check and the end of the connection (it
// shuts down) may be read together: the connection was answered all the
// same, and counts.
func TestBoxAnsweredThenEnded(t *testing.T) {
	l := newBoxLink("127.0.0.1:1", BoxID, slog.New(slog.DiscardHandler))
	defer l.close()
	answered := make(chan struct{})
	close(answered)
	ended := errors.New("bearerbox is shutting down")
	for range 20 { // select picks at random among what is ready
		served := make(chan error, 1)
		served <- ended
		if ok, err := l.awaitAnswer(answered, served, errNotAnswered); !ok {
			t.Fatalf("answered and ended: answered=%v err=%v; want answered", ok, err)
		}
	}
}
