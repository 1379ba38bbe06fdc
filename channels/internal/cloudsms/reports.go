package cloudsms

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// MaxReportBody bounds one report push; a provider pushes at most a few
// hundred reports at a time.
const MaxReportBody = 8 << 20

// beijing is China Standard Time, in which the providers write report
// times.
var beijing = time.FixedZone("CST", 8*3600)

// ReportTime reads a report time as the providers write it,
// "2006-01-02 15:04:05" in China Standard Time; a time it cannot read is
// taken as now.
func ReportTime(s string) time.Time {
	if t, err := time.ParseInLocation("2006-01-02 15:04:05", s, beijing); err == nil {
		return t
	}
	return time.Now()
}

// Entry is one delivery report of a push, as the provider writes it.
type Entry interface {
	// ID is the provider's id of the message, as the adapter gave it in
	// Receipt.ProviderID.
	ID() string
	// Outcome tells when the message reached its end, whether it was
	// delivered, and if not, why.
	Outcome() (at time.Time, delivered bool, reason string)
	// LogAttrs name the message in a log line, its phone number masked.
	LogAttrs() []any
}

// Reports takes one provider's delivery report pushes, a POST of a JSON
// array of entries E, and hands them to a channels.ReportSink. It counts
// the reports for messages the gateway has no index entry for.
type Reports[E Entry] struct {
	// Provider names the index the ids are resolved in, and starts every
	// log message, e.g. "aliyun".
	Provider string
	// Auth admits a push.
	Auth channels.CallbackAuth
	// Log takes a line for each push refused or not recorded, and for
	// each report of an unknown message.
	Log *slog.Logger
	// Answer writes the provider's answer to a push: the HTTP status, the
	// result code in the body (0 for taken, 1 for "push again", otherwise
	// the HTTP status) and a message.
	Answer func(w http.ResponseWriter, status, code int, msg string)
	// Malformed is the answer's message for a body that is not a JSON array
	// of entries.
	Malformed string
	// Taken is the answer's message for a push taken.
	Taken string

	unknown atomic.Int64
}

// Serve implements channels.ReportReceiver's ServeReports. Each entry is
// resolved by its ID; a delivered one becomes a Delivered report, any other
// a Failed one with the entry's reason. Entries the gateway does not know
// are counted, logged and skipped. When the sink fails, the answer is code
// 1 (HTTP 503), and the provider pushes again. A push Auth refuses gets 403
// and records nothing.
func (p *Reports[E]) Serve(w http.ResponseWriter, r *http.Request, sink channels.ReportSink) {
	if !p.Auth.Allow(r) {
		p.Log.Warn(p.Provider+": report push refused: wrong token or address", "remote", r.RemoteAddr)
		p.Answer(w, http.StatusForbidden, 403, "forbidden")
		return
	}
	if r.Method != http.MethodPost {
		p.Answer(w, http.StatusMethodNotAllowed, 405, "POST a JSON array")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReportBody))
	if err != nil {
		p.Answer(w, http.StatusRequestEntityTooLarge, 413, "body too large or unreadable")
		return
	}
	var items []E
	if err := json.Unmarshal(bytes.TrimSpace(body), &items); err != nil {
		p.Answer(w, http.StatusBadRequest, 400, p.Malformed)
		return
	}
	ids := make([]string, 0, len(items))
	for _, it := range items {
		ids = append(ids, it.ID())
	}
	refs, err := sink.Resolve(r.Context(), p.Provider, ids)
	if err != nil {
		p.Log.Error(p.Provider+": reports not resolved", "err", err)
		p.Answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
		return
	}
	reports := make([]warning.Report, 0, len(items))
	for i, it := range items {
		ref, ok := refs[ids[i]]
		if !ok {
			p.unknown.Add(1)
			p.Log.Warn(p.Provider+": report for an unknown message skipped", it.LogAttrs()...)
			continue
		}
		at, delivered, reason := it.Outcome()
		rep := warning.Report{Ref: ref, ProviderID: ids[i], At: at, State: warning.Delivered}
		if !delivered {
			rep.State, rep.Reason = warning.Failed, reason
		}
		reports = append(reports, rep)
	}
	if len(reports) > 0 {
		if err := sink.Record(r.Context(), reports); err != nil {
			p.Log.Error(p.Provider+": reports not recorded", "err", err, "reports", len(reports))
			p.Answer(w, http.StatusServiceUnavailable, 1, "not recorded, push again")
			return
		}
	}
	p.Answer(w, http.StatusOK, 0, p.Taken)
}

// Unknown returns how many pushed reports named a message the gateway has
// no index entry for.
func (p *Reports[E]) Unknown() int64 { return p.unknown.Load() }
