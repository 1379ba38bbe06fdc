package ledger_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// An attempt handles only what its own batch handed over. A recipient
// re-opened by a resend round is taken only by that round's batch, not by
// the retry of the batch it failed in; once the resend batch has it with
// the provider, the original batch's retry skips it, in the fast path and
// when retaking, rather than taking that chunk for one a dead worker left
// behind. A re-opened delivery that names no round (stored before rounds
// were named) is taken by any batch, as before.
func TestReopenedRecipientBelongsToItsResendBatch(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	var e []ledger.Entry
	for i := range 3 {
		e = append(e, ledger.Entry{RecipientID: fmt.Sprint("r", i), Audience: warning.Residents, Division: "530102001001"})
	}
	l.MarkPlanned(ctx, "w", ledger.Planned{{Channel: warning.SMS, Audience: warning.Residents, Division: "530102001001"}: 3})

	// The plan's batch 1: r0 refused for good, the rest released for a retry.
	h, _ := l.Lock(ctx, "w", warning.SMS, 1, "a", time.Minute)
	c, _ := l.Begin(ctx, h, e, false)
	l.Record(ctx, "w", warning.SMS, c.Gen, []ledger.Outcome{
		{Entry: e[0], State: warning.Failed, Extra: "基站故障"},
		{Entry: e[1], State: warning.Queued}, {Entry: e[2], State: warning.Queued},
	})
	l.Unlock(ctx, "w", warning.SMS, 1, h.Gen)

	// Resend round 1 re-opens r0 while batch 1 waits for its retry.
	round, _ := l.ResendRound(ctx, "w", warning.SMS)
	if got, err := l.ReopenFor(ctx, "w", warning.SMS, round, refs("w", warning.SMS, "r0"), []warning.DeliveryState{warning.Failed}); err != nil || !slices.Equal(got, refs("w", warning.SMS, "r0")) {
		t.Fatalf("reopen = %v, %v", got, err)
	}
	if d, _ := l.Delivery(ctx, warning.Ref{WarningID: "w", Channel: warning.SMS, RecipientID: "r0"}); !d.Reopened || d.Extra != "" {
		t.Fatalf("re-opened delivery: %+v", d)
	}

	// Batch 1's retry begins before the resend batch: r0 is not its own.
	h1, _ := l.Lock(ctx, "w", warning.SMS, 1, "b", time.Minute)
	c1, err := l.Begin(ctx, h1, e, false)
	if err != nil || fmt.Sprint(c1.Taken) != "[1 2]" || len(c1.Uncertain) != 0 || c1.Skipped != 1 {
		t.Fatalf("retry of batch 1 begins %+v, %v; want r1 and r2 taken, r0 skipped", c1, err)
	}
	// Nor when retaking.
	if c, _ := l.Begin(ctx, h1, e[:1], true); len(c.Taken) != 0 || c.Skipped != 1 {
		t.Fatalf("retry of batch 1 retakes %+v; want r0 skipped", c)
	}
	// Nor does a batch of another resend round take it.
	h2, _ := l.Lock(ctx, "w", warning.SMS, (round+1)*ledger.ResendBase+1, "c", time.Minute)
	if c, _ := l.Begin(ctx, h2, e[:1], false); len(c.Taken) != 0 || c.Skipped != 1 {
		t.Fatalf("a batch of round %d begins %+v; want r0 skipped", round+1, c)
	}
	if c, _ := l.Begin(ctx, h2, e[:1], true); len(c.Taken) != 0 || c.Skipped != 1 {
		t.Fatalf("a batch of round %d retakes %+v; want r0 skipped", round+1, c)
	}

	// The resend batch takes it and hands it to the provider.
	hr, _ := l.Lock(ctx, "w", warning.SMS, round*ledger.ResendBase+1, "d", time.Minute)
	cr, err := l.Begin(ctx, hr, e[:1], false)
	if err != nil || fmt.Sprint(cr.Taken) != "[0]" {
		t.Fatalf("resend batch begins %+v, %v; want r0 taken", cr, err)
	}

	// While it is with the provider, batch 1's next attempt neither finds
	// it uncertain nor retakes it: it is the resend batch's business.
	l.Unlock(ctx, "w", warning.SMS, 1, h1.Gen)
	h1, _ = l.Lock(ctx, "w", warning.SMS, 1, "e", time.Minute)
	if c, err := l.Begin(ctx, h1, e[:1], false); err != nil || len(c.Taken)+len(c.Uncertain) != 0 || c.Skipped != 1 {
		t.Fatalf("retry of batch 1 begins %+v, %v; want the resend's chunk skipped", c, err)
	}
	if c, err := l.Begin(ctx, h1, e[:1], true); err != nil || len(c.Taken) != 0 || c.Skipped != 1 {
		t.Fatalf("retry of batch 1 retakes %+v, %v; want the resend's chunk skipped", c, err)
	}
	// The resend batch's own next attempt still finds its chunk uncertain.
	l.Unlock(ctx, "w", warning.SMS, hr.Batch, hr.Gen)
	hr2, _ := l.Lock(ctx, "w", warning.SMS, hr.Batch, "f", time.Minute)
	if c, _ := l.Begin(ctx, hr2, e[:1], false); len(c.Uncertain) != 1 || c.Uncertain[0].Gen != cr.Gen {
		t.Fatalf("resend batch's next attempt begins %+v; want its chunk %s uncertain", c, cr.Gen)
	}
	c2, err := l.Begin(ctx, hr2, e[:1], true)
	if err != nil || fmt.Sprint(c2.Taken) != "[0]" {
		t.Fatalf("resend batch's next attempt retakes %+v, %v; want r0 taken", c2, err)
	}
	if _, err := l.Record(ctx, "w", warning.SMS, c2.Gen, []ledger.Outcome{{Entry: e[0], State: warning.Sent}}); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Progress(ctx, "w")
	if c := p.Channels[warning.SMS]; c.Sent != 1 || c.Failed != 0 || c.Pending != 3 {
		t.Fatalf("progress: %+v; want r0 sent once, r1 and r2 still with batch 1", c)
	}
}

