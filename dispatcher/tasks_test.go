package dispatcher

import (
	"reflect"
	"testing"
	"time"

	"warngate/warning"
)

// A batch's recipients keep their ledger buckets through the queue: a
// bucket lost here would put every delivery of the batch where no lookup
// by recipient finds it.
func TestDeliverPayloadKeepsBuckets(t *testing.T) {
	const v1, v2 = "530102001001", "530102001002"
	g1, g2 := warning.BucketGroup(warning.Residents, v1), warning.BucketGroup(warning.Residents, v2)
	rs := []warning.Recipient{
		{ID: "r1", Address: "13800000001", Name: "张三", Audience: warning.Residents, Division: v1, Bucket: warning.Bucket(g1, "r1", 12)},
		{ID: "r2", Address: "13800000002", Audience: warning.Residents, Division: v1, Bucket: warning.BucketName(g1, 11)},
		{ID: "r3", Address: "13800000003", Name: "李四", Audience: warning.Residents, Division: v2, Bucket: warning.BucketName(g2, 0)},
		{ID: "r4", Address: "13800000004", Audience: warning.Residents, Division: v2, Bucket: "odd.7"},
		{ID: "r5", Address: "13800000005", Name: "王五", Audience: warning.Residents, Division: v2},
		{ID: "r6", Address: "13800000006", Audience: warning.Residents, Division: v2, Bucket: warning.BucketName(g2, 11)},
	}
	h := deliverHeader{WarningID: "w", Channel: warning.SMS, Batch: 3, Audience: warning.Residents}
	p, err := encodeDeliver(h, rs)
	if err != nil {
		t.Fatal(err)
	}
	_, got, err := decodeDeliver(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rs) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", got, rs)
	}

	// A batch queued before buckets decodes without them.
	old := []byte(`{"w":"w","ch":"sms","n":1,"aud":"residents","notice":""}` + "\n@" + v1 + "\nr1\t13800000001\t张三\nr2\t13800000002\n")
	_, got, err = decodeDeliver(old)
	if err != nil || len(got) != 2 || got[0].Bucket != "" || got[0].Name != "张三" || got[1].Bucket != "" {
		t.Fatalf("old payload decoded as %+v, %v", got, err)
	}

	// A line without its fields is refused, not read as a recipient.
	for _, bad := range []string{"\n@" + v1 + "\nr1\n", "\n@" + v1 + "\n\nr1\t13800000001\n"} {
		if _, got, err := decodeDeliver([]byte(`{"w":"w","ch":"sms","n":1,"aud":"residents"}` + bad)); err == nil {
			t.Errorf("payload %q decoded as %+v", bad, got)
		}
	}
}

// Plans are looked for more often than batches: every warning's first
// message waits for its plan to be picked up. Measured during a city-wide
// fan-out (bench --naive 0, three runs each alternately), polling for plans
// every 10 ms instead of 50 brought the first official's p50 from 143 -
// 153 ms to 101 - 111 ms. A slow poll_interval stays slow for plans too.
func TestPlansPolledFasterThanBatches(t *testing.T) {
	for _, c := range []struct {
		poll, control time.Duration
	}{
		{50 * time.Millisecond, 10 * time.Millisecond},
		{10 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, 200 * time.Millisecond},
	} {
		d := &Dispatcher{cfg: Config{PollInterval: c.poll}}
		if got := d.planPoll(); got != c.control {
			t.Errorf("poll_interval %s: plans polled every %s; want %s", c.poll, got, c.control)
		}
	}
}
