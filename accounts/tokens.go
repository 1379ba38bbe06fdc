package accounts

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Token is an API token: named, acting for a user with some of that user's
// roles inside that user's division, until it expires or is revoked. Only
// a hash of its secret is kept; the secret is shown once, when it is made.
type Token struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Owner    string    `json:"owner"` // the user it acts for; "admin" for the bootstrap token's
	Roles    []Role    `json:"roles"`
	Division string    `json:"division,omitempty"`
	Expires  time.Time `json:"expires"`
	Created  time.Time `json:"created"`
	Hash     string    `json:"hash"` // SHA-256 of the secret, hex
	LastUsed time.Time `json:"last_used,omitzero"`
}

// MaxTokenLife is how far ahead a token may expire.
const MaxTokenLife = 366 * 24 * time.Hour

// tokenPrefix starts every token, so that logs and secret scanners know one.
const tokenPrefix = "wgt_"

func (s *Store) tokensKey() string { return s.opt.Prefix + ":tokens" }
func (s *Store) usedKey() string   { return s.opt.Prefix + ":tokens:used" }

// TokenRequest is what a user asks for when making a token.
type TokenRequest struct {
	Name     string
	Roles    []Role
	Division string
	Expires  time.Time
}

// CreateToken makes a token acting for owner. Its roles must be roles the
// owner holds and its division inside the owner's; field problems come back
// as *FieldError, joined. It returns the token and its secret, the one time
// the secret is known.
func (s *Store) CreateToken(ctx context.Context, owner Principal, req TokenRequest) (Token, string, error) {
	var errs []error
	if n := len([]rune(strings.TrimSpace(req.Name))); n == 0 || n > 64 {
		errs = append(errs, &FieldError{"name", "required: 1 to 64 characters, e.g. cap-feed"})
	}
	if len(req.Roles) == 0 {
		errs = append(errs, &FieldError{"roles", "give at least one role the token may use"})
	}
	for i, r := range req.Roles {
		if _, err := ParseRole(string(r)); err != nil {
			errs = append(errs, &FieldError{fmt.Sprintf("roles[%d]", i), err.Error()})
		} else if !owner.Can(r) {
			errs = append(errs, &FieldError{fmt.Sprintf("roles[%d]", i), fmt.Sprintf("you do not hold the %s role, so a token of yours cannot", r)})
		}
	}
	if !s.opt.Covers(owner.Division, req.Division) {
		errs = append(errs, &FieldError{"division", fmt.Sprintf("%s is outside your division %s", req.Division, owner.Division)})
	}
	now := s.opt.Now()
	switch {
	case req.Expires.IsZero():
		errs = append(errs, &FieldError{"expires", "required: RFC 3339, e.g. " + now.Add(90*24*time.Hour).Format(time.RFC3339)})
	case !req.Expires.After(now):
		errs = append(errs, &FieldError{"expires", "is in the past"})
	case req.Expires.After(now.Add(MaxTokenLife)):
		errs = append(errs, &FieldError{"expires", "at most a year ahead; make a new token then"})
	}
	if err := errors.Join(errs...); err != nil {
		return Token{}, "", err
	}
	t := Token{ID: strings.ToLower(randomString(8))[:10], Name: strings.TrimSpace(req.Name), Owner: owner.Name,
		Roles: dedupRoles(req.Roles), Division: req.Division, Expires: req.Expires, Created: now}
	t.ID = strings.NewReplacer("-", "x", "_", "y").Replace(t.ID)
	secret := randomString(32)
	sum := sha256.Sum256([]byte(secret))
	t.Hash = hex.EncodeToString(sum[:])
	doc, _ := json.Marshal(t)
	if err := s.rdb.HSet(ctx, s.tokensKey(), t.ID, doc).Err(); err != nil {
		return Token{}, "", fmt.Errorf("accounts: store token: %w", err)
	}
	return t, tokenPrefix + t.ID + "_" + secret, nil
}

// Tokens lists every token with its last use, newest first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	pipe := s.rdb.Pipeline()
	all := pipe.HGetAll(ctx, s.tokensKey())
	used := pipe.HGetAll(ctx, s.usedKey())
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("accounts: list tokens: %w", err)
	}
	out := make([]Token, 0, len(all.Val()))
	for id, raw := range all.Val() {
		var t Token
		if json.Unmarshal([]byte(raw), &t) != nil {
			continue
		}
		if ms, ok := used.Val()[id]; ok {
			var n int64
			fmt.Sscan(ms, &n)
			t.LastUsed = time.UnixMilli(n)
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Token) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Token returns one token.
func (s *Store) Token(ctx context.Context, id string) (Token, error) {
	raw, err := s.rdb.HGet(ctx, s.tokensKey(), id).Result()
	if errors.Is(err, redis.Nil) {
		return Token{}, fmt.Errorf("token %q: %w", id, ErrNoToken)
	}
	if err != nil {
		return Token{}, fmt.Errorf("accounts: load token %s: %w", id, err)
	}
	var t Token
	if err := json.Unmarshal([]byte(raw), &t); err != nil {
		return Token{}, fmt.Errorf("accounts: decode token %s: %w", id, err)
	}
	return t, nil
}

// RevokeToken deletes a token: it stops working at once.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	pipe := s.rdb.TxPipeline()
	n := pipe.HDel(ctx, s.tokensKey(), id)
	pipe.HDel(ctx, s.usedKey(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("accounts: revoke token %s: %w", id, err)
	}
	if n.Val() == 0 {
		return fmt.Errorf("token %q: %w", id, ErrNoToken)
	}
	return nil
}

// tokenPrincipal checks a bearer token: known, unexpired, its secret right,
// and its user still there and enabled. The token's roles are cut to those
// its user still holds.
func (s *Store) tokenPrincipal(ctx context.Context, value string) (Principal, bool) {
	rest, ok := strings.CutPrefix(value, tokenPrefix)
	if !ok {
		return Principal{}, false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || id == "" || secret == "" {
		return Principal{}, false
	}
	t, err := s.Token(ctx, id)
	if err != nil {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(t.Hash)) != 1 || !s.opt.Now().Before(t.Expires) {
		return Principal{}, false
	}
	owner := Bootstrap
	if t.Owner != Bootstrap.Name {
		u, err := s.User(ctx, t.Owner)
		if err != nil || u.Disabled {
			return Principal{}, false
		}
		owner = u.Principal()
	}
	if !s.opt.Covers(owner.Division, t.Division) {
		return Principal{}, false // the user was moved: the token no longer fits
	}
	p := Principal{Kind: KindToken, Name: owner.Name, Display: owner.Display, Division: t.Division, TokenID: t.ID, TokenName: t.Name}
	for _, r := range t.Roles {
		if owner.Can(r) {
			p.Roles = append(p.Roles, r)
		}
	}
	s.noteUse(ctx, t.ID)
	return p, true
}

// noteUse records a token's use at most once a minute per process.
func (s *Store) noteUse(ctx context.Context, id string) {
	now := s.opt.Now()
	s.usedMu.Lock()
	last := s.used[id]
	if now.Sub(last) < time.Minute {
		s.usedMu.Unlock()
		return
	}
	s.used[id] = now
	s.usedMu.Unlock()
	s.rdb.HSet(ctx, s.usedKey(), id, now.UnixMilli())
}
