// Package kannel sends SMS through a Kannel gateway's sendsms HTTP interface
// and takes Kannel's delivery reports (a dlr-url per call) and the replies
// phones send back (an sms-service get-url). Kannel reaches the carriers'
// SMS centres itself (SMPP, CIMD, EMI/UCP). With Config.Transport "box" the
// adapter instead connects to bearerbox as smsbox does and speaks Kannel's
// box protocol (see boxlink.go); replies still come through smsbox. It must
// not learn about queues, the ledger or policy.
//
// Recipients of a batch who get the same text (residents; an official's
// text carries their own link) go many numbers a call: Kannel's `to` takes
// numbers separated by spaces and sends each its own message. The dlr-url
// of such a call names the call, and Kannel fills in each report's number
// (%p); before the call, the adapter writes (call, number) → delivery into
// the gateway's index (Index), so a report is found again even when the
// call's answer never came. A call of one number carries the delivery's
// ref itself, as does every call with Config.Single.
//
// Kannel needs, besides a sendsms-user for Username and Password, an
// sms-service whose get-url sends replies to /callbacks/kannel/mo, and in
// its smsbox group, so that nothing is lost:
//
//	group = smsbox
//	immediate-sendsms-reply = true  # the answer names the numbers a list refused
//	http-request-retry = 10         # a report the gateway could not record (503) is sent again
//	http-queue-delay = 2
//	max-pending-requests = 64       # report callbacks at once (default 512: hundreds of open connections)
//
//	group = sms-service
//	keyword = default
//	catch-all = true
//	max-messages = 0   # never text an answer back to the phone
//	get-url = "http://gateway:8080/callbacks/kannel/mo?key=<callback_key>&from=%p&to=%P&text=%a&ts=%T&smsc=%i&coding=%c&charset=%C"
//
// Without immediate-sendsms-reply, Kannel answers a call of several
// numbers "0: Accepted for delivery" even when a white- or black-list
// refused some of them: use Config.Single with such a Kannel.
package kannel

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"warngate/channels"
	"warngate/warning"
)

// Defaults for Config.
//
// DefaultNumbersPerCall: `warngate bench --providers` against one smsbox
// found Kannel taking SMS fastest at about 200 numbers a call with 4 calls
// of a batch at once; larger calls keep smsbox's single sendsms thread
// busy longer without taking more.
//
// DefaultConcurrency: with dispatch.concurrency.sms at 8 batches, 4 calls a
// batch keep 32 sendsms calls in flight, which one smsbox serves one after
// the other; more calls took the SMS no faster and slowed the delivery
// reports. Raise it for several smsboxes behind a balancer.
const (
	DefaultNumbersPerCall = 200
	DefaultConcurrency    = 4
	DefaultTimeout        = 10 * time.Second
)

// MaxNumbersPerCall bounds Config.NumbersPerCall: a batch has at most 1000
// recipients, and 1000 numbers make a 12 kB sendsms URL.
const MaxNumbersPerCall = 1000

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
	// NumbersPerCall is how many numbers one sendsms call carries, 1 to
	// MaxNumbersPerCall. Zero means DefaultNumbersPerCall.
	NumbersPerCall int `yaml:"numbers_per_call"`
	// Single sends one number per sendsms call, each call's dlr-url naming
	// its delivery: for a Kannel that must see one number a call, such as
	// one that refuses numbers by white- or black-list without
	// immediate-sendsms-reply (its answer to a call of several numbers then
	// hides which it refused). About ten times slower.
	Single bool `yaml:"single"`
	// Concurrency is how many sendsms calls of one batch run at once.
	// Zero means DefaultConcurrency.
	Concurrency int `yaml:"concurrency"`
	// Timeout bounds one sendsms call. Zero means DefaultTimeout.
	Timeout time.Duration `yaml:"timeout"`
	// SMSC, when set, routes every message to that smsc-id.
	SMSC string `yaml:"smsc"`
	// Transport is how messages reach Kannel: "sendsms" (the default),
	// HTTP calls to smsbox; or "box", a connection of the gateway's own to
	// bearerbox's smsbox-port, as smsbox has, on which bearerbox
	// acknowledges each message and sends its delivery reports back. The
	// box transport skips smsbox's work per message and per report; it
	// needs BoxAddress and From (bearerbox has no global-sender), and no
	// SendSMSURL, Username, Password or DLRURL. Replies from phones still
	// come through smsbox's sms-service.
	Transport string `yaml:"transport"`
	// BoxAddress is bearerbox's smsbox-port, host:port, e.g.
	// 127.0.0.1:13001 (bearerbox must let the gateway connect:
	// box-allow-ip).
	BoxAddress string `yaml:"box_address"`
	// BoxID is the box id (smsbox-id) every worker's connection gives
	// bearerbox: bearerbox sends a message's reports to a box with the id
	// it was sent with, so any worker records them. Empty means BoxID.
	BoxID string `yaml:"box_id"`
}

