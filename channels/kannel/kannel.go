// Package kannel sends SMS through a Kannel gateway's sendsms HTTP interface
// and takes Kannel's delivery reports (a dlr-url per message) and the replies
// phones send back (an sms-service get-url). Kannel reaches the carriers'
// SMS centres itself (SMPP, CIMD, EMI/UCP); this package speaks only HTTP to
// smsbox. It must not learn about queues, the ledger or policy.
//
// One sendsms call carries one message to one number, so a batch costs one
// call per recipient, made Config.Concurrency at a time. Kannel's own message
// ids are not used: the dlr-url carries our delivery ref, and reports are
// correlated on it.
//
// Kannel needs, besides a sendsms-user for Username and Password, an
// sms-service whose get-url sends replies to /callbacks/kannel/mo:
//
//	group = sms-service
//	keyword = default
//	catch-all = true
//	max-messages = 0   # never text an answer back to the phone
//	get-url = "http://gateway:8080/callbacks/kannel/mo?key=<callback_key>&from=%p&to=%P&text=%a&ts=%T&smsc=%i&coding=%c&charset=%C"
package kannel

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"warngate/channels"
	"warngate/warning"
)

// Defaults for Config. With dispatch.concurrency.sms at 8 batches, 4 calls
// a batch keep 32 sendsms calls in flight: against one smsbox, which spends
// a core on them, `warngate bench --providers` found that the fastest (more
// calls took the SMS no faster and slowed the delivery reports). Raise it
// for several smsboxes behind a balancer.
const (
	DefaultConcurrency = 4
	DefaultTimeout     = 10 * time.Second
)

// Config is how warngate reaches a Kannel smsbox.
type Config struct {
	// SendSMSURL is smsbox's sendsms address, e.g.
	// http://127.0.0.1:13013/cgi-bin/sendsms.
	SendSMSURL string `yaml:"sendsms_url"`
	// Username and Password are a sendsms-user of the Kannel configuration.
	// Like every secret here, Password may be ${ENV_VAR}, or be given in a
	// file (PasswordFile): see channels.ResolveSecret.
	Username     string          `yaml:"username"`
	Password     channels.Secret `yaml:"password"`
	PasswordFile string          `yaml:"password_file"`
	// From is the service number messages come from, e.g. 12379. Empty
	// leaves it to Kannel's global-sender.
	From string `yaml:"from"`
	// Signature is put before every message as 【Signature】, e.g. 昆明市应急管理局.
	Signature string `yaml:"signature"`
	// DLRURL is where Kannel reports delivery: the gateway's
	// /callbacks/kannel, e.g. http://127.0.0.1:8080/callbacks/kannel.
	DLRURL string `yaml:"dlr_url"`
	// CallbackKey is a shared secret put in every dlr-url and expected in the
	// sms-service get-url (key=…): at least 16 letters, digits, '-' or '_';
	// or CallbackKeyFile.
	CallbackKey     channels.Secret `yaml:"callback_key"`
	CallbackKeyFile string          `yaml:"callback_key_file"`
	// Concurrency is how many sendsms calls of one batch run at once.
	// Zero means DefaultConcurrency.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one sendsms call. Zero means DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// SMSC, when set, routes every message to that smsc-id.
	SMSC string `yaml:"smsc"`
}

// Kannel sends through one smsbox and takes its reports and replies.
type Kannel struct {
	cfg     Config
	sendsms *url.URL
	dlrBase string
	hc      *http.Client
	log     *slog.Logger
}

