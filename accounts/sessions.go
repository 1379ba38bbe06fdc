package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "warngate_session"

// CSRFHeader carries the session's CSRF token on every state-changing request
// that a session cookie authenticates.
const CSRFHeader = "X-CSRF-Token"

// Sessions live in Redis, one hash per session, under the user's hash tag
// so that a user's sessions and their index share a Cluster slot:
//
//	<prefix>:sess:{<user>}:<id> → user, csrf, expires (ms), from
//	<prefix>:sess:{<user>}      → set of the user's session ids
//
// The cookie holds the user name, the id and an HMAC of both, so a forged
// cookie is refused without a Redis round trip. Signing out deletes the
// session: a copied cookie stops working at once.

func (s *Store) sessionKey(user, id string) string {
	return s.opt.Prefix + ":sess:{" + user + "}:" + id
}
func (s *Store) sessionsKey(user string) string { return s.opt.Prefix + ":sess:{" + user + "}" }

type atomicCounter struct{ n atomic.Int64 }

// PasswordChecks is how many passwords this store has hashed, for tests that
// show a burst of sign-ins is refused before any work is done.
func (s *Store) PasswordChecks() int64 { return s.hashes.n.Load() }

// countScript counts one sign-in attempt for an address and a user name,
// before any password is checked, and returns both counts.
var countScript = redis.NewScript(`
local a = redis.call("INCR", KEYS[1])
if a == 1 then redis.call("PEXPIRE", KEYS[1], ARGV[1]) end
local u = redis.call("INCR", KEYS[2])
if u == 1 then redis.call("PEXPIRE", KEYS[2], ARGV[1]) end
return {a, u}
`)

func (s *Store) throttleKeys(name, from string) []string {
	return []string{s.opt.Prefix + ":signin:a:" + from, s.opt.Prefix + ":signin:u:" + name}
}

// SignIn checks a name and password from the address from. Attempts are
// counted first, per address and per name, shared by every API process; past
// the limit the answer is ErrThrottled without checking the password. At
// most HashSlots passwords are checked at once; a sign-in that cannot get a
// slot within HashWait is ErrBusy. A wrong password or an unknown name waits
// FailDelay and is ErrBadCredentials, the same for both.
func (s *Store) SignIn(ctx context.Context, name, password, from string) (Principal, error) {
	keys := s.throttleKeys(name, from)
	counts, err := countScript.Run(ctx, s.rdb, keys, s.opt.Window.Milliseconds()).Int64Slice()
	if err != nil {
		return Principal{}, fmt.Errorf("accounts: count sign-in: %w", err)
	}
	if counts[0] > int64(s.opt.MaxPerAddress) || counts[1] > int64(s.opt.MaxPerUser) {
		return Principal{}, ErrThrottled
	}
	wait, cancel := context.WithTimeout(ctx, s.opt.HashWait)
	defer cancel()
	select {
	case s.slots <- struct{}{}:
	case <-wait.Done():
		return Principal{}, ErrBusy
	}
	u, err := s.User(ctx, name)
	ok := false
	switch {
	case err == nil:
		h, perr := parsePasswordHash(u.PasswordHash)
		if perr == nil {
			s.hashes.n.Add(1)
			ok = h.check(password) && !u.Disabled
		}
	case errors.Is(err, ErrNoUser):
		s.hashes.n.Add(1)
		s.dummy.check(password) // the same work as for a known name
	default:
		<-s.slots
		return Principal{}, err
	}
	<-s.slots
	if ok {
		// A user who got in starts afresh; the address keeps its count
		// minus this success, so a shared office address is not locked out.
		pipe := s.rdb.Pipeline()
		pipe.Decr(ctx, keys[0])
		pipe.Del(ctx, keys[1])
		pipe.Exec(ctx)
		return u.Principal(), nil
	}
	select {
	case <-time.After(s.opt.FailDelay):
	case <-ctx.Done():
	}
	return Principal{}, ErrBadCredentials
}

func (s *Store) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.opt.Key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(payload))
	return m.Sum(nil)[:18]
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// StartSession records a session for a signed-in user and returns its cookie.
func (s *Store) StartSession(ctx context.Context, p Principal, from string) (*http.Cookie, error) {
	u, err := s.User(ctx, p.Name)
	if err != nil {
		return nil, fmt.Errorf("accounts: start session: %w", err)
	}
	id := randomString(24)
	exp := s.opt.Now().Add(s.opt.SessionTTL)
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.sessionKey(p.Name, id), "user", p.Name, "csrf", randomString(24), "expires", exp.UnixMilli(), "from", from,
		"pw", s.passwordTag(u))
	pipe.PExpire(ctx, s.sessionKey(p.Name, id), s.opt.SessionTTL)
	pipe.SAdd(ctx, s.sessionsKey(p.Name), id)
	pipe.PExpire(ctx, s.sessionsKey(p.Name), s.opt.SessionTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("accounts: start session: %w", err)
	}
	payload := base64.RawURLEncoding.EncodeToString([]byte(p.Name)) + "." + id
	return &http.Cookie{Name: SessionCookie, Value: payload + "." + base64.RawURLEncoding.EncodeToString(s.mac("session", payload)),
		Path: "/", Expires: exp, MaxAge: int(s.opt.SessionTTL / time.Second),
		HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteLaxMode}, nil
}

