package dispatcher_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"warngate/channels"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

type noticeLog struct {
	mu sync.Mutex
	m  map[string]map[channels.Notice]int // warning/channel/recipient → notices
}

func watchNotices(r *rig) *noticeLog {
	l := &noticeLog{m: map[string]map[channels.Notice]int{}}
	r.sim.OnAccept(func(b *channels.Batch, _ time.Time) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := range b.Recipients {
			k := b.Ref(i).String()
			if l.m[k] == nil {
				l.m[k] = map[channels.Notice]int{}
			}
			l.m[k][b.Notice]++
		}
	})
	return l
}

func (l *noticeLog) count(ref warning.Ref, n channels.Notice) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[ref.String()][n]
}

func TestUpdateSendsChangeNoticesToThoseReached(t *testing.T) {
	r := newRig(t, rigOptions{})
	notices := watchNotices(r)
	ctx := context.Background()
	a, b := "530102001001", "530102001002"
	w := redWarning()
	w.Level, w.Areas = warning.Orange, []string{a}
	old, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "first version", progressDone(t, r, old.ID))

	up := redWarning()
	up.Areas = []string{a, b}
	up.Headline = "五华区暴雨预警升级为红色"
	nw, err := r.d.Update(ctx, old.ID, up, dispatcher.SubmitOptions{By: dispatcher.Actor{User: "duty"}})
	if err != nil {
		t.Fatal(err)
	}
	if nw.MsgType != warning.MsgUpdate || len(nw.References) != 1 || nw.References[0] != old.ID {
		t.Fatalf("update: %+v", nw)
	}
	waitFor(t, 30*time.Second, "second version", progressDone(t, r, nw.ID))
	if o, _ := r.l.Warning(ctx, old.ID); o.State != warning.StateSuperseded {
		t.Fatalf("old version is %s", o.State)
	}
	var inA, inB string
	r.roster.People(a, func(p2 region.Person) bool { inA = p2.ID; return false })
	r.roster.People(b, func(p2 region.Person) bool { inB = p2.ID; return false })
	refA := plannedRef(t, r, nw, warning.SMS, inA)
	refB := plannedRef(t, r, nw, warning.SMS, inB)
	if notices.count(refA, channels.NoticeChange) != 1 || notices.count(refA, channels.NoticeFull) != 0 {
		t.Errorf("already reached %s: %v", inA, notices.m[refA.String()])
	}
	if notices.count(refB, channels.NoticeFull) != 1 || notices.count(refB, channels.NoticeChange) != 0 {
		t.Errorf("newly covered %s: %v", inB, notices.m[refB.String()])
	}
	if _, err := r.d.Update(ctx, old.ID, redWarning(), dispatcher.SubmitOptions{}); err == nil {
		t.Error("a superseded warning was updated again")
	}
}

func TestCancelLiftsAndStopsPendingBatches(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	notices := watchNotices(r)
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	pending, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Planned but never sent: cancel before the workers run.
	r.start()
	waitFor(t, 30*time.Second, "fan-out of the first", progressDone(t, r, pending.ID))
	w2 := redWarning()
	w2.Areas = []string{"530102001002"}
	sent, _, _ := r.d.Submit(ctx, w2, dispatcher.SubmitOptions{})
	waitFor(t, 30*time.Second, "fan-out of the second", progressDone(t, r, sent.ID))
	if _, err := r.d.Cancel(ctx, sent.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	var resident string
	r.roster.People("530102001002", func(p region.Person) bool {
		if p.Role == "resident" {
			resident = p.ID
			return false
		}
		return true
	})
	ref := plannedRef(t, r, sent, warning.SMS, resident)
	waitFor(t, 10*time.Second, "lifted notice", func() (bool, string) {
		return notices.count(ref, channels.NoticeLifted) == 1, ""
	})
	if _, err := r.d.Cancel(ctx, sent.ID, dispatcher.Actor{User: "duty"}); err == nil {
		t.Error("cancelled twice")
	}
	// The steps are written once every channel has had its notices.
	waitFor(t, 10*time.Second, "a lifted step in the audit", func() (bool, string) {
		steps, _ := r.l.Steps(ctx, sent.ID)
		for _, s := range steps {
			if s.Action == "lifted" {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", steps)
	})
}

func TestCancelBeforeSendingSendsNothing(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	got, _, _ := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if _, err := r.d.Cancel(ctx, got.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	r.start()
	waitFor(t, 30*time.Second, "batches turned into no-ops", progressDone(t, r, got.ID))
	p, _ := r.l.Progress(ctx, got.ID)
	if tot := p.Total(); tot.Sent != 0 || tot.Expired != tot.Planned {
		t.Fatalf("a cancelled warning: %+v", tot)
	}
	var reason string
	r.l.Deliveries(ctx, got.ID, warning.SMS, func(d ledger.Delivery) bool { reason = d.Extra; return false })
	if reason != "warning cancelled" {
		t.Fatalf("expired delivery's reason %q", reason)
	}
}
