package dispatcher_test

import (
	"context"
	"testing"
	"time"

	"warngate/dispatcher"
	"warngate/warning"
)

// An update whose process stopped once it was stored, before it marked the
// version it replaces, still supersedes that version: the update's plan
// does. Before, the old version stayed live and kept reminding and
// escalating its officials beside the new one. The old version names its
// update, which an official's old link follows in one read.
func TestAnUpdateSupersedesItsOldVersionFromItsPlan(t *testing.T) {
	r := newRig(t, rigOptions{})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001001"}
	old, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// What Update stores, and then the process stops.
	up := redWarning()
	up.Areas, up.Headline = w.Areas, "五华区暴雨红色预警（更新）"
	up.MsgType, up.References = warning.MsgUpdate, []string{old.ID}
	nw, _, err := r.d.Submit(ctx, up, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the old version superseded", func() (bool, string) {
		o, err := r.l.Warning(ctx, old.ID)
		if err != nil {
			return false, err.Error()
		}
		return o.State == warning.StateSuperseded, string(o.State)
	})
	if by, err := r.l.SupersededBy(ctx, old.ID); by != nw.ID || err != nil {
		t.Errorf("the old version names its update %q (%v), want %s", by, err, nw.ID)
	}
	o, _ := r.l.Warning(ctx, old.ID)
	if cur, err := r.d.Current(ctx, o); err != nil || cur.ID != nw.ID {
		t.Errorf("the current version of %s: %v %v, want %s", old.ID, cur, err, nw.ID)
	}
}
