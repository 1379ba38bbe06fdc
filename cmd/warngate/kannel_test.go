package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A red warning through a real Kannel: SMS leave through sendsms, Kannel's
// delivery reports fill progress, and an official's reply "1" confirms.
func TestServeWithRealKannel(t *testing.T) {
	bins := []string{"/usr/sbin/bearerbox", "/usr/sbin/smsbox", "/usr/lib/kannel/test/fakesmsc"}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			if os.Getenv("WARNGATE_TEST_KANNEL_REQUIRED") != "" {
				t.Fatalf("%s missing: apt-get install -y kannel kannel-extras", b)
			}
			t.Skip("Kannel is not installed: apt-get install -y kannel kannel-extras")
		}
	}
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	const key = "warngate-callback-key-01"
	ports := make([]int, 4)
	var lns []net.Listener
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		lns = append(lns, ln)
	}
	for _, ln := range lns {
		ln.Close() // free for Kannel; held together above so the four differ
	}
	tmpl, err := os.ReadFile("../../channels/kannel/testdata/kannel.conf.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.NewReplacer("@DIR@", dir, "@MO_URL@", base+"/callbacks/kannel/mo?key="+key, "@PASSWORD@", "kannel-pass",
		"@ADMIN_PORT@", fmt.Sprint(ports[0]), "@BOX_PORT@", fmt.Sprint(ports[1]),
		"@SMSC_PORT@", fmt.Sprint(ports[2]), "@SENDSMS_PORT@", fmt.Sprint(ports[3])).Replace(string(tmpl))
	confFile := writeConfig(t, dir, "kannel.conf", conf)
	run := func(name string, stdin bool, bin string, args ...string) io.WriteCloser {
		cmd := exec.Command(bin, args...)
		out, _ := os.Create(filepath.Join(dir, name+".out"))
		cmd.Stdout, cmd.Stderr = out, out
		var in io.WriteCloser
		if stdin {
			in, _ = cmd.StdinPipe()
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if in != nil {
				in.Close()
			}
			cmd.Process.Kill()
			cmd.Wait()
			out.Close()
		})
		return in
	}
	waitPort := func(p int) {
		for i := 0; i < 100; i++ {
			if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 100*time.Millisecond); err == nil {
				c.Close()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("port %d never opened", p)
	}
	run("bearerbox", false, bins[0], "-v", "1", confFile)
	waitPort(ports[2])
	mo := run("fakesmsc", true, bins[2], "-H", "127.0.0.1", "-r", fmt.Sprint(ports[2]), "-m", "1000000")
	run("smsbox", false, bins[1], "-v", "1", confFile)
	waitPort(ports[3])

	cfg := writeConfig(t, dir, "warngate.yaml", fmt.Sprintf(`
roster: {demo: {residents_per_village: 5}}
providers:
  - name: kannel
    channel: sms
    type: kannel
    rate: 200
    kannel:
      sendsms_url: http://127.0.0.1:%d/cgi-bin/sendsms
      username: warngate
      password: kannel-pass
      from: "12379"
      signature: 昆明市应急管理局
      dlr_url: %s/callbacks/kannel
      callback_key: %s
`, ports[3], base, key))
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
	fmt.Fprintf(mo, "%s 12379 text 1\n", phone)
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
