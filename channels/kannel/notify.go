package kannel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"warngate/channels"
	"warngate/warning"
)

// call is one sendsms call: one text to one or more numbers.
type call struct {
	name   string // names the call in its dlr-url; empty for one number
	text   string
	phones []string
	at     []int // the recipients' positions in the batch, as phones
}

// plan groups a batch's valid numbers into calls: recipients with the same
// text, at most Config.NumbersPerCall a call and each number once a call
// (Kannel sends a number given twice in one call only once, and a report
// names only the call and the number). It returns the calls and a Failed
// receipt for each invalid number.
func (k *Kannel) plan(b *channels.Batch) ([]*call, []channels.Receipt) {
	var (
		failed []channels.Receipt
		calls  []*call
		byText = map[string][]*call{} // text → its calls, the last ones open
		seen   = map[*call]map[string]bool{}
	)
	for i, r := range b.Recipients {
		phone, ok := Phone(r.Address)
		if !ok {
			failed = append(failed, invalidNumber(i))
			continue
		}
		text := k.SMSText(b, r)
		var c *call
		for _, open := range byText[text] {
			if len(open.phones) < k.cfg.NumbersPerCall && !seen[open][phone] {
				c = open
				break
			}
		}
		if c == nil {
			c = &call{text: text}
			calls = append(calls, c)
			byText[text] = append(byText[text], c)
			seen[c] = map[string]bool{}
		}
		c.phones = append(c.phones, phone)
		c.at = append(c.at, i)
		seen[c][phone] = true
		if len(c.phones) == k.cfg.NumbersPerCall { // full: no longer looked at
			rest := byText[text][:0]
			for _, open := range byText[text] {
				if open != c {
					rest = append(rest, open)
				}
			}
			byText[text] = rest
		}
	}
	return calls, failed
}

// invalidNumber is the receipt of the recipient at i whose address is not
// a mainland mobile number: it fails without being sent.
func invalidNumber(i int) channels.Receipt {
	return channels.Receipt{Index: i, State: warning.Failed, Reason: "invalid number: want 11 digits starting with 1"}
}

