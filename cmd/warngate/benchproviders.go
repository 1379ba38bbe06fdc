package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	aliyunfake "warngate/channels/aliyun/fake"
	"warngate/config"
	"warngate/region"
)

// benchProviders measures the SMS adapters against their fakes on a real
// Redis: recipients per second through each adapter at its batch size, and
// delivery reports ingested per second through Alibaba Cloud's callback
// endpoint, with the latency of each callback request.
func benchProviders(ctx context.Context, redisURL string, n int, stdout, stderr io.Writer) error {
	tree := region.Kunming()
	villages := 0
	tree.Walk(tree.Root().Code, func(d *region.Division) bool {
		if d.Level == region.Village {
			villages++
		}
		return true
	})
	per := max(1, n/villages)

	type gateway struct {
		a    *app
		base string
		stop func()
	}
	startGateway := func(typ string) (*gateway, error) {
		opt, _ := redis.ParseURL(redisURL)
		c := redis.NewClient(opt)
		c.FlushDB(ctx)
		c.Close()
		cfg := config.Default()
		cfg.Redis.URL = redisURL
		cfg.Roster.Demo = config.DemoRoster{ResidentsPerVillage: per, WeChatShare: 0.5, HouseholdsPerVillage: 1}
		cfg.Simulator.ReportDelay, cfg.Simulator.FailureRate, cfg.Simulator.Secret = 0, 0, "bench"
		on := true
		cfg.Simulator.Enabled = &on
		cfg.AdminToken, cfg.LinkKey = "bench", "bench-link-key-0123456789"
		cfg.Log.Level = "error"
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		cfg.Listen, cfg.PublicURL = ln.Addr().String(), ""
		if err := cfg.Finish(); err != nil {
			return nil, err
		}
		// Added after validation: fakes are otherwise for the embedded mode.
		cfg.Providers = []config.Provider{{Name: typ, Channel: "sms", Type: typ, Fake: true}}
		a, err := newApp(cfg, newLogger(cfg.Log, stderr))
		if err != nil {
			return nil, err
		}
		srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { a.dispatcher.Run(wctx); close(done) }()
		return &gateway{a: a, base: "http://" + cfg.Listen, stop: func() { cancel(); <-done; srv.Close(); a.close() }}, nil
	}
	post := func(g *gateway) (string, error) {
		body := fmt.Sprintf(`{"hazard":"rainstorm","level":"red","areas":["530100000000"],"headline":"暴雨红色预警（性能测试）","description":"bench","status":"actual","expires":%q}`,
			time.Now().Add(2*time.Hour).Format(time.RFC3339))
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
	waitSMS := func(g *gateway, id string, until func(planned, sent, final int64) bool) (int64, error) {
		for i := 0; i < 12000; i++ {
			p, err := g.a.ledger.Progress(ctx, id)
			if err != nil {
				return 0, err
			}
			c := p.Channels["sms"]
			if !p.PlannedAt.IsZero() && until(c.Planned, c.Sent, c.Delivered+c.Failed) {
				return c.Planned, nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return 0, fmt.Errorf("bench: sms of %s not done after 10 minutes", id)
	}

	fmt.Fprintf(stdout, "providers: city-wide red warning, SMS to %d residents per village and every official, through each fake, Redis %s\n", per, redisURL)
	rates := map[string]float64{}
	for _, typ := range []string{"aliyun", "tencent"} {
		fakeReportDelay = 200 * time.Millisecond
		g, err := startGateway(typ)
		if err != nil {
			return err
		}
		start := time.Now()
		id, err := post(g)
		if err == nil {
			var planned int64
			planned, err = waitSMS(g, id, func(p, _, f int64) bool { return p > 0 && f == p })
			el := time.Since(start)
			rates[typ] = float64(planned) / el.Seconds()
			fmt.Fprintf(stdout, "  %-8s %d SMS in %s: %.0f recipients/s (accept to every report), batches of %d\n",
				typ, planned, el.Round(time.Millisecond), rates[typ], map[string]int{"aliyun": 1000, "tencent": 200}[typ])
		}
		g.stop()
		if err != nil {
			return err
		}
	}

	// Reports through the callback: send first with the fake's pushes held
	// back, then post its reports as Alibaba would, 100 a request.
	fakeReportDelay = time.Hour
	g, err := startGateway("aliyun")
	if err != nil {
		return err
	}
	defer g.stop()
	id, err := post(g)
	if err != nil {
		return err
	}
	planned, err := waitSMS(g, id, func(p, s, _ int64) bool { return p > 0 && s == p })
	if err != nil {
		return err
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
		return fmt.Errorf("bench: %d callback requests failed", failures)
	}
	if _, err := waitSMS(g, id, func(p, _, f int64) bool { return f == p }); err != nil {
		return err
	}
	slices.Sort(lat)
	reportRate := float64(len(msgs)) / el.Seconds()
	p99 := percentile(lat, 0.99)
	fmt.Fprintf(stdout, "  callbacks: %d Alibaba SmsReport receipts (%d requests of 100, 16 at a time) in %s: %.0f receipts/s, request p50 %s p99 %s; all %d deliveries recorded\n",
		len(msgs), len(bodies), el.Round(time.Millisecond), reportRate, percentile(lat, 0.5).Round(time.Millisecond), p99.Round(time.Millisecond), planned)
	fmt.Fprintf(stdout, "aliyun_recipients_per_second=%.0f tencent_recipients_per_second=%.0f receipts_per_second=%.0f callback_p99_ms=%d\n",
		rates["aliyun"], rates["tencent"], reportRate, p99.Milliseconds())
	return nil
}

var cstZone = time.FixedZone("CST", 8*3600)
