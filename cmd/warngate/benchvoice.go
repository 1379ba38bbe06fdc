package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"warngate/channels/aliyunvoice"
	aliyunvoicefake "warngate/channels/aliyunvoice/fake"
	"warngate/config"
	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// voiceBench sizes the voice line of the providers bench.
type voiceBench struct {
	redisURL string
	// officials are called, on an account of lines lines, each call
	// lasting call (the official presses 1 near its end).
	officials, lines int
	call             time.Duration
	// scale runs the calls scale times faster than call says: the figures
	// are given back in the product's time (seconds × scale, rates ÷ scale).
	scale float64
}

// voiceFigures are what the voice line measured, in the product's time.
type voiceFigures struct {
	officials     int
	confirmed     time.Duration // from the POST until every official confirmed
	busy          float64       // share of line time spent in calls, percent
	keypressRate  float64       // key-press callbacks per second
	keypressP99   time.Duration // a key-press callback request's latency (real time)
	mostActive    int
	overflows     int
	callsRecorded int
	lastCallEnded time.Duration
}

// benchVoice calls officials through the Alibaba Cloud voice adapter and
// its fake, end to end: a red test warning whose test recipients are the
// officials, the policy calling them with the message, the fake answering
// every call and pressing 1 near its end, its pushes taken at
// /callbacks/aliyun_voice and confirmed through the dispatcher.
func benchVoice(ctx context.Context, o voiceBench, stdout, stderr io.Writer) (*voiceFigures, error) {
	if o.scale <= 0 {
		o.scale = 1
	}
	call := time.Duration(float64(o.call) / o.scale)
	ring, thanks := call/15, call/15
	fakeAliyunVoiceBehave = func(string) aliyunvoicefake.Behavior {
		return aliyunvoicefake.Behavior{Answer: true, Ring: ring, Keys: "1", KeyAfter: call - ring - thanks, ConfirmTalk: thanks}
	}
	defer func() { fakeAliyunVoiceBehave = nil }()
	var fake *aliyunvoicefake.Server
	onFakeAliyunVoice = func(f *aliyunvoicefake.Server) { fake = f }
	defer func() { onFakeAliyunVoice = nil }()

	var mu sync.Mutex
	var pressAt []time.Time
	var pressTook []time.Duration
	wrap := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/callbacks/"+aliyunvoice.Provider {
				h.ServeHTTP(w, r)
				return
			}
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			start := time.Now()
			h.ServeHTTP(w, r)
			if bytes.Contains(body, []byte(`"status_code":"`+aliyunvoice.StatusKeyPress+`"`)) {
				mu.Lock()
				pressAt, pressTook = append(pressAt, start), append(pressTook, time.Since(start))
				mu.Unlock()
			}
		})
	}
	var ids []string
	setup := func(a *app) {
		tree := a.tree
		tree.Walk(tree.Root().Code, func(d *region.Division) bool {
			a.roster.People(d.Code, func(p region.Person) bool {
				if p.Role.Audience().Official() && p.Phone != "" && len(ids) < o.officials {
					ids = append(ids, p.ID)
				}
				return len(ids) < o.officials
			})
			return len(ids) < o.officials
		})
		pol := a.policy
		pol.TestRecipients = ids
		for i := range pol.Rules {
			r := &pol.Rules[i]
			if slices.Contains(r.Levels, warning.Red) {
				r.Send = map[warning.Audience][]warning.Channel{}
				for _, aud := range []warning.Audience{warning.CountyOfficials, warning.TownshipOfficials, warning.VillageOfficials} {
					r.Send[aud] = []warning.Channel{warning.Voice}
				}
				r.CallAfter, r.CallTries, r.CallWithin = 0, 1, 0
				r.AckDeadline, r.AckTries, r.Escalate = policy.Duration(time.Hour), 1, false
			}
		}
	}
	g, err := startBenchGateway(ctx, benchGatewayOptions{redisURL: o.redisURL, perVillage: 1, setup: setup, wrap: wrap,
		providers: []config.Provider{{Name: "aliyun-voice", Channel: "voice", Type: aliyunvoice.Provider, Fake: true,
			AliyunVoice: &aliyunvoice.Config{Lines: o.lines}}}}, stderr)
	if err != nil {
		return nil, err
	}
	defer g.stop()
	if len(ids) < o.officials {
		return nil, fmt.Errorf("bench: the demo roster has %d officials with a phone, fewer than %d", len(ids), o.officials)
	}
	fmt.Fprintf(stdout, "voice: %d officials called through the Alibaba Cloud voice fake, %d lines, calls of %s (run %.0f× faster: %s each), each answered and confirmed by 1\n",
		o.officials, o.lines, o.call, o.scale, call)
	start := time.Now()
	id, err := g.postTest("530100000000")
	if err != nil {
		return nil, err
	}
	f := &voiceFigures{officials: o.officials}
	limit := time.Duration(float64(o.officials)/float64(o.lines)*float64(call))*3 + time.Minute
	for confirmed := int64(0); confirmed < int64(o.officials); {
		if time.Since(start) > limit {
			return nil, fmt.Errorf("bench: %d of %d officials confirmed after %s", confirmed, o.officials, time.Since(start).Round(time.Second))
		}
		time.Sleep(20 * time.Millisecond)
		p, err := g.a.ledger.Progress(ctx, id)
		if err != nil {
			return nil, err
		}
		confirmed = 0
		for _, a := range p.Acks {
			confirmed += a.Confirmed
		}
	}
	f.confirmed = time.Since(start)
	for {
		calls, err := g.a.ledger.Calls(ctx, id)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, cs := range calls {
			n += len(cs)
		}
		if n >= o.officials {
			f.callsRecorded = n
			break
		}
		if time.Since(start) > limit {
			return nil, errors.New("bench: not every call's record came")
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.lastCallEnded = time.Since(start)
	f.busy = 100 * float64(o.officials) * call.Seconds() / (float64(o.lines) * f.lastCallEnded.Seconds())
	if fake != nil {
		f.mostActive, f.overflows = fake.MostActive(), fake.Overflows()
	}
	mu.Lock()
	if len(pressAt) > 1 {
		span := pressAt[len(pressAt)-1].Sub(pressAt[0])
		f.keypressRate = float64(len(pressAt)-1) / span.Seconds()
		took := slices.Clone(pressTook)
		slices.Sort(took)
		f.keypressP99 = took[min(len(took)-1, len(took)*99/100)]
	}
	mu.Unlock()
	// Back to the product's time.
	f.confirmed = time.Duration(float64(f.confirmed) * o.scale)
	f.lastCallEnded = time.Duration(float64(f.lastCallEnded) * o.scale)
	f.keypressRate /= o.scale
	fmt.Fprintf(stdout, "  %d officials called and confirmed in %s (aim < 90 s); every call's record in by %s; %d calls recorded\n",
		o.officials, f.confirmed.Round(100*time.Millisecond), f.lastCallEnded.Round(100*time.Millisecond), f.callsRecorded)
	fmt.Fprintf(stdout, "  lines busy %.1f%% (calls × call time ÷ lines × time to the last call's end; aim ≥ 95%%); at most %d calls at once on the fake, %d refused for want of a line\n",
		f.busy, f.mostActive, f.overflows)
	fmt.Fprintf(stdout, "  key-press callbacks %.1f/s, request p99 %s (real time)\n", f.keypressRate, f.keypressP99.Round(100*time.Microsecond))
	return f, nil
}

// postTest issues a red rainstorm test warning for area (it reaches only
// the policy's test recipients) and returns its id.
func (g *benchGateway) postTest(area string) (string, error) {
	body := fmt.Sprintf(`{"hazard":"rainstorm","level":"red","areas":[%q],"headline":"暴雨红色预警（性能测试）","description":"bench","instruction":"停止户外活动。","status":"test","expires":%q}`,
		area, time.Now().Add(2*time.Hour).Format(time.RFC3339))
	req, _ := http.NewRequest(http.MethodPost, g.base+"/api/v1/warnings", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer bench")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /api/v1/warnings: %s %s", resp.Status, b)
	}
	var w struct{ ID string }
	if err := json.Unmarshal(b, &w); err != nil {
		return "", err
	}
	return w.ID, nil
}
