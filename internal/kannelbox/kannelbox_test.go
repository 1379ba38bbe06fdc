package kannelbox_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/internal/kannelbox"
)

// A call to two numbers through the box, one of them refused by the box's
// black-list: the answer names the refused number, the delivery report of
// the other reaches the callback with its number, and so does a reply from
// a phone.
func TestBox(t *testing.T) {
	kannelbox.Require(t)
	dlrs := make(chan url.Values, 8)
	mos := make(chan url.Values, 8)
	mux := http.NewServeMux()
	mux.HandleFunc("/dlr", func(w http.ResponseWriter, r *http.Request) { dlrs <- r.URL.Query() })
	mux.HandleFunc("/mo", func(w http.ResponseWriter, r *http.Request) { mos <- r.URL.Query() })
	gw := httptest.NewServer(mux)
	defer gw.Close()

	box, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: t.TempDir(), MOURL: gw.URL + "/mo?key=k", Refuse: "^1990000"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		if err := box.Close(); err != nil {
			t.Error(err)
		}
	}()

	q := url.Values{"username": {box.Username}, "password": {box.Password}, "to": {"13800000001 19900000001"},
		"text": {"test"}, "dlr-mask": {"1"}, "dlr-url": {gw.URL + "/dlr?ref=r1&to=%p&type=%d"}}
	resp, err := http.Get(box.SendSMSURL() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || string(body) != "Sent. Denied receivers are: 19900000001" {
		t.Fatalf("sendsms: %s %s", resp.Status, body)
	}
	if got := receive(t, dlrs, "the delivery report"); got.Get("ref") != "r1" || got.Get("to") != "13800000001" || got.Get("type") != "1" {
		t.Errorf("delivery report %v, want ref=r1 to=13800000001 type=1", got)
	}
	if _, err := os.Stat("/proc/self/stat"); err == nil && box.CPU() <= 0 {
		t.Errorf("CPU() = %s after starting and sending, want some", box.CPU())
	}

	if err := box.SendMO("13800000001 " + box.From + " text 1"); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, mos, "the reply"); got.Get("key") != "k" || got.Get("from") != "13800000001" || got.Get("to") != box.From || got.Get("text") != "1" {
		t.Errorf("reply %v", got)
	}
}

// With two smsboxes, bearerbox hands delivery reports to both: every
// report of a call to twenty numbers comes, some through the second.
func TestBoxWithTwoSmsboxes(t *testing.T) {
	kannelbox.Require(t)
	dlrs := make(chan url.Values, 40)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { dlrs <- r.URL.Query() }))
	defer gw.Close()
	box, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: t.TempDir(), MOURL: gw.URL + "/mo?key=k", Smsboxes: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	}()
	to := sendToMany(t, box, 20, gw.URL+"/dlr?to=%p")
	got := map[string]bool{}
	for range to {
		got[receive(t, dlrs, "a delivery report").Get("to")] = true
	}
	if len(got) != len(to) {
		t.Errorf("reports for %d numbers, want %d", len(got), len(to))
	}
	log, _ := os.ReadFile(filepath.Join(box.Dir, "smsbox2.log"))
	if !strings.Contains(string(log), "Starting delivery report") {
		t.Errorf("the second smsbox made no report's callback; its log:\n%s", log)
	}
}

// A gateway that answers delivery reports slowly (it answers once a report
// is recorded) has at most ReportCallbacks of them open at once from an
// smsbox, not Kannel's default 512; and every report comes once answered.
func TestBoxBoundsReportCallbacksAtOnce(t *testing.T) {
	kannelbox.Require(t)
	const n = kannelbox.ReportCallbacks + 36
	var mu sync.Mutex
	open, most := 0, 0
	release := make(chan struct{})
	dlrs := make(chan url.Values, n)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		open++
		most = max(most, open)
		mu.Unlock()
		<-release
		mu.Lock()
		open--
		mu.Unlock()
		dlrs <- r.URL.Query()
	}))
	defer gw.Close()
	box, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: t.TempDir(), MOURL: gw.URL + "/mo?key=k"})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	defer func() {
		if !released {
			close(release)
		}
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	}()
	to := sendToMany(t, box, n, gw.URL+"/dlr?to=%p")

	// Wait for smsbox to have as many open as it may, then give it time
	// to open more if it would.
	openNow := func() int { mu.Lock(); defer mu.Unlock(); return open }
	for deadline := time.Now().Add(20 * time.Second); openNow() < kannelbox.ReportCallbacks; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d reports open at once after 20 s, want %d", openNow(), kannelbox.ReportCallbacks)
		}
	}
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	if most > kannelbox.ReportCallbacks {
		t.Errorf("%d reports open at once, want at most %d (max-pending-requests)", most, kannelbox.ReportCallbacks)
	}
	mu.Unlock()
	close(release)
	released = true
	got := map[string]bool{}
	for range to {
		got[receive(t, dlrs, "a delivery report").Get("to")] = true
	}
	if len(got) != n {
		t.Errorf("reports for %d numbers, want %d", len(got), n)
	}
}

// sendToMany texts n numbers in one sendsms call through box, asking for
// their delivery reports at dlrURL, and returns the numbers.
func sendToMany(t *testing.T, box *kannelbox.Box, n int, dlrURL string) []string {
	t.Helper()
	var to []string
	for i := range n {
		to = append(to, fmt.Sprintf("13800%06d", i))
	}
	q := url.Values{"username": {box.Username}, "password": {box.Password}, "to": {strings.Join(to, " ")},
		"text": {"test"}, "dlr-mask": {"1"}, "dlr-url": {dlrURL}}
	resp, err := http.Get(box.SendSMSURL() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return to
}

func receive(t *testing.T, c <-chan url.Values, what string) url.Values {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("%s never came", what)
		return nil
	}
}

func TestOptionsChecked(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		o    kannelbox.Options
		want string
	}{
		{kannelbox.Options{MOURL: "http://127.0.0.1:1/mo?key=k"}, "Options.Dir is required"},
		{kannelbox.Options{Dir: dir + "/missing", MOURL: "http://127.0.0.1:1/mo?key=k"}, "create it first"},
		{kannelbox.Options{Dir: dir}, "Options.MOURL is required"},
		{kannelbox.Options{Dir: dir, MOURL: "/mo"}, "absolute http://"},
		{kannelbox.Options{Dir: dir, MOURL: "http://127.0.0.1:1/mo?key=a%20b"}, "must not contain %"},
		{kannelbox.Options{Dir: dir, MOURL: "http://127.0.0.1:1/mo?key=k", Refuse: `^1"`}, "Options.Refuse must not contain quotes"},
		{kannelbox.Options{Dir: dir, MOURL: "http://127.0.0.1:1/mo?key=k", Smsboxes: 9}, "Options.Smsboxes 9: use 1 to 8"},
	} {
		_, err := kannelbox.Start(t.Context(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v): %v, want an error with %q", tc.o, err, tc.want)
		}
	}
}
