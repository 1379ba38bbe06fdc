package ledger_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/warning"
)

// BenchmarkBatch measures the ledger's part of one 1000-recipient batch:
// lock, hand over, record as sent, and one report per recipient.
func BenchmarkBatch(b *testing.B) {
	rdb := redistest.Client(b, redistest.DBLedger)
	l := ledger.New(rdb, "bench", nil)
	ctx := context.Background()
	entries := make([]ledger.Entry, 1000)
	outs := make([]ledger.Outcome, 1000)
	for i := range entries {
		entries[i] = ledger.Entry{RecipientID: "r" + strconv.FormatInt(int64(i), 36), Audience: warning.Residents, Division: "530102001" + strconv.Itoa(100+i%3)}
		outs[i] = ledger.Outcome{Entry: entries[i], State: warning.Sent}
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		wid := "b" + strconv.Itoa(n)
		h, err := l.Lock(ctx, wid, warning.SMS, 1, "b", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		c, err := l.Begin(ctx, h, entries, false)
		if err != nil || len(c.Taken) != len(entries) {
			b.Fatal(err)
		}
		if _, err := l.Record(ctx, wid, warning.SMS, c.Gen, outs); err != nil {
			b.Fatal(err)
		}
		reps := make([]warning.Report, len(entries))
		for i, e := range entries {
			reps[i] = warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: e.RecipientID}, State: warning.Delivered, At: time.Now()}
		}
		if _, err := l.ApplyReports(ctx, reps); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/recipient")
	rdb.FlushDB(ctx)
}

// BenchmarkHandOver measures handing a batch's 1,000 residents over to
// the provider, as a city-wide fan-out's first attempt on a batch does:
// whole (a provider that can be asked what it took, as the simulator) or
// in chunks of 12 (one that cannot); the gateway's time a recipient and
// Redis's main thread's (INFO cpu).
func BenchmarkHandOver(b *testing.B) {
	for _, chunk := range []int{1000, 12} {
		b.Run("chunk="+strconv.Itoa(chunk), func(b *testing.B) { benchHandOver(b, chunk) })
	}
}

func benchHandOver(b *testing.B, chunk int) {
	rdb := redistest.Client(b, redistest.DBLedger)
	l := ledger.New(rdb, "benchhand", nil)
	ctx := context.Background()
	entries := cityBatch()
	var redisUS float64
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		h, err := l.Lock(ctx, "h"+strconv.Itoa(n), warning.SMS, 1, "b", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		before := mainThreadUS(b, rdb)
		b.StartTimer()
		for at := 0; at < len(entries); at += chunk {
			part := entries[at:min(at+chunk, len(entries))]
			if c, err := l.Begin(ctx, h, part, false); err != nil || len(c.Taken) != len(part) {
				b.Fatalf("took %d of %d: %v", len(c.Taken), len(part), err)
			}
		}
		b.StopTimer()
		redisUS += mainThreadUS(b, rdb) - before
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/recipient")
	b.ReportMetric(redisUS*1000/float64(b.N*len(entries)), "redis-ns/recipient")
	rdb.FlushDB(ctx)
}

// cityBatch is a batch of a city-wide fan-out: 1,000 residents of three
// villages of 384, each in its village's buckets.
func cityBatch() []ledger.Entry {
	const villages, residents = 3, 384
	entries := make([]ledger.Entry, 0, villages*residents)
	for v := range villages {
		div := "53010200100" + strconv.Itoa(v+1)
		group := warning.BucketGroup(warning.Residents, div)
		for i := range residents {
			id := "p" + strconv.Itoa(v) + "-" + strconv.Itoa(i)
			entries = append(entries, ledger.Entry{RecipientID: id, Audience: warning.Residents, Division: div,
				Bucket: warning.Bucket(group, id, warning.BucketsFor(residents, warning.BucketTarget))})
		}
	}
	return entries[:1000]
}

// BenchmarkReports measures the report script as a city-wide fan-out
// meets it: 1,000 residents' SMS reports in one call, the residents spread
// over the buckets of three villages of 384, arriving out of order, with
// their WeChat deliveries handed over too so that coverage reads them.
func BenchmarkReports(b *testing.B) {
	rdb := redistest.Client(b, redistest.DBLedger)
	l := ledger.New(rdb, "benchrep", nil)
	ctx := context.Background()
	entries := cityBatch()
	perm := rand.New(rand.NewPCG(1, 2)).Perm(len(entries))
	var redisUS float64
	for n := 0; b.Loop(); n++ {
		b.StopTimer()
		wid := "r" + strconv.Itoa(n)
		for _, ch := range []warning.Channel{warning.WeChat, warning.SMS} {
			h, err := l.Lock(ctx, wid, ch, 1, "b", time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if c, err := l.Begin(ctx, h, entries, false); err != nil || len(c.Taken) != len(entries) {
				b.Fatal(err)
			}
		}
		reps := make([]warning.Report, len(entries))
		for i, k := range perm {
			e := entries[k]
			reps[i] = warning.Report{Ref: warning.Ref{WarningID: wid, Channel: warning.SMS, RecipientID: e.RecipientID, Bucket: e.Bucket}, State: warning.Delivered, At: time.Now()}
		}
		before := evalUS(b, rdb)
		b.StartTimer()
		res, err := l.ApplyReports(ctx, reps)
		if err != nil || res.Applied != len(reps) {
			b.Fatalf("applied %d of %d: %v", res.Applied, len(reps), err)
		}
		b.StopTimer()
		redisUS += evalUS(b, rdb) - before
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(entries)), "ns/report")
	b.ReportMetric(redisUS*1000/float64(b.N*len(entries)), "redis-ns/report")
	rdb.FlushDB(ctx)
}

// evalUS is the microseconds Redis has spent in scripts so far.
func evalUS(b *testing.B, rdb *redis.Client) float64 {
	s, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(s, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_evalsha:"); ok {
			for f := range strings.SplitSeq(rest, ",") {
				if v, ok := strings.CutPrefix(f, "usec="); ok {
					us, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
					return us
				}
			}
		}
	}
	return 0
}

// mainThreadUS is the processor time Redis's main thread has spent so far,
// in microseconds (INFO cpu): every command's, and its network reads and
// writes.
func mainThreadUS(b *testing.B, rdb *redis.Client) float64 {
	s, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for line := range strings.SplitSeq(s, "\n") {
		name, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if name == "used_cpu_user_main_thread" || name == "used_cpu_sys_main_thread" {
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatalf("INFO cpu %s: %v", name, err)
			}
			total += sec * 1e6
		}
	}
	if total == 0 {
		b.Fatal("INFO cpu gives no main thread's time (Redis 6.2 or later does)")
	}
	return total
}
