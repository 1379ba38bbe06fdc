package dispatcher_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/internal/sheet"
	"warngate/ledger"
	"warngate/region"
	"warngate/roster"
)

// keepWatch is the roster store, noting for each version it is asked to
// keep whether a warning's plan had recorded it already.
type keepWatch struct {
	*roster.Store
	l       *ledger.Ledger
	warning string
	mu      sync.Mutex
	late    []int64 // versions recorded for the warning before they were kept
}

func (k *keepWatch) Keep(ctx context.Context, n int64, until time.Time) error {
	if v, ok, _ := k.l.RosterVersion(ctx, k.warning); ok && v == n {
		k.mu.Lock()
		k.late = append(k.late, n)
		k.mu.Unlock()
	}
	return k.Store.Keep(ctx, n, until)
}

// A plan keeps its roster version before it records it with the warning:
// one that stopped in between must never leave a version recorded but not
// kept, which a few roster changes sweep away and the plan's retry then
// cannot load, ever.
func TestAPlanKeepsItsRosterVersionBeforeRecordingIt(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBDispatcher)
	store := roster.New(rdb, roster.Options{Prefix: "wg", Tree: region.Kunming()})
	watch := &keepWatch{Store: store}
	r := newRig(t, rigOptions{rosters: watch, noWorkers: true}) // empties the database
	watch.l = r.l
	people := "id,name,phone,role,division\ncx-officer,陈静,18600000005,village_officer,530102001001\ncx-r1,吴秀英,13300000009,resident,530102001001\n"
	if _, err := store.Import(ctx, strings.NewReader(people), sheet.CSV, roster.Change{Kind: roster.People}); err != nil {
		t.Fatal(err)
	}
	w := redWarning()
	w.Areas = []string{"530102001001"}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	watch.warning = got.ID
	if err := r.d.PlanNow(ctx, got.ID); err != nil {
		t.Fatal(err)
	}
	if v, ok, _ := r.l.RosterVersion(ctx, got.ID); !ok || v != 1 {
		t.Fatalf("the plan recorded version %d (%v), want 1", v, ok)
	}
	if len(watch.late) > 0 {
		t.Errorf("versions %v were recorded for the warning before they were kept", watch.late)
	}
}
