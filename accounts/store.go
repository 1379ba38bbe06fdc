package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// User is a bureau user: one who signs in to the console and may hold API
// tokens.
type User struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Roles       []Role `json:"roles"`
	// Division is the 12-digit code of the division the user answers for;
	// empty means the whole jurisdiction.
	Division string `json:"division,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
	// PasswordHash is pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>.
	PasswordHash string    `json:"password_hash"`
	Created      time.Time `json:"created,omitzero"`
	Updated      time.Time `json:"updated,omitzero"`
	UpdatedBy    string    `json:"updated_by,omitempty"`
	// Bootstrap users come from the configuration file: they cannot be
	// changed at run time, only there.
	Bootstrap bool `json:"-"`
}

// Principal is the user as a signed-in principal.
func (u User) Principal() Principal {
	display := u.DisplayName
	if display == "" {
		display = u.Name
	}
	return Principal{Kind: KindUser, Name: u.Name, Display: display, Roles: slices.Clone(u.Roles), Division: u.Division}
}

// Errors callers branch on.
var (
	ErrNoUser        = errors.New("no such user")
	ErrUserExists    = errors.New("a user of that name exists")
	ErrBootstrapUser = errors.New("this user is defined in the configuration file; change it there")
	ErrNoToken       = errors.New("no such token")
	// ErrBadCredentials and ErrThrottled say the same for unknown users and wrong passwords.
	ErrBadCredentials = errors.New("用户名或密码错误 (wrong user name or password)")
	ErrThrottled      = errors.New("登录尝试过多，请稍后再试 (too many sign-in attempts; try again later)")
	ErrBusy           = errors.New("登录繁忙，请几秒后再试 (sign-in is busy; try again in a few seconds)")
)

// FieldError names the field of a request that is wrong and what to fix.
type FieldError struct {
	Field, Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Options tune a Store. Zero values take the defaults named.
type Options struct {
	// Prefix starts every key. Default "wg".
	Prefix string
	// Key signs session cookies (at least 32 bytes), so that a forged
	// cookie is refused without asking Redis.
	Key []byte
	// Secure marks cookies Secure: set it when the public URL is https.
	Secure bool
	// SessionTTL is how long a session lasts after sign-in. Default 8h, a duty shift.
	SessionTTL time.Duration
	// FailDelay is how long a refused sign-in waits before it answers. Default 1s.
	FailDelay time.Duration
	// MaxPerAddress and MaxPerUser are how many sign-in attempts one
	// address, and one user name, may make in Window before more are
	// refused unchecked. Defaults 20 and 10 in 10 minutes. Attempts are
	// counted before any password is checked, in Redis, so every API
	// process counts together.
	MaxPerAddress, MaxPerUser int
	Window                    time.Duration
	// HashSlots bounds the password checks in flight in this process;
	// HashWait is how long a sign-in waits for a slot before it is refused
	// as busy. Defaults 2 and 300ms: a burst is answered at once instead of
	// queueing behind seconds of PBKDF2 work.
	HashSlots int
	HashWait  time.Duration
	// Iterations is the work factor of passwords set at run time. Default
	// PasswordIterations; tests lower it.
	Iterations int
	// Covers reports whether division a contains division b ("" is
	// everything). Tokens may not reach beyond their user's division.
	Covers func(a, b string) bool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = "wg"
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = 8 * time.Hour
	}
	if o.FailDelay <= 0 {
		o.FailDelay = time.Second
	}
	if o.MaxPerAddress <= 0 {
		o.MaxPerAddress = 20
	}
	if o.MaxPerUser <= 0 {
		o.MaxPerUser = 10
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Minute
	}
	if o.HashSlots <= 0 {
		o.HashSlots = 2
	}
	if o.HashWait <= 0 {
		o.HashWait = 300 * time.Millisecond
	}
	if o.Iterations <= 0 {
		o.Iterations = PasswordIterations
	}
	if o.Covers == nil {
		o.Covers = func(a, b string) bool { return a == "" || a == b }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store keeps users, sessions and tokens in Redis. It is safe for concurrent
// use; API processes sharing a Redis and a key share every session.
type Store struct {
	rdb   redis.UniversalClient
	opt   Options
	boot  map[string]User
	dummy passwordHash // checked for unknown names, so they cost what a known one does
	slots chan struct{}

	usedMu sync.Mutex
	used   map[string]time.Time // token id → when this process last wrote its use

	// hashes counts password checks, for tests of the throttle.
	hashes atomicCounter
}

// New returns a store over rdb with the configuration's bootstrap users.
// It reports every bootstrap user it could not read.
func New(rdb redis.UniversalClient, boot []User, o Options) (*Store, error) {
	if len(o.Key) < 32 {
		return nil, errors.New("accounts: the session key must be at least 32 bytes")
	}
	o.setDefaults()
	s := &Store{rdb: rdb, opt: o, boot: map[string]User{}, slots: make(chan struct{}, o.HashSlots), used: map[string]time.Time{}}
	s.dummy = passwordHash{iterations: o.Iterations, salt: make([]byte, 16), hash: make([]byte, 32)}
	var errs []error
	for i, u := range boot {
		if _, dup := s.boot[u.Name]; dup || u.Name == "" {
			errs = append(errs, fmt.Errorf("users[%d]: %q: names must be unique and not empty", i, u.Name))
			continue
		}
		h, err := parsePasswordHash(u.PasswordHash)
		if err != nil {
			errs = append(errs, fmt.Errorf("users[%d] (%s): password_hash: %w", i, u.Name, err))
			continue
		}
		if len(s.boot) == 0 {
			s.dummy.iterations = h.iterations // an unknown name costs what the first user's does
		}
		u.Bootstrap = true
		s.boot[u.Name] = u
	}
	return s, errors.Join(errs...)
}

func (s *Store) usersKey() string { return s.opt.Prefix + ":users" }

// User returns a user by name: a bootstrap user, or one added at run time.
func (s *Store) User(ctx context.Context, name string) (User, error) {
	if u, ok := s.boot[name]; ok {
		return u, nil
	}
	raw, err := s.rdb.HGet(ctx, s.usersKey(), name).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	if err != nil {
		return User{}, fmt.Errorf("accounts: load user %s: %w", name, err)
	}
	var u User
	if err := json.Unmarshal([]byte(raw), &u); err != nil {
		return User{}, fmt.Errorf("accounts: decode user %s: %w", name, err)
	}
	return u, nil
}

// Users lists every user, bootstrap users first, each group by name.
func (s *Store) Users(ctx context.Context) ([]User, error) {
	out := make([]User, 0, len(s.boot))
	for _, u := range s.boot {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	all, err := s.rdb.HGetAll(ctx, s.usersKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("accounts: list users: %w", err)
	}
	runtime := make([]User, 0, len(all))
	for name, raw := range all {
		var u User
		if _, boot := s.boot[name]; boot || json.Unmarshal([]byte(raw), &u) != nil {
			continue
		}
		runtime = append(runtime, u)
	}
	slices.SortFunc(runtime, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return append(out, runtime...), nil
}

// Known reports whether a user of that name exists, for the audit trail.
func (s *Store) Known(ctx context.Context, name string) bool {
	_, err := s.User(ctx, name)
	return err == nil
}

// NewUser is what an administrator gives to add a user.
type NewUser struct {
	Name, DisplayName, Password string
	Roles                       []Role
	Division                    string
}

// CheckName reports whether a user name is usable: 1 to 64 letters, digits,
// '.', '_' or '-', and not a name the audit trail gives the gateway's own actions.
func CheckName(name string) error {
	if name == "" || len(name) > 64 {
		return errors.New("use 1 to 64 letters, digits, '.', '_' or '-'")
	}
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return errors.New("use 1 to 64 letters, digits, '.', '_' or '-'")
		}
	}
	if ReservedNames[name] {
		return fmt.Errorf("%q is reserved for the gateway's own actions; choose another", name)
	}
	return nil
}

// ReservedNames name actors the audit trail already uses.
var ReservedNames = map[string]bool{"admin": true, "cap": true, "api": true, "system": true}

// checkUser reports every problem of a user's fields at once.
func checkUser(name, display, password string, roles []Role, setPassword bool) error {
	var errs []error
	if err := CheckName(name); err != nil {
		errs = append(errs, &FieldError{"name", err.Error()})
	}
	if n := len([]rune(display)); n > 64 {
		errs = append(errs, &FieldError{"display_name", fmt.Sprintf("%d characters; at most 64", n)})
	}
	if setPassword && len([]rune(password)) < MinPassword {
		errs = append(errs, &FieldError{"password", fmt.Sprintf("at least %d characters", MinPassword)})
	}
	if len(roles) == 0 {
		errs = append(errs, &FieldError{"roles", "give at least one of issuer, approver, responder, admin, viewer"})
	}
	for i, r := range roles {
		if _, err := ParseRole(string(r)); err != nil {
			errs = append(errs, &FieldError{fmt.Sprintf("roles[%d]", i), err.Error()})
		}
	}
	return errors.Join(errs...)
}

// createUserScript adds a user unless the name is taken.
var createUserScript = redis.NewScript(`
if redis.call("HEXISTS", KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
return 1
`)

// CreateUser adds a user. Field problems come back as *FieldError, joined.
func (s *Store) CreateUser(ctx context.Context, nu NewUser, by string) (User, error) {
	if err := checkUser(nu.Name, nu.DisplayName, nu.Password, nu.Roles, true); err != nil {
		return User{}, err
	}
	if _, boot := s.boot[nu.Name]; boot {
		return User{}, fmt.Errorf("user %q: %w", nu.Name, ErrUserExists)
	}
	hash, err := hashPassword(nu.Password, s.opt.Iterations)
	if err != nil {
		return User{}, err
	}
	now := s.opt.Now()
	u := User{Name: nu.Name, DisplayName: nu.DisplayName, Roles: dedupRoles(nu.Roles), Division: nu.Division,
		PasswordHash: hash, Created: now, Updated: now, UpdatedBy: by}
	doc, _ := json.Marshal(u)
	ok, err := createUserScript.Run(ctx, s.rdb, []string{s.usersKey()}, u.Name, doc).Int()
	if err != nil {
		return User{}, fmt.Errorf("accounts: create user %s: %w", u.Name, err)
	}
	if ok == 0 {
		return User{}, fmt.Errorf("user %q: %w", u.Name, ErrUserExists)
	}
	return u, nil
}

// UserChange is an administrator's change to a user; nil fields stay.
type UserChange struct {
	DisplayName *string
	Password    *string
	Roles       *[]Role
	Division    *string
	Disabled    *bool
}

// replaceUserScript writes a user's new record only if nobody changed it meanwhile.
var replaceUserScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == "" then redis.call("HDEL", KEYS[1], ARGV[1]) else redis.call("HSET", KEYS[1], ARGV[1], ARGV[3]) end
return 1
`)

