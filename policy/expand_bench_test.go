package policy_test

import (
	"testing"

	"warngate/policy"
	"warngate/region"
	"warngate/warning"
)

// BenchmarkExpand measures the plan's expansion of a red warning for
// 五华区 (villages of 384 residents, half of them on WeChat, four
// households each), without what the dispatcher does with the batches.
func BenchmarkExpand(b *testing.B) {
	tree := region.Kunming()
	roster := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 384, WeChatShare: 0.5, HouseholdsPerVillage: 4})
	w := redWuhua(warning.Red, "530102000000")
	p := policy.Default()
	var n int64
	b.ReportAllocs()
	for b.Loop() {
		sum, err := p.Expand(w, tree, roster, func(policy.Batch) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		n = sum.Total()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(int64(b.N)*n), "ns/delivery")
}
