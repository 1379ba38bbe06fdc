package broadcast

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"warngate/channels"
)

// Signer signs requests to the platform and verifies the platform's
// callbacks. HMACSigner is the stand-in for the SM2 signatures of GY/T 385
// platforms (GD/J 089's EBDS signature file); an SM2 signer plugs in here.
type Signer interface {
	// Sign adds the signature headers to req, whose body is body.
	Sign(req *http.Request, body []byte) error
	// Verify checks a request from the platform; an error means it does not
	// prove it comes from the platform.
	Verify(req *http.Request, body []byte) error
}

// Signature headers.
const (
	HeaderPlatform  = "X-EB-Platform"
	HeaderTimestamp = "X-EB-Timestamp"
	HeaderNonce     = "X-EB-Nonce"
	HeaderSignature = "X-EB-Signature"
)

// HMACSigner signs with HMAC-SHA256 under a key shared with the platform.
// The signed string is
//
//	METHOD \n escaped path \n platform id \n unix seconds \n nonce \n hex(SHA-256(body))
//
// and the signature is its HMAC in lower-case hex. Verify accepts a
// timestamp within MaxSkew of now and each nonce once while it is fresh.
type HMACSigner struct {
	platformID string
	key        []byte
	now        channels.Clock
	// MaxSkew is how far a callback's timestamp may be from now. Default 5 minutes.
	MaxSkew time.Duration

	mu     sync.Mutex
	nonces map[string]time.Time
	pruned time.Time
}

var _ Signer = (*HMACSigner)(nil)

// NewHMACSigner returns a signer for platformID; now may be nil for time.Now.
func NewHMACSigner(platformID string, key []byte, now channels.Clock) *HMACSigner {
	if now == nil {
		now = time.Now
	}
	return &HMACSigner{platformID: platformID, key: key, now: now, MaxSkew: 5 * time.Minute, nonces: map[string]time.Time{}}
}

// StringToSign is what HMACSigner signs; exported so a platform (or a test
// server) can check a signature independently.
func StringToSign(method, path, platformID, timestamp, nonce string, body []byte) string {
	sum := sha256.Sum256(body)
	return method + "\n" + path + "\n" + platformID + "\n" + timestamp + "\n" + nonce + "\n" + hex.EncodeToString(sum[:])
}

func (s *HMACSigner) mac(str string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(str))
	return hex.EncodeToString(m.Sum(nil))
}

// Sign implements Signer.
func (s *HMACSigner) Sign(req *http.Request, body []byte) error {
	nb := make([]byte, 8)
	if _, err := rand.Read(nb); err != nil {
		return fmt.Errorf("broadcast: nonce: %w", err)
	}
	ts := strconv.FormatInt(s.now().Unix(), 10)
	nonce := hex.EncodeToString(nb)
	req.Header.Set(HeaderPlatform, s.platformID)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, s.mac(StringToSign(req.Method, req.URL.EscapedPath(), s.platformID, ts, nonce, body)))
	return nil
}

// Verify implements Signer.
func (s *HMACSigner) Verify(req *http.Request, body []byte) error {
	ts, nonce, sig := req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderNonce), req.Header.Get(HeaderSignature)
	if ts == "" || nonce == "" || sig == "" {
		return errors.New("missing signature headers")
	}
	if req.Header.Get(HeaderPlatform) != s.platformID {
		return errors.New("platform id does not match")
	}
	want := s.mac(StringToSign(req.Method, req.URL.EscapedPath(), s.platformID, ts, nonce, body))
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errors.New("signature does not match")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("timestamp is not unix seconds")
	}
	now := s.now()
	at := time.Unix(sec, 0)
	if at.Before(now.Add(-s.MaxSkew)) || at.After(now.Add(s.MaxSkew)) {
		return fmt.Errorf("timestamp %s is more than %s from now", at.UTC().Format(time.RFC3339), s.MaxSkew)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.pruned) > s.MaxSkew {
		for n, t := range s.nonces {
			if now.Sub(t) > 2*s.MaxSkew {
				delete(s.nonces, n)
			}
		}
		s.pruned = now
	}
	if _, seen := s.nonces[nonce]; seen {
		return errors.New("nonce already used")
	}
	s.nonces[nonce] = now
	return nil
}
