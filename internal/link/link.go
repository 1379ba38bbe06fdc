// Package link signs and checks the short links that officials open from
// their SMS or WeCom message to confirm receipt, tick their checklist or work
// their call list. A link names one delivery (warning, channel, recipient)
// and when it stops working; an HMAC makes it unforgeable. It holds no state.
package link

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"warngate/warning"
)

// Errors a caller answers differently.
var (
	ErrMalformed = errors.New("this link is damaged: open the full link from your message")
	ErrForged    = errors.New("this link was not issued by the gateway")
	ErrExpired   = errors.New("this link has expired: ask the duty office for a new one")
)

// Signer makes and checks links with one key.
type Signer struct {
	key []byte
	now func() time.Time
}

// New returns a signer; now may be nil for time.Now. The key must be at
// least 16 bytes.
func New(key []byte, now func() time.Time) (*Signer, error) {
	if len(key) < 16 {
		return nil, errors.New("link: key must be at least 16 bytes")
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{key: key, now: now}, nil
}

// macLen is the signature length in bytes: 96 bits keep a link short and
// out of reach of guessing.
const macLen = 12

// Token returns the signed token for a delivery, valid until expires.
// Shape: <warning>.<channel>.<recipient>.<expiry base36>.<mac base64url>
func (s *Signer) Token(ref warning.Ref, expires time.Time) string {
	body := ref.WarningID + "." + string(ref.Channel) + "." + ref.RecipientID + "." + strconv.FormatInt(expires.Unix(), 36)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body))
}

func (s *Signer) mac(body string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(body))
	return m.Sum(nil)[:macLen]
}

// Check verifies a token and returns its delivery.
func (s *Signer) Check(token string) (warning.Ref, error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return warning.Ref{}, ErrMalformed
	}
	body, sig := token[:i], token[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return warning.Ref{}, ErrMalformed
	}
	if !hmac.Equal(got, s.mac(body)) {
		return warning.Ref{}, ErrForged
	}
	parts := strings.Split(body, ".")
	if len(parts) != 4 {
		return warning.Ref{}, ErrMalformed
	}
	exp, err := strconv.ParseInt(parts[3], 36, 64)
	if err != nil {
		return warning.Ref{}, ErrMalformed
	}
	if !s.now().Before(time.Unix(exp, 0)) {
		return warning.Ref{}, ErrExpired
	}
	ch, err := warning.ParseChannel(parts[1])
	if err != nil {
		return warning.Ref{}, ErrMalformed
	}
	return warning.Ref{WarningID: parts[0], Channel: ch, RecipientID: parts[2]}, nil
}
