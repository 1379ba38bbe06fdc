package ledger_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// Two batches of a warning may hold the same recipients: a plan run again
// after a crash cuts its groups otherwise than the first run, whose
// batches are still queued. Handed over at the same moment, each recipient
// is taken by one of them only. Before, each batch read the recipients
// first and wrote them a round trip later: both read them as not yet
// handed over, both took them, and the provider texted them twice.
func TestOverlappingBatchesTakeEachRecipientOnce(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	const n = 400
	for run := range 20 {
		wid := "overlap" + strconv.Itoa(run)
		var entries []ledger.Entry
		for i := range n {
			entries = append(entries, ledger.Entry{RecipientID: fmt.Sprint("r", i), Audience: warning.Residents, Division: "530102001001"})
		}
		taken := make([][]int, 2)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for b := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h, err := l.Lock(ctx, wid, warning.SMS, b+1, "a"+strconv.Itoa(b), time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				<-start
				c, err := l.Begin(ctx, h, entries, false)
				if err != nil {
					t.Error(err)
					return
				}
				taken[b] = c.Taken
			}()
		}
		close(start)
		wg.Wait()
		both := map[int]int{}
		for _, tk := range taken {
			for _, i := range tk {
				both[i]++
			}
		}
		if len(both) != n {
			t.Fatalf("run %d: %d of %d recipients taken by a batch", run, len(both), n)
		}
		for i, k := range both {
			if k > 1 {
				t.Fatalf("run %d: %s taken by both batches (%d and %d taken)", run, entries[i].RecipientID, len(taken[0]), len(taken[1]))
			}
		}
	}
}
