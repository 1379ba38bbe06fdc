package kannel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
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

// kannelRequired is set in CI, where a missing Kannel is a failure.
const kannelRequired = "WARNGATE_TEST_KANNEL_REQUIRED"

// TestRealKannel sends through a real Kannel (bearerbox, smsbox and the
// fakesmsc SMS-centre simulator on loopback), takes its delivery reports
// and a reply from a phone.
func TestRealKannel(t *testing.T) {
	if err := kannelbox.Installed(); err != nil {
		if os.Getenv(kannelRequired) != "" {
			t.Fatalf("%v (%s is set)", err, kannelRequired)
		}
		t.Skip(err)
	}

	// The gateway's callbacks.
	sink := &channeltest.Sink{}
	var (
		mu      sync.Mutex
		types   = map[string][]string{} // ref → dlr types in order of arrival
		replies []channels.Reply
	)
	mux := http.NewServeMux()
	var k *kannel.Kannel
	mux.HandleFunc("/callbacks/kannel", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		types[r.URL.Query().Get("ref")] = append(types[r.URL.Query().Get("ref")], r.URL.Query().Get("type"))
		mu.Unlock()
		k.ServeReports(w, r, sink)
	})
	mux.HandleFunc("/callbacks/kannel/mo", func(w http.ResponseWriter, r *http.Request) {
		k.ServeReplies(w, r, func(_ context.Context, rep channels.Reply) error {
			mu.Lock()
			defer mu.Unlock()
			replies = append(replies, rep)
			return nil
		})
	})
	gw := httptest.NewServer(mux)
	t.Cleanup(gw.Close)

	box, err := kannelbox.Start(t.Context(), kannelbox.Options{
		Dir: t.TempDir(), MOURL: gw.URL + "/callbacks/kannel/mo?key=" + cbKey, Password: "warngate-secret-0123",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	})

	k, err = kannel.New(kannel.Config{
		SendSMSURL:  box.SendSMSURL(),
		Username:    box.Username,
		Password:    channels.Secret(box.Password),
		From:        box.From,
		Signature:   "昆明市应急管理局",
		DLRURL:      gw.URL + "/callbacks/kannel",
		CallbackKey: cbKey,
	}, &http.Client{Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}

	b := channeltest.Batch("13800000001", "+8613800000002", "999")
	// Long enough for concatenated parts.
	b.Warning.Description = "预计未来3小时五华区将出现100毫米以上降雨，并伴有雷电和短时大风，局地可能引发山洪、泥石流和城市内涝，请注意防范。"
	b.Warning.Instruction = "停止户外活动，远离河道和低洼地带；危险区域人员立即转移到安全地点，低洼地带车辆及时转移。"
	b.Recipients[1].ID = "乡干部2" // escaped to %XX, which Kannel would take for its own codes
	got, retry, err := k.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	want := []warning.DeliveryState{warning.Sent, warning.Sent, warning.Failed}
	for i, rc := range got {
		if rc.Index != i || rc.State != want[i] {
			t.Errorf("receipt %d: %+v, want %s", i, rc, want[i])
		}
	}
	if want := channels.SMSSegments(k.Text(b, b.Recipients[0])); got[0].Segments != want || want < 2 {
		t.Errorf("segments %d, want %d (more than one)", got[0].Segments, want)
	}

	for i := range 2 {
		ref := b.Ref(i)
		// Kannel makes the type 8 (SMS centre) and type 1 (delivered) calls
		// at once: they arrive in either order.
		channeltest.WaitFor(t, "delivery reports for "+ref.String(), func() bool {
			mu.Lock()
			seen := slices.Sorted(slices.Values(types[ref.String()]))
			mu.Unlock()
			return slices.Equal(seen, []string{"1", "8"})
		})
		if r, ok := sink.ByRef()[ref]; !ok || r.State != warning.Delivered {
			t.Errorf("%s: recorded %+v, want delivered", ref, r)
		}
	}
	if _, ok := sink.ByRef()[b.Ref(2)]; ok {
		t.Errorf("a report for the number never sent")
	}

	// A duty officer answers "1", another "收到" in UCS-2. fakesmsc sends
	// a line only once it has read the next one when both come at once, so
	// one line at a time.
	for i, line := range []string{"13800000001 12379 text 1", "8613800000002 12379 ucs2 %65%36%52%30"} {
		if err := box.SendMO(line); err != nil {
			t.Fatal(err)
		}
		channeltest.WaitFor(t, fmt.Sprintf("reply %d", i+1), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(replies) == i+1
		})
	}
	mu.Lock()
	defer mu.Unlock()
	slices.SortFunc(replies, func(a, b channels.Reply) int { return strings.Compare(a.From, b.From) })
	if r := replies[0]; r.From != "13800000001" || r.To != "12379" || r.Text != "1" || time.Since(r.At) > time.Hour {
		t.Errorf("reply %+v", r)
	}
	if r := replies[1]; r.From != "13800000002" || r.Text != "收到" {
		t.Errorf("reply %+v", r)
	}
}
