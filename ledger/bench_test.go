package ledger_test

import (
	"context"
	"strconv"
	"testing"
	"time"

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
