// Package calllist is the in-house channel for households reached by hand:
// handing a batch over assigns each household to its grid worker (网格员),
// who sees it on the page their link opens and marks it reached or not.
// Nothing leaves the gateway; a mark becomes the delivery report.
package calllist

import (
	"context"

	"warngate/channels"
	"warngate/warning"
)

// Assigner accepts call-list batches.
type Assigner struct{}

var _ channels.Notifier = Assigner{}

// Notify implements channels.Notifier. A household without a grid worker
// cannot be assigned: that is a permanent failure the bureau must fix in
// the roster.
func (Assigner) Notify(_ context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	out := make([]channels.Receipt, len(b.Recipients))
	for i, r := range b.Recipients {
		if r.Address == "" {
			out[i] = channels.Receipt{Index: i, State: warning.Failed, Reason: "no grid worker assigned in the roster"}
			continue
		}
		out[i] = channels.Receipt{Index: i, State: warning.Sent}
	}
	return out, false, nil
}
