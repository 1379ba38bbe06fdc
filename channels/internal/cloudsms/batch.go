// Package cloudsms is what the cloud SMS adapters (channels/aliyun and
// channels/tencent) have in common: sorting a batch's recipients into
// calls, rendering an approved template within the provider's limits,
// checking the settings every account has, and taking the delivery
// reports the provider pushes. What each provider does its own way
// (signing, request and answer shapes, error codes, the placeholder syntax,
// the answer to a push) stays in its adapter.
package cloudsms

import (
	"warngate/channels"
	"warngate/warning"
)

// InvalidNumber is the reason of the receipt of a recipient whose address
// is not a mainland mobile number.
const InvalidNumber = "invalid number: want 11 digits starting with 1"

// Group is the recipients of a batch who get the same template values, so
// that one call can carry them all.
type Group[P any] struct {
	Params   P        // the template values, as the provider takes them
	Segments int      // the billed parts of the text the phones show
	Index    []int    // the recipients' indexes in the batch
	Phones   []string // their 11-digit numbers, in the same order
}

// Sent is the receipt of the recipient at position p of g, handed over
// under the provider's id ("" when the provider gave none).
func (g *Group[P]) Sent(p int, providerID string) channels.Receipt {
	return channels.Receipt{Index: g.Index[p], State: warning.Sent, ProviderID: providerID, Segments: g.Segments}
}

// Failed is the receipt of the recipient at position p of g, refused for
// reason.
func (g *Group[P]) Failed(p int, reason string) channels.Receipt {
	return channels.Receipt{Index: g.Index[p], State: warning.Failed, Reason: reason}
}

// GroupRecipients sorts b's recipients by their template values. render
// returns a recipient's values, a key that is equal for equal values, and
// the text the phone shows. A recipient whose address is not a mainland
// mobile number gets a Failed receipt (InvalidNumber) instead, and no call.
// The groups come in the order of their first recipients.
func GroupRecipients[P any](b *channels.Batch, render func(warning.Recipient) (params P, key, text string)) ([]channels.Receipt, []*Group[P]) {
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	var groups []*Group[P]
	byKey := map[string]*Group[P]{}
	for i, r := range b.Recipients {
		phone, ok := channels.MobilePhone(r.Address)
		if !ok {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: InvalidNumber})
			continue
		}
		params, key, text := render(r)
		g := byKey[key]
		if g == nil {
			g = &Group[P]{Params: params, Segments: channels.SMSSegments(text)}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.Index = append(g.Index, i)
		g.Phones = append(g.Phones, phone)
	}
	return receipts, groups
}

// SendGroups sends the numbers of each group, at most n per call, one call
// after the other: send gets a group and the positions in it of one call's
// numbers, and returns their receipts and, for a call that failed as a
// whole, whether to retry and the error. The receipts are appended to
// receipts; the first call that fails ends the sending, keeping the
// receipts of the calls before it.
func SendGroups[P any](receipts []channels.Receipt, groups []*Group[P], n int, send func(g *Group[P], pos []int) ([]channels.Receipt, bool, error)) ([]channels.Receipt, bool, error) {
	for _, g := range groups {
		for _, c := range Chunks(g.Phones, n) {
			rcs, retry, err := send(g, c)
			receipts = append(receipts, rcs...)
			if err != nil {
				return receipts, retry, err
			}
		}
	}
	return receipts, false, nil
}

// Chunks splits positions 0..len(phones)-1 into runs of at most n, never
// putting the same number twice in one run: each of its messages must get
// a ProviderID of its own.
func Chunks(phones []string, n int) [][]int {
	var out [][]int
	var seen []map[string]bool
	for i, p := range phones {
		placed := false
		for c := range out {
			if len(out[c]) < n && !seen[c][p] {
				out[c] = append(out[c], i)
				seen[c][p] = true
				placed = true
				break
			}
		}
		if !placed {
			out = append(out, []int{i})
			seen = append(seen, map[string]bool{p: true})
		}
	}
	return out
}