// passwordTag names the password a session was started with, without
// telling anything of it: a session lasts only while its user's password
// stays the same, however it is changed (a reset through the API ends
// sessions at once; a bootstrap user's new password in the configuration
// takes effect at the next start, and must end theirs too).
func (s *Store) passwordTag(u User) string {
	return base64.RawURLEncoding.EncodeToString(s.mac("password", u.PasswordHash)[:12])
}

// ClearCookie returns the cookie that ends a session in the browser.
func (s *Store) ClearCookie() *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteLaxMode}
}

// sessionRef reads the user and session id a cookie names, checking its MAC.
func (s *Store) sessionRef(r *http.Request) (user, id string, ok bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", "", false
	}
	i := strings.LastIndexByte(c.Value, '.')
	if i < 0 {
		return "", "", false
	}
	payload, sig := c.Value[:i], c.Value[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac("session", payload)) {
		return "", "", false
	}
	enc, id, ok := strings.Cut(payload, ".")
	name, err := base64.RawURLEncoding.DecodeString(enc)
	if !ok || err != nil || len(name) == 0 || id == "" {
		return "", "", false
	}
	return string(name), id, true
}

// Session returns the signed-in principal of a request and the CSRF token
// its forms and scripts must send back, without checking that token. A
// session that was ended, or whose user was disabled, removed or changed
// since, is no session.
func (s *Store) Session(r *http.Request) (Principal, string, bool) {
	name, id, ok := s.sessionRef(r)
	if !ok {
		return Principal{}, "", false
	}
	ctx := r.Context()
	vals, err := s.rdb.HMGet(ctx, s.sessionKey(name, id), "user", "csrf", "expires", "pw").Result()
	if err != nil || vals[0] == nil {
		return Principal{}, "", false
	}
	user, _ := vals[0].(string)
	csrf, _ := vals[1].(string)
	expStr, _ := vals[2].(string)
	pw, _ := vals[3].(string)
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if user != name || csrf == "" || err != nil || !s.opt.Now().Before(time.UnixMilli(exp)) {
		return Principal{}, "", false
	}
	u, err := s.User(ctx, name)
	if err != nil || u.Disabled || !hmac.Equal([]byte(pw), []byte(s.passwordTag(u))) {
		return Principal{}, "", false
	}
	return u.Principal(), csrf, true
}

// EndSession deletes the session of a request, wherever its cookie is.
func (s *Store) EndSession(ctx context.Context, r *http.Request) error {
	name, id, ok := s.sessionRef(r)
	if !ok {
		return nil
	}
	pipe := s.rdb.TxPipeline()
	pipe.Del(ctx, s.sessionKey(name, id))
	pipe.SRem(ctx, s.sessionsKey(name), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("accounts: end session: %w", err)
	}
	return nil
}

// revokeScript deletes every session of a user.
var revokeScript = redis.NewScript(`
local ids = redis.call("SMEMBERS", KEYS[1])
local n = 0
for _, id in ipairs(ids) do n = n + redis.call("DEL", KEYS[1] .. ":" .. id) end
redis.call("DEL", KEYS[1])
return n
`)

// RevokeSessions ends every session of a user and returns how many were live.
func (s *Store) RevokeSessions(ctx context.Context, name string) (int, error) {
	n, err := revokeScript.Run(ctx, s.rdb, []string{s.sessionsKey(name)}).Int()
	if err != nil {
		return 0, fmt.Errorf("accounts: revoke sessions of %s: %w", name, err)
	}
	return n, nil
}

// CheckCSRF reports whether token is the CSRF token of the request's session.
func (s *Store) CheckCSRF(r *http.Request, token string) bool {
	_, want, ok := s.Session(r)
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// Authenticate returns the principal behind a request: an API token in
// Authorization: Bearer, or a console session. A request that changes
// something (any method but GET, HEAD and OPTIONS) on a session must carry
// the session's CSRF token in X-CSRF-Token and, when the browser sends an
// Origin, come from the gateway's own origin.
func (s *Store) Authenticate(r *http.Request) (Principal, bool) {
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
		return s.tokenPrincipal(r.Context(), tok)
	}
	p, csrf, ok := s.Session(r)
	if !ok {
		return Principal{}, false
	}
	if !SafeMethod(r.Method) {
		if !SameOrigin(r) {
			return Principal{}, false
		}
		if t := r.Header.Get(CSRFHeader); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(csrf)) != 1 {
			return Principal{}, false
		}
	}
	return p, true
}

// SafeMethod reports whether a method changes nothing.
func SafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// SameOrigin reports whether a browser request comes from a page of the
// host it is sent to. Requests without Origin (older browsers, programs)
// pass: the CSRF token still guards them.
func SameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
