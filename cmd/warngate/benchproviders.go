package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"warngate/channels"
	aliyunfake "warngate/channels/aliyun/fake"
	"warngate/channels/kannel"
	"warngate/config"
	"warngate/dispatcher"
	"warngate/internal/kannelbox"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
)

// providersBench sizes the providers bench.
type providersBench struct {
	redisURL string
	// n is about how many SMS go through each fake.
	n int
	// kannelN is about how many SMS go through Kannel, to the residents of
	// one county, kannelPerCall numbers a sendsms call; kannelSingleN how
	// many then go one number a call.
	kannelN, kannelPerCall, kannelSingleN int
	// kannelBoxN is how many SMS then go over a connection to bearerbox
	// (kannel.transport: box).
	kannelBoxN int
	// kannelOnly skips the fakes and the callback endpoint.
	kannelOnly bool
	// kannelSmsboxes is how many smsboxes Kannel runs.
	kannelSmsboxes int
	// kannelConcurrency is the Kannel adapter's sendsms calls at once per
	// batch; kannelBatches the SMS batches the workers send at once.
	kannelConcurrency, kannelBatches int
	// smsChunk is dispatch.chunk_size for sms; zero keeps the default.
	smsChunk int
	// uncertainBound is dispatch.uncertain_bound; zero keeps the default.
	uncertainBound int
	// voice sizes the voice line; voiceOnly skips everything else.
	voice     voiceBench
	voiceOnly bool
}

// benchProviders measures the SMS adapters against their fakes on a real
// Redis: recipients per second through each adapter at its batch size, and
// delivery reports ingested per second through Alibaba Cloud's callback
// endpoint, with the latency of each callback request; then, when Kannel is
// installed, SMS through a real Kannel on loopback.
func benchProviders(ctx context.Context, o providersBench, stdout, stderr io.Writer) error {
	if o.voiceOnly {
		line, err := voiceLine(ctx, o.voice, stdout, stderr)
		if err == nil {
			fmt.Fprintln(stdout, line)
		}
		return err
	}
	var fakes string
	if !o.kannelOnly {
		var err error
		if fakes, err = benchFakes(ctx, o, stdout, stderr); err != nil {
			return err
		}
	}
	var kannelRates string
	switch k, err := benchKannel(ctx, o, stdout, stderr); {
	case err != nil:
		return err
	case k != nil:
		kannelRates = fmt.Sprintf("kannel_sent_per_second=%.0f kannel_reported_per_second=%.0f kannel_single_sent_per_second=%.0f kannel_box_sent_per_second=%.0f kannel_box_reported_per_second=%.0f",
			k.many.sentRate, k.many.reportedRate, k.single.sentRate, k.box.sentRate, k.box.reportedRate)
	}
	var voice string
	if !o.kannelOnly {
		var err error
		if voice, err = voiceLine(ctx, o.voice, stdout, stderr); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, strings.TrimSpace(strings.Join(strings.Fields(fakes+" "+kannelRates+" "+voice), " ")))
	return nil
}

// voiceLine runs the voice line and returns its figures for the summary
// line; empty when it is skipped.
func voiceLine(ctx context.Context, o voiceBench, stdout, stderr io.Writer) (string, error) {
	if o.officials <= 0 {
		return "", nil
	}
	f, err := benchVoice(ctx, o, stdout, stderr)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("voice_officials=%d voice_confirmed_seconds=%.1f voice_lines_busy_pct=%.1f voice_keypress_per_second=%.1f voice_keypress_p99_ms=%.1f",
		f.officials, f.confirmed.Seconds(), f.busy, f.keypressRate, float64(f.keypressP99.Microseconds())/1000), nil
}

