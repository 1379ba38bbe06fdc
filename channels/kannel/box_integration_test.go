package kannel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/kannel"
	"warngate/internal/channeltest"
	"warngate/internal/kannelbox"
	"warngate/warning"
)

// startKannel starts a real Kannel whose smsbox sends replies from phones
// to a test server, and returns it with the replies that came.
func startKannel(t *testing.T) (*kannelbox.Box, func() []channels.Reply) {
	t.Helper()
	kannelbox.Require(t)
	k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: "127.0.0.1:1", From: "12379",
		Signature: "昆明市应急管理局", CallbackKey: cbKey}, http.DefaultClient, &channeltest.Sink{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	replies := collectReplies(mux, func() *kannel.Kannel { return k })
	gw := httptest.NewServer(mux)
	t.Cleanup(gw.Close)
	return startBox(t, kannelbox.Options{MOURL: gw.URL + "/callbacks/kannel/mo?key=" + cbKey}), replies
}

// collectReplies answers the reply callback (/callbacks/kannel/mo) on mux
// with the adapter k returns, and returns the replies that came so far.
func collectReplies(mux *http.ServeMux, k func() *kannel.Kannel) func() []channels.Reply {
	var (
		mu      sync.Mutex
		replies []channels.Reply
	)
	mux.HandleFunc("/callbacks/kannel/mo", func(w http.ResponseWriter, r *http.Request) {
		k().ServeReplies(w, r, func(_ context.Context, rep channels.Reply) error {
			mu.Lock()
			defer mu.Unlock()
			replies = append(replies, rep)
			return nil
		})
	})
	return func() []channels.Reply {
		mu.Lock()
		defer mu.Unlock()
		return append([]channels.Reply(nil), replies...)
	}
}

// startBox starts a real Kannel with o in a folder of the test's, and
// stops it when the test ends, showing its logs if the test failed.
func startBox(t *testing.T, o kannelbox.Options) *kannelbox.Box {
	t.Helper()
	o.Dir = t.TempDir()
	box, err := kannelbox.Start(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	})
	return box
}

