package channels

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// Providers whose pushes carry no signature (Alibaba Cloud, Tencent Cloud)
// are authenticated by a token in the push URL, an address allow-list, or both.

// CallbackAuth admits a push that carries the token (?token=) and comes
// from an allowed address, for each of the two that is configured.
type CallbackAuth struct {
	token string
	nets  []netip.Prefix
}

// NewCallbackAuth checks a provider's callback settings, naming each bad
// field with what to fix. The token is optional when allow is set; it is
// given as callback_token (inline or ${ENV_VAR}) or in callback_token_file,
// as ResolveSecret reads them.
func NewCallbackAuth(provider string, token Secret, tokenFile string, allow []string) (CallbackAuth, []error) {
	var errs []error
	tok, tokErr := ResolveSecret(provider, "callback_token", token, tokenFile, "")
	if tokErr != nil {
		errs = append(errs, tokErr)
	}
	a := CallbackAuth{token: tok}
	field := "callback_token"
	if tokenFile != "" {
		field = "callback_token_file"
	}
	if tok != "" && len(tok) < 16 {
		errs = append(errs, fmt.Errorf("%s.%s: too short (%d characters): use at least 16 random characters, e.g. from `openssl rand -hex 16`", provider, field, len(tok)))
	}
	if strings.ContainsAny(tok, "&#?/ %+") {
		errs = append(errs, fmt.Errorf("%s.%s: use only letters, digits, '-' and '_': it travels in a URL", provider, field))
	}
	for _, s := range allow {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			ip, ierr := netip.ParseAddr(s)
			if ierr != nil {
				errs = append(errs, fmt.Errorf("%s.callback_allow_from: %q is neither a CIDR (100.104.0.0/16) nor an IP address", provider, s))
				continue
			}
			p = netip.PrefixFrom(ip, ip.BitLen())
		}
		a.nets = append(a.nets, p.Masked())
	}
	if tokErr == nil && tok == "" && len(allow) == 0 {
		errs = append(errs, fmt.Errorf("%s.callback_token: required unless callback_allow_from is set: the push carries no signature, so set a random token (here, as ${ENV_VAR}, or in callback_token_file) and put it in the push URL as ?token=…", provider))
	}
	return a, errs
}

// Allow reports whether a callback request passes.
func (a CallbackAuth) Allow(r *http.Request) bool {
	if a.token == "" && len(a.nets) == 0 {
		return false
	}
	if a.token != "" && subtle.ConstantTimeCompare([]byte(r.URL.Query().Get("token")), []byte(a.token)) != 1 {
		return false
	}
	if len(a.nets) > 0 {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return false
		}
		ip := ap.Addr().Unmap()
		for _, n := range a.nets {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	return true
}
