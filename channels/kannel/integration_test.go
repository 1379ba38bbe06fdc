package kannel_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/kannel"
	"warngate/warning"
)

const (
	bearerboxBin = "/usr/sbin/bearerbox"
	smsboxBin    = "/usr/sbin/smsbox"
	fakesmscBin  = "/usr/lib/kannel/test/fakesmsc"
)

// kannelRequired is set in CI, where a missing Kannel is a failure.
const kannelRequired = "WARNGATE_TEST_KANNEL_REQUIRED"

// TestRealKannel sends through a real Kannel (bearerbox, smsbox and the
// fakesmsc SMS-centre simulator on loopback), takes its delivery reports
// and a reply from a phone.
func TestRealKannel(t *testing.T) {
	for _, bin := range []string{bearerboxBin, smsboxBin, fakesmscBin} {
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv(kannelRequired) != "" {
				t.Fatalf("%s is missing and %s is set: apt-get install -y kannel kannel-extras", bin, kannelRequired)
			}
			t.Skipf("Kannel is not installed (%s is missing): apt-get install -y kannel kannel-extras to run this test", bin)
		}
	}

	// The gateway's callbacks.
	sink := &memSink{}
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

	const secret = "warngate-secret-0123"
	ports := freePorts(t, 4)
	dir := t.TempDir()
	tmpl, err := os.ReadFile("testdata/kannel.conf.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer(
		"@DIR@", dir, "@MO_URL@", gw.URL+"/callbacks/kannel/mo?key="+cbKey, "@PASSWORD@", secret,
		"@ADMIN_PORT@", fmt.Sprint(ports[0]), "@BOX_PORT@", fmt.Sprint(ports[1]),
		"@SMSC_PORT@", fmt.Sprint(ports[2]), "@SENDSMS_PORT@", fmt.Sprint(ports[3]),
	).Replace(string(tmpl))
	confFile := filepath.Join(dir, "kannel.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}

	start(t, dir, "bearerbox", false, bearerboxBin, "-v", "1", confFile)
	waitPort(t, dir, ports[2]) // bearerbox listens for the fake SMS centre
	// fakesmsc sends every line of its standard input as a message from a phone.
	mo := start(t, dir, "fakesmsc", true, fakesmscBin, "-H", "127.0.0.1", "-r", fmt.Sprint(ports[2]), "-m", "1000000")
	start(t, dir, "smsbox", false, smsboxBin, "-v", "1", confFile)
	waitPort(t, dir, ports[3])

	k, err = kannel.New(kannel.Config{
		SendSMSURL:  fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/sendsms", ports[3]),
		Username:    "warngate",
		Password:    secret,
		From:        "12379",
		Signature:   "昆明市应急管理局",
		DLRURL:      gw.URL + "/callbacks/kannel",
		CallbackKey: cbKey,
	}, &http.Client{Timeout: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}

	b := batch("13800000001", "+8613800000002", "999")
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
		waitForLogged(t, dir, "delivery reports for "+ref.String(), func() bool {
			mu.Lock()
			seen := slices.Sorted(slices.Values(types[ref.String()]))
			mu.Unlock()
			return slices.Equal(seen, []string{"1", "8"})
		})
		if r, ok := sink.find(ref); !ok || r.State != warning.Delivered {
			t.Errorf("%s: recorded %+v, want delivered", ref, r)
		}
	}
	if _, ok := sink.find(b.Ref(2)); ok {
		t.Errorf("a report for the number never sent")
	}

	// A duty officer answers "1", another "收到" in UCS-2. fakesmsc sends
	// a line only once it has read the next one when both come at once, so
	// one line at a time.
	for i, line := range []string{"13800000001 12379 text 1", "8613800000002 12379 ucs2 %65%36%52%30"} {
		fmt.Fprintln(mo, line)
		waitForLogged(t, dir, fmt.Sprintf("reply %d", i+1), func() bool {
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

// start runs a Kannel program with its output in dir, killed when the test
// ends. With stdin, it returns a pipe to the program's standard input.
func start(t *testing.T, dir, name string, stdin bool, bin string, args ...string) io.Writer {
	t.Helper()
	cmd := exec.Command(bin, args...)
	out, err := os.Create(filepath.Join(dir, name+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	var in io.WriteCloser
	if stdin {
		if in, err = cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		if in != nil {
			in.Close()
		}
		cmd.Process.Kill()
		cmd.Wait()
		out.Close()
		if t.Failed() {
			logTail(t, dir, name+".out")
		}
	})
	return in
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}

func waitPort(t *testing.T, dir string, port int) {
	t.Helper()
	waitForLogged(t, dir, fmt.Sprintf("port %d", port), func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// waitForLogged is waitFor that shows Kannel's logs when it gives up.
func waitForLogged(t *testing.T, dir, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, f := range []string{"bearerbox.log", "smsbox.log", "smsbox-access.log"} {
				logTail(t, dir, f)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func logTail(t *testing.T, dir, name string) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	t.Logf("%s:\n%s", name, strings.Join(lines, "\n"))
}
