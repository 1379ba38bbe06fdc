package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
)

// BenchmarkEarlyFallbackCheck times an early fallback check of a red
// warning for 五华区 (101 villages, 200 residents each, half on WeChat),
// one resident in a hundred with their SMS refused: looking at the
// residents a channel failed (named), as checks do now, and at every
// resident (everyone), as they did before and still do after a plan with
// residents no channel can reach.
//
//	WARNGATE_TEST_REDIS=redis://127.0.0.1:6381 go test -run '^$' -bench BenchmarkEarlyFallbackCheck -benchtime 20x ./dispatcher/
func BenchmarkEarlyFallbackCheck(b *testing.B) {
	r, clock, sms := scriptedSMSRig(b, 200)
	ctx := context.Background()
	const area = "530102000000"
	var failed []string
	n := 0
	region.Kunming().Walk(area, func(div *region.Division) bool {
		r.roster.People(div.Code, func(p region.Person) bool {
			if p.Role == region.Resident {
				if n%100 == 0 {
					sms.fail[p.ID] = true
					failed = append(failed, p.ID)
				}
				n++
			}
			return true
		})
		return true
	})
	w := redWarning()
	w.Areas = []string{area}
	w.Expires = clock.now().Add(6 * time.Hour)
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	waitFor(b, 2*time.Minute, "every delivery final", progressDone(b, r, got.ID))
	for _, mode := range []struct {
		name  string
		named []string
	}{{"named", failed}, {"everyone", []string{ledger.AllResidents}}} {
		b.Run(mode.name, func(b *testing.B) {
			var cmds int64
			for b.Loop() {
				b.StopTimer()
				if err := r.l.AddCandidates(ctx, got.ID, mode.named); err != nil {
					b.Fatal(err)
				}
				before := commands(b, r)
				b.StartTimer()
				if _, err := r.d.CheckFallback(ctx, got.ID); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cmds += commands(b, r) - before - 1
				b.StartTimer()
			}
			b.ReportMetric(float64(cmds)/float64(b.N), "redis-commands/check")
			b.ReportMetric(float64(n), "residents")
			b.ReportMetric(float64(len(failed)), "failed")
		})
	}
}
