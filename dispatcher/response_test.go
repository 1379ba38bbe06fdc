package dispatcher_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/calllist"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

func TestCallListMarksAndEscalation(t *testing.T) {
	r := newRig(t, rigOptions{override: map[warning.Channel]channels.Notifier{warning.CallList: calllist.Assigner{}}})
	var mu sync.Mutex
	var escalated []string
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		if b.Notice == channels.NoticeEscalation && b.Channel == warning.SMS {
			mu.Lock()
			escalated = append(escalated, b.Recipients[0].ID+": "+b.Note)
			mu.Unlock()
		}
	})
	ctx := context.Background()
	village := "530102001001"
	w := redWarning()
	w.Areas = []string{village}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Households stay pending until someone marks them.
	waitFor(t, 30*time.Second, "call list assigned", func() (bool, string) {
		p, _ := r.l.Progress(ctx, got.ID)
		c := p.Channels[warning.CallList]
		return c.Planned > 0 && c.Sent == c.Planned, ""
	})
	var hh []region.Household
	r.roster.Households(village, func(h region.Household) bool { hh = append(hh, h); return true })
	if len(hh) < 2 || hh[0].GridWorker == hh[1].GridWorker {
		t.Fatalf("want two households of two grid workers, have %+v", hh)
	}
	worker := dispatcher.Actor{PersonID: hh[0].GridWorker, From: "10.0.0.8"}
	if err := r.d.MarkHousehold(ctx, got, worker, hh[0].ID, ledger.Mark{Reached: true, Method: "visit", Note: "已当面告知"}); err != nil {
		t.Fatal(err)
	}
	if err := r.d.MarkHousehold(ctx, got, worker, hh[1].ID, ledger.Mark{Reached: true, Method: "visit"}); !errors.Is(err, dispatcher.ErrForbidden) {
		t.Fatalf("a grid worker marked another's household: %v", err)
	}
	if err := r.d.MarkHousehold(ctx, got, dispatcher.Actor{PersonID: hh[1].GridWorker}, hh[1].ID, ledger.Mark{Reached: false, Note: "家中无人"}); err != nil {
		t.Fatal(err)
	}
	p, _ := r.l.Progress(ctx, got.ID)
	if c := p.Channels[warning.CallList]; c.Delivered != 1 || c.Pending != 1 {
		t.Fatalf("call list after marks: %+v", c)
	}
	marks, _ := r.l.Marks(ctx, got.ID)
	if m := marks[hh[1].ID]; m.Reached || m.Note != "家中无人" || m.By != hh[1].GridWorker {
		t.Fatalf("mark of the household not reached: %+v", m)
	}
	left, err := r.d.CheckCallList(ctx, got.ID)
	if err != nil || left != 1 {
		t.Fatalf("check = %d, %v; want 1 household left", left, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(escalated) != 1 {
		t.Fatalf("village officer told %d times: %v", len(escalated), escalated)
	}
	steps, _ := r.l.Steps(ctx, got.ID)
	if len(steps) == 0 || steps[len(steps)-1].Action != "calllist_escalate" {
		t.Fatalf("steps %+v", steps)
	}
	audit, _ := r.l.AuditLog(ctx, got.ID, 10)
	if len(audit) != 3 || audit[2].Action != "issue" || audit[1].Detail != "reached by visit: 已当面告知" || audit[1].From != "10.0.0.8" {
		t.Fatalf("audit %+v", audit)
	}
}
