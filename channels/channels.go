// Package channels defines how warngate hands a batch of recipients to a
// provider and how providers' reports come back. Each provider lives in a
// subpackage. Channels import nothing of warngate but package warning: they
// know no queue, no ledger and no policy.
package channels

import (
	"context"
	"errors"
	"net/http"
	"time"

	"warngate/warning"
)

// Notice says which message of a warning's life a batch carries.
type Notice string

// Notices. A change notice is short: recipients already have the full text.
// A reminder asks an official again to confirm; an escalation tells a
// superior that someone under them has not (Batch.Note says who).
const (
	NoticeFull       Notice = "full"
	NoticeChange     Notice = "change"
	NoticeLifted     Notice = "lifted"
	NoticeReminder   Notice = "reminder"
	NoticeEscalation Notice = "escalation"
)

// Batch is what one provider call sends: one warning's message to many
// recipients of one channel.
type Batch struct {
	ID string // "<warning>/<channel>/<n>", unique and stable across retries
	// Key names this one hand-over of (a chunk of) the batch, unique
	// across attempts: a provider that takes an idempotency key or an
	// out-id may be given it, and a Querier is asked by it what it took.
	// Empty for messages that are not followed (reminders, lifted notices).
	Key        string
	Channel    warning.Channel
	Notice     Notice
	Warning    *warning.Warning
	Recipients []warning.Recipient
	// Repeat is how many times a loudspeaker plays the message; zero means once.
	Repeat int
	// Note is extra text for reminders and escalations.
	Note string
	// AckURL, when set, returns the confirmation link for an official.
	AckURL func(r warning.Recipient) string
	// Area names the warning's area as people say it (五华区), for
	// channels that speak it (a phone call); empty when unknown.
	Area string
}

// Ref returns the delivery ref of the batch's i-th recipient.
func (b *Batch) Ref(i int) warning.Ref {
	return warning.RefTo(b.Warning.ID, b.Channel, b.Recipients[i])
}

// Tracked reports whether the batch carries deliveries of the warning, whose
// receipts and reports are kept, rather than a notice about it (a reminder,
// an escalation, a lifted notice) that is sent and not followed.
func (b *Batch) Tracked() bool {
	return b.Notice == "" || b.Notice == NoticeFull || b.Notice == NoticeChange
}

// Receipt is the provider's immediate answer for one recipient of a batch.
type Receipt struct {
	// Index is the recipient's position in Batch.Recipients.
	Index int
	// State is warning.Sent when the provider accepted the message,
	// warning.Delivered when acceptance is delivery (a call list), or
	// warning.Failed when it refused this recipient for good.
	State      warning.DeliveryState
	ProviderID string
	Reason     string
	// Segments is what the provider bills for this recipient (SMS parts); 0 when not billed per part.
	Segments int
	// Account names the provider account that answered; set by the
	// caller that chose it (a route over several accounts).
	Account string
	// IndexName names the provider index under which ProviderID is kept
	// for reports that carry only the provider's id (see Indexed); set by
	// the caller from the notifier that answered.
	IndexName string
}

// Notifier hands a batch to one provider. When err is non-nil, retry says
// whether the same call may succeed later; callers must not retry when it is
// false. Recipients missing from accepted were not handed over.
type Notifier interface {
	Notify(ctx context.Context, b *Batch) (accepted []Receipt, retry bool, err error)
}

// Querier is implemented by notifiers whose provider can say which
// recipients of a hand-over it accepted, by a send-status query or by the
// record behind its idempotency key. A worker that dies while a chunk is
// with the provider leaves its recipients uncertain; the next one asks and
// sends again only those the provider does not have, so nobody gets the
// message twice.
type Querier interface {
	// Accepted returns a receipt (Sent, or Delivered) for each recipient
	// of b that the provider accepted under b.Key; Index is the position
	// in b.Recipients. It returns ErrNotAskable when the provider cannot
	// tell.
	Accepted(ctx context.Context, b *Batch) ([]Receipt, error)
}

// ErrNotAskable is returned by a Querier that cannot tell what it accepted.
var ErrNotAskable = errors.New("the provider cannot say what it accepted")

// Askable reports whether a notifier can be asked what it accepted: it is a
// Querier, and, when it has an Askable method (a route over several
// providers, a provider whose query is switched off), that says yes.
func Askable(n Notifier) bool {
	q, ok := n.(Querier)
	if !ok {
		return false
	}
	if a, ok := q.(interface{ Askable() bool }); ok {
		return a.Askable()
	}
	return true
}

// Canceller is implemented by notifiers whose messages keep playing after
// they are sent (loudspeaker repeats, screen inserts): lifting a warning
// stops them at the provider. ids are the ProviderIDs of the receipts.
type Canceller interface {
	Cancel(ctx context.Context, providerIDs []string) error
}

// ReportSink is where a ReportReceiver hands what it parsed.
type ReportSink interface {
	// Record stores reports. When it fails, the receiver answers the
	// provider with its "try again" answer, so nothing is lost.
	Record(ctx context.Context, reports []warning.Report) error
	// Resolve finds deliveries by the provider's message ids, for providers
	// whose reports carry only their own ids (see Indexed). Unknown ids are
	// missing from the map.
	Resolve(ctx context.Context, provider string, ids []string) (map[string]warning.Ref, error)
}

// Indexed is implemented by notifiers whose delivery reports name a message
// only by the provider's id (Receipt.ProviderID), not by our ref. The
// dispatcher then keeps an index from provider id to delivery for a few days.
type Indexed interface {
	// Provider names the index, e.g. "tencent".
	Provider() string
}

// ReportReceiver turns a provider's callback request into delivery reports.
// It authenticates the caller, writes the provider's expected answer itself,
// and records through the sink before answering, so that a provider that
// sees success never needs to send again.
type ReportReceiver interface {
	// Name is the provider name used in the callback path /callbacks/{name}.
	Name() string
	ServeReports(w http.ResponseWriter, r *http.Request, sink ReportSink)
}

// Admitter is a ReportReceiver that tells from a callback's URL, headers
// and sender alone (its token, key, signature or address), before its body
// is read, whether the callback is its own. Several accounts of a provider
// share its callback path, each with credentials of its own: a callback
// goes to the account whose credentials it carries.
type Admitter interface {
	Admits(r *http.Request) bool
}

// Reply is a message sent back by a phone (an SMS "MO"), e.g. an official
// answering "1" to confirm receipt.
type Reply struct {
	From string // the phone number, 11 digits
	To   string // the service number it was sent to
	Text string
	At   time.Time
}

// ReplyReceiver turns a gateway's MO callback into replies; mounted at
// /callbacks/{name}/mo.
type ReplyReceiver interface {
	Name() string
	ServeReplies(w http.ResponseWriter, r *http.Request, handle func(context.Context, Reply) error)
}

// Clock tells time; tests pass a fixed or stepped one.
type Clock func() time.Time
