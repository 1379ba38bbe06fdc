package kannel

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/google/uuid"

	"warngate/channels"
	"warngate/warning"
)

var _ channels.SelfReporting = (*Kannel)(nil)

// Attach implements channels.SelfReporting. With the box transport it
// connects to bearerbox (and keeps connecting after the connection is
// lost), and records the delivery reports that come back on the
// connection into sink; Notify refuses to send before it. With sendsms it
// does nothing: reports come to the HTTP callback.
func (k *Kannel) Attach(sink channels.CallSink) error {
	if k.box != nil {
		k.box.start(sink)
	}
	return nil
}

// Close ends the box connection; with sendsms it does nothing.
func (k *Kannel) Close() {
	if k.box != nil {
		k.box.close()
	}
}

// BoxState says, with the box transport (box true), whether the
// connection to bearerbox is up now (bearerbox answered it) and how many
// connections have been up so far; with sendsms, box is false.
func (k *Kannel) BoxState() (box, up bool, connects int64) {
	if k.box == nil {
		return false, false, 0
	}
	return true, k.box.connected(), k.box.connects.Load()
}

// BoxID is the box id warngate's box connections share unless
// Config.BoxID says otherwise.
const BoxID = "warngate"

// notifyBox sends a batch over the box connection: every recipient its
// own message, the batch's messages written at once, then bearerbox's
// acks awaited (Config.Timeout at most). A tracked message's dlr-url is
// its delivery's ref, so its reports need no index.
//
// Acks map to receipts: taken (or queued for an SMS centre not connected)
// is Sent; refused for good (no route, expired) is Failed with that
// reason; refused for now (bearerbox's queue is full, it is shutting down)
// is sent again with the batch's retry. A message whose ack did not come
// (the connection was lost, or bearerbox did not answer in time) may have
// been taken: as with a sendsms call that did not answer, Notify waits a
// little and asks the Index which of them have been reported since
// (reportedSince); those whose acks came meanwhile have their receipts
// too, and the retry sends only the others.
func (k *Kannel) notifyBox(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	var (
		frames   []byte
		ids      = make([]string, 0, len(b.Recipients))
		at       = make([]int, 0, len(b.Recipients))
		segments = make([]int, len(b.Recipients)) // by position in the batch
		now      = time.Now().Unix()
		// Residents share one text: it is encoded once.
		lastText string
		lastData []byte
		lastSegs int
	)
	for i, r := range b.Recipients {
		phone, ok := Phone(r.Address)
		if !ok {
			receipts = append(receipts, invalidNumber(i))
			continue
		}
		if text := k.SMSText(b, r); lastData == nil || text != lastText {
			lastText, lastData, lastSegs = text, ucs2(text), channels.SMSSegments(text)
		}
		m := boxSMSMsg{sender: k.cfg.From, receiver: phone, msgdata: lastData, time: now, smscID: k.cfg.SMSC,
			id: uuid.NewString(), smsType: smsMTPush, coding: codingUCS2, dlrMask: undefined, charset: "UTF-16BE", boxcID: k.boxID}
		if b.Tracked() {
			m.dlrMask, m.dlrURL = dlrMaskBits, b.Ref(i).String()
		}
		frames = appendSMS(frames, &m)
		ids = append(ids, m.id)
		at = append(at, i)
		segments[i] = lastSegs
	}
	if len(ids) == 0 {
		return receipts, false, nil
	}
	s, err := k.box.session(ctx)
	if err != nil {
		return receipts, true, err
	}
	acks := make(chan boxAnswer, len(ids))
	s.expect(ids, at, acks)
	defer s.forget(ids)
	var (
		unanswered []int
		firstRetry error
		firstNoAns error
		answered   = make([]bool, len(b.Recipients)) // by position in the batch
	)
	if err := s.write(frames); err != nil {
		// Some of the messages may have reached bearerbox before the
		// connection failed.
		unanswered, firstNoAns = at, fmt.Errorf("kannel: write to bearerbox: %w", err)
	} else {
		timer := time.NewTimer(k.cfg.Timeout)
		defer timer.Stop()
	wait:
		for n := 0; n < len(ids); n++ {
			select {
			case a := <-acks:
				answered[a.at] = true
				if r, ok := ackReceipt(a, segments[a.at]); ok {
					receipts = append(receipts, r)
				} else if firstRetry == nil {
					firstRetry = errors.New("kannel: bearerbox refused messages for now (its queue is full, or it is shutting down)")
				}
			case <-s.done:
				firstNoAns = fmt.Errorf("kannel: connection to bearerbox lost before its acks: %w", s.err)
				break wait
			case <-timer.C:
				firstNoAns = fmt.Errorf("kannel: bearerbox did not acknowledge %d of %d messages in %s", len(ids)-n, len(ids), k.cfg.Timeout)
				if n == 0 {
					s.stall()
				}
				break wait
			case <-ctx.Done():
				firstNoAns = fmt.Errorf("kannel: %w", context.Cause(ctx))
				break wait
			}
		}
		for _, i := range at {
			if !answered[i] {
				unanswered = append(unanswered, i)
			}
		}
	}
	if len(unanswered) > 0 {
		reported := k.reportedSince(ctx, b, unanswered)
		receipts = append(receipts, reported...)
		for _, r := range reported {
			answered[r.Index] = true
		}
		// Acks that came during the wait: bearerbox was slow, not gone,
		// and those messages it took (or refused) are not sent again.
	late:
		for {
			select {
			case a := <-acks:
				if answered[a.at] {
					continue
				}
				answered[a.at] = true
				if r, ok := ackReceipt(a, segments[a.at]); ok {
					receipts = append(receipts, r)
				}
			default:
				break late
			}
		}
	}
	sort.Slice(receipts, func(a, c int) bool { return receipts[a].Index < receipts[c].Index })
	notTaken := len(b.Recipients) - len(receipts)
	switch {
	case notTaken > 0 && firstRetry != nil:
		return receipts, true, fmt.Errorf("kannel: %d of %d messages not taken: %w", notTaken, len(ids), firstRetry)
	case notTaken > 0 && firstNoAns != nil:
		return receipts, true, fmt.Errorf("kannel: %d of %d messages not taken: %w", notTaken, len(ids), firstNoAns)
	}
	return receipts, false, nil
}

// ackReceipt is the receipt of bearerbox's ack a: taken (or queued for an
// SMS centre not connected) is sent, refused for good failed; false when
// it refused the message for now, to be sent again with the batch.
func ackReceipt(a boxAnswer, segments int) (channels.Receipt, bool) {
	switch a.nack {
	case ackSuccess, ackBuffered:
		return channels.Receipt{Index: a.at, State: warning.Sent, Segments: segments}, true
	case ackFailed:
		return channels.Receipt{Index: a.at, State: warning.Failed,
			Reason: "kannel: bearerbox refused the message for good (no route to an SMS centre, or its validity expired)"}, true
	}
	return channels.Receipt{}, false
}
