// Package acs3 signs requests to Alibaba Cloud's APIs by the V3
// mechanism (ACS3-HMAC-SHA256), for every Alibaba Cloud adapter
// (channels/aliyun for SMS, channels/aliyunvoice for calls).
package acs3

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Algorithm is the V3 signature algorithm this package signs with.
const Algorithm = "ACS3-HMAC-SHA256"

// percentEncode encodes s by RFC 3986, as Alibaba Cloud canonicalises: only
// A-Z a-z 0-9 - _ . ~ stay as they are, a space is %20.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte("0123456789ABCDEF"[c>>4])
		b.WriteByte("0123456789ABCDEF"[c&15])
	}
	return b.String()
}

// CanonicalQuery returns q sorted by name, names and values percent-encoded:
// the query string both of the canonical request and of the request sent.
func CanonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, percentEncode(k)+"="+percentEncode(v))
		}
	}
	return strings.Join(parts, "&")
}

// HashHex is the lowercase hex SHA-256 of b (HashedRequestPayload).
func HashHex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// Sign signs req by the V3 mechanism: the canonical request of the
// method, the path, the canonical query, the host, content-type and x-acs-*
// headers (lowercase, sorted, values trimmed) and the body's hash; the
// string to sign is the algorithm and the canonical request's hash; the
// signature is the hex HMAC-SHA256 of it keyed with the AccessKey secret.
// req must already carry its x-acs-* headers, x-acs-content-sha256 included.
func Sign(req *http.Request, keyID, secret string) {
	names, canon := canonicalHeaders(req)
	path := req.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	creq := req.Method + "\n" + path + "\n" + req.URL.RawQuery + "\n" + canon + "\n" +
		strings.Join(names, ";") + "\n" + req.Header.Get("x-acs-content-sha256")
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(Algorithm + "\n" + HashHex([]byte(creq))))
	req.Header.Set("Authorization", Algorithm+" Credential="+keyID+",SignedHeaders="+strings.Join(names, ";")+
		",Signature="+hex.EncodeToString(mac.Sum(nil)))
}

// canonicalHeaders returns the signed header names, sorted, and their
// canonical form "name:value\n"….
func canonicalHeaders(req *http.Request) ([]string, string) {
	vals := map[string]string{"host": req.URL.Host}
	if req.Host != "" {
		vals["host"] = req.Host
	}
	for k, v := range req.Header {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-acs-") || lk == "content-type" {
			vals[lk] = strings.TrimSpace(strings.Join(v, ","))
		}
	}
	names := make([]string, 0, len(vals))
	for k := range vals {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, k := range names {
		b.WriteString(k + ":" + vals[k] + "\n")
	}
	return names, b.String()
}

// Nonce returns a fresh x-acs-signature-nonce.
func Nonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
