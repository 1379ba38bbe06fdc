package dispatcher_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/ledger"
	"warngate/region"
	"warngate/warning"
)

// unreachable refuses, while down, every SMS to a number ending in 3 with
// the provider's reason, as a carrier whose part of the network is out.
type unreachable struct {
	next channels.Notifier
	down atomic.Bool
}

func (u *unreachable) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	var out []channels.Receipt
	sub := *b
	sub.Recipients = nil
	var at []int
	for i, r := range b.Recipients {
		if u.down.Load() && b.Channel == warning.SMS && strings.HasSuffix(r.Address, "3") {
			out = append(out, channels.Receipt{Index: i, State: warning.Failed, Reason: "基站故障"})
			continue
		}
		at = append(at, i)
		sub.Recipients = append(sub.Recipients, r)
	}
	got, retry, err := u.next.Notify(ctx, &sub)
	for _, rc := range got {
		rc.Index = at[rc.Index]
		out = append(out, rc)
	}
	return out, retry, err
}

// Sending again reaches those a provider failed for good, once it can, and
// nobody it reached; the action is audited, and a warning no longer live
// is refused.
func TestResendToThoseNotReached(t *testing.T) {
	u := &unreachable{}
	u.down.Store(true)
	// Everyone answers the calls: only SMS fail.
	r := newRig(t, rigOptions{notifier: func(p *sim.Provider) channels.Notifier { u.next = p; return u },
		voice: sim.VoiceConfig{NoAnswer: -1, KeyDelay: 10 * time.Millisecond}})
	ctx := context.Background()
	w := redWarning()
	w.Areas = []string{"530102001000"}
	got, _, err := r.d.Submit(ctx, w, dispatcher.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the first round", progressDone(t, r, got.ID))
	p, _ := r.l.Progress(ctx, got.ID)
	failed := p.Channels[warning.SMS].Failed
	if failed == 0 || p.Reasons[warning.SMS]["基站故障"] != failed {
		t.Fatalf("first round: %+v, reasons %v; want SMS failures for 基站故障", p.Channels[warning.SMS], p.Reasons[warning.SMS])
	}
	sentBefore := r.sim.Duplicates()

	u.down.Store(false)
	res, err := r.d.Resend(ctx, got.ID, dispatcher.Actor{User: "duty"}, []warning.Channel{warning.SMS}, nil)
	if err != nil || res.Total != int(failed) || res.Channels[warning.SMS] != int(failed) {
		t.Fatalf("resend = %+v, %v; want the %d failed", res, err, failed)
	}
	waitFor(t, 30*time.Second, "the second round", progressDone(t, r, got.ID))
	p, _ = r.l.Progress(ctx, got.ID)
	if c := p.Channels[warning.SMS]; c.Failed != 0 || c.Delivered != c.Planned {
		t.Fatalf("after sending again: %+v", c)
	}
	if dup := r.sim.Duplicates(); len(dup) != len(sentBefore) {
		t.Fatalf("sending again reached someone reached before: %v", dup)
	}
	entries, _ := r.l.AuditLog(ctx, got.ID, 20)
	found := false
	for _, e := range entries {
		found = found || (e.Action == "resend" && e.Who == "duty" && strings.Contains(e.Detail, "sms"))
	}
	if !found {
		t.Fatalf("no audited resend by duty: %+v", entries)
	}
	if res, err := r.d.Resend(ctx, got.ID, dispatcher.Actor{User: "duty"}, nil, nil); err != nil || res.Total != 0 {
		t.Fatalf("second resend = %+v, %v; want nobody left", res, err)
	}
	if _, err := r.d.Cancel(ctx, got.ID, dispatcher.Actor{User: "duty"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.Resend(ctx, got.ID, dispatcher.Actor{User: "duty"}, nil, nil); !errors.Is(err, ledger.ErrState) {
		t.Fatalf("resend of a cancelled warning: %v; want ErrState", err)
	}
}

// A warning planned by a gateway of another version, whose buckets hold
// more recipients, is sent again by this one: the resend lays the warning
// out as its plan did, so that each delivery put back is sent and recorded
// where it is kept. Before, the resend gave recipients the buckets of this
// version's target: their deliveries stayed put back in the plan's buckets,
// and the new ones went where no listing looks.
func TestResendAfterAnUpgradeFindsThePlansBuckets(t *testing.T) {
	u := &unreachable{}
	u.down.Store(true)
	// Villages of 200: 3 buckets each as planned, 5 by this version.
	r := newRig(t, rigOptions{notifier: func(p *sim.Provider) channels.Notifier { u.next = p; return u },
		voice: sim.VoiceConfig{NoAnswer: -1, KeyDelay: 10 * time.Millisecond},
		demo:  &region.DemoOptions{ResidentsPerVillage: 200, HouseholdsPerVillage: 2, GridWorkersPerVillage: 1}})
	ctx := context.Background()
	r.d.SetBucketTarget(warning.LegacyBucketTarget)
	got := submitRed(t, r, "530102001001")
	waitFor(t, 30*time.Second, "the first round", progressDone(t, r, got.ID))
	if n, err := r.l.BucketTarget(ctx, got.ID); err != nil || n != warning.LegacyBucketTarget {
		t.Fatalf("bucket target recorded: %d, %v; want the planning gateway's %d", n, err, warning.LegacyBucketTarget)
	}
	p, _ := r.l.Progress(ctx, got.ID)
	failed := p.Channels[warning.SMS].Failed
	if failed == 0 {
		t.Fatalf("first round: %+v; want SMS failures", p.Channels[warning.SMS])
	}
	sentBefore := r.sim.Duplicates()

	r.d.SetBucketTarget(warning.BucketTarget) // the gateway is upgraded
	u.down.Store(false)
	res, err := r.d.Resend(ctx, got.ID, dispatcher.Actor{User: "duty"}, []warning.Channel{warning.SMS}, nil)
	if err != nil || res.Total != int(failed) {
		t.Fatalf("resend = %+v, %v; want the %d failed", res, err, failed)
	}
	waitFor(t, 30*time.Second, "the second round", progressDone(t, r, got.ID))
	p, _ = r.l.Progress(ctx, got.ID)
	c := p.Channels[warning.SMS]
	var listed int64
	var notDelivered []string
	err = r.l.Deliveries(ctx, got.ID, warning.SMS, func(d ledger.Delivery) bool {
		listed++
		if d.State != warning.Delivered {
			notDelivered = append(notDelivered, d.Ref.RecipientID+":"+d.State.String())
		}
		return true
	})
	if err != nil || c.Failed != 0 || c.Delivered != c.Planned || listed != c.Planned || len(notDelivered) > 0 {
		t.Fatalf("after sending again: %+v; %d deliveries listed (%v), not delivered: %v", c, listed, err, notDelivered)
	}
	if dup := r.sim.Duplicates(); len(dup) != len(sentBefore) {
		t.Fatalf("sending again reached someone reached before: %v", dup)
	}
}
