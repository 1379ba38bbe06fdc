package dispatcher_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// writeOrder records, in order, the plan's writes of duty sources ("src")
// and of officials ("officials").
type writeOrder struct {
	mu     sync.Mutex
	writes []string
}

func (o *writeOrder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (o *writeOrder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		o.note(cmd)
		return next(ctx, cmd)
	}
}

func (o *writeOrder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			o.note(c)
		}
		return next(ctx, cmds)
	}
}

func (o *writeOrder) note(cmd redis.Cmder) {
	args := cmd.Args()
	key := func(i int) string {
		if len(args) > i {
			s, _ := args[i].(string)
			return s
		}
		return ""
	}
	var what string
	switch strings.ToLower(cmd.Name()) {
	case "hset":
		if strings.HasSuffix(key(1), "}:src") {
			what = "src"
		}
	case "evalsha", "eval":
		if strings.HasSuffix(key(3), "}:o") {
			what = "officials"
		}
	}
	if what != "" {
		o.mu.Lock()
		o.writes = append(o.writes, what)
		o.mu.Unlock()
	}
}

// A plan records who stood in for a role on a shift before it registers
// the officials: a 叫应 view read in between never shows an official on
// duty as the roster's holder of their own role. Before, the officials
// came first, and a view read a moment later said "from: role".
func TestPlanRecordsDutySourcesBeforeOfficials(t *testing.T) {
	const township, village, other = "530102001000", "530102001001", "530102001002"
	clock, roster, store := dutySetup(t)
	leader, officer := shiftStaff(roster, other)
	r := newRig(t, rigOptions{now: clock.now, onDuty: store.OnDutyIn, noWorkers: true})
	ctx := context.Background()
	putShift(t, store, township, clock.now().Add(-time.Hour), clock.now().Add(time.Hour), leader, officer)
	got := submitRed(t, r, village)
	order := &writeOrder{}
	r.rdb.AddHook(order)
	if err := r.d.PlanNow(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	order.mu.Lock()
	defer order.mu.Unlock()
	src, officials := -1, -1
	for i, w := range order.writes {
		if w == "src" && src < 0 {
			src = i
		}
		if w == "officials" && officials < 0 {
			officials = i
		}
	}
	if src < 0 || officials < 0 || src > officials {
		t.Fatalf("the plan's writes: %v; want the duty sources before the officials", order.writes)
	}
	sources, err := r.l.OfficialSources(ctx, got.ID)
	if err != nil || sources[officer.ID] == "" {
		t.Fatalf("sources %v, %v: want %s on the township's shift", sources, err, officer.ID)
	}
}