// TestRealKannelBox sends through a real bearerbox over the box
// transport: each recipient its own message, acknowledged on the
// connection, delivery reports back on it and recorded by ref; a message
// bearerbox cannot route fails with its reason; replies from phones still
// reach the gateway through smsbox while the gateway's box is connected.
func TestRealKannelBox(t *testing.T) {
	box, replies := startKannel(t)
	sink := &channeltest.Sink{}
	newBox := func(smsc string) *kannel.Kannel {
		k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From,
			Signature: "昆明市应急管理局", CallbackKey: cbKey, SMSC: smsc, Timeout: 5 * time.Second}, http.DefaultClient, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(k.Close)
		return k
	}
	k := newBox("")

	b := channeltest.Batch("13800000001", "+8613800000002", "999", "13800000001")
	if _, retry, err := k.Notify(t.Context(), b); err == nil || !retry || !strings.Contains(err.Error(), "not started") {
		t.Fatalf("Notify before Attach: retry=%v err=%v; want a retry, the connection not started", retry, err)
	}
	attachUp(t, k, sink)
	b.Warning.Description = "预计未来3小时五华区将出现100毫米以上降雨，并伴有雷电和短时大风，局地可能引发山洪、泥石流和城市内涝，请注意防范。"
	b.Recipients = append(b.Recipients, warning.Recipient{ID: "官员1", Address: "13800000003", Audience: warning.VillageOfficials})
	b.AckURL = func(r warning.Recipient) string { return "https://gw.example/a/" + r.ID }
	got, retry, err := k.Notify(t.Context(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	channeltest.CheckReceipts(t, got, "SSFSS", map[int]string{2: "invalid number: want 11 digits starting with 1"})
	if want := channels.SMSSegments(k.SMSText(b, b.Recipients[0])); got[0].Segments != want || want < 2 {
		t.Errorf("segments %d, want %d (more than one)", got[0].Segments, want)
	}
	sent := []int{0, 1, 3, 4}
	channeltest.WaitFor(t, "a delivery report for each message", func() bool { return len(sink.ByRef()) == len(sent) })
	byRef := sink.ByRef()
	for _, i := range sent {
		if r, ok := byRef[b.Ref(i)]; !ok || r.State != warning.Delivered || time.Since(r.At) > time.Minute {
			t.Errorf("recipient %d: recorded %+v, want delivered", i, r)
		}
	}

	// A phone's reply goes to smsbox, not to the gateway's box.
	if err := box.SendMO("13800000001 12379 text 1"); err != nil {
		t.Fatal(err)
	}
	channeltest.WaitFor(t, "the reply through smsbox", func() bool { return len(replies()) == 1 })
	if r := replies()[0]; r.From != "13800000001" || r.Text != "1" {
		t.Errorf("reply %+v", r)
	}

	// No SMS centre by that id: bearerbox refuses the message for good.
	nowhere := newBox(kannelbox.NoRoute)
	attachUp(t, nowhere, sink)
	got, retry, err = nowhere.Notify(t.Context(), channeltest.Batch("13800000009"))
	if err != nil || retry {
		t.Fatalf("Notify to no SMS centre: retry=%v err=%v", retry, err)
	}
	channeltest.CheckReceipts(t, got, "F", map[int]string{0: "kannel: bearerbox refused the message for good (no route to an SMS centre, or its validity expired)"})
}

// stuckSink records nothing: Record waits until its context ends, as a
// worker whose Redis is gone.
type stuckSink struct{ channeltest.Sink }

func (s *stuckSink) Record(ctx context.Context, _ []warning.Report) error {
	<-ctx.Done()
	return ctx.Err()
}

// Two workers connect with the same box id; bearerbox spreads the reports
// of one's messages over both. One cannot record: it acknowledges none,
// and when its connection goes, bearerbox sends its reports again to the
// other, which records every one.
func TestRealKannelBoxReportsOutliveAWorker(t *testing.T) {
	box, _ := startKannel(t)
	stuck, good := &stuckSink{}, &channeltest.Sink{}
	connect := func(sink channels.CallSink) *kannel.Kannel {
		k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From,
			Signature: "昆明市应急管理局", CallbackKey: cbKey}, http.DefaultClient, good, nil)
		if err != nil {
			t.Fatal(err)
		}
		attachUp(t, k, sink)
		return k
	}
	a := connect(stuck)
	defer a.Close()
	b := connect(good)
	defer b.Close()
	// b's connection first, so that bearerbox knows both before a sends
	// (its report may go to either).
	if _, _, err := b.Notify(t.Context(), channeltest.Batch("13800000099")); err != nil {
		t.Fatal(err)
	}

	var phones []string
	for i := range 40 {
		phones = append(phones, fmt.Sprintf("1380000%04d", i))
	}
	batch := channeltest.Batch(phones...)
	rcs, retry, err := a.Notify(t.Context(), batch)
	if err != nil || retry || len(rcs) != len(phones) {
		t.Fatalf("Notify: %d receipts, retry=%v err=%v", len(rcs), retry, err)
	}
	// Bearerbox picks either box for each report: those a gets, it cannot
	// record, and keeps unacknowledged. Then a goes.
	time.Sleep(500 * time.Millisecond)
	if n := len(good.ByRef()); n >= len(phones) {
		t.Fatalf("b recorded all %d reports while a was connected: bearerbox gave a none (it picks at random: about 2^-40)", n)
	}
	a.Close()
	// b's own message is the batch's first recipient again (the same ref).
	channeltest.WaitFor(t, "every report recorded by b", func() bool { return len(good.ByRef()) == len(phones) })
	for i := range phones {
		if r := good.ByRef()[batch.Ref(i)]; r.State != warning.Delivered {
			t.Errorf("recipient %d: %+v", i, r)
		}
	}
}

// Kannel's machine restarts under the gateway: the box connection is
// lost, the adapter connects again by itself, and what it sends then is
// taken and reported as before.
func TestRealKannelBoxAfterBearerboxRestart(t *testing.T) {
	box, _ := startKannel(t)
	sink := &channeltest.Sink{}
	k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From,
		Signature: "昆明市应急管理局", CallbackKey: cbKey}, http.DefaultClient, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	attachUp(t, k, sink)
	first := channeltest.Batch("13800000001")
	if _, retry, err := k.Notify(t.Context(), first); err != nil || retry {
		t.Fatalf("before the restart: retry=%v err=%v", retry, err)
	}
	channeltest.WaitFor(t, "the report before the restart", func() bool { return len(sink.ByRef()) == 1 })

	if err := box.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	channeltest.WaitFor(t, "the adapter connected again", func() bool {
		_, up, connects := k.BoxState()
		return up && connects >= 2
	})
	second := channeltest.ChannelBatch(warning.SMS, warning.Residents, "13800000002", "13800000003")
	second.Warning.ID = "w2"
	rcs, retry, err := k.Notify(t.Context(), second)
	if err != nil || retry {
		t.Fatalf("after the restart: retry=%v err=%v", retry, err)
	}
	channeltest.CheckReceipts(t, rcs, "SS", nil)
	channeltest.WaitFor(t, "the reports after the restart", func() bool { return len(sink.ByRef()) == 3 })
	for i := range second.Recipients {
		if r := sink.ByRef()[second.Ref(i)]; r.State != warning.Delivered {
			t.Errorf("recipient %d after the restart: %+v", i, r)
		}
	}
}