// A delivery re-opened without naming a round, as stored before rounds
// were named, is taken by any batch that names it, as before; re-opening
// it again for a round gives it to that round.
func TestReopenedWithoutRoundAnyBatchTakes(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	e := []ledger.Entry{{RecipientID: "r0", Audience: warning.Residents, Division: "530102001001"}}
	l.MarkPlanned(ctx, "w", ledger.Planned{{Channel: warning.SMS, Audience: warning.Residents, Division: "530102001001"}: 1})
	h, _ := l.Lock(ctx, "w", warning.SMS, 1, "a", time.Minute)
	c, _ := l.Begin(ctx, h, e, false)
	l.Record(ctx, "w", warning.SMS, c.Gen, []ledger.Outcome{{Entry: e[0], State: warning.Failed, Extra: "基站故障"}})
	l.Unlock(ctx, "w", warning.SMS, 1, h.Gen)
	if got, _ := l.Reopen(ctx, "w", warning.SMS, refs("w", warning.SMS, "r0"), []warning.DeliveryState{warning.Failed}); !slices.Equal(got, refs("w", warning.SMS, "r0")) {
		t.Fatalf("reopen = %v", got)
	}
	for _, retake := range []bool{false, true} {
		h, _ := l.Lock(ctx, "w", warning.SMS, 1, fmt.Sprint("b", retake), time.Minute)
		c, _ := l.Begin(ctx, h, e, retake)
		if fmt.Sprint(c.Taken) != "[0]" {
			t.Fatalf("batch 1 (retake %v) begins %+v; want an R naming no round taken", retake, c)
		}
		// Put it back for the next case.
		if _, err := l.Record(ctx, "w", warning.SMS, c.Gen, []ledger.Outcome{{Entry: e[0], State: warning.Failed, Extra: "基站故障"}}); err != nil {
			t.Fatal(err)
		}
		l.Unlock(ctx, "w", warning.SMS, 1, h.Gen)
		if got, _ := l.Reopen(ctx, "w", warning.SMS, refs("w", warning.SMS, "r0"), []warning.DeliveryState{warning.Failed}); !slices.Equal(got, refs("w", warning.SMS, "r0")) {
			t.Fatalf("reopen = %v", got)
		}
	}
	// Re-opened again for round 2: only round 2 takes it.
	if got, _ := l.ReopenFor(ctx, "w", warning.SMS, 2, refs("w", warning.SMS, "r0"), []warning.DeliveryState{warning.Failed}); !slices.Equal(got, refs("w", warning.SMS, "r0")) {
		t.Fatalf("reopen for round 2 = %v", got)
	}
	h, _ = l.Lock(ctx, "w", warning.SMS, 1, "c", time.Minute)
	if c, _ := l.Begin(ctx, h, e, false); len(c.Taken) != 0 {
		t.Fatalf("batch 1 begins %+v; want r0 left to round 2", c)
	}
	h, _ = l.Lock(ctx, "w", warning.SMS, 2*ledger.ResendBase+3, "d", time.Minute)
	if c, _ := l.Begin(ctx, h, e, false); fmt.Sprint(c.Taken) != "[0]" {
		t.Fatalf("round 2's batch begins %+v; want r0 taken", c)
	}
	p, _ := l.Progress(ctx, "w")
	if c := p.Channels[warning.SMS]; c.Failed != 0 || c.Pending != 1 {
		t.Fatalf("progress: %+v", c)
	}
}