// Transports.
const (
	TransportSendSMS = "sendsms"
	TransportBox     = "box"
)

// Index is where the adapter notes, before a call of several numbers,
// which delivery each (call, number) names, so that Kannel's reports,
// which name only the call and the number, are found again through
// channels.ReportSink.Resolve; and which tells, after a call that did not
// answer, which of its deliveries have been reported since. The gateway's
// ledger is one.
type Index interface {
	// IndexProviderIDs remembers which delivery each id names, under
	// provider.
	IndexProviderIDs(ctx context.Context, provider string, ids map[string]warning.Ref) error
	// Reported tells, for each delivery, whether a report (delivered or
	// failed) has been recorded.
	Reported(ctx context.Context, refs []warning.Ref) ([]bool, error)
}

// IndexName is the provider name under which calls' numbers are indexed
// and resolved.
const IndexName = "kannel"

// Kannel sends through one smsbox and takes its reports and replies.
type Kannel struct {
	cfg     Config
	sendsms *url.URL
	dlrBase string
	hc      *http.Client
	fresh   *http.Client // hc without kept-alive connections, for calls of several numbers
	index   Index
	log     *slog.Logger
	reports recorder
	// box is the connection to bearerbox with the box transport; nil with
	// sendsms.
	box   *boxLink
	boxID string
}

