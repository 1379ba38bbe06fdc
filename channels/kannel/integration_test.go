package kannel_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
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

// TestRealKannel sends through a real Kannel (bearerbox, smsbox and the
// fakesmsc SMS-centre simulator on loopback): residents many numbers a
// call, an official alone, a number Kannel's black-list refuses failing
// alone; it takes Kannel's delivery reports and replies from phones.
func TestRealKannel(t *testing.T) {
	kannelbox.Require(t)

	// The gateway's callbacks.
	sink := &channeltest.Sink{Provider: kannel.IndexName}
	var (
		mu   sync.Mutex
		dlrs []url.Values // every dlr-url call, in order of arrival
	)
	mux := http.NewServeMux()
	var k *kannel.Kannel
	mux.HandleFunc("/callbacks/kannel", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		dlrs = append(dlrs, r.URL.Query())
		mu.Unlock()
		k.ServeReports(w, r, sink)
	})
	replies := collectReplies(mux, func() *kannel.Kannel { return k })
	gw := httptest.NewServer(mux)
	t.Cleanup(gw.Close)

	box := startBox(t, kannelbox.Options{MOURL: gw.URL + "/callbacks/kannel/mo?key=" + cbKey, Password: "warngate-secret-0123", Refuse: "^1990000"})

	k, err := kannel.New(kannel.Config{
		SendSMSURL:  box.SendSMSURL(),
		Username:    box.Username,
		Password:    channels.Secret(box.Password),
		From:        box.From,
		Signature:   "昆明市应急管理局",
		DLRURL:      gw.URL + "/callbacks/kannel",
		CallbackKey: cbKey,
	}, &http.Client{Timeout: 10 * time.Second}, sink, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Residents: two numbers, an invalid one, one Kannel refuses, the
	// first number again (a second resident on that phone).
	b := channeltest.Batch("13800000001", "+8613800000002", "999", "19900000001", "13800000001")
	// Long enough for concatenated parts.
	b.Warning.Description = "预计未来3小时五华区将出现100毫米以上降雨，并伴有雷电和短时大风，局地可能引发山洪、泥石流和城市内涝，请注意防范。"
	b.Warning.Instruction = "停止户外活动，远离河道和低洼地带；危险区域人员立即转移到安全地点，低洼地带车辆及时转移。"
	b.Recipients[1].ID = "居民2" // escaped to %XX, which Kannel would take for its own codes
	// A village officer, whose text carries their own link: a call alone.
	b.Recipients = append(b.Recipients, warning.Recipient{ID: "官员1", Address: "13800000003", Audience: warning.VillageOfficials})
	b.AckURL = func(r warning.Recipient) string { return "https://gw.example/a/" + r.ID }
	got, retry, err := k.Notify(context.Background(), b)
	if err != nil || retry {
		t.Fatalf("Notify: retry=%v err=%v", retry, err)
	}
	channeltest.CheckReceipts(t, got, "SSFFSS", map[int]string{
		2: "invalid number: want 11 digits starting with 1",
		3: "kannel: Number(s) has/have been denied by white- and/or black-lists.",
	})
	if want := channels.SMSSegments(k.SMSText(b, b.Recipients[0])); got[0].Segments != want || want < 2 {
		t.Errorf("segments %d, want %d (more than one)", got[0].Segments, want)
	}

	// One delivery report each (type 1; dlr-mask 19 asks for no type 8),
	// found again by call and number, or by the official's ref.
	sent := []int{0, 1, 4, 5}
	channeltest.WaitFor(t, "a delivery report for each message", func() bool { return len(sink.Reports()) == len(sent) })
	byRef := sink.ByRef()
	for _, i := range sent {
		if r, ok := byRef[b.Ref(i)]; !ok || r.State != warning.Delivered || time.Since(r.At) > time.Minute {
			t.Errorf("recipient %d: recorded %+v, want delivered", i, r)
		}
	}
	// The two residents' numbers Kannel took went in one call; the
	// second resident on the first phone and the official, alone.
	mu.Lock()
	var byCall []string
	for _, q := range dlrs {
		if q.Get("type") != "1" {
			t.Errorf("report of type %s: %v", q.Get("type"), q)
		}
		if q.Get("call") != "" {
			byCall = append(byCall, q.Get("to"))
		} else if q.Get("ref") == "" {
			t.Errorf("report names neither delivery nor call and number: %v", q)
		}
	}
	if slices.Sort(byCall); len(dlrs) != len(sent) || !slices.Equal(byCall, []string{"13800000001", "13800000002"}) {
		t.Errorf("%d reports, want %d; by call and number: %v, want 13800000001 and 13800000002", len(dlrs), len(sent), byCall)
	}
	mu.Unlock()

	// A duty officer answers "1", another "收到" in UCS-2. fakesmsc sends
	// a line only once it has read the next one when both come at once, so
	// one line at a time.
	for i, line := range []string{"13800000001 12379 text 1", "8613800000002 12379 ucs2 %65%36%52%30"} {
		if err := box.SendMO(line); err != nil {
			t.Fatal(err)
		}
		channeltest.WaitFor(t, fmt.Sprintf("reply %d", i+1), func() bool { return len(replies()) == i+1 })
	}
	rs := replies()
	slices.SortFunc(rs, func(a, b channels.Reply) int { return strings.Compare(a.From, b.From) })
	if r := rs[0]; r.From != "13800000001" || r.To != "12379" || r.Text != "1" || time.Since(r.At) > time.Hour {
		t.Errorf("reply %+v", r)
	}
	if r := rs[1]; r.From != "13800000002" || r.Text != "收到" {
		t.Errorf("reply %+v", r)
	}
}
