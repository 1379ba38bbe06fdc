package api

import (
	"crypto/hmac"
	"crypto/pbkdf2"
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
	"sync"
	"time"
)

// User is a bureau user who signs in to the console.
type User struct {
	Name    string // signs in; recorded in the audit trail
	Display string // shown in pages, e.g. 值班员
	Roles   []Role
	// PasswordHash is pbkdf2-sha256$<iterations>$<salt b64>$<hash b64> (HashPassword).
	PasswordHash string
}

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "warngate_session"

// CSRFHeader carries the session's CSRF token on every state-changing request
// that a session cookie authenticates.
const CSRFHeader = "X-CSRF-Token"

// PasswordIterations is the PBKDF2-SHA256 work factor of new hashes (OWASP 2023: 600,000;
// config refuses fewer than config.MinPasswordIterations).
const PasswordIterations = 600_000

// SessionOptions tune a UserStore.
type SessionOptions struct {
	// Secure marks the cookie Secure: set it when the public URL is https.
	Secure bool
	// TTL is how long a session lasts after sign-in. Default 8h, a duty shift.
	TTL time.Duration
	// FailDelay is how long a failed sign-in waits before it answers. Default 1s.
	FailDelay time.Duration
	// MaxFailures is how many failed sign-ins one address may make in
	// FailWindow before it is refused until the window passes. Default 20 in 10 min.
	MaxFailures int
	FailWindow  time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// UserStore authenticates bureau users: by password at sign-in, then by an
// HMAC-signed session cookie holding the user name and expiry. It keeps no
// session state, so API processes that share the key accept each other's
// sessions. A session cannot be revoked before it expires except by changing
// the user's password (the cookie binds a fingerprint of the hash) or the key.
type UserStore struct {
	users map[string]*userEntry
	key   []byte
	opt   SessionOptions
	dummy userEntry // checked for unknown names, so they take as long as wrong passwords

	mu       sync.Mutex
	failures map[string]*failureCount // by client address
}

type userEntry struct {
	p           Principal
	iterations  int
	salt, hash  []byte
	fingerprint string // of the hash: a new password ends old sessions
}

type failureCount struct {
	n     int
	until time.Time
}

var _ Users = (*UserStore)(nil)

// NewUserStore checks the users and returns a store that signs sessions with
// key (at least 32 bytes).
func NewUserStore(users []User, key []byte, o SessionOptions) (*UserStore, error) {
	if len(key) < 32 {
		return nil, errors.New("users: the session key must be at least 32 bytes")
	}
	if o.TTL <= 0 {
		o.TTL = 8 * time.Hour
	}
	if o.FailDelay <= 0 {
		o.FailDelay = time.Second
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 20
	}
	if o.FailWindow <= 0 {
		o.FailWindow = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &UserStore{users: map[string]*userEntry{}, key: key, opt: o, failures: map[string]*failureCount{}}
	var errs []error
	for _, u := range users {
		if _, dup := s.users[u.Name]; dup || u.Name == "" {
			errs = append(errs, fmt.Errorf("users: %q: names must be unique and not empty", u.Name))
			continue
		}
		it, salt, hash, err := parsePasswordHash(u.PasswordHash)
		if err != nil {
			errs = append(errs, fmt.Errorf("users: %s: password_hash: %w", u.Name, err))
			continue
		}
		display := u.Display
		if display == "" {
			display = u.Name
		}
		fp := sha256.Sum256([]byte(u.PasswordHash))
		s.users[u.Name] = &userEntry{
			p:          Principal{Name: u.Name, Display: display, Roles: u.Roles, NeedsApproval: true},
			iterations: it, salt: salt, hash: hash, fingerprint: base64.RawURLEncoding.EncodeToString(fp[:6]),
		}
	}
	// An unknown name costs what a known one does: the work factor of the first user.
	s.dummy = userEntry{iterations: PasswordIterations, salt: make([]byte, 16), hash: make([]byte, sha256.Size)}
	for _, u := range users {
		if e, ok := s.users[u.Name]; ok {
			s.dummy.iterations = e.iterations
			break
		}
	}
	return s, errors.Join(errs...)
}

// HashPassword returns the PBKDF2-SHA256 hash of password in the form the
// configuration takes.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("users: empty password")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	h, err := pbkdf2.Key(sha256.New, password, salt, PasswordIterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("users: hash: %w", err)
	}
	enc := base64.RawStdEncoding
	return passwordScheme + "$" + strconv.Itoa(PasswordIterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(h), nil
}

const passwordScheme = "pbkdf2-sha256"

// parsePasswordHash reads a hash that HashPassword made (config checks the
// configured ones in the same way, with messages for people).
func parsePasswordHash(s string) (iterations int, salt, hash []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != passwordScheme {
		return 0, nil, nil, errors.New("want pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>")
	}
	if iterations, err = strconv.Atoi(parts[1]); err != nil || iterations < 1 {
		return 0, nil, nil, fmt.Errorf("iterations %q: not a positive number", parts[1])
	}
	dec := base64.RawStdEncoding
	if salt, err = dec.DecodeString(strings.TrimRight(parts[2], "=")); err != nil || len(salt) == 0 {
		return 0, nil, nil, errors.New("salt: not base64")
	}
	if hash, err = dec.DecodeString(strings.TrimRight(parts[3], "=")); err != nil || len(hash) != sha256.Size {
		return 0, nil, nil, fmt.Errorf("hash: want %d bytes in base64", sha256.Size)
	}
	return iterations, salt, hash, nil
}

func (e *userEntry) check(password string) bool {
	h, err := pbkdf2.Key(sha256.New, password, e.salt, e.iterations, len(e.hash))
	return err == nil && subtle.ConstantTimeCompare(h, e.hash) == 1
}

// Sign-in refusals. They say the same for unknown users and wrong passwords.
var (
	ErrBadCredentials = errors.New("用户名或密码错误 (wrong user name or password)")
	ErrThrottled      = errors.New("登录失败次数过多，请稍后再试 (too many failed sign-ins; try again later)")
)

// SignIn checks a name and password from the address from. A refusal waits
// FailDelay and answers ErrBadCredentials whether or not the user exists.
func (s *UserStore) SignIn(name, password, from string) (Principal, error) {
	if s.throttled(from) {
		return Principal{}, ErrThrottled
	}
	u, ok := s.users[name]
	if !ok {
		s.dummy.check(password) // the same work as for a known name
	}
	if ok && u.check(password) {
		return u.p, nil
	}
	s.fail(from)
	time.Sleep(s.opt.FailDelay)
	return Principal{}, ErrBadCredentials
}

// Known reports whether a user of that name exists, for the audit trail.
func (s *UserStore) Known(name string) bool { _, ok := s.users[name]; return ok }

func (s *UserStore) throttled(from string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures[from]
	return f != nil && f.n >= s.opt.MaxFailures && s.opt.Now().Before(f.until)
}

func (s *UserStore) fail(from string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opt.Now()
	if len(s.failures) > 10000 { // bound the memory an address sweep can take
		for k, f := range s.failures {
			if now.After(f.until) {
				delete(s.failures, k)
			}
		}
	}
	f := s.failures[from]
	if f == nil || now.After(f.until) {
		f = &failureCount{}
		s.failures[from] = f
	}
	f.n++
	f.until = now.Add(s.opt.FailWindow)
}

// session is what the cookie says: who, until when, and which password.
type session struct {
	name, nonce, fingerprint string
	expires                  time.Time
}

func (s *UserStore) mac(purpose, payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// Cookie returns a new session cookie for a signed-in principal.
func (s *UserStore) Cookie(p Principal) *http.Cookie {
	u := s.users[p.Name]
	nonce := make([]byte, 12)
	rand.Read(nonce)
	exp := s.opt.Now().Add(s.opt.TTL)
	payload := strings.Join([]string{p.Name, strconv.FormatInt(exp.Unix(), 10),
		base64.RawURLEncoding.EncodeToString(nonce), u.fingerprint}, "|")
	value := base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." +
		base64.RawURLEncoding.EncodeToString(s.mac("session", payload))
	return &http.Cookie{Name: SessionCookie, Value: value, Path: "/", Expires: exp, MaxAge: int(s.opt.TTL / time.Second),
		HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteLaxMode}
}

// ClearCookie returns the cookie that ends a session in the browser.
func (s *UserStore) ClearCookie() *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.opt.Secure, SameSite: http.SameSiteLaxMode}
}

