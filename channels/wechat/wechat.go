// Package wechat delivers warnings through WeChat: template messages from an
// official account (服务号) to residents who follow it, and application
// messages from a WeCom (企业微信) app to officials. It also takes the official
// account's TEMPLATESENDJOBFINISH events as delivery reports.
//
// It uses subpackages of github.com/silenceper/wechat/v2 (credential, cache,
// util, officialaccount/message, work/message) and never the SDK's root
// package, whose init() turns on global debug logging. Access tokens are
// fetched by the SDK's credential package and cached in our Redis through
// RedisCache.
//
// The SDK is pointed at a base URL (a test or demo server) with
// util.SetURIModifier and util.DefaultHTTPClient. Both are package-level
// variables of the SDK, so one process has one WeChat base URL: the last New
// with a non-empty base_url sets it for every official account and WeCom app
// in the process. That is fine for warngate, which has one of each.
//
// Message sends are made by this package itself, with the SDK's request and
// response types: the SDK's own Send methods take no context, put the access
// token into their error strings and flatten HTTP statuses and error codes
// into text, which would make classification parse error messages. Token
// fetching stays in the SDK.
//
// Notify may return receipts together with an error: recipients in the
// receipts were handed to WeChat before the failure and must be recorded as
// such; the others were not handed over.
//
// The package must not learn about queues, the ledger or policy.
package wechat

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Real API hosts; a configured base URL replaces them.
const (
	OfficialAccountHost = "https://api.weixin.qq.com"
	WorkHost            = "https://qyapi.weixin.qq.com"
)

// checkBaseURL reports a malformed base_url.
func checkBaseURL(section, raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s.base_url: %q is not an http(s) URL; leave it empty for WeChat itself, or give e.g. http://127.0.0.1:9090", section, raw)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("%s.base_url: %q must not have a query or fragment", section, raw)
	}
	return nil
}

// secretParams matches credentials in URLs and error strings.
var secretParams = regexp.MustCompile(`(?i)(access_token|corpsecret|secret|appsecret)=[^&\s"',;]*`)

// redactor removes credentials from text before it goes into an error or a log.
type redactor struct {
	mu      sync.RWMutex
	secrets []string
}

func (r *redactor) add(s ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range s {
		if len(v) >= 4 {
			r.secrets = append(r.secrets, v)
		}
	}
}

func (r *redactor) clean(s string) string {
	s = secretParams.ReplaceAllString(s, "$1=REDACTED")
	r.mu.RLock()
	defer r.mu.RUnlock()
	for _, v := range r.secrets {
		s = strings.ReplaceAll(s, v, "REDACTED")
	}
	return s
}

// Limits on what we read back from WeChat.
const maxResponse = 1 << 20

// errTimeout is the cause of a provider call that took too long.
var errTimeout = errors.New("wechat: provider call timed out")

// callResult is what one API call returned.
type callResult struct {
	body []byte
	// unreadable is set when WeChat answered 2xx but the body could not be
	// read or decoded: the request was taken, so it must not be sent again.
	unreadable bool
}

// batchError is a failure of a whole call, classified.
type batchError struct {
	msg   string
	retry bool
	cause error // safe to expose: never carries a URL or a secret
}

func (e *batchError) Error() string { return e.msg }
func (e *batchError) Unwrap() error { return e.cause }

func retryable(format string, args ...any) *batchError {
	return &batchError{msg: fmt.Sprintf(format, args...), retry: true}
}

func permanent(format string, args ...any) *batchError {
	return &batchError{msg: fmt.Sprintf(format, args...)}
}

// postJSON posts v to rawURL (which carries the access token) and returns
// the body of a 2xx answer. Transport errors, 5xx and 429 are retryable;
// other statuses are not. Errors never contain the URL's query.
func postJSON(ctx context.Context, hc *http.Client, timeout time.Duration, rawURL, what string, v any, red *redactor) (callResult, *batchError) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return callResult{}, permanent("%s: encode request: %v", what, err)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, &buf)
	if err != nil {
		return callResult{}, permanent("%s: %s", what, red.clean(err.Error()))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	resp, err := hc.Do(req)
	if err != nil {
		be := retryable("%s: %s", what, red.clean(transportError(err)))
		if c := context.Cause(ctx); c != nil {
			be.cause = c
		}
		return callResult{}, be
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return callResult{}, retryable("%s: WeChat answered %s", what, resp.Status)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return callResult{}, permanent("%s: WeChat answered %s", what, resp.Status)
	}
	if rerr != nil {
		return callResult{unreadable: true}, nil
	}
	return callResult{body: body}, nil
}

// transportError describes a failed request without its URL.
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// errcodeText pulls "errcode=N" out of the SDK's token errors, which are
// plain strings.
var errcodeText = regexp.MustCompile(`errcode=(-?\d+)`)
var statusText = regexp.MustCompile(`statusCode=(\d+)`)

// tokenError classifies an error from the SDK's token fetch. Nothing was
// sent, so a garbled answer may be retried.
func tokenError(what string, err error, red *redactor) *batchError {
	msg := red.clean(err.Error())
	if m := errcodeText.FindStringSubmatch(msg); m != nil {
		switch m[1] {
		case "-1", "45009", "45011", "45033":
			return retryable("%s: access token: %s", what, msg)
		}
		return permanent("%s: access token: %s (check app id, secret and the IP allowlist)", what, msg)
	}
	if m := statusText.FindStringSubmatch(msg); m != nil {
		if m[1] == "429" || m[1][0] == '5' {
			return retryable("%s: access token: %s", what, msg)
		}
		return permanent("%s: access token: %s", what, msg)
	}
	be := retryable("%s: access token: %s", what, msg)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		be.cause = err
	}
	return be
}

// accessToken asks the SDK for a token (cached, or fetched through the
// SDK's HTTP hooks), bounded by timeout.
func accessToken(ctx context.Context, h interface {
	GetAccessTokenContext(context.Context) (string, error)
}, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()
	return h.GetAccessTokenContext(ctx)
}

// Token error codes: the cached token is invalid or expired.
func tokenInvalid(code int64) bool { return code == 40001 || code == 42001 || code == 40014 }

// pool runs jobs with bounded concurrency and stops starting new ones after
// the first batch error.
type pool struct {
	sem  chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	err  *batchError
	stop chan struct{}
}

func newPool(n int) *pool {
	return &pool{sem: make(chan struct{}, n), stop: make(chan struct{})}
}

// run starts fn unless the pool has failed or ctx is done; it reports
// whether fn was started.
func (p *pool) run(ctx context.Context, fn func() *batchError) bool {
	select {
	case p.sem <- struct{}{}:
	case <-p.stop:
		return false
	case <-ctx.Done():
		be := retryable("%v", context.Cause(ctx))
		be.cause = context.Cause(ctx)
		p.fail(be)
		return false
	}
	select {
	case <-p.stop:
		<-p.sem
		return false
	default:
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer func() { <-p.sem }()
		if err := fn(); err != nil {
			p.fail(err)
		}
	}()
	return true
}

func (p *pool) fail(err *batchError) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
		close(p.stop)
		return
	}
	// A permanent failure outranks a retryable one: retrying cannot help.
	if p.err.retry && !err.retry {
		p.err = err
	}
}

func (p *pool) wait() *batchError {
	p.wg.Wait()
	return p.err
}

// refID is a short stable id of a delivery, for the providers'
// de-duplication fields (client_msg_id).
func refID(ref string) string {
	h := fnv.New128a()
	io.WriteString(h, ref)
	return "wg" + hex.EncodeToString(h.Sum(nil))
}