// ErrConflict is returned when a user changed between reading and writing.
var ErrConflict = errors.New("the user was changed by someone else at the same time; load it and try again")

// UpdateUser applies a change and returns the user before and after. A new
// password, a disabling or a change of roles or division ends the user's
// sessions, so that nobody keeps rights they no longer have.
func (s *Store) UpdateUser(ctx context.Context, name string, ch UserChange, by string) (before, after User, err error) {
	if _, boot := s.boot[name]; boot {
		return User{}, User{}, fmt.Errorf("user %q: %w", name, ErrBootstrapUser)
	}
	raw, err := s.rdb.HGet(ctx, s.usersKey(), name).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, User{}, fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	if err != nil {
		return User{}, User{}, fmt.Errorf("accounts: load user %s: %w", name, err)
	}
	if err := json.Unmarshal([]byte(raw), &before); err != nil {
		return User{}, User{}, fmt.Errorf("accounts: decode user %s: %w", name, err)
	}
	after = before
	after.Roles = slices.Clone(before.Roles)
	if ch.DisplayName != nil {
		after.DisplayName = *ch.DisplayName
	}
	if ch.Roles != nil {
		after.Roles = dedupRoles(*ch.Roles)
	}
	if ch.Division != nil {
		after.Division = *ch.Division
	}
	if ch.Disabled != nil {
		after.Disabled = *ch.Disabled
	}
	pw := ""
	if ch.Password != nil {
		pw = *ch.Password
	}
	if err := checkUser(name, after.DisplayName, pw, after.Roles, ch.Password != nil); err != nil {
		return User{}, User{}, err
	}
	if ch.Password != nil {
		if after.PasswordHash, err = hashPassword(pw, s.opt.Iterations); err != nil {
			return User{}, User{}, err
		}
	}
	after.Updated, after.UpdatedBy = s.opt.Now(), by
	doc, _ := json.Marshal(after)
	ok, err := replaceUserScript.Run(ctx, s.rdb, []string{s.usersKey()}, name, raw, doc).Int()
	if err != nil {
		return User{}, User{}, fmt.Errorf("accounts: update user %s: %w", name, err)
	}
	if ok == 0 {
		return User{}, User{}, ErrConflict
	}
	if ch.Password != nil || (after.Disabled && !before.Disabled) || !slices.Equal(after.Roles, before.Roles) || after.Division != before.Division {
		if _, err := s.RevokeSessions(ctx, name); err != nil {
			return before, after, err
		}
	}
	return before, after, nil
}

