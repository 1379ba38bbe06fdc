package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/internal/kannelbox"
)

// A red warning through a real Kannel: SMS leave through sendsms (or a
// connection to bearerbox, the box transport), Kannel's delivery reports
// fill progress, and an official's reply "1" (through smsbox's
// sms-service, either way) confirms.
func TestServeWithRealKannel(t *testing.T) {
	t.Run("sendsms", func(t *testing.T) { serveWithRealKannel(t, false) })
	t.Run("box", func(t *testing.T) { serveWithRealKannel(t, true) })
}

func serveWithRealKannel(t *testing.T, box bool) {
	kannelbox.Require(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	const key = "warngate-callback-key-01"
	kb, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: dir, MOURL: base + "/callbacks/kannel/mo?key=" + key, Password: "kannel-pass"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(kb.Logs())
		}
		kb.Close()
	})

	account := fmt.Sprintf(`
      sendsms_url: %s
      username: %s
      password: %s
      dlr_url: %s/callbacks/kannel`, kb.SendSMSURL(), kb.Username, kb.Password, base)
	if box {
		account = fmt.Sprintf(`
      transport: box
      box_address: %s`, kb.BoxAddress())
	}
	cfg := writeConfig(t, dir, "warngate.yaml", automation+fmt.Sprintf(`
roster: {demo: {residents_per_village: 5}}
providers:
  - name: kannel
    channel: sms
    type: kannel
    rate: 200
    kannel:%s
      from: "%s"
      signature: 昆明市应急管理局
      callback_key: %s
`, account, kb.From, key))
	start(t, dir, []string{"WARNGATE_ADMIN_TOKEN=t0ken"}, "serve", "--listen", addr, "--config", cfg)
	waitHTTP(t, base+"/readyz")
	village := "530102001001"
	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"`+village+`"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	deadline := time.Now().Add(60 * time.Second)
	var sms map[string]any
	for time.Now().Before(deadline) {
		_, p := call(t, "GET", base+"/api/v1/warnings/"+id+"/progress", "t0ken", "")
		if c, ok := p["channels"].(map[string]any)["sms"].(map[string]any); ok && p["planned_at"] != nil {
			sms = c
			if c["pending"].(float64) == 0 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if sms == nil || sms["planned"].(float64) == 0 || sms["delivered"] != sms["planned"] {
		t.Fatalf("sms through Kannel: %v", sms)
	}
	if box {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{`warngate_kannel_box_connected{account="kannel"} 1`, `warngate_kannel_box_connects_total{account="kannel"} 1`} {
			if !strings.Contains(string(m), want) {
				t.Errorf("no %s in the metrics", want)
			}
		}
	}
	// The village officer answers "1" from their phone.
	_, acks := call(t, "GET", base+"/api/v1/warnings/"+id+"/acks?division="+village, "t0ken", "")
	var person, phone string
	for _, o := range acks["officials"].([]any) {
		m := o.(map[string]any)
		if m["role"] == "village_officer" {
			person, phone = m["person_id"].(string), m["phone"].(string)
		}
	}
	if phone == "" {
		t.Fatalf("no village officer: %v", acks)
	}
	if err := kb.SendMO(phone + " " + kb.From + " text 1"); err != nil {
		t.Fatal(err)
	}
	for time.Now().Before(deadline) {
		_, a := call(t, "GET", base+"/api/v1/warnings/"+id+"/acks?state=confirmed", "t0ken", "")
		for _, o := range a["officials"].([]any) {
			if m := o.(map[string]any); m["person_id"] == person && m["method"] == "sms" {
				return
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the reply 1 from %s never confirmed", phone)
}

// A call of several numbers whose answer never comes, though Kannel took
// it and reported every number: nobody of it is texted again, and the
// counts stay true. Between the gateway and Kannel, a proxy passes that
// call to smsbox, waits until the gateway has recorded a report for each of
// its numbers, then cuts the connection without an answer.
func TestRealKannelCallCutSendsNobodyTwice(t *testing.T) {
	kannelbox.Require(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	const key = "warngate-callback-key-02"
	proxy := &cutProxy{t: t, gateway: base, recorded: map[string]int{}}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	box, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: dir, MOURL: front.URL + "/callbacks/kannel/mo?key=" + key, Password: "kannel-pass"})
	if err != nil {
		t.Fatal(err)
	}
	proxy.sendsms = box.SendSMSURL()
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	})
	cfg := writeConfig(t, dir, "warngate.yaml", automation+fmt.Sprintf(`
roster: {demo: {residents_per_village: 20}}
providers:
  - name: kannel
    channel: sms
    type: kannel
    kannel:
      sendsms_url: %s/cgi-bin/sendsms
      username: %s
      password: %s
      signature: 昆明市应急管理局
      dlr_url: %s/callbacks/kannel
      callback_key: %s
      timeout: 10s
`, front.URL, box.Username, box.Password, front.URL, key))
	start(t, dir, []string{"WARNGATE_ADMIN_TOKEN=t0ken"}, "serve", "--listen", addr, "--config", cfg)
	waitHTTP(t, base+"/readyz")
	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102001001"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	deadline := time.Now().Add(60 * time.Second)
	var sms map[string]any
	for time.Now().Before(deadline) {
		_, p := call(t, "GET", base+"/api/v1/warnings/"+id+"/progress", "t0ken", "")
		if c, ok := p["channels"].(map[string]any)["sms"].(map[string]any); ok && p["planned_at"] != nil {
			if sms = c; c["pending"].(float64) == 0 {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if sms == nil || sms["planned"].(float64) < 20 || sms["delivered"] != sms["planned"] || sms["sent"] != sms["planned"] {
		t.Fatalf("sms through Kannel: %v, want every one sent and delivered", sms)
	}
	proxy.mu.Lock()
	cut := proxy.cut
	proxy.mu.Unlock()
	if cut == "" {
		t.Fatal("no call of several numbers went through the proxy")
	}
	// smsbox logs every number it takes: none twice.
	log, err := os.ReadFile(filepath.Join(dir, "smsbox-access.log"))
	if err != nil {
		t.Fatal(err)
	}
	texted := map[string]int{}
	for _, m := range regexp.MustCompile(`send-SMS request added - .* target:(\d+) `).FindAllStringSubmatch(string(log), -1) {
		texted[m[1]]++
	}
	if len(texted) != int(sms["planned"].(float64)) {
		t.Errorf("smsbox took %d numbers, want %v", len(texted), sms["planned"])
	}
	for n, times := range texted {
		if times != 1 {
			t.Errorf("%s texted %d times", n, times)
		}
	}
	if t.Failed() {
		logs, _ := filepath.Glob(filepath.Join(dir, "serve*.log"))
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, b)
		}
	}
}

// cutProxy stands between the gateway and Kannel: it passes sendsms calls
// to smsbox and Kannel's reports to the gateway, and cuts the first call of
// several numbers once the gateway has recorded a report for each.
type cutProxy struct {
	t                *testing.T
	gateway, sendsms string
	mu               sync.Mutex
	cut              string         // the call cut, once it is
	recorded         map[string]int // call → reports the gateway answered "OK"
}

func (p *cutProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/cgi-bin/sendsms" {
		p.report(w, r)
		return
	}
	to := strings.Fields(r.URL.Query().Get("to"))
	resp, err := http.Get(p.sendsms + "?" + r.URL.RawQuery)
	if err != nil {
		p.t.Error(err)
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.mu.Lock()
	cutThis := p.cut == "" && len(to) > 1 && resp.StatusCode == http.StatusAccepted
	if cutThis {
		// The call's name as its reports give it: Kannel turns the
		// doubled % of the dlr-url back into one.
		dlr := strings.ReplaceAll(r.URL.Query().Get("dlr-url"), "%%", "%")
		u, _ := url.Parse(dlr)
		p.cut = u.Query().Get("call")
	}
	p.mu.Unlock()
	if !cutThis {
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
		return
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		p.mu.Lock()
		n := p.recorded[p.cut]
		p.mu.Unlock()
		if n == len(to) {
			break
		}
	}
	c, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		p.t.Error(err)
		return
	}
	c.Close()
}

// report passes Kannel's callback to the gateway and counts the reports it
// recorded per call.
func (p *cutProxy) report(w http.ResponseWriter, r *http.Request) {
	resp, err := http.Get(p.gateway + r.URL.RequestURI())
	if err != nil {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && string(body) == "OK" {
		p.mu.Lock()
		p.recorded[r.URL.Query().Get("call")]++
		p.mu.Unlock()
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}
