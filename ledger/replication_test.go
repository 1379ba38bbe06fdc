package ledger_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// With a replica required and none there, a warning is stored but said to
// be unconfirmed, and reports are refused (the provider sends them again),
// until the replica has been missing past the grace: an outage, not a
// failover, in which writes are acknowledged from the master alone.
func TestReplicaConfirmation(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	l.RequireReplicas(1, 20*time.Millisecond)

	w := sampleWarning("wr1", c.t)
	stored, existed, err := l.CreateWarning(ctx, w, "")
	if !errors.Is(err, ledger.ErrNotReplicated) || stored == nil || existed {
		t.Fatalf("create without a replica: %v, %v, %v; want the stored warning and ErrNotReplicated", stored, existed, err)
	}
	if got, err := l.Warning(ctx, "wr1"); err != nil || got.Headline != w.Headline {
		t.Fatalf("the unconfirmed warning is not on the master: %v, %v", got, err)
	}
	rep := []warning.Report{{Ref: warning.Ref{WarningID: "wr1", Channel: warning.SMS, RecipientID: "r1"}, State: warning.Delivered, At: c.t}}
	if _, err := l.ApplyReports(ctx, rep); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("reports without a replica: %v; want ErrNotReplicated so that the provider sends again", err)
	}
	if n, since := l.Replication(); n != 1 || since.IsZero() {
		t.Fatalf("replication = %d, %v; want 1 required, missing since the first write", n, since)
	}

	// An approval and an official's confirmation, written again on each
	// attempt, are recorded once.
	pending := sampleWarning("wr3", c.t)
	pending.State = warning.StateAwaitingApproval
	if _, _, err := l.CreateWarning(ctx, pending, ""); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatal(err)
	}
	pending.ApprovedBy = "leader"
	if err := l.Approve(ctx, pending); !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("approve without a replica: %v; want it recorded and ErrNotReplicated", err)
	}
	if got, _ := l.Warning(ctx, "wr3"); got.State != warning.StateAccepted || got.ApprovedBy != "leader" {
		t.Fatalf("approved warning: %+v", got)
	}

	if _, err := l.RegisterOfficials(ctx, "wr3", []ledger.Official{{PersonID: "p1", Audience: warning.VillageOfficials, Division: "530102001001"}}); err != nil {
		t.Fatal(err)
	}
	first, err := l.Acknowledge(ctx, "wr3", "p1", "link")
	if !first || !errors.Is(err, ledger.ErrNotReplicated) {
		t.Fatalf("acknowledge without a replica: first %v, %v; want recorded once and ErrNotReplicated", first, err)
	}
	if o, _ := l.OfficialState(ctx, "wr3", "p1"); o.State != ledger.AckConfirmed {
		t.Fatalf("official after confirming: %+v", o)
	}

	c.t = c.t.Add(ledger.ReplicaGrace + time.Second)
	if _, err := l.ApplyReports(ctx, rep); err != nil {
		t.Fatalf("reports after the grace: %v; want them taken from the master alone", err)
	}
	if _, _, err := l.CreateWarning(ctx, sampleWarning("wr2", c.t), ""); err != nil {
		t.Fatalf("create after the grace: %v", err)
	}
	if _, since := l.Replication(); since.IsZero() {
		t.Fatal("the outage no longer shows")
	}
}
