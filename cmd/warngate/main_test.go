package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"warngate/internal/redistest"
)

// The test binary doubles as the warngate binary: with WARNGATE_TEST_EXEC
// set it runs the command line it was given, so tests start real gateway
// and worker processes and can kill them.
func TestMain(m *testing.M) {
	if os.Getenv("WARNGATE_TEST_EXEC") == "1" {
		os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

type proc struct {
	cmd *exec.Cmd
	out string
}

func start(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	name := args[0]
	out := filepath.Join(dir, name+fmt.Sprint(time.Now().UnixNano())+".log")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "WARNGATE_TEST_EXEC=1"), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: out}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
		}
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(out)
			t.Logf("%s output:\n%s", name, b)
		}
	})
	return p
}

// running reports whether the process has not exited (nor been reaped).
func (p *proc) running() bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

func call(t *testing.T, method, url, tok, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func redBody(areas string) string {
	return `{"hazard":"rainstorm","level":"red","areas":[` + areas + `],"headline":"五华区暴雨红色预警",
	"description":"预计未来3小时五华区将出现100毫米以上降雨。","instruction":"停止户外活动。","status":"actual",
	"expires":"` + time.Now().Add(6*time.Hour).Format(time.RFC3339) + `"}`
}

func waitComplete(t *testing.T, base, tok, id string, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	var p map[string]any
	for time.Now().Before(deadline) {
		_, p = call(t, "GET", base+"/api/v1/warnings/"+id+"/progress", tok, "")
		if p["complete"] == true {
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("warning %s not complete after %s: %v", id, within, p["total"])
	return nil
}

// checkEveryoneReached is the test of done: a red warning for 五华区
// reaches every official, resident, loudspeaker, screen and call-list
// household of its 11 townships and 101 villages, each delivered or failed
// with a reason.
func checkEveryoneReached(t *testing.T, base, tok string, p map[string]any) {
	t.Helper()
	total := p["total"].(map[string]any)
	if total["planned"].(float64) == 0 || total["delivered"].(float64)+total["failed"].(float64) != total["planned"].(float64) {
		t.Fatalf("total %v", total)
	}
	chans := p["channels"].(map[string]any)
	for _, ch := range []string{"wecom", "sms", "wechat", "broadcast", "screen", "calllist"} {
		c := chans[ch].(map[string]any)
		if c["planned"].(float64) == 0 {
			t.Errorf("nothing planned on %s", ch)
		}
		if c["failed"].(float64) > 0 && len(c["failure_reasons"].(map[string]any)) == 0 {
			t.Errorf("%s failures without reasons", ch)
		}
	}
	if n := len(p["divisions"].([]any)); n != 11 {
		t.Errorf("%d townships in progress, want 11", n)
	}
	_, region := call(t, "GET", base+"/api/v1/regions/530102000000", tok, "")
	counts := region["division"].(map[string]any)["counts"].(map[string]any)
	if got := chans["broadcast"].(map[string]any)["planned"]; got != counts["loudspeakers"] || got != float64(101) {
		t.Errorf("loudspeakers planned %v, roster has %v", got, counts["loudspeakers"])
	}
	if got := chans["calllist"].(map[string]any)["planned"]; got != counts["households"] {
		t.Errorf("households planned %v, roster has %v", got, counts["households"])
	}
}

func TestServeEmbedded(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	p := start(t, dir, []string{"WARNGATE_ADMIN_TOKEN=t0ken"}, "serve", "--listen", addr, "--config", writeConfig(t, dir, "w.yaml", automation))
	base := "http://" + addr
	waitHTTP(t, base+"/readyz")
	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102000000"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	checkEveryoneReached(t, base, "t0ken", waitComplete(t, base, "t0ken", w["id"].(string), 60*time.Second))
	out, _ := os.ReadFile(p.out)
	if !strings.Contains(string(out), "EMBEDDED DEMO MODE") || !strings.Contains(string(out), "LOST when this process stops") {
		t.Errorf("embedded mode does not say loudly that it keeps nothing:\n%s", out)
	}
}

// automation lets the tests' bootstrap token send red warnings without a
// second person, as a bureau's automated feed may be configured to.
const automation = "approval: {admin_token_bypass: [orange, red]}\n"

func realRedis(t *testing.T) (string, *redis.Client) {
	t.Helper()
	o, embedded := redistest.Options(t, redistest.DBCommand)
	if embedded {
		t.Skip("needs a real Redis shared by several processes")
	}
	rdb := redis.NewClient(o)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("redis://%s/%d", o.Addr, o.DB), rdb
}

func writeConfig(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A worker killed in the middle of a fan-out, with chunks in the hands of a
// provider that took them and never answered, loses nothing and sends
// nobody twice: another worker resumes its batches within seconds (long
// before asynq's own lease and recovery would give them back), asks the
// provider what it has, records those as sent and sends the rest; the
// delivery reports due after the kill still come.
func TestWorkerKilledMidFanOut(t *testing.T) {
	url, rdb := realRedis(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	base := "http://" + addr
	acceptLog := filepath.Join(dir, "accepted.log")
	common := fmt.Sprintf(`
redis: {url: %q}
roster: {demo: {residents_per_village: 60}}
dispatch: {provider_timeout: 2s, concurrency: {sms: 2, wechat: 2}}
policy_file: ""
`, url) + automation
	sim := func(hang int, delay string) string {
		return fmt.Sprintf("simulator: {enabled: true, secret: s3cret-sim, report_delay: %s, failure_rate: 0, accept_log: %q, hang_after: %d, hang_accepting: true}\n", delay, acceptLog, hang)
	}
	env := []string{"WARNGATE_ADMIN_TOKEN=t0ken", "WARNGATE_LINK_KEY=0123456789abcdef0123", "WARNGATE_PUBLIC_URL=" + base}
	start(t, dir, env, "serve", "--no-workers", "--listen", addr, "--config", writeConfig(t, dir, "api.yaml", common+sim(0, "0s")))
	waitHTTP(t, base+"/readyz")
	// The doomed worker's provider reports late: when the batches are
	// resumed, what it took is still uncertain, not delivered.
	doomed := start(t, dir, env, "worker", "--metrics", "", "--config", writeConfig(t, dir, "w1.yaml", common+sim(6, "8s")))

	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102000000"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	// Six chunks went through; every later call takes its chunk and hangs.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, batches := countLines(t, acceptLog); batches > 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the worker never had a chunk with the provider")
		}
		time.Sleep(50 * time.Millisecond)
	}
	before, _ := countLines(t, acceptLog)
	doomed.cmd.Process.Signal(syscall.SIGKILL)
	doomed.cmd.Wait()

	start(t, dir, env, "worker", "--metrics", "", "--config", writeConfig(t, dir, "w2.yaml", common+sim(0, "0s")))
	// The dead worker's batches run again, under the janitor's ids, while
	// asynq still holds the originals as running: they were not waiting
	// for asynq's lease and recoverer.
	insp := asynq.NewInspectorFromRedisClient(rdb)
	deadline = time.Now().Add(60 * time.Second)
	for {
		stuck, resumed := 0, 0
		queues, _ := insp.Queues()
		for _, q := range queues {
			for _, list := range [][]*asynq.TaskInfo{must(insp.ListActiveTasks(q)), must(insp.ListCompletedTasks(q))} {
				for _, ti := range list {
					switch {
					case strings.Contains(ti.ID, "~"):
						resumed++
					case ti.State == asynq.TaskStateActive:
						stuck++
					}
				}
			}
		}
		if resumed > 0 {
			if stuck == 0 {
				t.Fatalf("the killed worker's tasks were given back by asynq before the janitor resumed them")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed worker's tasks were never resumed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := waitComplete(t, base, "t0ken", id, 90*time.Second)
	checkEveryoneReached(t, base, "t0ken", p)
	total := p["total"].(map[string]any)
	// The demo's calls go unanswered for one official in four: those
	// calls fail (无人接听), every other delivery is delivered.
	voice := p["channels"].(map[string]any)["voice"].(map[string]any)
	if total["delivered"].(float64)+voice["failed"].(float64) != total["planned"].(float64) || total["failed"] != voice["failed"] {
		t.Fatalf("after the crash: %v; calls %v", total, voice)
	}
	if reasons := voice["failure_reasons"]; voice["failed"].(float64) > 0 && len(reasons.(map[string]any)) != 1 || voice["failed"].(float64) > 0 && reasons.(map[string]any)["无人接听"] != voice["failed"] {
		t.Errorf("calls failed for %v, want only 无人接听", reasons)
	}
	// What the provider accepted is its own record, kept before it answers
	// (the accept log above is written just after, and a kill between the
	// two leaves it short).
	accepted, err := acceptedBySim(context.Background(), rdb, "wg:sim:acc:"+id+"/")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for ch, ids := range accepted {
		for r, times := range ids {
			n++
			if times > 1 {
				t.Errorf("%s/%s/%s sent %d times", id, ch, r, times)
			}
		}
	}
	t.Logf("provider had %d deliveries before the kill, %d after; plan %v", before, n, total["planned"])
	if float64(n) != total["planned"].(float64) || before >= n {
		t.Fatalf("provider accepted %d deliveries (%d before the crash), plan had %v", n, before, total["planned"])
	}
}

func must[T any](v T, _ error) T { return v }

// countLines counts the refs and the batches in an accept log.
func countLines(t *testing.T, path string) (refs, batches int) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "#batch"):
			batches++
		case l != "":
			refs++
		}
	}
	return refs, batches
}

// In the embedded mode, pointed at the providers' fakes, a red warning fills
// progress with receipts that came back through each provider's callback.
func TestServeWithProviderFakes(t *testing.T) {
	t.Run("aliyun first", func(t *testing.T) { serveWithFakes(t, "../../deploy/config/embedded-providers.yaml", "aliyun") })
	// The same with Tencent Cloud as the first SMS account.
	b, err := os.ReadFile("../../deploy/config/embedded-providers.yaml")
	if err != nil {
		t.Fatal(err)
	}
	swapped := strings.Replace(string(b), "type: aliyun", "type: TMP", 1)
	swapped = strings.Replace(swapped, "type: tencent", "type: aliyun", 1)
	swapped = strings.Replace(swapped, "type: TMP", "type: tencent", 1)
	swapped = strings.NewReplacer("name: aliyun-sms", "name: tencent-sms", "name: tencent-sms", "name: aliyun-sms").Replace(swapped)
	cfg := writeConfig(t, t.TempDir(), "tencent-first.yaml", swapped)
	t.Run("tencent first", func(t *testing.T) { serveWithFakes(t, cfg, "tencent") })
}

func serveWithFakes(t *testing.T, config, sms string) {
	dir := t.TempDir()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	config = writeConfig(t, dir, "with-automation.yaml", string(b)+"\n"+automation)
	addr := freeAddr(t)
	start(t, dir, []string{"WARNGATE_ADMIN_TOKEN=t0ken"}, "serve", "--listen", addr, "--config", config)
	base := "http://" + addr
	waitHTTP(t, base+"/readyz")
	code, w := call(t, "POST", base+"/api/v1/warnings", "t0ken", redBody(`"530102001000"`))
	if code != 202 {
		t.Fatalf("POST: %d %v", code, w)
	}
	id := w["id"].(string)
	// Call-list households wait for grid workers: everything else completes.
	deadline := time.Now().Add(60 * time.Second)
	var chans map[string]any
	for time.Now().Before(deadline) {
		_, p := call(t, "GET", base+"/api/v1/warnings/"+id+"/progress", "t0ken", "")
		chans, _ = p["channels"].(map[string]any)
		done := len(chans) > 0 && p["planned_at"] != nil
		for ch, v := range chans {
			c := v.(map[string]any)
			if ch != "calllist" && c["pending"].(float64) != 0 {
				done = false
			}
		}
		if done {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, ch := range []string{"sms", "wechat", "broadcast", "screen"} {
		c, _ := chans[ch].(map[string]any)
		if c == nil || c["delivered"].(float64) == 0 || c["pending"].(float64) != 0 {
			t.Errorf("%s: %v", ch, c)
		}
	}
	// What the SMS account bills: every message, in at least one part each.
	smsc, _ := chans["sms"].(map[string]any)
	bill, _ := smsc["billing"].(map[string]any)[sms+"-sms"].(map[string]any)
	if bill == nil || bill["messages"] != smsc["sent"] || bill["segments"].(float64) < bill["messages"].(float64) {
		t.Errorf("sms billing %v, want %v messages by %s-sms, each at least one part", smsc["billing"], smsc["sent"], sms)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `warngate_billed_segments_total{channel="sms",provider="`+sms+`-sms"}`) {
		t.Errorf("no billed segments counted for %s-sms", sms)
	}
	for _, p := range []string{sms, "wechat", "broadcast", "screen", "aliyun_voice"} {
		if !strings.Contains(string(m), `warngate_callbacks_total{outcome="ok",provider="`+p+`"}`) {
			t.Errorf("no receipts came back from %s", p)
		}
	}
	// The township's officials were called; those who pressed 1 confirmed
	// through the gateway's dispatcher, as by the link.
	if c, _ := chans["voice"].(map[string]any); c == nil || c["sent"].(float64) == 0 || c["pending"].(float64) != 0 {
		t.Errorf("voice: %v", c)
	}
	_, acks := call(t, "GET", base+"/api/v1/warnings/"+id+"/acks?state=confirmed", "t0ken", "")
	byVoice := 0
	for _, o := range acks["officials"].([]any) {
		if o.(map[string]any)["method"] == "voice" {
			byVoice++
		}
	}
	if byVoice == 0 {
		t.Errorf("nobody confirmed by pressing 1: %v", acks)
	}
	if !strings.Contains(string(m), `warngate_voice_calls_total{outcome="answered",provider="aliyun-voice"}`) {
		t.Errorf("no answered call counted for aliyun-voice")
	}
}

// config check builds every provider account as serve would: a secret file
// missing or an environment variable unset is named with its account and
// field, all at once, before anything runs.
func TestConfigCheckNamesEveryProviderProblem(t *testing.T) {
	dir := t.TempDir()
	pw := writeConfig(t, dir, "kannel-password", "kannel-pass\n")
	body := `
simulator: {enabled: true, secret: s3cret-sim}
providers:
  - name: kannel-main
    channel: sms
    type: kannel
    kannel:
      sendsms_url: http://127.0.0.1:13013/cgi-bin/sendsms
      username: warngate
      password_file: ` + pw + `
      from: "12379"
      signature: 昆明市应急管理局
      dlr_url: http://127.0.0.1:8080/callbacks/kannel
      callback_key: ${WG_CHECK_UNSET_KEY}
  - name: aliyun-main
    channel: sms
    type: aliyun
    aliyun:
      access_key_id: LTAI0000
      access_key_secret_file: ` + filepath.Join(dir, "missing") + `
      sign_name: 昆明市应急管理局
      template_code: SMS_1
      callback_allow_from: [100.100.0.0/16]
`
	env := func(k string) string {
		return map[string]string{"WARNGATE_REDIS_URL": "redis://127.0.0.1:6379/9", "WARNGATE_LINK_KEY": "0123456789abcdef0123", "WARNGATE_ADMIN_TOKEN": "x"}[k]
	}
	var out strings.Builder
	err := configCheck([]string{"--config", writeConfig(t, dir, "bad.yaml", body)}, env, &out)
	if err == nil {
		t.Fatalf("bad providers passed: %s", out.String())
	}
	for _, want := range []string{
		"providers[0] (kannel-main): kannel.callback_key: environment variable WG_CHECK_UNSET_KEY is not set",
		"providers[1] (aliyun-main): aliyun.access_key_secret_file: open " + filepath.Join(dir, "missing"),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "kannel-pass") || strings.Contains(err.Error(), "kannel.password") {
		t.Errorf("the password read from its file is reported: %v", err)
	}
	t.Setenv("WG_CHECK_UNSET_KEY", "callback-key-0123456789")
	good := strings.Replace(body, "access_key_secret_file: "+filepath.Join(dir, "missing"), "access_key_secret_file: "+pw, 1)
	out.Reset()
	if err := configCheck([]string{"--config", writeConfig(t, dir, "good.yaml", good)}, env, &out); err != nil || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("good providers: %v %s", err, out.String())
	}
}

// The voice accounts are checked like the others: numbers that are not
// mainland numbers, secrets, lines. config check binds no SIP port.
func TestConfigCheckNamesEveryVoiceProblem(t *testing.T) {
	dir := t.TempDir()
	secret := writeConfig(t, dir, "voice-secret", "voice-secret-0123\n")
	body := `
providers:
  - name: trunk
    channel: voice
    type: sip
    sip: {trunk: 127.0.0.1, listen: "127.0.0.1:5060", caller_id: "+1 555 0100", lines: 0, password: "${WG_CHECK_SIP_PASSWORD}", tts_command: [true, "{wav}"]}
  - name: aliyun-voice
    channel: voice
    type: aliyun_voice
    aliyun_voice: {access_key_id: LTAI0000, access_key_secret_file: ` + secret + `, called_show_number: "123", tts_code: TTS_1, confirm_code: TTS_2, lines: 50, callback_token: short}
  - name: tencent-voice
    channel: voice
    type: tencent_voice
    tencent_voice: {secret_id: AKID0000, secret_key: "${WG_CHECK_VMS_KEY}", voice_sdk_app_id: "1400000001", template_id: "100001", lines: 50, callback_allow_from: [9.0.0.0/8]}
`
	env := func(k string) string {
		return map[string]string{"WARNGATE_REDIS_URL": "redis://127.0.0.1:6379/9", "WARNGATE_LINK_KEY": "0123456789abcdef0123", "WARNGATE_ADMIN_TOKEN": "x"}[k]
	}
	var out strings.Builder
	err := configCheck([]string{"--config", writeConfig(t, dir, "bad.yaml", body)}, env, &out)
	if err == nil {
		t.Fatalf("bad voice providers passed: %s", out.String())
	}
	for _, want := range []string{
		`providers[0] (trunk): sip.caller_id: "+1 555 0100" is not a mainland number`,
		"providers[0] (trunk): sip.lines: 0",
		"providers[0] (trunk): sip.password: environment variable WG_CHECK_SIP_PASSWORD is not set",
		`providers[1] (aliyun-voice): aliyun_voice.called_show_number: "123" is not a mainland number`,
		"providers[1] (aliyun-voice): aliyun_voice.callback_token: too short",
		"providers[2] (tencent-voice): tencent_voice.secret_key: environment variable WG_CHECK_VMS_KEY is not set",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "voice-secret-0123") {
		t.Errorf("a secret read from its file is reported: %v", err)
	}
	t.Setenv("WG_CHECK_SIP_PASSWORD", "sip-password")
	t.Setenv("WG_CHECK_VMS_KEY", "vms-key")
	good := strings.NewReplacer(`"+1 555 0100"`, "087163000000", "lines: 0,", "lines: 30, username: warngate,",
		`"123"`, "057112345678", "callback_token: short", "callback_token: push-token-0123456789").Replace(body)
	good += "simulator: {enabled: true, secret: s3cret-sim}\n" // the other channels: only the voice accounts are checked here
	out.Reset()
	if err := configCheck([]string{"--config", writeConfig(t, dir, "good.yaml", good)}, env, &out); err != nil || !strings.Contains(out.String(), "configuration OK") {
		t.Fatalf("good providers: %v %s", err, out.String())
	}
}
