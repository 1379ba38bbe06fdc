package cloudsms

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"warngate/channels"
)

// CheckSignName checks an approved signature as the configuration gives
// it: 2 to 20 characters, without the brackets the phone shows around it.
func CheckSignName(s string) error {
	n := utf8.RuneCountInString(s)
	switch {
	case n == 0:
		return errors.New("required: the approved signature without brackets, e.g. 昆明市应急管理局")
	case strings.ContainsAny(s, "【】[]"):
		return fmt.Errorf("%q: give the signature without brackets", s)
	case n < 2 || n > 20:
		return fmt.Errorf("%q has %d characters: a signature has 2 to 20", s, n)
	}
	return nil
}

// Settings are the settings every cloud SMS adapter has besides its
// account and its template, once the defaults are in.
type Settings struct {
	// Provider is the configuration section, e.g. "aliyun".
	Provider string
	// PlaceholderWord is the provider's word for a template's
	// placeholder, e.g. "variable".
	PlaceholderWord string

	// MaxChars bounds the whole message, 70 to 1000; DefaultMaxChars is
	// what leaving it out gives.
	MaxChars        int
	DefaultMaxChars int
	// MaxParamChars bounds each value of the template; 0 means no limit.
	MaxParamChars int
	// BatchSize is the most numbers per call, 1 to MaxBatch, the most the
	// provider's SendSms takes.
	BatchSize int
	MaxBatch  int
	// Timeout bounds one call; it may not be negative.
	Timeout time.Duration
	// CallbackToken (or CallbackTokenFile) and CallbackAllowFrom
	// authenticate report pushes: see channels.NewCallbackAuth.
	CallbackToken     channels.Secret
	CallbackTokenFile string
	CallbackAllowFrom []string
}

// Check returns how to authenticate report pushes, or else every problem
// of the configuration: errs, those the adapter found, then one for each
// bad setting of s, naming its field ("aliyun.batch_size") and what to do.
func (s Settings) Check(errs []error) (channels.CallbackAuth, error) {
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", s.Provider, field, fmt.Sprintf(format, args...)))
	}
	if s.MaxChars < 70 || s.MaxChars > 1000 {
		bad("max_chars", "%d is out of range: use 70 to 1000, or leave it out for %d", s.MaxChars, s.DefaultMaxChars)
	}
	if s.MaxParamChars < 0 {
		bad("max_param_chars", "%d is negative: use the template's limit per %s, or 0 for none", s.MaxParamChars, s.PlaceholderWord)
	}
	if s.BatchSize < 1 || s.BatchSize > s.MaxBatch {
		bad("batch_size", "%d is out of range: SendSms takes 1 to %d numbers", s.BatchSize, s.MaxBatch)
	}
	if s.Timeout < 0 {
		bad("timeout", "%s is negative: use a duration such as 30s", s.Timeout)
	}
	auth, aerrs := channels.NewCallbackAuth(s.Provider, s.CallbackToken, s.CallbackTokenFile, s.CallbackAllowFrom)
	return auth, errors.Join(append(errs, aerrs...)...)
}

// TemplateOrDefault returns the approved template's text and params (which
// field fills each placeholder) as configured, or defaultText and
// defaultParams() for what is not. Params without the text are an error:
// the text is what fits the message to its limits and counts its parts.
func TemplateOrDefault[P ~map[string]string | ~[]string](provider, text string, params P, defaultText string, defaultParams func() P) (string, P, error) {
	var err error
	if len(params) > 0 && text == "" {
		err = fmt.Errorf("%s.template: required with template_params: the approved template's text, e.g. %q, to fit and count the message", provider, defaultText)
	}
	if text == "" {
		text = defaultText
	}
	if len(params) == 0 {
		params = defaultParams()
	}
	return text, params, err
}
