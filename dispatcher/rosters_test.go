package dispatcher_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/internal/redistest"
	"warngate/internal/sheet"
	"warngate/ledger"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
)

// A warning keeps the roster version it was planned with: an official added
// and a phone changed after it was planned change nothing for it, and a
// warning planned after the change reaches the new official at the new
// number.
func TestWarningKeepsItsRosterVersion(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBDispatcher)
	store := roster.New(rdb, roster.Options{Prefix: "wg", Tree: region.Kunming()})
	people := `id,name,phone,wechat_openid,wecom_userid,role,division
wh-duty,王芳,13900000002,,,county_duty,530102000000
hs-duty,刘洋,15100000004,,,township_duty,530102001000
cx-officer,陈静,18600000005,,,village_officer,530102001001
cx-r1,吴秀英,13300000009,,,resident,530102001001
`
	r := newRig(t, rigOptions{rosters: store}) // empties the database
	if res, err := store.Import(ctx, strings.NewReader(people), sheet.CSV, roster.Change{Kind: roster.People}); err != nil || res.Version != 1 {
		t.Fatalf("import: %v %+v", err, res)
	}
	village := func() *warning.Warning {
		w := redWarning()
		w.Areas = []string{"530102001001"}
		return w
	}
	officials := func(id string) []string {
		os, err := r.l.Officials(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, o := range os {
			ids = append(ids, o.PersonID)
		}
		slices.Sort(ids)
		return ids
	}
	w1, _, err := r.d.Submit(ctx, village(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the first warning", progressDone(t, r, w1.ID))

	res, err := store.Import(ctx, strings.NewReader("id,name,phone,role,division\ncx-new,新干部,18600000099,village_officer,530102001001\ncx-officer,陈静,18600000055,village_officer,530102001001\n"),
		sheet.CSV, roster.Change{Kind: roster.People, Merge: true})
	if err != nil || res.Version != 2 {
		t.Fatalf("change: %v %+v", err, res)
	}
	w2, _, err := r.d.Submit(ctx, village(), dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the second warning", progressDone(t, r, w2.ID))

	if got := officials(w1.ID); slices.Contains(got, "cx-new") || len(got) != 3 {
		t.Errorf("the first warning's officials changed: %v", got)
	}
	if got := officials(w2.ID); !slices.Contains(got, "cx-new") {
		t.Errorf("the second warning does not reach the new official: %v", got)
	}
	for _, c := range []struct {
		w     *warning.Warning
		n     int64
		phone string
	}{{w1, 1, "18600000005"}, {w2, 2, "18600000055"}} {
		if n, ok, _ := r.l.RosterVersion(ctx, c.w.ID); !ok || n != c.n {
			t.Errorf("%s planned with version %d (%v), want %d", c.w.ID, n, ok, c.n)
		}
		if p, _ := r.d.RosterFor(ctx, c.w).Person("cx-officer"); p.Phone != c.phone {
			t.Errorf("%s sees cx-officer at %s, want %s", c.w.ID, p.Phone, c.phone)
		}
		var sms string
		r.l.Deliveries(ctx, c.w.ID, warning.SMS, func(d ledger.Delivery) bool {
			if d.Ref.RecipientID == "cx-officer" {
				sms = d.State.String()
			}
			return true
		})
		if sms == "" {
			t.Errorf("%s has no SMS delivery to cx-officer", c.w.ID)
		}
	}
	// Both versions are kept while their warnings live.
	pins, _ := rdb.ZRange(ctx, "wg:{roster}:pins", 0, -1).Result()
	if strings.Join(pins, ",") != "1,2" {
		t.Errorf("kept versions %v", pins)
	}
}