// benchFakes measures the Alibaba and Tencent Cloud adapters against their
// fakes and the callback endpoint, and returns their figures for the
// summary line.
func benchFakes(ctx context.Context, o providersBench, stdout, stderr io.Writer) (string, error) {
	tree := region.Kunming()
	per := max(1, o.n/countVillages(tree, benchCity(tree)))
	fmt.Fprintf(stdout, "providers: city-wide red warning, SMS to %d residents per village and every official, through each fake, Redis %s\n", per, o.redisURL)
	rates := map[string]float64{}
	for _, typ := range []string{"aliyun", "tencent"} {
		fakeReportDelay = 200 * time.Millisecond
		g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: o.redisURL, perVillage: per, smsChunk: o.smsChunk, uncertainBound: o.uncertainBound,
			providers: []config.Provider{{Name: typ, Channel: "sms", Type: typ, Fake: true}}}, stderr)
		if err != nil {
			return "", err
		}
		start := time.Now()
		id, err := g.post(benchCity(tree))
		if err == nil {
			var planned int64
			planned, err = g.waitSMS(ctx, id, func(p, _, f int64) bool { return p > 0 && f == p })
			el := time.Since(start)
			rates[typ] = float64(planned) / el.Seconds()
			fmt.Fprintf(stdout, "  %-8s %d SMS in %s: %.0f recipients/s (accept to every report), %s, up to %d numbers a call: %s\n",
				typ, planned, el.Round(time.Millisecond), rates[typ], chunksOf(o.smsChunk, o.uncertainBound), map[string]int{"aliyun": 1000, "tencent": 200}[typ], callsOf(g.a.registry, "sms"))
		}
		g.stop()
		if err != nil {
			return "", err
		}
	}
	reportRate, p99, err := benchAliyunCallbacks(ctx, o.redisURL, per, stdout, stderr)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("aliyun_recipients_per_second=%.0f tencent_recipients_per_second=%.0f receipts_per_second=%.0f callback_p99_ms=%d",
		rates["aliyun"], rates["tencent"], reportRate, p99.Milliseconds()), nil
}

// benchAliyunCallbacks sends a city-wide warning through the Alibaba Cloud
// fake with its pushes held back, then posts its reports as Alibaba would,
// 100 a request, 16 requests at a time. It returns receipts per second and
// the 99th percentile of a request's latency.
func benchAliyunCallbacks(ctx context.Context, redisURL string, per int, stdout, stderr io.Writer) (float64, time.Duration, error) {
	fakeReportDelay = time.Hour
	g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: redisURL, perVillage: per,
		providers: []config.Provider{{Name: "aliyun", Channel: "sms", Type: "aliyun", Fake: true}}}, stderr)
	if err != nil {
		return 0, 0, err
	}
	defer g.stop()
	id, err := g.post(benchCity(region.Kunming()))
	if err != nil {
		return 0, 0, err
	}
	planned, err := g.waitSMS(ctx, id, func(p, s, _ int64) bool { return p > 0 && s == p })
	if err != nil {
		return 0, 0, err
	}
	msgs := g.a.providers.aliyunFake.Messages()
	var bodies [][]byte
	for i := 0; i < len(msgs); i += 100 {
		var reps []aliyunfake.Report
		for _, m := range msgs[i:min(i+100, len(msgs))] {
			reps = append(reps, aliyunfake.Report{PhoneNumber: m.Phone, BizID: m.BizID, OutID: m.OutID, Success: true,
				ErrCode: "DELIVERED", ErrMsg: "用户接收成功", SmsSize: "1",
				SendTime: m.At.In(cstZone).Format("2006-01-02 15:04:05"), ReportTime: time.Now().In(cstZone).Format("2006-01-02 15:04:05")})
		}
		b, _ := json.Marshal(reps)
		bodies = append(bodies, b)
	}
	url := g.base + "/callbacks/aliyun?token=demo-callback-token"
	lat := make([]time.Duration, len(bodies))
	var next int
	var mu sync.Mutex
	var failures int
	start := time.Now()
	var wg sync.WaitGroup
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= len(bodies) {
					return
				}
				t0 := time.Now()
				resp, err := hc.Post(url, "application/json", bytes.NewReader(bodies[i]))
				lat[i] = time.Since(t0)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					mu.Lock()
					failures++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if failures > 0 {
		return 0, 0, fmt.Errorf("bench: %d callback requests failed", failures)
	}
	if _, err := g.waitSMS(ctx, id, func(p, _, f int64) bool { return f == p }); err != nil {
		return 0, 0, err
	}
	slices.Sort(lat)
	reportRate := float64(len(msgs)) / el.Seconds()
	p99 := percentile(lat, 0.99)
	fmt.Fprintf(stdout, "  callbacks: %d Alibaba SmsReport receipts (%d requests of 100, 16 at a time) in %s: %.0f receipts/s, request p50 %s p99 %s; all %d deliveries recorded\n",
		len(msgs), len(bodies), el.Round(time.Millisecond), reportRate, percentile(lat, 0.5).Round(time.Millisecond), p99.Round(time.Millisecond), planned)
	return reportRate, p99, nil
}

