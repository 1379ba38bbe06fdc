// Package tcfake is what the fake Tencent Cloud providers
// (channels/tencent/fake, channels/tencentvoice/fake) share: verifying a
// request's TC3-HMAC-SHA256 signature as Tencent does, independently of the
// SDK.
package tcfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxSkew is how far X-TC-Timestamp may be from the fake's clock.
const MaxSkew = 5 * time.Minute

// Verify checks a request's TC3-HMAC-SHA256 signature as Tencent does,
// for the key (secretID, secretKey) of service (sms, vms) at now, and
// returns the error code Tencent answers, or "".
func Verify(r *http.Request, body []byte, secretID, secretKey, service string, now time.Time) string {
	alg, rest, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if alg != "TC3-HMAC-SHA256" {
		return "AuthFailure.InvalidAuthorization"
	}
	parts := map[string]string{}
	for _, kv := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		parts[k] = v
	}
	scope := strings.Split(parts["Credential"], "/")
	if len(scope) != 4 || scope[3] != "tc3_request" || parts["SignedHeaders"] == "" || parts["Signature"] == "" {
		return "AuthFailure.InvalidAuthorization"
	}
	id, date, scoped := scope[0], scope[1], scope[2]
	if id != secretID {
		return "AuthFailure.SecretIdNotFound"
	}
	ts, err := strconv.ParseInt(r.Header.Get("X-TC-Timestamp"), 10, 64)
	if err != nil {
		return "MissingParameter"
	}
	signed := strings.Split(parts["SignedHeaders"], ";")
	if !slices.Contains(signed, "content-type") || !slices.Contains(signed, "host") {
		return "AuthFailure.InvalidAuthorization"
	}
	headers := map[string]string{}
	for _, h := range signed {
		if h == "host" {
			headers[h] = r.Host
		} else {
			headers[h] = r.Header.Get(h)
		}
	}
	payload := body
	if r.Header.Get("X-TC-Content-SHA256") == "UNSIGNED-PAYLOAD" {
		payload = []byte("UNSIGNED-PAYLOAD")
	}
	want := Sign(r.Method, r.URL.EscapedPath(), r.URL.RawQuery, signed, headers, payload, ts, scoped, secretKey)
	if scoped != service || date != time.Unix(ts, 0).UTC().Format("2006-01-02") || !hmac.Equal([]byte(want), []byte(parts["Signature"])) {
		return "AuthFailure.SignatureFailure"
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return "AuthFailure.SignatureExpire"
	}
	return ""
}

// Sign computes a TC3-HMAC-SHA256 signature (lowercase hex) from the
// request's method, path, query, signed header names (in their order) with
// their values, payload, timestamp and service, independently of the SDK.
func Sign(method, path, query string, signed []string, headers map[string]string, payload []byte, timestamp int64, service, secretKey string) string {
	if path == "" {
		path = "/"
	}
	var h strings.Builder
	for _, n := range signed {
		h.WriteString(strings.ToLower(n) + ":" + strings.ToLower(strings.TrimSpace(headers[n])) + "\n")
	}
	canonical := strings.Join([]string{method, path, query, h.String(), strings.Join(signed, ";"), hashHex(payload)}, "\n")
	date := time.Unix(timestamp, 0).UTC().Format("2006-01-02")
	toSign := "TC3-HMAC-SHA256\n" + strconv.FormatInt(timestamp, 10) + "\n" + date + "/" + service + "/tc3_request\n" + hashHex([]byte(canonical))
	k := hmacSHA256([]byte("TC3"+secretKey), date)
	k = hmacSHA256(k, service)
	k = hmacSHA256(k, "tc3_request")
	return hex.EncodeToString(hmacSHA256(k, toSign))
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// hashHex returns the lowercase hex SHA-256 of b.
func hashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