// indexCalls names the calls of several numbers and writes what their reports
// will name into the Index, before any is made: a report can come before
// the call's answer, or after an answer that never came.
func (k *Kannel) indexCalls(ctx context.Context, b *channels.Batch, calls []*call) error {
	ids := map[string]warning.Ref{}
	prefix := ""
	for n, c := range calls {
		if len(c.phones) < 2 {
			continue
		}
		if prefix == "" {
			prefix = callPrefix(b)
		}
		c.name = fmt.Sprintf("%s.%d", prefix, n)
		for j, phone := range c.phones {
			ids[indexID(c.name, phone)] = b.Ref(c.at[j])
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := k.index.IndexProviderIDs(ctx, IndexName, ids); err != nil {
		return fmt.Errorf("kannel: index the calls' numbers: %w", err)
	}
	return nil
}

// outcome is what one sendsms call came to.
type outcome int

const (
	accepted   outcome = iota // Kannel took the numbers not in answer.refused
	refused                   // Kannel refused every number of the call for good (400)
	retryable                 // try again later: transport, 5xx, 429
	unanswered                // no answer (in time): Kannel may have taken the numbers or not
	fatal                     // every message would fail alike (403, 404, …)
)

// answer is what Kannel said to one call.
type answer struct {
	out  outcome
	text string // Kannel's answer, first line
	err  error  // for retryable, unanswered and fatal
	// refused are numbers Kannel named as refused in an accepting answer
	// ("Sent. Denied receivers are: …"), failed numbers it named as not
	// taken in a 5xx ("Sending failed. Failed receivers are: …"): the
	// others of the call were taken.
	refused, failed []string
}

// errSendTimeout is the cause of a sendsms call cut short by Config.Timeout.
var errSendTimeout = errors.New("kannel: sendsms did not answer in time")

// request builds the sendsms GET for a call.
func (k *Kannel) request(ctx context.Context, c *call, phones []string, at []int, b *channels.Batch) (*http.Request, error) {
	q := url.Values{}
	q.Set("username", k.cfg.Username)
	q.Set("password", string(k.cfg.Password))
	q.Set("to", strings.Join(phones, " "))
	q.Set("text", c.text)
	q.Set("charset", "UTF-8")
	q.Set("coding", "2")
	// A notice about a warning (a reminder, an escalation, a lifted notice)
	// is sent and not followed: it asks for no reports, which would name the
	// recipient's delivery of the warning itself and settle it.
	if b.Tracked() {
		q.Set("dlr-mask", dlrMask)
		if len(phones) == 1 {
			q.Set("dlr-url", k.refDLRURL(b.Ref(at[0])))
		} else {
			q.Set("dlr-url", k.callDLRURL(c.name))
		}
	}
	if k.cfg.From != "" {
		q.Set("from", k.cfg.From)
	}
	if k.cfg.SMSC != "" {
		q.Set("smsc", k.cfg.SMSC)
	}
	u := *k.sendsms
	u.RawQuery = q.Encode()
	return http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
}

// send makes one sendsms call to phones (all of c, or part of it when a
// refused call is split). A non-nil error never contains the password or
// the callback key: Kannel's answers do not echo them and transport errors
// have their URL redacted.
func (k *Kannel) send(ctx context.Context, c *call, phones []string, at []int, b *channels.Batch) answer {
	ctx, cancel := context.WithTimeoutCause(ctx, k.cfg.Timeout, errSendTimeout)
	defer cancel()
	req, err := k.request(ctx, c, phones, at, b)
	if err != nil {
		return answer{out: fatal, err: fmt.Errorf("kannel: build sendsms request: %w", redact(err))}
	}
	hc := k.hc
	if len(phones) > 1 {
		hc = k.fresh
	}
	resp, err := hc.Do(req)
	if err != nil {
		// Kannel may have the call when it went out and no answer came
		// back (a timeout, a connection cut); not when it never went out.
		out := unanswered
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			out = retryable
		}
		if cause := context.Cause(ctx); cause != nil {
			return answer{out: out, err: fmt.Errorf("kannel: sendsms: %w", cause)}
		}
		return answer{out: out, err: fmt.Errorf("kannel: sendsms: %w", redact(err))}
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	a := answer{text: channels.FirstLine(string(body))}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		// "0: Accepted for delivery" or "3: Queued for later delivery"
		// (202), or with immediate-sendsms-reply "Sent." and the numbers
		// a list refused. Anything else in a 2xx still means Kannel has
		// the messages: sending them again would text the phones twice.
		a.out = accepted
		a.refused = listed(string(body), "Denied receivers are:", phones)
		if rerr != nil || !(strings.HasPrefix(a.text, "0:") || strings.HasPrefix(a.text, "3:") || strings.HasPrefix(a.text, "Sent.")) {
			k.log.Warn("kannel: unexpected sendsms answer taken as accepted", "status", code, "answer", a.text, "numbers", len(phones))
		}
	case code == http.StatusTooManyRequests || code >= 500:
		// "Sending failed. Failed receivers are: …" names the numbers
		// smsbox could not hand to bearerbox; it took the others.
		a.out, a.err = retryable, fmt.Errorf("kannel: sendsms answered %s: %s", resp.Status, a.text)
		if failed := listed(string(body), "Failed receivers are:", phones); len(failed) > 0 {
			a.failed = failed
		}
	case code == http.StatusBadRequest:
		// Kannel's refusals: "Number(s) has/have been denied by white-
		// and/or black-lists." (every number of the call), "Charset or
		// body misformed, rejected", …
		a.out = refused
	default:
		// 403 "Authorization failed for sendsms" or "Not routable. Do not
		// try again.", 404 for a wrong path: no message of the batch would
		// get through.
		a.out, a.err = fatal, fmt.Errorf("kannel: sendsms answered %s: %s", resp.Status, a.text)
	}
	return a
}

// listed returns the numbers Kannel lists after label in its answer, those
// of phones only.
func listed(body, label string, phones []string) []string {
	_, rest, ok := strings.Cut(body, label)
	if !ok {
		return nil
	}
	ours := make(map[string]bool, len(phones))
	for _, p := range phones {
		ours[p] = true
	}
	var out []string
	for _, f := range strings.Fields(rest) {
		if !ours[f] {
			break // "Message splits: 2" follows the list
		}
		out = append(out, f)
	}
	return out
}

// batchState gathers the receipts and errors of one Notify's calls.
type batchState struct {
	mu         sync.Mutex
	receipts   []channels.Receipt
	firstRetry error
	unanswered []int // positions of recipients whose call did not answer
	firstNoAns error
	firstFatal error
}

func (s *batchState) add(rc channels.Receipt) {
	s.mu.Lock()
	s.receipts = append(s.receipts, rc)
	s.mu.Unlock()
}

// Notify implements channels.Notifier. With the box transport see
// notifyBox. With sendsms it makes one sendsms call per group
// of Config.NumbersPerCall numbers that get the same text, Config.Concurrency
// at a time. An invalid number fails at once, without a call; a number
// Kannel refuses fails alone, with Kannel's reason. Messages Kannel accepted
// before a failure keep their Sent receipts; a retryable failure returns
// them with retry=true, so that only the others are sent again.
func (k *Kannel) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	if k.box != nil {
		return k.notifyBox(ctx, b)
	}
	calls, failed := k.plan(b)
	st := &batchState{receipts: append(make([]channels.Receipt, 0, len(b.Recipients)), failed...)}
	if b.Tracked() {
		if err := k.indexCalls(ctx, b, calls); err != nil {
			return st.receipts, true, err
		}
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	errStopping := errors.New("kannel: batch stopped")
	var wg sync.WaitGroup
	sem := make(chan struct{}, k.cfg.Concurrency)
loop:
	for _, c := range calls {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			k.run(ctx, b, c, c.phones, c.at, st, stop, errStopping)
		})
	}
	wg.Wait()
	st.receipts = append(st.receipts, k.reportedSince(ctx, b, st.unanswered)...)
	sort.Slice(st.receipts, func(a, c int) bool { return st.receipts[a].Index < st.receipts[c].Index })
	valid, notTaken := len(b.Recipients)-len(failed), len(b.Recipients)-len(st.receipts)
	switch {
	case st.firstFatal != nil:
		return st.receipts, false, st.firstFatal
	case notTaken > 0 && (st.firstRetry != nil || st.firstNoAns != nil):
		first := st.firstRetry
		if first == nil {
			first = st.firstNoAns
		}
		return st.receipts, true, fmt.Errorf("kannel: %d of %d messages not taken: %w", notTaken, valid, first)
	case ctx.Err() != nil && notTaken > 0:
		// The caller's context ended before every message was handed over.
		return st.receipts, true, fmt.Errorf("kannel: %w", context.Cause(ctx))
	}
	return st.receipts, false, nil
}