// kannelRun is what one Kannel run measured: rates, and processor time
// per SMS.
type kannelRun struct {
	sentRate, reportedRate float64
	cpu                    cpuTimes
}

// cpuTimes is processor time used by the gateway (this process), Kannel's
// programs and Redis, and the whole machine's.
type cpuTimes struct {
	gateway, kannel, redis time.Duration
	machine                machineCPU
}

// readCPU reads the processor time used so far (Kannel's none without a
// box). Redis's is its own count (INFO cpu), the same machine's only when
// Redis runs on it.
func readCPU(ctx context.Context, rdb redis.UniversalClient, box *kannelbox.Box) cpuTimes {
	c := cpuTimes{gateway: processCPU(), machine: readMachineCPU()}
	if box != nil {
		c.kannel = box.CPU()
	}
	if info, err := rdb.InfoMap(ctx, "cpu").Result(); err == nil {
		c.redis = redisCPU(info["CPU"])
	}
	return c
}

func (c cpuTimes) sub(d cpuTimes) cpuTimes {
	return cpuTimes{gateway: c.gateway - d.gateway, kannel: c.kannel - d.kannel, redis: c.redis - d.redis, machine: c.machine.sub(d.machine)}
}

// perSMS says what each SMS cost, and the rate that would make if all the
// machine's cores did nothing else; then how the machine spent its time
// (redisHere: Redis runs on it).
func (c cpuTimes) perSMS(n int64, redisHere bool) string {
	us := func(d time.Duration) float64 { return perDelivery(d, n) }
	total := us(c.gateway) + us(c.kannel) + us(c.redis)
	return fmt.Sprintf("processor time per SMS %.0f µs: gateway %.0f, Kannel %.0f, Redis %.0f (%d cores doing nothing else: %.0f SMS/s); the machine: %s",
		total, us(c.gateway), us(c.kannel), us(c.redis), runtime.NumCPU(), float64(runtime.NumCPU())*1e6/total, c.share(redisHere))
}

// kannelFigures are what the Kannel runs measured: many numbers a call,
// one number a call, and over a connection to bearerbox.
type kannelFigures struct{ many, single, box kannelRun }

// How a Kannel run sends.
type kannelMode int

const (
	kannelMany   kannelMode = iota // many numbers a sendsms call
	kannelSingle                   // one number a sendsms call
	kannelBox                      // over a connection to bearerbox
)

// waitBoxUp waits up to 30 s for k's connection to bearerbox to be up.
func waitBoxUp(ctx context.Context, k *kannel.Kannel) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, up, _ := k.BoxState(); up {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("bench: the connection to bearerbox was not up within 30s")
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// kannelArea is the county the Kannel runs warn: 五华区.
const kannelArea = "530102000000"

// benchKannelCallbackKey is shared by the gateway's Kannel account and the
// reply URL Kannel calls.
const benchKannelCallbackKey = "bench-kannel-callback-key"

// benchKannel sends one county's red warning through a real Kannel with
// fakesmsc on loopback, many numbers a sendsms call, then a smaller one one
// number a call: recipients per second from accept until Kannel took every
// SMS, and until every delivery report was recorded. Without Kannel it
// says so and returns nil figures.
func benchKannel(ctx context.Context, o providersBench, stdout, stderr io.Writer) (*kannelFigures, error) {
	if o.kannelN == 0 {
		fmt.Fprintln(stdout, "  kannel   skipped: --kannel-n 0")
		return nil, nil
	}
	if err := kannelbox.Installed(); err != nil {
		fmt.Fprintf(stdout, "  kannel   skipped: %v\n", err)
		return nil, nil
	}
	dir, err := os.MkdirTemp("", "warngate-bench-kannel-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// Kannel sends replies from phones to the first run's gateway; the
	// bench sends none.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	box, err := kannelbox.Start(ctx, kannelbox.Options{Dir: dir, MOURL: "http://" + ln.Addr().String() + "/callbacks/kannel/mo?key=" + benchKannelCallbackKey,
		Smsboxes: o.kannelSmsboxes})
	if err != nil {
		ln.Close()
		return nil, err
	}
	defer box.Close()
	var f kannelFigures
	runs := []struct {
		run  *kannelRun
		n    int
		mode kannelMode
		skip string
	}{
		{&f.many, o.kannelN, kannelMany, ""},
		{&f.box, o.kannelBoxN, kannelBox, "over a connection to bearerbox skipped: --kannel-box-n 0"},
		{&f.single, o.kannelSingleN, kannelSingle, "one number a call skipped: --kannel-single-n 0"},
	}
	for _, r := range runs {
		if r.n == 0 {
			fmt.Fprintln(stdout, "  kannel   "+r.skip)
			continue
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return nil, err
			}
		}
		*r.run, err = runKannel(ctx, o, r.n, r.mode, ln, box, stdout, stderr)
		ln = nil // closed with its gateway
		if err != nil {
			return nil, fmt.Errorf("%w\nKannel's logs:\n%s", err, box.Logs())
		}
	}
	if f.single.sentRate > 0 && f.many.sentRate > 0 {
		fmt.Fprintf(stdout, "           many numbers a call took the SMS %.1f× as fast as one a call\n", f.many.sentRate/f.single.sentRate)
	}
	if f.single.sentRate > 0 && f.box.sentRate > 0 {
		fmt.Fprintf(stdout, "           the connection to bearerbox took the SMS %.1f× as fast as one a call\n", f.box.sentRate/f.single.sentRate)
	}
	if f.many.reportedRate > 0 && f.box.reportedRate > 0 {
		fmt.Fprintf(stdout, "           the connection to bearerbox had every report recorded %.1f× as fast as many numbers a call\n", f.box.reportedRate/f.many.reportedRate)
	}
	return &f, nil
}

