// Package tcapi is how the Tencent Cloud adapters (channels/tencent for
// SMS, channels/tencentvoice for calls) drive the official SDK
// (tencentcloud-sdk-go): the endpoint as configured, one client per call
// whose transport binds the call's context and goes through our
// http.Client, and what came back when the SDK fails.
package tcapi

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"
)

// Endpoint splits "host[:port]" or "scheme://host[:port]".
func Endpoint(s string) (scheme, host string, err error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, perr := url.Parse(s)
	if perr != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", "", fmt.Errorf("%q is not a host or a bare URL", s)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", "", fmt.Errorf("scheme %q: use https or http", u.Scheme)
	}
	return u.Scheme, u.Host, nil
}

// Transport carries one call's requests through an http.Client with the
// call's context, and remembers what came back.
type Transport struct {
	Ctx    context.Context
	HC     *http.Client
	Status int
	Err    error
}

// RoundTrip implements http.RoundTripper.
func (c *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.HC.Do(req.WithContext(c.Ctx))
	if err != nil {
		c.Err = err
		return nil, err
	}
	c.Status = resp.StatusCode
	return resp, nil
}

// clientMu guards the SDK's client construction: it sets the standard
// logger's flags, which we put back.
var clientMu sync.Mutex

// Client returns a client made by newClient for the key, region and
// endpoint, whose every request goes through tr. The SDK's own timeout is
// a backstop behind tr's context.
func Client[C interface {
	WithHttpTransport(http.RoundTripper) *common.Client
}](
	newClient func(*common.Credential, string, *profile.ClientProfile) (C, error),
	secretID, secretKey, region, scheme, host string, timeout time.Duration, tr *Transport) C {
	cp := profile.NewClientProfile()
	cp.HttpProfile.Endpoint = host
	cp.HttpProfile.Scheme = strings.ToUpper(scheme)
	cp.HttpProfile.ReqMethod = http.MethodPost
	cp.HttpProfile.ReqTimeout = int(timeout/time.Second) + 5
	clientMu.Lock()
	flags := log.Flags()
	c, _ := newClient(common.NewCredential(secretID, secretKey), region, cp)
	log.SetFlags(flags)
	clientMu.Unlock()
	c.WithHttpTransport(tr)
	return c
}
