package ledger_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"warngate/ledger"
	"warngate/warning"
)

// A call is claimed once by two checks that read the same schedule, and
// not at all once the official confirmed, even after the check read them.
func TestClaimCallsOnceAndNotAfterConfirming(t *testing.T) {
	l, c := newLedger(t)
	ctx := context.Background()
	for _, id := range []string{"p1", "p2"} {
		if _, err := l.RegisterOfficials(ctx, "wc", []ledger.Official{{PersonID: id, Audience: warning.TownshipOfficials, Division: "530102001000"}}); err != nil {
			t.Fatal(err)
		}
	}
	start := c.t
	if err := l.RegisterCalls(ctx, "wc", map[string]ledger.CallTrack{"p1": {Calls: 1, At: start}, "p2": {Calls: 1, At: start}}); err != nil {
		t.Fatal(err)
	}
	tracks, err := l.CallTracks(ctx, "wc")
	if err != nil || tracks["p1"].Calls != 1 || !tracks["p1"].At.Equal(start.Truncate(time.Millisecond)) {
		t.Fatalf("tracks %+v, %v", tracks, err)
	}
	// p2 confirms after the check read the schedules.
	if _, err := l.Acknowledge(ctx, "wc", "p2", "voice"); err != nil {
		t.Fatal(err)
	}
	later := start.Add(100 * time.Second)
	claims := []ledger.CallClaim{
		{PersonID: "p1", Read: tracks["p1"], Next: ledger.CallTrack{Calls: 2, At: later}},
		{PersonID: "p2", Read: tracks["p2"], Next: ledger.CallTrack{Calls: 2, At: later}},
	}
	for i, want := range [][]bool{{true, false}, {false, false}} {
		got, err := l.ClaimCalls(ctx, "wc", claims)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("claim %d: %v, %v; want %v", i+1, got, err, want)
		}
	}
	if tracks, _ := l.CallTracks(ctx, "wc"); tracks["p1"].Calls != 2 || tracks["p2"].Calls != 1 {
		t.Errorf("tracks after the claims: %+v", tracks)
	}
}
