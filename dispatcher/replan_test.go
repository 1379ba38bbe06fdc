package dispatcher_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/warning"
)

// An update's plan that died half-way through queuing its batches runs
// again, while the older version's last batch reaches one more official
// meanwhile: the second run cuts the officials' group differently (who gets
// the short change notice, who the full text), and a batch of it whose id
// the first run's task holds, with other recipients, goes under an id of
// its own. Before, it was refused as the same batch and its recipients were
// never sent the update.
func TestPlanRunAgainAfterACrashLeavesNobodyOut(t *testing.T) {
	r := newRig(t, rigOptions{noWorkers: true})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	old, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The old version's first SMS batch is with the provider: o0 handed over.
	hold, err := r.l.Lock(ctx, old.ID, warning.SMS, 1, "t1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	official := func(id string) []ledger.Entry {
		return []ledger.Entry{{RecipientID: id, Audience: warning.CountyOfficials, Division: "530102000000"}}
	}
	if _, err := r.l.Begin(ctx, hold, official("o0"), false); err != nil {
		t.Fatal(err)
	}
	up := redWarning()
	up.Areas, up.Headline = w.Areas, "五华区暴雨红色预警（更新）"
	nw, err := r.d.Update(ctx, old.ID, up, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The first run of the plan: the worker dies after queuing two SMS batches.
	if err := r.d.PlanNow(ctx, nw.ID); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspectorFromRedisClient(r.rdb)
	queues, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	prefix := nw.ID + "/sms/"
	for _, q := range queues {
		tasks, _ := insp.ListPendingTasks(q, asynq.PageSize(1000))
		for _, ti := range tasks {
			if n, err := strconv.Atoi(strings.TrimPrefix(ti.ID, prefix)); strings.HasPrefix(ti.ID, prefix) && err == nil && n >= 3 {
				if err := insp.DeleteTask(q, ti.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// Meanwhile the old version's batch hands o1 over too; then the plan runs again.
	if _, err := r.l.Begin(ctx, hold, official("o1"), false); err != nil {
		t.Fatal(err)
	}
	if err := r.d.PlanNow(ctx, nw.ID); err != nil {
		t.Fatal(err)
	}
	for _, q := range queues {
		insp.DeleteTask(q, "plan/"+nw.ID) // PlanNow stood in for it
	}

	r.start()
	waitFor(t, 30*time.Second, "the update's fan-out", progressDone(t, r, nw.ID))
	p, _ := r.l.Progress(ctx, nw.ID)
	if c := p.Channels[warning.SMS]; c.Delivered != c.Planned {
		var never []string
		r.l.Deliveries(ctx, nw.ID, warning.SMS, func(d ledger.Delivery) bool {
			if d.State != warning.Delivered {
				never = append(never, fmt.Sprintf("%s:%s", d.Ref.RecipientID, d.State))
			}
			return true
		})
		t.Errorf("the update's SMS: %+v; not delivered: %v", c, never)
	}
	if dup := r.sim.Duplicates(); len(dup) > 0 {
		t.Errorf("sent twice: %v", dup)
	}
}