var (
	_ channels.Notifier       = (*Kannel)(nil)
	_ channels.ReportReceiver = (*Kannel)(nil)
	_ channels.ReplyReceiver  = (*Kannel)(nil)
)

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`)

// New checks cfg and returns the adapter. Every problem of cfg is reported,
// each naming its field and what to do.
func New(cfg Config, hc *http.Client, log *slog.Logger) (*Kannel, error) {
	if hc == nil {
		return nil, errors.New("kannel: no HTTP client given")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kannel.%s: %s", field, fmt.Sprintf(format, args...)))
	}
	sendsms, err := checkURL(cfg.SendSMSURL)
	switch {
	case cfg.SendSMSURL == "":
		bad("sendsms_url", "required: smsbox's sendsms address, e.g. http://127.0.0.1:13013/cgi-bin/sendsms")
	case err != nil:
		bad("sendsms_url", "%v: use an http:// or https:// address such as http://127.0.0.1:13013/cgi-bin/sendsms", err)
	case sendsms.RawQuery != "":
		bad("sendsms_url", "must not carry a query: give username and password as their own settings")
	}
	if cfg.Username == "" {
		bad("username", "required: the username of a sendsms-user group in kannel.conf")
	}
	password, err := channels.ResolveSecret("kannel", "password", cfg.Password, cfg.PasswordFile, "the password of that sendsms-user group")
	if err != nil {
		errs = append(errs, err)
	}
	if cfg.From != "" && !channels.Digits(cfg.From) {
		bad("from", "%q is not a service number: use digits only, e.g. 12379", cfg.From)
	}
	if err := checkSignature(cfg.Signature); err != nil {
		bad("signature", "%v", err)
	}
	dlr, err := checkURL(cfg.DLRURL)
	switch {
	case cfg.DLRURL == "":
		bad("dlr_url", "required: the gateway's Kannel callback as Kannel reaches it, e.g. http://127.0.0.1:8080/callbacks/kannel")
	case err != nil:
		bad("dlr_url", "%v: use an http:// or https:// address such as http://127.0.0.1:8080/callbacks/kannel", err)
	case dlr.Fragment != "":
		bad("dlr_url", "must not have a #fragment")
	}
	key, err := channels.ResolveSecret("kannel", "callback_key", cfg.CallbackKey, cfg.CallbackKeyFile, "a shared secret of at least 16 letters or digits, e.g. from `openssl rand -hex 16`")
	switch {
	case err != nil:
		errs = append(errs, err)
	case !keyPattern.MatchString(key):
		bad(secretField("callback_key", cfg.CallbackKeyFile), "must be at least 16 characters of letters, digits, '-' or '_' (it travels in URLs), e.g. from `openssl rand -hex 16`")
	}
	if cfg.Concurrency < 0 || cfg.Concurrency > 256 {
		bad("concurrency", "%d is out of range: use 1 to 256, or leave it out for %d", cfg.Concurrency, DefaultConcurrency)
	}
	if cfg.Timeout < 0 {
		bad("timeout", "%s is negative: use a duration such as 10s", cfg.Timeout)
	}
	if cfg.SMSC != "" && strings.ContainsAny(cfg.SMSC, " \t\r\n") {
		bad("smsc", "%q: an smsc-id has no spaces", cfg.SMSC)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	cfg.Password, cfg.PasswordFile = channels.Secret(password), ""
	cfg.CallbackKey, cfg.CallbackKeyFile = channels.Secret(key), ""
	base := cfg.DLRURL
	if strings.Contains(base, "?") {
		base += "&"
	} else {
		base += "?"
	}
	return &Kannel{cfg: cfg, sendsms: sendsms, dlrBase: base, hc: hc, log: log.With("provider", "kannel")}, nil
}

// secretField names the setting a secret came from: field, or field_file
// when file is set.
func secretField(field, file string) string {
	if file != "" {
		return field + "_file"
	}
	return field
}

func checkURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an absolute http(s) URL", s)
	}
	return u, nil
}

func checkSignature(s string) error {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return errors.New("required: the approved SMS signature without brackets, e.g. 昆明市应急管理局")
	case strings.ContainsAny(s, "【】[]"):
		return fmt.Errorf("%q: give the signature without brackets; 【】 are added when sending", s)
	case n < 2 || n > 20:
		return fmt.Errorf("%q has %d characters: a signature has 2 to 20", s, n)
	}
	return nil
}

// Text returns the full text of a message as the phone shows it: the
// signature in 【】 and the composed warning.
func (k *Kannel) Text(b *channels.Batch, r warning.Recipient) string {
	return "【" + k.cfg.Signature + "】" + channels.Compose(b, r).Plain()
}

// dlrURL returns the dlr-url for one delivery. Kannel replaces %-codes in it
// (%d is the report type, %A the SMS centre's answer, %T its time) and keeps
// unknown ones except that it reads any %X: so every % of our own escaping
// is doubled, which Kannel turns back into a single %.
func (k *Kannel) dlrURL(ref warning.Ref) string {
	esc := func(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "%", "%%") }
	return k.dlrBase + "ref=" + esc(ref.String()) + "&type=%d&key=" + esc(string(k.cfg.CallbackKey)) + "&reply=%A&ts=%T"
}

// request builds the sendsms GET for one message.
func (k *Kannel) request(ctx context.Context, phone, text string, ref warning.Ref) (*http.Request, error) {
	q := url.Values{}
	q.Set("username", k.cfg.Username)
	q.Set("password", string(k.cfg.Password))
	q.Set("to", phone)
	q.Set("text", text)
	q.Set("charset", "UTF-8")
	q.Set("coding", "2")
	q.Set("dlr-mask", "31")
	q.Set("dlr-url", k.dlrURL(ref))
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

// outcome is what one sendsms call came to.
type outcome int

const (
	accepted  outcome = iota // Kannel took it
	refused                  // Kannel refused this message for good (400)
	retryable                // try again later: transport, 5xx, 429
	fatal                    // every message would fail alike (403, 404, …)
)

// errSendTimeout is the cause of a sendsms call cut short by Config.Timeout.
var errSendTimeout = errors.New("kannel: sendsms did not answer in time")

// send makes one sendsms call. A non-nil error never contains the password
// or the callback key: Kannel's answers do not echo them and transport
// errors have their URL redacted.
func (k *Kannel) send(ctx context.Context, phone, text string, ref warning.Ref) (outcome, string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, k.cfg.Timeout, errSendTimeout)
	defer cancel()
	req, err := k.request(ctx, phone, text, ref)
	if err != nil {
		return fatal, "", fmt.Errorf("kannel: build sendsms request: %w", redact(err))
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return retryable, "", fmt.Errorf("kannel: sendsms: %w", cause)
		}
		return retryable, "", fmt.Errorf("kannel: sendsms: %w", redact(err))
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	answer := channels.FirstLine(string(body))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		// "0: Accepted for delivery" (202) or "3: Queued for later
		// delivery" (202). Anything else in a 2xx still means Kannel has
		// the message: sending it again would text the phone twice.
		if rerr != nil || !(strings.HasPrefix(answer, "0:") || strings.HasPrefix(answer, "3:")) {
			k.log.Warn("kannel: unexpected sendsms answer taken as accepted", "status", code, "answer", answer, "phone", channels.MaskPhone(phone))
		}
		return accepted, answer, nil
	case code == http.StatusTooManyRequests || code >= 500:
		return retryable, answer, fmt.Errorf("kannel: sendsms answered %s: %s", resp.Status, answer)
	case code == http.StatusBadRequest:
		// Kannel's refusals of one message: "Missing receiver number,
		// rejected", "Number(s) has/have been denied by white- and/or
		// black-lists.", …
		return refused, answer, nil
	default:
		// 403 "Authorization failed for sendsms", 404 for a wrong path: no
		// message of the batch would get through.
		return fatal, answer, fmt.Errorf("kannel: sendsms answered %s: %s", resp.Status, answer)
	}
}

// Notify implements channels.Notifier. It makes one sendsms call per valid
// number, Config.Concurrency at a time. An invalid number fails at once,
// without a call. Messages Kannel accepted before a failure keep their Sent
// receipts; a retryable failure returns them with retry=true, so that only
// the others are sent again.
func (k *Kannel) Notify(ctx context.Context, b *channels.Batch) ([]channels.Receipt, bool, error) {
	receipts := make([]channels.Receipt, 0, len(b.Recipients))
	type job struct {
		i     int
		phone string
	}
	jobs := make([]job, 0, len(b.Recipients))
	for i, r := range b.Recipients {
		phone, ok := Phone(r.Address)
		if !ok {
			receipts = append(receipts, channels.Receipt{Index: i, State: warning.Failed, Reason: "invalid number: want 11 digits starting with 1"})
			continue
		}
		jobs = append(jobs, job{i, phone})
	}

	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var (
		mu          sync.Mutex
		wg          sync.WaitGroup
		firstRetry  error
		retries     int
		firstFatal  error
		sem         = make(chan struct{}, k.cfg.Concurrency)
		errStopping = errors.New("kannel: batch stopped")
	)
loop:
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Go(func() {
			defer func() { <-sem }()
			r := b.Recipients[j.i]
			text := k.Text(b, r)
			out, answer, err := k.send(ctx, j.phone, text, b.Ref(j.i))
			mu.Lock()
			defer mu.Unlock()
			switch out {
			case accepted:
				receipts = append(receipts, channels.Receipt{Index: j.i, State: warning.Sent, Segments: channels.SMSSegments(text)})
			case refused:
				receipts = append(receipts, channels.Receipt{Index: j.i, State: warning.Failed, Reason: "kannel: " + answer})
			case retryable:
				if context.Cause(ctx) == errStopping {
					return // cut short by a fatal answer elsewhere
				}
				retries++
				if firstRetry == nil {
					firstRetry = err
				}
			case fatal:
				if firstFatal == nil {
					firstFatal = err
					stop(errStopping)
				}
			}
		})
	}
	wg.Wait()
	sort.Slice(receipts, func(a, c int) bool { return receipts[a].Index < receipts[c].Index })
	switch {
	case firstFatal != nil:
		return receipts, false, firstFatal
	case firstRetry != nil:
		return receipts, true, fmt.Errorf("kannel: %d of %d messages not taken: %w", retries, len(jobs), firstRetry)
	case ctx.Err() != nil && len(receipts) < len(b.Recipients):
		// The caller's context ended before every message was handed over.
		return receipts, true, fmt.Errorf("kannel: %w", context.Cause(ctx))
	}
	return receipts, false, nil
}

// Phone returns addr as an 11-digit mainland mobile number, accepting a
// +86, 0086 or 86 prefix, and reports whether it is one.
func Phone(addr string) (string, bool) { return channels.MobilePhone(addr) }

// redact removes the query (with the password and the callback key) from
// the URL that net/http puts in its errors.
func redact(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	u, perr := url.Parse(ue.URL)
	if perr != nil {
		return fmt.Errorf("%s <redacted URL>: %w", ue.Op, ue.Err)
	}
	u.RawQuery, u.User = "", nil
	return &url.Error{Op: ue.Op, URL: u.String() + "?…", Err: ue.Err}
}

// keyOK compares a callback's key with ours in constant time.
func (k *Kannel) keyOK(got string) bool {
	return subtle.ConstantTimeCompare([]byte(got), []byte(k.cfg.CallbackKey)) == 1
}

// timeParam reads a unix-seconds parameter, or returns now.
func timeParam(s string) time.Time {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return time.Unix(n, 0)
	}
	return time.Now()
}