var (
	_ channels.Notifier       = (*Kannel)(nil)
	_ channels.ReportReceiver = (*Kannel)(nil)
	_ channels.ReplyReceiver  = (*Kannel)(nil)
	_ channels.SMSTexter      = (*Kannel)(nil)
)

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`)

// New checks cfg and returns the adapter. Every problem of cfg is reported,
// each naming its field and what to do. index is required unless
// cfg.Single is set.
func New(cfg Config, hc *http.Client, index Index, log *slog.Logger) (*Kannel, error) {
	if hc == nil {
		return nil, errors.New("kannel: no HTTP client given")
	}
	if index == nil && !cfg.Single {
		return nil, errors.New("kannel: no index given: calls of several numbers need one to find their reports again")
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
	box := cfg.Transport == TransportBox
	switch cfg.Transport {
	case "", TransportSendSMS, TransportBox:
	default:
		bad("transport", "%q: use %q (HTTP calls to smsbox, the default) or %q (a connection to bearerbox's smsbox-port)", cfg.Transport, TransportSendSMS, TransportBox)
	}
	switch {
	case box && (cfg.Single || cfg.NumbersPerCall != 0):
		bad("numbers_per_call", "with transport: box every number is its own message: leave numbers_per_call and single out")
	case cfg.Single && cfg.NumbersPerCall > 1:
		bad("numbers_per_call", "%d with single: true: give one of them (single sends one number a call)", cfg.NumbersPerCall)
	case cfg.Single:
		cfg.NumbersPerCall = 1
	case cfg.NumbersPerCall == 0:
		cfg.NumbersPerCall = DefaultNumbersPerCall
	case cfg.NumbersPerCall < 0 || cfg.NumbersPerCall > MaxNumbersPerCall:
		bad("numbers_per_call", "%d is out of range: use 1 to %d, or leave it out for %d", cfg.NumbersPerCall, MaxNumbersPerCall, DefaultNumbersPerCall)
	}
	sendsms, err := checkURL(cfg.SendSMSURL)
	switch {
	case box:
		checkBox(cfg, bad)
	case cfg.SendSMSURL == "":
		bad("sendsms_url", "required: smsbox's sendsms address, e.g. http://127.0.0.1:13013/cgi-bin/sendsms")
	case err != nil:
		bad("sendsms_url", "%v: use an http:// or https:// address such as http://127.0.0.1:13013/cgi-bin/sendsms", err)
	case sendsms.RawQuery != "":
		bad("sendsms_url", "must not carry a query: give username and password as their own settings")
	}
	if cfg.Username == "" && !box {
		bad("username", "required: the username of a sendsms-user group in kannel.conf")
	}
	var password string
	if !box || cfg.Password != "" || cfg.PasswordFile != "" {
		password, err = channels.ResolveSecret("kannel", "password", cfg.Password, cfg.PasswordFile, "the password of that sendsms-user group")
		if err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.From != "" && !channels.Digits(cfg.From) {
		bad("from", "%q is not a service number: use digits only, e.g. 12379", cfg.From)
	}
	if err := checkSignature(cfg.Signature); err != nil {
		bad("signature", "%v", err)
	}
	dlr, err := checkURL(cfg.DLRURL)
	switch {
	case box && cfg.DLRURL == "":
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
	k := &Kannel{cfg: cfg, sendsms: sendsms, dlrBase: base, hc: hc, fresh: withoutKeepAlive(hc), index: index, log: log.With("provider", "kannel")}
	if box {
		k.boxID = cmp.Or(cfg.BoxID, BoxID)
		k.box = newBoxLink(cfg.BoxAddress, k.boxID, k.log)
	}
	return k, nil
}

// checkBox checks the settings of the box transport.
func checkBox(cfg Config, bad func(field, format string, args ...any)) {
	if cfg.BoxAddress == "" {
		bad("box_address", "required with transport: box: bearerbox's smsbox-port, e.g. 127.0.0.1:13001")
	} else if host, port, err := net.SplitHostPort(cfg.BoxAddress); err != nil || host == "" || port == "" {
		bad("box_address", "%q is not host:port: give bearerbox's smsbox-port, e.g. 127.0.0.1:13001", cfg.BoxAddress)
	}
	if cfg.From == "" {
		bad("from", "required with transport: box (bearerbox has no global-sender): the service number, e.g. 12379")
	}
	if cfg.BoxID != "" && (strings.ContainsAny(cfg.BoxID, " \t\r\n") || len(cfg.BoxID) > 64) {
		bad("box_id", "%q: a box id is one word of at most 64 characters, e.g. warngate", cfg.BoxID)
	}
}

// withoutKeepAlive returns hc dialling a connection for every request.
// net/http sends a GET again by itself when a kept-alive connection closes
// before the answer; smsbox may have taken the call by then, and a call of
// several numbers sent twice texts every one of them twice. A request on a
// connection of its own is never sent again; such calls are few enough a
// second that a connect each costs nothing. A RoundTripper other than an
// *http.Transport is used as it is.
func withoutKeepAlive(hc *http.Client) *http.Client {
	var t *http.Transport
	switch rt := hc.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport)
	case *http.Transport:
		t = rt
	default:
		return hc
	}
	c := *hc
	tr := t.Clone()
	tr.DisableKeepAlives = true
	c.Transport = tr
	return &c
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

// SMSText implements channels.SMSTexter: the signature in 【】 and the
// composed warning.
func (k *Kannel) SMSText(b *channels.Batch, r warning.Recipient) string {
	return channels.SMSText(k.cfg.Signature, b, r)
}

// dlrMask asks Kannel for the reports that change a delivery: 1
// (delivered), 2 (undelivered) and 16 (rejected by the SMS centre). Types
// 4 (buffered) and 8 (accepted by the SMS centre) change nothing, and each
// would cost Kannel a callback per message.
const dlrMask = "19"

// escDLR escapes s for a dlr-url. Kannel replaces %-codes in it (%d is the
// report type, %p the number, %A the SMS centre's answer, %T its time) and
// keeps unknown ones except that it reads any %X: so every % of our own
// escaping is doubled, which Kannel turns back into a single %.
func escDLR(s string) string { return strings.ReplaceAll(url.QueryEscape(s), "%", "%%") }

// refDLRURL returns the dlr-url of a call to one number: it names the
// delivery.
func (k *Kannel) refDLRURL(ref warning.Ref) string {
	return k.dlrBase + "ref=" + escDLR(ref.String()) + "&type=%d&key=" + escDLR(string(k.cfg.CallbackKey)) + "&reply=%A&ts=%T"
}

// callDLRURL returns the dlr-url of a call to several numbers: it names the
// call, and Kannel fills in each report's number.
func (k *Kannel) callDLRURL(call string) string {
	return k.dlrBase + "call=" + escDLR(call) + "&to=%p&type=%d&key=" + escDLR(string(k.cfg.CallbackKey)) + "&reply=%A&ts=%T"
}

// indexID is what a report of a call to several numbers is indexed under.
func indexID(call, phone string) string { return call + "/" + phone }

// callPrefix returns a prefix for the names of one Notify's calls: the
// batch and a random token, so that calls of two attempts at a batch never
// share a name even when they group its recipients differently.
func callPrefix(b *channels.Batch) string {
	var r [4]byte
	rand.Read(r[:])
	return b.ID + "/" + strconv.FormatUint(uint64(r[0])|uint64(r[1])<<8|uint64(r[2])<<16|uint64(r[3])<<24, 36)
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
