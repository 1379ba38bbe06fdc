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

// Two checks that read an official at once both try to move them on: only
// the first may, so a reminder or an escalation is never sent twice.
func TestMarkTryMovesOnce(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	if _, err := l.RegisterOfficials(ctx, "wa", []ledger.Official{{PersonID: "p1", Audience: warning.VillageOfficials, Division: "530102001001"}}); err != nil {
		t.Fatal(err)
	}
	read, err := l.OfficialState(ctx, "wa", "p1")
	if err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(100 * time.Second)
	for i, want := range []bool{true, false} {
		moved, err := l.MarkTry(ctx, "wa", read, c.t, 2, false)
		if err != nil || moved != want {
			t.Fatalf("reminder %d on the same read: moved %v, %v; want %v", i+1, moved, err, want)
		}
	}
	read, _ = l.OfficialState(ctx, "wa", "p1")
	for i, want := range []bool{true, false} {
		moved, err := l.MarkTry(ctx, "wa", read, c.t, 2, true)
		if err != nil || moved != want {
			t.Fatalf("escalation %d on the same read: moved %v, %v; want %v", i+1, moved, err, want)
		}
	}
	if o, _ := l.OfficialState(ctx, "wa", "p1"); o.State != ledger.AckUnreached || o.Tries != 2 {
		t.Errorf("after the race: %+v, want unreached after 2 tries", o)
	}
}

// A city-wide warning's check moves thousands of officials, a few hundred
// a call: each moves once, whichever call it falls in.
func TestMarkTriesInParts(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	var os []ledger.Official
	for i := range 1200 {
		os = append(os, ledger.Official{PersonID: fmt.Sprintf("p%d", i), Audience: warning.VillageOfficials, Division: "530102001001"})
	}
	if _, err := l.RegisterOfficials(ctx, "wb", os); err != nil {
		t.Fatal(err)
	}
	read, _ := l.Officials(ctx, "wb")
	if _, err := l.Acknowledge(ctx, "wb", read[700].PersonID, "link"); err != nil {
		t.Fatal(err)
	}
	tries := make([]ledger.Try, len(read))
	for i, o := range read {
		tries[i] = ledger.Try{Official: o, Tries: 2, Unreached: i%2 == 1}
	}
	c.t = c.t.Add(100 * time.Second)
	moved, err := l.MarkTries(ctx, "wb", c.t, tries)
	if err != nil || len(moved) != len(tries) {
		t.Fatalf("moved %d of %d, %v", len(moved), len(tries), err)
	}
	for i, m := range moved {
		if m != (i != 700) {
			t.Errorf("official %d moved %v; only the one who confirmed stays", i, m)
		}
	}
	if again, _ := l.MarkTries(ctx, "wb", c.t, tries); slices.Contains(again, true) {
		t.Error("officials moved twice on the same read")
	}
	p, _ := l.Progress(ctx, "wb")
	if a := p.Acks[warning.VillageOfficials]; a.Unreached != 600 || a.Confirmed != 1 || a.Waiting != 599 {
		t.Errorf("counts %+v, want 600 unreached, 1 confirmed, 599 waiting", a)
	}
	if o, _ := l.OfficialState(ctx, "wb", read[2].PersonID); o.Tries != 2 || !o.LastTry.Equal(c.t) || o.State != ledger.AckWaiting {
		t.Errorf("reminded official %+v, want waiting after 2 tries, the last at %v", o, c.t)
	}
}

// A city-wide warning registers thousands of officials a few hundred a
// call: each is counted once, in its audience and its division, whichever
// call it falls in, and a plan run again counts nobody twice.
func TestRegisterOfficialsInParts(t *testing.T) {
	l, _ := newLedger(t)
	ctx := context.Background()
	divisions := []string{"530102001001", "530102001002", "530102002001"}
	var os []ledger.Official
	for i := range 1200 {
		a := warning.VillageOfficials
		if i%4 == 0 {
			a = warning.TownshipOfficials
		}
		os = append(os, ledger.Official{PersonID: fmt.Sprintf("p%d", i), Audience: a, Division: divisions[i%3]})
	}
	if n, err := l.RegisterOfficials(ctx, "wr", os[1100:]); err != nil || n != 100 {
		t.Fatalf("registered %d, %v; want 100", n, err)
	}
	n, err := l.RegisterOfficials(ctx, "wr", os)
	if err != nil || n != 1100 {
		t.Fatalf("registered %d, %v; want the 1,100 not registered before", n, err)
	}
	if n, _ := l.RegisterOfficials(ctx, "wr", os); n != 0 {
		t.Errorf("registered %d again; want none", n)
	}
	p, _ := l.Progress(ctx, "wr")
	if v, tw := p.Acks[warning.VillageOfficials].Expected, p.Acks[warning.TownshipOfficials].Expected; v != 900 || tw != 300 {
		t.Errorf("expected: %d village and %d township officials, want 900 and 300", v, tw)
	}
	for _, d := range divisions {
		if e := p.AckDivisions[d].Expected; e != 400 {
			t.Errorf("division %s expects %d confirmations, want 400", d, e)
		}
	}
	if all, _ := l.Officials(ctx, "wr"); len(all) != 1200 {
		t.Errorf("%d officials registered, want 1,200", len(all))
	}
}
