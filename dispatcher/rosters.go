package dispatcher

import (
	"context"
	"time"

	"warngate/region"
	"warngate/warning"
)

// Rosters serves the versions of the roster. A warning is planned with the
// current version and keeps it: everything looked up for it later (who
// escalates to whom, call lists, lifted notices) comes from that version,
// so a change during a red warning never reshapes it half-way.
type Rosters interface {
	// Current is the current version and its number, asked of the store
	// afresh, so that a warning planned just after a change sees it.
	Current(ctx context.Context) (region.Roster, int64, error)
	// At is version n.
	At(ctx context.Context, n int64) (region.Roster, error)
	// Keep keeps version n stored until at least until.
	Keep(ctx context.Context, n int64, until time.Time) error
}

// RosterKept is how long after a warning expires the roster version it was
// planned with is kept: its links work a day longer, and its report is
// read in the week after. Later, lookups for it use the current roster.
const RosterKept = 7 * 24 * time.Hour

// fixedRoster is one roster that never changes, version 0: a dispatcher
// built without Rosters serves Deps.Roster so.
type fixedRoster struct{ r region.Roster }

func (f fixedRoster) Current(context.Context) (region.Roster, int64, error) { return f.r, 0, nil }
func (f fixedRoster) At(context.Context, int64) (region.Roster, error)      { return f.r, nil }
func (f fixedRoster) Keep(context.Context, int64, time.Time) error          { return nil }

// planRoster is the roster a warning's plan expands with, and the bucket
// target it lays the deliveries out with: the current version and this
// gateway's target, recorded with the warning; a plan run again finds what
// the first run recorded and uses it.
//
// The version is kept before it is recorded: a plan that stopped between
// the two (a crash, Redis) leaves a version kept that nobody uses, never one
// recorded and swept away after a few roster changes, which its retry would
// then never find.
func (d *Dispatcher) planRoster(ctx context.Context, w *warning.Warning) (region.Roster, int, error) {
	r, n, err := d.rosters.Current(ctx)
	if err != nil {
		return nil, 0, err
	}
	until := w.Expires.Add(RosterKept)
	if err := d.rosters.Keep(ctx, n, until); err != nil {
		return nil, 0, err
	}
	pin, err := d.ledger.PinPlan(ctx, w.ID, n, int(d.bucketTarget.Load()))
	if err != nil {
		return nil, 0, err
	}
	if pin.Roster != n {
		// Recorded by an earlier run, and kept by it before.
		if r, err = d.rosters.At(ctx, pin.Roster); err != nil {
			return nil, 0, err
		}
		if err := d.rosters.Keep(ctx, pin.Roster, until); err != nil {
			return nil, 0, err
		}
	}
	return r, pin.BucketTarget, nil
}

// rosterFor is the roster a warning was planned with; before its plan (or
// once its version is gone) it is the current one.
func (d *Dispatcher) rosterFor(ctx context.Context, w *warning.Warning) region.Roster {
	n, ok, err := d.ledger.RosterVersion(ctx, w.ID)
	if err != nil || !ok {
		return d.roster
	}
	r, err := d.rosters.At(ctx, n)
	if err != nil {
		d.log.Warn("roster version of a warning not available: using the current roster", "warning_id", w.ID, "roster_version", n, "err", err)
		return d.roster
	}
	return r
}

// RosterFor is the roster a warning was planned with, for the API's views
// of it (acks, call lists, the report): see rosterFor.
func (d *Dispatcher) RosterFor(ctx context.Context, w *warning.Warning) region.Roster {
	return d.rosterFor(ctx, w)
}