// runKannel starts the gateway on ln with a Kannel account pointing at box,
// posts a warning to about n residents and waits for it.
func runKannel(ctx context.Context, o providersBench, n int, mode kannelMode, ln net.Listener, box *kannelbox.Box, stdout, stderr io.Writer) (kannelRun, error) {
	tree := region.Kunming()
	per := max(1, n/countVillages(tree, kannelArea))
	county, _ := tree.Get(kannelArea)
	k := &kannel.Config{
		SendSMSURL: box.SendSMSURL(), Username: box.Username, Password: channels.Secret(box.Password), From: box.From,
		Signature: "昆明市应急管理局", DLRURL: "http://" + ln.Addr().String() + "/callbacks/kannel",
		CallbackKey: benchKannelCallbackKey, Concurrency: o.kannelConcurrency,
	}
	var how string
	switch mode {
	case kannelSingle:
		k.Single, how = true, "one sendsms call each"
	case kannelMany:
		k.NumbersPerCall, how = o.kannelPerCall, fmt.Sprintf("up to %d numbers a sendsms call", o.kannelPerCall)
	case kannelBox:
		// What a box account needs; smsbox only takes the replies.
		k = &kannel.Config{Transport: kannel.TransportBox, BoxAddress: box.BoxAddress(), From: box.From, Signature: k.Signature, CallbackKey: k.CallbackKey}
		how = "each its own message over a connection to bearerbox"
	}
	g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: o.redisURL, perVillage: per, ln: ln, smsBatches: o.kannelBatches, smsChunk: o.smsChunk, uncertainBound: o.uncertainBound,
		providers: []config.Provider{{Name: "kannel", Channel: "sms", Type: "kannel", Rate: 0, Kannel: k}}}, stderr)
	if err != nil {
		return kannelRun{}, err
	}
	defer g.stop()
	if mode == kannelBox {
		// The figure is of sending, not of connecting: bearerbox reads a
		// new box connection up to a second after it is made.
		if err := waitBoxUp(ctx, g.a.providers.kannelBoxes["kannel"]); err != nil {
			return kannelRun{}, err
		}
	}
	cpu0 := readCPU(ctx, g.a.rdb, box)
	start := time.Now()
	id, err := g.post(kannelArea)
	if err != nil {
		return kannelRun{}, err
	}
	if _, err := g.waitSMS(ctx, id, func(p, s, _ int64) bool { return p > 0 && s == p }); err != nil {
		return kannelRun{}, err
	}
	sentIn := time.Since(start)
	planned, err := g.waitSMS(ctx, id, func(p, _, f int64) bool { return f == p })
	if err != nil {
		return kannelRun{}, err
	}
	reportedIn := time.Since(start)
	cpu := readCPU(ctx, g.a.rdb, box).sub(cpu0)
	p, err := g.a.ledger.Progress(ctx, id)
	if err != nil {
		return kannelRun{}, err
	}
	if c := p.Channels["sms"]; c.Delivered != c.Planned {
		return kannelRun{}, fmt.Errorf("bench: %d of %d SMS through Kannel not delivered: %+v", c.Planned-c.Delivered, c.Planned, c)
	}
	r := kannelRun{sentRate: float64(planned) / sentIn.Seconds(), reportedRate: float64(planned) / reportedIn.Seconds(), cpu: cpu}
	at := fmt.Sprintf("%d batches × %d calls at once", o.kannelBatches, o.kannelConcurrency)
	if mode == kannelBox {
		at = fmt.Sprintf("%d batches at once", o.kannelBatches)
	}
	fmt.Fprintf(stdout, "  kannel   %d SMS to %s (%d residents per village) through a real Kannel (smsboxes: %d) and fakesmsc, %s, %s, %s:\n",
		planned, county.Name, per, o.kannelSmsboxes, how, chunksOf(o.smsChunk, o.uncertainBound), at)
	fmt.Fprintf(stdout, "           all taken by Kannel in %s: %.0f recipients/s; every delivery report recorded in %s: %.0f recipients/s\n",
		sentIn.Round(time.Millisecond), r.sentRate, reportedIn.Round(time.Millisecond), r.reportedRate)
	fmt.Fprintf(stdout, "           %s\n", cpu.perSMS(planned, redisHere(ctx, g.a.rdb)))
	fmt.Fprintf(stdout, "           %s\n", callsOf(g.a.registry, "sms"))
	return r, nil
}

