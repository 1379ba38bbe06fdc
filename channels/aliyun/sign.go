package aliyun

import (
	"net/http"
	"net/url"

	"warngate/channels/internal/acs3"
)

// Algorithm is the V3 signature algorithm this package signs with.
const Algorithm = acs3.Algorithm

// CanonicalQuery returns q sorted by name, names and values percent-encoded:
// the query string both of the canonical request and of the request sent.
func CanonicalQuery(q url.Values) string { return acs3.CanonicalQuery(q) }

// hashHex is the lowercase hex SHA-256 of b (HashedRequestPayload).
func hashHex(b []byte) string { return acs3.HashHex(b) }

// signRequest signs req by the V3 mechanism (see acs3.Sign).
func signRequest(req *http.Request, keyID, secret string) { acs3.Sign(req, keyID, secret) }
