package aliyunvoice_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels/aliyunvoice/fake"
	"warngate/internal/channeltest"
	"warngate/warning"
)

// pushUntilTaken pushes as Alibaba does: again while the answer is not
// "成功", a few times.
func (r *rig) pushUntilTaken(t *testing.T, p fake.Push) {
	t.Helper()
	var err error
	for range 3 {
		if err = r.f.PushTo(context.Background(), r.cb, []fake.Push{p}); err == nil {
			return
		}
	}
	t.Fatalf("push never taken: %v", err)
}

// A push answered "push again" must be recorded when pushed again, however
// far its first try went: here the reply of each Redis command the push
// makes is lost in turn, after Redis did the work (a key press counted, a
// call marked). Neither the official's key press "1" nor the call's end
// may be lost, and the end must still say the official confirmed.
func TestAPushIsRecordedWhenPushedAgainAfterALostRedisReply(t *testing.T) {
	for n := 1; ; n++ {
		lost := false
		t.Run(fmt.Sprintf("reply %d lost", n), func(t *testing.T) {
			r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
			if _, _, _, err := r.notify(t, "13800000001"); err != nil {
				t.Fatal(err)
			}
			c := r.f.Calls()[0]
			press := fake.Push{CallID: c.CallID, StatusCode: "300000", DTMF: "1", StatusTime: "2026-12-01 10:00:02", OutID: c.OutID}
			end := fake.Push{CallID: c.CallID, StatusCode: "200000", OutID: c.OutID, Duration: ptr("12"), EndTime: "2026-12-01 10:00:20",
				StartTime: "2026-12-01 10:00:05", OriginateTime: "2026-12-01 10:00:00", HangupDirection: "机器"}

			r.lost.Arm(n)
			r.pushUntilTaken(t, press)
			lost = r.lost.Disarm()
			if len(r.sink.Confirmations()) == 0 {
				t.Error("the key press 1 was lost: no confirmation")
			}

			r.lost.Arm(n)
			r.pushUntilTaken(t, end)
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
		if !lost || t.Failed() { // every command of both pushes had its reply lost once
			break
		}
	}
}

// givesUpSink is a sink whose first confirmation lasts until the push's
// request is given up, as Alibaba gives up a push the gateway is slow to
// answer (and pushes it again).
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

// A key press whose first push Alibaba gave up while the gateway was
// confirming confirms when pushed again: the push's cancelled context must
// leave nothing behind that makes the second push look like a replay.
func TestAKeyPressGivenUpWhileConfirmingConfirmsWhenPushedAgain(t *testing.T) {
	r := newRig(t, fake.Options{Default: fake.Behavior{Answer: true, Talk: time.Hour}}, nil)
	r.notify(t, "13800000001")
	c := r.f.Calls()[0]
	sink := &givesUpSink{Sink: &channeltest.Sink{}}
	gw := channeltest.Serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { r.a.ServeReports(w, req, sink) }))
	cb := gw.URL + "/callbacks/aliyun_voice?token=" + token
	p := []fake.Push{{CallID: c.CallID, StatusCode: "300000", DTMF: "1", StatusTime: "2026-12-01 10:00:02", OutID: c.OutID}}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := r.f.PushTo(ctx, cb, p); err == nil {
		t.Fatal("the push given up was answered")
	}
	channeltest.WaitFor(t, "the first confirmation to give up", func() bool { return sink.n.Load() == 1 })
	time.Sleep(100 * time.Millisecond) // the first push's handler winds up
	if err := r.f.PushTo(context.Background(), cb, p); err != nil {
		t.Fatal(err)
	}
	if n := len(sink.Confirmations()); n != 1 {
		t.Errorf("%d confirmations after the key press was pushed again, want 1", n)
	}
}
