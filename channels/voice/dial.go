package voice

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"warngate/channels"
)

// DefaultPoll is how often Dial looks again for a free line while every
// line is in a call.
const DefaultPoll = 100 * time.Millisecond

// Dial places a batch's calls on one account as its lines come free.
type Dial struct {
	Lines   *Lines
	Account string
	// N is the account's number of lines.
	N int
	// TTL is how long a lease lasts unless extended: the longest a call
	// may take, for a call the gateway cannot follow (a cloud call whose
	// last callback never comes); a SIP call extends its lease while it
	// goes on.
	TTL time.Duration
	// Poll is how often to look again while every line is in a call.
	// Zero means DefaultPoll.
	Poll time.Duration
}

// Each calls place for every phone of phones, in order, each once a line
// of the account is free and the phone is not in another call, until ctx
// ends. place gets the phone's index and the lease it holds, and returns
// whether the call was placed: a placed call keeps its lease (whoever
// follows the call releases it); for one that was not, Each releases it.
// An error from place ends Each at once with that error.
//
// Each returns the indexes of the phones it did not get to; when there are
// any, the error is ctx's cause wrapping ErrNoLine, or a Redis error.
func (d Dial) Each(ctx context.Context, phones []string, place func(i int, lease Lease) (bool, error)) ([]int, error) {
	poll := d.Poll
	if poll == 0 {
		poll = DefaultPoll
	}
	pending := make([]int, len(phones))
	for i := range pending {
		pending[i] = i
	}
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return pending, d.timedOut(ctx, len(pending))
		}
		var left []int
		progressed, full := false, false
		for k, i := range pending {
			if full {
				left = append(left, pending[k:]...)
				break
			}
			lease, taken, err := d.Lines.TryAcquire(ctx, d.Account, d.N, phones[i], d.TTL)
			if err != nil {
				left = append(left, pending[k:]...)
				if ctx.Err() != nil {
					// The batch's time ran out while Redis was asked: that
					// is waiting for a line too long, not Redis failing.
					return left, d.timedOut(ctx, len(left))
				}
				return left, err
			}
			switch taken {
			case LinesFull:
				full = true
				left = append(left, i)
				continue
			case PhoneBusy:
				left = append(left, i)
				continue
			}
			progressed = true
			placed, err := place(i, lease)
			if !placed {
				if rerr := d.Lines.Release(context.WithoutCancel(ctx), lease); rerr != nil && err == nil {
					err = rerr
				}
			}
			if err != nil {
				return append(left, pending[k+1:]...), err
			}
		}
		pending = left
		if len(pending) == 0 || progressed {
			continue
		}
		wait := poll/2 + rand.N(poll)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return pending, d.timedOut(ctx, len(pending))
		case <-t.C:
		}
	}
	return nil, nil
}

func (d Dial) timedOut(ctx context.Context, n int) error {
	return fmt.Errorf("%d calls still wait for a line of %s: %w (%w)", n, d.Account, ErrNoLine, context.Cause(ctx))
}

// Sorted returns receipts in the order of their recipients.
func Sorted(receipts []channels.Receipt) []channels.Receipt {
	slices.SortFunc(receipts, func(a, b channels.Receipt) int { return a.Index - b.Index })
	return receipts
}