// Session returns the signed-in principal of a request and the CSRF token its
// forms and scripts must send back, without checking that token.
func (s *UserStore) Session(r *http.Request) (Principal, string, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return Principal{}, "", false
	}
	enc, sig, ok := strings.Cut(c.Value, ".")
	if !ok {
		return Principal{}, "", false
	}
	raw, err1 := base64.RawURLEncoding.DecodeString(enc)
	got, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || !hmac.Equal(got, s.mac("session", string(raw))) {
		return Principal{}, "", false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 4 {
		return Principal{}, "", false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || !s.opt.Now().Before(time.Unix(exp, 0)) {
		return Principal{}, "", false
	}
	u, ok := s.users[parts[0]]
	if !ok || subtle.ConstantTimeCompare([]byte(u.fingerprint), []byte(parts[3])) != 1 {
		return Principal{}, "", false
	}
	return u.p, base64.RawURLEncoding.EncodeToString(s.mac("csrf", string(raw))), true
}

// CheckCSRF reports whether token is the CSRF token of the request's session.
func (s *UserStore) CheckCSRF(r *http.Request, token string) bool {
	_, want, ok := s.Session(r)
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// Authenticate implements Users. A request that changes something (any
// method but GET, HEAD and OPTIONS) must carry the session's CSRF token in
// the X-CSRF-Token header and, when the browser sends an Origin, come from
// the gateway's own origin.
func (s *UserStore) Authenticate(r *http.Request) (Principal, bool) {
	p, csrf, ok := s.Session(r)
	if !ok {
		return Principal{}, false
	}
	if !safeMethod(r.Method) {
		if !sameOrigin(r) {
			return Principal{}, false
		}
		if t := r.Header.Get(CSRFHeader); t == "" || subtle.ConstantTimeCompare([]byte(t), []byte(csrf)) != 1 {
			return Principal{}, false
		}
	}
	return p, true
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin reports whether a browser request comes from a page of the
// host it is sent to. Requests without Origin (older browsers, programs)
// pass: the CSRF token still guards them.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