// callsOf says how many chunks a gateway handed to its provider on a
// channel, and how many recipients they carried on average
// (warngate_provider_call_recipients).
func callsOf(reg prometheus.Gatherer, ch string) string {
	families, err := reg.Gather()
	if err != nil {
		return "chunks unknown: " + err.Error()
	}
	var calls uint64
	var recipients float64
	for _, f := range families {
		if f.GetName() != "warngate_provider_call_recipients" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "channel" && l.GetValue() == ch {
					calls += m.GetHistogram().GetSampleCount()
					recipients += m.GetHistogram().GetSampleSum()
				}
			}
		}
	}
	if calls == 0 {
		return "no chunks handed over"
	}
	return fmt.Sprintf("%d chunks handed over, %.1f recipients each on average", calls, recipients/float64(calls))
}

// chunksOf says how the bench's SMS batches are cut, for its report.
func chunksOf(chunk, bound int) string {
	if chunk > 0 {
		return fmt.Sprintf("chunks of %d", chunk)
	}
	if bound == 0 {
		bound = dispatcher.UncertainBound
	}
	return fmt.Sprintf("chunks sharing %d recipients in flight", bound)
}

// countVillages counts the villages in area.
func countVillages(tree *region.Tree, area string) int {
	villages := 0
	tree.Walk(area, func(d *region.Division) bool {
		if d.Level == region.Village {
			villages++
		}
		return true
	})
	return max(1, villages)
}

// benchGateway is a gateway the providers bench runs in this process.
type benchGateway struct {
	a    *app
	base string
	stop func()
}

// benchGatewayOptions configure a benchGateway.
type benchGatewayOptions struct {
	redisURL   string
	perVillage int
	providers  []config.Provider
	// smsBatches is dispatch.concurrency for sms; zero keeps the default.
	smsBatches int
	// smsChunk is dispatch.chunk_size for sms; zero keeps the default.
	smsChunk int
	// uncertainBound is dispatch.uncertain_bound; zero keeps the default.
	uncertainBound int
	// ln is where the gateway listens; nil picks a loopback port.
	ln net.Listener
	// policy, when set, changes the policy before the workers start.
	policy func(*policy.Policy)
	// setup, when set, is called with the app before the workers start.
	setup func(*app)
	// wrap, when set, wraps the gateway's HTTP handler.
	wrap func(http.Handler) http.Handler
	// replicas, when set, is redis.replicas.
	replicas *int
	// answerCalls makes every official answer the simulated calls.
	answerCalls bool
	// simRedis, when set, is simulator.redis: a Redis of the provider's own.
	simRedis string
}

