// Package acsfake is what the fake Alibaba Cloud providers
// (channels/aliyun/fake, channels/aliyunvoice/fake) share: verifying a
// request's V3 signature (ACS3-HMAC-SHA256) as Alibaba does, independently
// of the adapters' signer, with Alibaba's answers when it does not pass.
package acsfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// MaxSkew is how far x-acs-date may be from the fake's clock.
const MaxSkew = 15 * time.Minute

// Error is an answer of Alibaba's gateway to a request that does not pass.
type Error struct {
	Status        int
	Code, Message string
}

func fail(status int, code, msg string) *Error { return &Error{status, code, msg} }

// Verifier checks the requests of one AccessKey. Its zero value with
// KeyID and Secret set is ready; it is safe for concurrent use.
type Verifier struct {
	KeyID, Secret string
	// Now is the fake's clock. Default time.Now.
	Now func() time.Time

	mu     sync.Mutex
	nonces map[string]time.Time
}

func (v *Verifier) now() time.Time {
	if v.Now == nil {
		return time.Now()
	}
	return v.Now()
}

// Verify checks a request's V3 signature as Alibaba does: the
// Authorization header, the signed headers, the body's hash, the signature,
// the date and the nonce, which may not come twice. It returns the error
// Alibaba answers, or nil.
func (v *Verifier) Verify(r *http.Request, body []byte) *Error {
	auth := r.Header.Get("Authorization")
	alg, rest, _ := strings.Cut(auth, " ")
	if alg != "ACS3-HMAC-SHA256" {
		return fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards: want Authorization: ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=….")
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		parts[k] = v
	}
	cred, signed, sig := parts["Credential"], parts["SignedHeaders"], parts["Signature"]
	if cred == "" || signed == "" || sig == "" {
		return fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards: Credential, SignedHeaders and Signature are required.")
	}
	if cred != v.KeyID {
		return fail(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	names := strings.Split(signed, ";")
	for k := range r.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-acs-") && !slices.Contains(names, lk) {
			return fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards: header "+lk+" is not signed.")
		}
	}
	for _, h := range []string{"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"} {
		if !slices.Contains(names, h) {
			return fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards: "+h+" must be signed.")
		}
	}
	if !sort.StringsAreSorted(names) {
		return fail(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards: SignedHeaders must be sorted.")
	}
	if got := r.Header.Get("x-acs-content-sha256"); got != hashHex(body) {
		return fail(http.StatusBadRequest, "SignatureDoesNotMatch", "Specified signature does not match our calculation: x-acs-content-sha256 is not the hash of the body.")
	}
	want := Sign(r.Method, r.URL.EscapedPath(), r.URL.Query(), canonicalValues(r, names), body, v.Secret)
	if !hmac.Equal([]byte(sig), []byte(want)) {
		return fail(http.StatusBadRequest, "SignatureDoesNotMatch", "Specified signature does not match our calculation.")
	}
	date, err := time.Parse("2006-01-02T15:04:05Z", r.Header.Get("x-acs-date"))
	now := v.now()
	if err != nil || date.Sub(now) > MaxSkew || now.Sub(date) > MaxSkew {
		return fail(http.StatusBadRequest, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
	}
	nonce := r.Header.Get("x-acs-signature-nonce")
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.nonces == nil {
		v.nonces = map[string]time.Time{}
	}
	if _, used := v.nonces[nonce]; used {
		return fail(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	if len(v.nonces) > 10000 {
		for n, at := range v.nonces {
			if now.Sub(at) > 2*MaxSkew {
				delete(v.nonces, n)
			}
		}
	}
	v.nonces[nonce] = now
	return nil
}

func canonicalValues(r *http.Request, names []string) map[string]string {
	out := make(map[string]string, len(names))
	for _, n := range names {
		if n == "host" {
			out[n] = r.Host
			continue
		}
		out[n] = strings.TrimSpace(strings.Join(r.Header.Values(n), ","))
	}
	return out
}

// Sign computes an ACS3-HMAC-SHA256 signature (lowercase hex) of a request
// from its method, escaped path, query, signed headers (lowercase name →
// value) and body, independently of the adapter's own signer.
func Sign(method, path string, query url.Values, headers map[string]string, body []byte, secret string) string {
	if path == "" {
		path = "/"
	}
	keys := make([]string, 0, len(query))
	for k := range query {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var q []string
	for _, k := range keys {
		vs := slices.Clone(query[k])
		sort.Strings(vs)
		for _, v := range vs {
			q = append(q, encode(k)+"="+encode(v))
		}
	}
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	var h strings.Builder
	for _, n := range names {
		h.WriteString(n + ":" + strings.TrimSpace(headers[n]) + "\n")
	}
	canonical := strings.Join([]string{method, path, strings.Join(q, "&"), h.String(), strings.Join(names, ";"), hashHex(body)}, "\n")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("ACS3-HMAC-SHA256\n" + hashHex([]byte(canonical))))
	return hex.EncodeToString(mac.Sum(nil))
}

// encode is RFC 3986 percent-encoding by way of net/url, with Alibaba's
// three corrections.
func encode(s string) string {
	e := url.QueryEscape(s)
	return strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(e)
}

// hashHex returns the lowercase hex SHA-256 of b.
func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
