package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"warngate/internal/kannelbox"
)

// A red warning through a real Kannel: SMS leave through sendsms, Kannel's
// delivery reports fill progress, and an official's reply "1" confirms.
func TestServeWithRealKannel(t *testing.T) {
	if err := kannelbox.Installed(); err != nil {
		if os.Getenv("WARNGATE_TEST_KANNEL_REQUIRED") != "" {
			t.Fatalf("%v (WARNGATE_TEST_KANNEL_REQUIRED is set)", err)
		}
		t.Skip(err)
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	const key = "warngate-callback-key-01"
	box, err := kannelbox.Start(t.Context(), kannelbox.Options{Dir: dir, MOURL: base + "/callbacks/kannel/mo?key=" + key, Password: "kannel-pass"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(box.Logs())
		}
		box.Close()
	})

	cfg := writeConfig(t, dir, "warngate.yaml", automation+fmt.Sprintf(`
roster: {demo: {residents_per_village: 5}}
providers:
  - name: kannel
    channel: sms
    type: kannel
    rate: 200
    kannel:
      sendsms_url: %s
      username: %s
      password: %s
      from: "%s"
      signature: 昆明市应急管理局
      dlr_url: %s/callbacks/kannel
      callback_key: %s
`, box.SendSMSURL(), box.Username, box.Password, box.From, base, key))
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
	if err := box.SendMO(phone + " " + box.From + " text 1"); err != nil {
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