// startBenchGateway empties the bench database and starts a gateway with
// its workers: the simulator for every channel, the given providers for SMS.
func startBenchGateway(ctx context.Context, o benchGatewayOptions, stderr io.Writer) (*benchGateway, error) {
	if err := flushAll(ctx, o.redisURL); err != nil {
		return nil, fmt.Errorf("empty %s: %w", o.redisURL, err)
	}
	cfg := config.Default()
	cfg.Redis.Replicas = o.replicas
	if o.simRedis != "" {
		if err := flushAll(ctx, o.simRedis); err != nil {
			return nil, fmt.Errorf("empty %s: %w", o.simRedis, err)
		}
		cfg.Simulator.Redis = o.simRedis
	}
	if o.answerCalls {
		cfg.Simulator.UnansweredCalls = new(float64)
	}
	cfg.Approval.AdminTokenBypass = []string{"orange", "red"} // the bench is automation
	cfg.Redis.URL = o.redisURL
	cfg.Roster.Demo = config.DemoRoster{ResidentsPerVillage: o.perVillage, WeChatShare: 0.5, HouseholdsPerVillage: 1}
	cfg.Simulator.ReportDelay, cfg.Simulator.FailureRate, cfg.Simulator.Secret = 0, 0, "bench"
	on := true
	cfg.Simulator.Enabled = &on
	cfg.AdminToken, cfg.LinkKey = "bench", "bench-link-key-0123456789"
	cfg.Log.Level = "error"
	if o.smsBatches > 0 {
		cfg.Dispatch.Concurrency = map[string]int{"sms": o.smsBatches}
	}
	if o.smsChunk > 0 {
		cfg.Dispatch.ChunkSize = map[string]int{"sms": o.smsChunk}
	}
	if o.uncertainBound > 0 {
		cfg.Dispatch.UncertainBound = o.uncertainBound
	}
	ln := o.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	cfg.Listen, cfg.PublicURL = ln.Addr().String(), ""
	if err := cfg.Finish(); err != nil {
		ln.Close()
		return nil, err
	}
	// Added after validation: fakes are otherwise for the embedded mode.
	cfg.Providers = o.providers
	w, err := preflight(cfg, roleServe, nil)
	if err != nil {
		ln.Close()
		return nil, err
	}
	a, err := newApp(cfg, w, newLogger(cfg.Log, stderr))
	if err != nil {
		ln.Close()
		return nil, err
	}
	if o.policy != nil {
		o.policy(a.policy)
	}
	if o.setup != nil {
		o.setup(a)
	}
	h := a.handler()
	if o.wrap != nil {
		h = o.wrap(h)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	if err := a.attachSelfReporting(); err != nil {
		a.close()
		ln.Close()
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.dispatcher.Run(wctx); close(done) }()
	stop := func() {
		cancel()
		<-done
		stopHTTP(srv)
		a.close()
	}
	return &benchGateway{a: a, base: "http://" + cfg.Listen, stop: stop}, nil
}

// post issues a red rainstorm warning for area and returns its id.
func (g *benchGateway) post(area string) (string, error) {
	body := fmt.Sprintf(`{"hazard":"rainstorm","level":"red","areas":[%q],"headline":"暴雨红色预警（性能测试）","description":"bench","status":"actual","expires":%q}`,
		area, time.Now().Add(2*time.Hour).Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, g.base+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer bench")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var w struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&w)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /api/v1/warnings: %s", resp.Status)
	}
	return w.ID, nil
}

// waitSMS polls the warning's SMS counters until until holds for planned,
// sent and final (delivered or failed), and returns planned. It gives up
// when the counters stop moving for stallAfter.
func (g *benchGateway) waitSMS(ctx context.Context, id string, until func(planned, sent, final int64) bool) (int64, error) {
	const stallAfter = 2 * time.Minute
	var last ledger.Counts
	moved := time.Now()
	for {
		p, err := g.a.ledger.Progress(ctx, id)
		if err != nil {
			return 0, err
		}
		c := p.Channels["sms"]
		if !p.PlannedAt.IsZero() && until(c.Planned, c.Sent, c.Delivered+c.Failed) {
			return c.Planned, nil
		}
		if c != last {
			last, moved = c, time.Now()
		} else if time.Since(moved) > stallAfter {
			return 0, fmt.Errorf("bench: sms of %s stalled for %s at %+v", id, stallAfter, c)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var cstZone = time.FixedZone("CST", 8*3600)
