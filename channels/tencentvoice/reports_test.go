package tencentvoice_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels/tencentvoice/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// postUntilTaken posts as Tencent does: again while the answer is not
// result 0, a few times.
func (r *rig) postUntilTaken(t *testing.T, cb fake.Callback) {
	t.Helper()
	var err error
	for range 3 {
		if err = r.f.PostTo(context.Background(), r.cb, cb); err == nil {
			return
		}
	}
	t.Fatalf("callback never taken: %v", err)
}

// A callback answered "post again" must be recorded when posted again,
// however far its first try went: here the reply of each Redis command the
// callback makes is lost in turn, after Redis did the work (a key press
// counted, a call marked). Neither the official's key press "1" nor the
// call's end may be lost, and the end must still say the official
// confirmed.
func TestACallbackIsRecordedWhenPostedAgainAfterALostRedisReply(t *testing.T) {
	for n := 1; ; n++ {
		lost := false
		t.Run(fmt.Sprintf("reply %d lost", n), func(t *testing.T) {
			r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
			if _, _, _, err := r.notify(t, "13800000001"); err != nil {
				t.Fatal(err)
			}
			c := r.f.Calls()[0]
			press := fake.Callback{Key: &fake.Key{CallID: c.CallID, KeyPress: "1", Mobile: c.Number, NationCode: "86"}}
			start := c.At.Unix()
			end := fake.Callback{Prompt: &fake.Prompt{Result: "0", CallID: c.CallID, Mobile: c.Number, NationCode: "86", Fee: "1",
				StartCallTime: strconv.FormatInt(start, 10), AcceptTime: strconv.FormatInt(start+5, 10), EndCallTime: strconv.FormatInt(start+20, 10)}}

			r.lost.Arm(n)
			r.postUntilTaken(t, press)
			lost = r.lost.Disarm()
			if len(r.sink.Confirmations()) == 0 {
				t.Error("the key press 1 was lost: no confirmation")
			}

			r.lost.Arm(n)
			r.postUntilTaken(t, end)
			lost = r.lost.Disarm() || lost
			// The sink takes the same report twice as once: a second one
			// here is harmless, none is the defect.
			reps := r.sink.Reports()
			if len(reps) == 0 {
				t.Fatal("the call's end was lost: no report")
			}
			if rep := reps[0]; rep.ProviderID != c.CallID || rep.Call.Outcome != warning.CallAnswered {
				t.Errorf("report %+v %+v, want the call, answered and confirmed", rep, rep.Call)
			}
			channeltest.WaitFor(t, "the line to come free", func() bool { return r.inUse() == 0 })
		})
		if !lost || t.Failed() { // every command of both callbacks had its reply lost once
			break
		}
	}
}

// givesUpSink is a sink whose first confirmation lasts until the
// callback's request is given up, as Tencent gives up a callback the
// gateway is slow to answer (and posts it again).
type givesUpSink struct {
	*channeltest.Sink
	n atomic.Int32
}

func (s *givesUpSink) Confirm(ctx context.Context, ref warning.Ref, method, from string) error {
	if s.n.Add(1) == 1 {
		<-ctx.Done()
		return ctx.Err()
	}
	return s.Sink.Confirm(ctx, ref, method, from)
}

// A key press whose first callback Tencent gave up while the gateway was
// confirming confirms when posted again: the callback's cancelled context
// must leave nothing behind that makes the second post look like a
// second "1".
func TestAKeyPressGivenUpWhileConfirmingConfirmsWhenPostedAgain(t *testing.T) {
	r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
	r.notify(t, "13800000001")
	c := r.f.Calls()[0]
	sink := &givesUpSink{Sink: &channeltest.Sink{}}
	gw := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.t.ServeReports(w, req, sink) }))
	cb := gw.URL + "/callbacks/tencent_voice?token=" + token
	press := fake.Callback{Key: &fake.Key{CallID: c.CallID, KeyPress: "1", Mobile: c.Number, NationCode: "86"}}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.f.PostTo(ctx, cb, press); err == nil {
		t.Fatal("the callback given up was answered")
	}
	channeltest.WaitFor(t, "the first confirmation to give up", func() bool { return sink.n.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // the first callback's handler winds up
	if err := r.f.PostTo(context.Background(), cb, press); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.Confirmations()); n != 1 {
		t.Errorf("%d confirmations after the key press was posted again, want 1", n)
	}
}