// DeleteUser removes a user added at run time, ends their sessions and
// revokes their tokens.
func (s *Store) DeleteUser(ctx context.Context, name string) (User, error) {
	if _, boot := s.boot[name]; boot {
		return User{}, fmt.Errorf("user %q: %w", name, ErrBootstrapUser)
	}
	raw, err := s.rdb.HGet(ctx, s.usersKey(), name).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, fmt.Errorf("user %q: %w", name, ErrNoUser)
	}
	if err != nil {
		return User{}, fmt.Errorf("accounts: load user %s: %w", name, err)
	}
	var u User
	json.Unmarshal([]byte(raw), &u)
	ok, err := replaceUserScript.Run(ctx, s.rdb, []string{s.usersKey()}, name, raw, "").Int()
	if err != nil {
		return User{}, fmt.Errorf("accounts: delete user %s: %w", name, err)
	}
	if ok == 0 {
		return User{}, ErrConflict
	}
	if _, err := s.RevokeSessions(ctx, name); err != nil {
		return u, err
	}
	tokens, err := s.Tokens(ctx)
	if err != nil {
		return u, err
	}
	for _, t := range tokens {
		if t.Owner == name {
			if err := s.RevokeToken(ctx, t.ID); err != nil && !errors.Is(err, ErrNoToken) {
				return u, err
			}
		}
	}
	return u, nil
}

func dedupRoles(rs []Role) []Role {
	out := make([]Role, 0, len(rs))
	for _, r := range Roles { // in the canonical order
		if slices.Contains(rs, r) {
			out = append(out, r)
		}
	}
	for _, r := range rs { // unknown ones stay, for checkUser to name
		if !slices.Contains(Roles, r) && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}