// run sends one call (or part of one) and notes its outcome. A refused
// call of several numbers is split in halves and each sent again: Kannel
// refuses a whole call only when it refuses every number, but another
// version, or a proxy, may refuse it for one.
func (k *Kannel) run(ctx context.Context, b *channels.Batch, c *call, phones []string, at []int, st *batchState, stop context.CancelCauseFunc, errStopping error) {
	a := k.send(ctx, c, phones, at, b)
	segments := channels.SMSSegments(c.text)
	switch a.out {
	case accepted:
		denied := map[string]bool{}
		for _, p := range a.refused {
			denied[p] = true
		}
		for j, p := range phones {
			if denied[p] {
				st.add(channels.Receipt{Index: at[j], State: warning.Failed, Reason: "kannel: Number(s) has/have been denied by white- and/or black-lists."})
			} else {
				st.add(channels.Receipt{Index: at[j], State: warning.Sent, Segments: segments})
			}
		}
	case refused:
		if len(phones) > 1 {
			h := len(phones) / 2
			k.run(ctx, b, c, phones[:h], at[:h], st, stop, errStopping)
			k.run(ctx, b, c, phones[h:], at[h:], st, stop, errStopping)
			return
		}
		st.add(channels.Receipt{Index: at[0], State: warning.Failed, Reason: "kannel: " + a.text})
	case retryable:
		if context.Cause(ctx) == errStopping {
			return // cut short by a fatal answer elsewhere
		}
		notTaken := map[string]bool{}
		for _, p := range a.failed {
			notTaken[p] = true
		}
		for j, p := range phones {
			if len(a.failed) > 0 && !notTaken[p] {
				st.add(channels.Receipt{Index: at[j], State: warning.Sent, Segments: segments})
			}
		}
		st.mu.Lock()
		if st.firstRetry == nil {
			st.firstRetry = a.err
		}
		st.mu.Unlock()
	case unanswered:
		st.mu.Lock()
		st.unanswered = append(st.unanswered, at...)
		if st.firstNoAns == nil {
			st.firstNoAns = a.err
		}
		st.mu.Unlock()
	case fatal:
		st.mu.Lock()
		if st.firstFatal == nil {
			st.firstFatal = a.err
			stop(errStopping)
		}
		st.mu.Unlock()
	}
}

// reportGraceMax bounds how long Notify waits, after a call did not answer,
// for the reports of messages Kannel may have taken.
const reportGraceMax = 5 * time.Second

// reportedSince handles the calls that got no answer (in time, or on a
// connection that was cut). Kannel may
// have taken some or all of their messages: it hands each number to
// bearerbox in turn, whatever became of the caller. So Notify waits as long
// again as a call was given (at most reportGraceMax, within ctx), then asks
// the Index which of those deliveries have been reported since (their
// reports are found through the index written before the call): those are
// Sent, and a retry of the batch skips them. The others are left without a
// receipt, to be sent again.
//
// What stays uncertain: a message Kannel took whose report comes later
// than that (an SMS centre can take minutes to report delivery) is sent
// again, and its first report then finds a delivery claimed by the retry
// or none at all. Kannel offers no way to ask what it took.
func (k *Kannel) reportedSince(ctx context.Context, b *channels.Batch, unanswered []int) []channels.Receipt {
	if len(unanswered) == 0 || k.index == nil {
		return nil
	}
	grace := min(k.cfg.Timeout, reportGraceMax)
	if d, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(d)/2)
	}
	if grace > 0 {
		t := time.NewTimer(grace)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	refs := make([]warning.Ref, len(unanswered))
	for i, at := range unanswered {
		refs[i] = b.Ref(at)
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reportGraceMax)
	defer cancel()
	ok, err := k.index.Reported(rctx, refs)
	if err != nil {
		k.log.Warn("kannel: which messages of an unanswered call were reported is unknown; all are sent again", "err", err)
		return nil
	}
	var out []channels.Receipt
	for i, at := range unanswered {
		if ok[i] {
			out = append(out, channels.Receipt{Index: at, State: warning.Sent, Segments: channels.SMSSegments(k.SMSText(b, b.Recipients[at]))})
		}
	}
	return out
}