// Bearerbox reads one new box connection a second: it accepts one, then
// sleeps before the next, while the kernel completes the others. Two
// workers connecting at once are both connected at once, but the second
// is read a second later, and until then what it wrote would wait unread
// (and be sent again elsewhere when its acks do not come). Each adapter
// counts its connection up only once bearerbox has answered its check,
// and the check itself reaches no SMS centre.
func TestRealKannelBoxUpOnceBearerboxReads(t *testing.T) {
	box, _ := startKannel(t)
	sink := &channeltest.Sink{}
	var ks [2]*kannel.Kannel
	for i := range ks {
		k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From,
			Signature: "昆明市应急管理局", CallbackKey: cbKey}, http.DefaultClient, sink, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		ks[i] = k
	}
	for _, k := range ks {
		k.Attach(sink)
	}
	var upAt [2]time.Time
	channeltest.WaitFor(t, "both connections answered", func() bool {
		for i, k := range ks {
			if _, up, _ := k.BoxState(); up && upAt[i].IsZero() {
				upAt[i] = time.Now()
			}
		}
		return !upAt[0].IsZero() && !upAt[1].IsZero()
	})
	if gap := upAt[1].Sub(upAt[0]).Abs(); gap < 700*time.Millisecond {
		t.Errorf("the two connections were up %v apart; bearerbox reads the second about a second after the first", gap)
	}
	for i, k := range ks {
		b := channeltest.Batch("1380000001" + strconv.Itoa(i))
		b.Warning.ID = "w" + strconv.Itoa(i)
		if rcs, retry, err := k.Notify(t.Context(), b); err != nil || retry || len(rcs) != 1 {
			t.Fatalf("worker %d: %d receipts, retry=%v err=%v", i, len(rcs), retry, err)
		}
	}
	channeltest.WaitFor(t, "both reports", func() bool { return len(sink.ByRef()) == 2 })
	log, err := box.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	sent := regexp.MustCompile(`(?m)^.* Sent SMS .*\[to:(\d+)\].*$`).FindAllStringSubmatch(log, -1)
	checks := regexp.MustCompile(`(?m)^.*EXPIRED SMS .*\[to:0\].*$`).FindAllString(log, -1)
	if len(sent) != 2 || sent[0][1]+sent[1][1] != "1380000001013800000011" && sent[0][1]+sent[1][1] != "1380000001113800000010" || len(checks) != 2 {
		t.Errorf("bearerbox's access log:\n%s\nwant the two messages sent, and the two connection checks refused", log)
	}
}

// An operator suspends bearerbox in the middle of a warning: it stops
// reading its boxes (the message it was waiting for when suspended is
// still taken). A batch then written is not acknowledged, and the retries
// of it write nothing more on the connection, so that bearerbox, resumed,
// sends that message once, not once per retry.
func TestRealKannelBoxWhileSuspended(t *testing.T) {
	box, _ := startKannel(t)
	sink := &channeltest.Sink{}
	k, err := kannel.New(kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From,
		Signature: "昆明市应急管理局", CallbackKey: cbKey, Timeout: 300 * time.Millisecond}, http.DefaultClient, sink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	attachUp(t, k, sink)
	if err := box.Admin(t.Context(), "suspend"); err != nil {
		t.Fatal(err)
	}
	first := channeltest.Batch("13800000021")
	if rcs, retry, err := k.Notify(t.Context(), first); err != nil || retry || len(rcs) != 1 {
		t.Fatalf("the message bearerbox was waiting for: %d receipts, retry=%v err=%v", len(rcs), retry, err)
	}
	second := channeltest.Batch("13800000022")
	second.Warning.ID = "w2"
	if rcs, retry, err := k.Notify(t.Context(), second); !retry || len(rcs) != 0 {
		t.Fatalf("while suspended: %d receipts, retry=%v err=%v; want a retry", len(rcs), retry, err)
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		_, retry, err := k.Notify(ctx, second)
		cancel()
		if !retry || err == nil {
			t.Fatalf("a retry while suspended: retry=%v err=%v", retry, err)
		}
	}
	if err := box.Admin(t.Context(), "resume"); err != nil {
		t.Fatal(err)
	}
	channeltest.WaitFor(t, "the connection up again", func() bool { _, up, _ := k.BoxState(); return up })
	channeltest.WaitFor(t, "both reports", func() bool { return len(sink.ByRef()) == 2 })
	log, err := box.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	for _, to := range []string{"13800000021", "13800000022"} {
		if n := len(regexp.MustCompile(`Sent SMS \[SMSC:FAKE\].*\[to:`+to+`\]`).FindAllString(log, -1)); n != 1 {
			t.Errorf("bearerbox sent %s %d SMS, want one:\n%s", to, n, log)
		}
	}
}

// attachUp attaches k to sink and waits until bearerbox has answered its
// connection: it starts reading one new box connection a second, so a
// second adapter (or one right after smsbox) may wait longer than Notify
// does.
func attachUp(t *testing.T, k *kannel.Kannel, sink channels.CallSink) {
	t.Helper()
	if err := k.Attach(sink); err != nil {
		t.Fatal(err)
	}
	channeltest.WaitFor(t, "bearerbox to answer the connection", func() bool { _, up, _ := k.BoxState(); return up })
}
