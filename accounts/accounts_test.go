package accounts_test

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"warngate/accounts"
	"warngate/internal/redistest"
)

// cheapHash is a password hash of the configured form with few iterations,
// so that tests under -race do not spend seconds on PBKDF2.
func cheapHash(pw string) string {
	salt := []byte("0123456789abcdef")
	h, _ := pbkdf2.Key(sha256.New, pw, salt, 1000, 32)
	return "pbkdf2-sha256$1000$" + base64.RawStdEncoding.EncodeToString(salt) + "$" + base64.RawStdEncoding.EncodeToString(h)
}

var key = []byte("accounts-test-session-key-0123456789")

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// covers treats codes as a tree by prefix for these tests: a county
// 530102000000 holds 530102001000.
func covers(a, b string) bool {
	if a == "" {
		return true
	}
	return strings.HasPrefix(b, strings.TrimRight(a, "0"))
}

func newStore(t *testing.T, rdb redis.UniversalClient, prefix string, c *clock, edit func(*accounts.Options)) *accounts.Store {
	t.Helper()
	o := accounts.Options{Prefix: prefix, Key: key, FailDelay: time.Millisecond, Iterations: 1000, Covers: covers, Now: c.Now}
	if edit != nil {
		edit(&o)
	}
	s, err := accounts.New(rdb, []accounts.User{
		{Name: "duty", DisplayName: "值班员", Roles: []accounts.Role{accounts.RoleIssuer}, PasswordHash: cheapHash("duty-password")},
		{Name: "boss", DisplayName: "管理员", Roles: []accounts.Role{accounts.RoleAdmin, accounts.RoleIssuer}, PasswordHash: cheapHash("boss-password")},
	}, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func request(method string, c *http.Cookie, hdr ...string) *http.Request {
	r := httptest.NewRequest(method, "http://gw.example/api/v1/warnings", nil)
	if c != nil {
		r.AddCookie(c)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	return r
}

func TestHashPassword(t *testing.T) {
	h, err := accounts.HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^pbkdf2-sha256\$600000\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("hash %q is not pbkdf2-sha256$600000$<salt>$<hash>", h)
	}
	if h2, _ := accounts.HashPassword("correct horse battery"); h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	rdb := redistest.Client(t, redistest.DBAccounts)
	s, err := accounts.New(rdb, []accounts.User{{Name: "a", Roles: []accounts.Role{accounts.RoleViewer}, PasswordHash: h}},
		accounts.Options{Prefix: redistest.Prefix(t, "hash"), Key: key, FailDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignIn(context.Background(), "a", "correct horse battery", "x"); err != nil {
		t.Errorf("right password refused: %v", err)
	}
	for _, bad := range []string{"", "pbkdf2-sha256$x$a$b", "md5$1$AAAA$AAAA", "pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA$AAAA"} {
		if _, err := accounts.New(rdb, []accounts.User{{Name: "a", PasswordHash: bad}}, accounts.Options{Key: key}); err == nil {
			t.Errorf("hash %q accepted", bad)
		}
	}
}

func TestSessionsLiveOnTheServer(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Date(2026, 7, 1, 20, 0, 0, 0, time.UTC)}
	prefix := redistest.Prefix(t, "sess")
	s := newStore(t, rdb, prefix, c, nil)

	p, err := s.SignIn(ctx, "duty", "duty-password", "10.0.0.2")
	if err != nil || p.Name != "duty" || !p.Can(accounts.RoleIssuer) || p.Can(accounts.RoleApprover) || p.Kind != accounts.KindUser {
		t.Fatalf("sign-in: %+v %v", p, err)
	}
	if _, err := s.SignIn(ctx, "duty", "wrong", "10.0.0.1"); err != accounts.ErrBadCredentials {
		t.Errorf("wrong password: %v", err)
	}
	if _, err := s.SignIn(ctx, "nobody", "wrong", "10.0.0.1"); err != accounts.ErrBadCredentials {
		t.Errorf("unknown user: %v, want the same answer as a wrong password", err)
	}
	ck, err := s.StartSession(ctx, p, "10.0.0.2")
	if err != nil {
		t.Fatal(err)
	}
	if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Secure || ck.Name != accounts.SessionCookie {
		t.Errorf("cookie attributes: %+v", ck)
	}
	if got, ok := s.Authenticate(request("GET", ck)); !ok || got.Name != "duty" {
		t.Fatalf("GET with the cookie: %+v %v", got, ok)
	}
	// Another API process on the same Redis and key knows the session.
	other := newStore(t, rdb, prefix, c, nil)
	if _, ok := other.Authenticate(request("GET", ck)); !ok {
		t.Error("a second process does not know the session")
	}
	_, csrf, _ := s.Session(request("GET", ck))
	for name, r := range map[string]*http.Request{
		"POST without the CSRF token":     request("POST", ck),
		"POST with a wrong CSRF token":    request("POST", ck, accounts.CSRFHeader, "nope"),
		"POST from another origin":        request("POST", ck, accounts.CSRFHeader, csrf, "Origin", "https://evil.example"),
		"cookie with another user's name": request("GET", &http.Cookie{Name: accounts.SessionCookie, Value: "Ym9zcw" + ck.Value[strings.Index(ck.Value, "."):]}),
		"cookie signed with another key": func() *http.Request {
			forged := *ck
			forged.Value = ck.Value[:strings.LastIndex(ck.Value, ".")] + ".AAAAAAAAAAAAAAAAAAAAAAAA"
			return request("GET", &forged)
		}(),
	} {
		if _, ok := s.Authenticate(r); ok {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, ok := s.Authenticate(request("POST", ck, accounts.CSRFHeader, csrf, "Origin", "http://gw.example")); !ok {
		t.Error("POST with the token from the same origin refused")
	}

	// Signing out ends the session on the server: a copy of the cookie,
	// as a thief would keep it, stops working.
	stolen := *ck
	if err := s.EndSession(ctx, request("GET", ck)); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate(request("GET", &stolen)); ok {
		t.Error("a copy of the cookie still works after sign-out")
	}

	// Revoking ends every session of a user, on every process.
	ck1, _ := s.StartSession(ctx, p, "a")
	ck2, _ := other.StartSession(ctx, p, "b")
	if n, err := s.RevokeSessions(ctx, "duty"); err != nil || n != 2 {
		t.Errorf("revoke: %d %v, want 2 sessions ended", n, err)
	}
	for _, k := range []*http.Cookie{ck1, ck2} {
		if _, ok := other.Authenticate(request("GET", k)); ok {
			t.Error("a revoked session still works")
		}
	}

	ck3, _ := s.StartSession(ctx, p, "a")
	c.Add(8*time.Hour + time.Second)
	if _, ok := s.Authenticate(request("GET", ck3)); ok {
		t.Error("expired session accepted")
	}
}

func TestSignInThrottleCountsBeforeHashing(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Date(2026, 7, 1, 20, 0, 0, 0, time.UTC)}
	slow := func(o *accounts.Options) {
		o.Iterations, o.FailDelay = 200_000, 5*time.Millisecond // work that would queue if it were done
	}
	prefix := redistest.Prefix(t, "thr")
	a := newStore(t, rdb, prefix, c, slow)
	b := newStore(t, rdb, prefix, c, slow) // a second API process

	// 400 wrong passwords at once from one address, over two processes:
	// only the first 20 are checked; the rest are refused without hashing.
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[error]int{}
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := a
			if i%2 == 1 {
				st = b
			}
			_, err := st.SignIn(ctx, "user"+string(rune('a'+i%20)), "wrong", "203.0.113.9")
			mu.Lock()
			answers[err]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if hashed := a.PasswordChecks() + b.PasswordChecks(); hashed > 20 {
		t.Errorf("%d passwords were checked; at most 20 (the per-address limit) may be", hashed)
	}
	if answers[accounts.ErrThrottled] < 380 {
		t.Errorf("answers %v: want at least 380 throttled", answers)
	}
	for err := range answers {
		if err != accounts.ErrThrottled && err != accounts.ErrBusy && err != accounts.ErrBadCredentials {
			t.Errorf("unexpected answer %v", err)
		}
	}
	// Another address is not held back by the first.
	if _, err := a.SignIn(ctx, "duty", "duty-password", "198.51.100.1"); err != nil {
		t.Errorf("a user from another address: %v", err)
	}

	// One account, tried from many addresses, is held back too.
	for i := range 10 {
		if _, err := a.SignIn(ctx, "boss", "wrong", "192.0.2."+string(rune('0'+i))); err != accounts.ErrBadCredentials {
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	before := a.PasswordChecks()
	if _, err := b.SignIn(ctx, "boss", "boss-password", "192.0.2.200"); err != accounts.ErrThrottled {
		t.Errorf("11th attempt on one account: %v, want throttled", err)
	}
	if a.PasswordChecks() != before {
		t.Error("a throttled attempt was hashed")
	}
	c.Add(11 * time.Minute) // the counters expire in Redis's time, not ours
	rdb.Del(ctx, prefix+":signin:u:boss")
	if _, err := b.SignIn(ctx, "boss", "boss-password", "192.0.2.200"); err != nil {
		t.Errorf("after the window: %v", err)
	}
}

func TestSignInBusyAnswersAtOnce(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Now()}
	s := newStore(t, rdb, redistest.Prefix(t, "busy"), c, func(o *accounts.Options) {
		o.Iterations, o.HashSlots, o.HashWait, o.MaxPerAddress = 300_000, 1, 20*time.Millisecond, 1000
	})
	// A user whose password takes real work to check (the bootstrap users'
	// cheap hashes would not keep the slot busy).
	if _, err := s.CreateUser(ctx, accounts.NewUser{Name: "slow", Password: "slow-password", Roles: []accounts.Role{accounts.RoleViewer}}, "test"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	busy := 0
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SignIn(ctx, "slow", "wrong", "10.9.9."+string(rune('0'+i)))
			if errors.Is(err, accounts.ErrBusy) {
				mu.Lock()
				busy++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if busy == 0 {
		t.Error("eight slow sign-ins on one slot: none was refused as busy; they queued")
	}
}

func TestUsersAtRunTime(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Date(2026, 7, 1, 20, 0, 0, 0, time.UTC)}
	s := newStore(t, rdb, redistest.Prefix(t, "users"), c, nil)

	_, err := s.CreateUser(ctx, accounts.NewUser{Name: "bad name", Password: "short", Roles: []accounts.Role{"king"}}, "boss")
	var msgs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		msgs = append(msgs, e.Error())
	}
	want := []string{"name: use 1 to 64 letters, digits, '.', '_' or '-'", "password: at least 10 characters",
		`roles[0]: unknown role "king": use issuer, approver, responder, admin, viewer`}
	if strings.Join(msgs, "|") != strings.Join(want, "|") {
		t.Errorf("every problem at once:\n got %q\nwant %q", msgs, want)
	}
	if _, err := s.CreateUser(ctx, accounts.NewUser{Name: "duty", Password: "0123456789", Roles: []accounts.Role{accounts.RoleViewer}}, "boss"); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("a bootstrap user's name: %v", err)
	}
	u, err := s.CreateUser(ctx, accounts.NewUser{Name: "wuhua", DisplayName: "五华区应急局", Password: "wuhua-password",
		Roles: []accounts.Role{accounts.RoleIssuer, accounts.RoleViewer}, Division: "530102000000"}, "boss")
	if err != nil || u.Division != "530102000000" {
		t.Fatalf("create: %+v %v", u, err)
	}
	if _, err := s.CreateUser(ctx, accounts.NewUser{Name: "wuhua", Password: "0123456789", Roles: []accounts.Role{accounts.RoleViewer}}, "boss"); !errors.Is(err, accounts.ErrUserExists) {
		t.Errorf("twice: %v", err)
	}
	p, err := s.SignIn(ctx, "wuhua", "wuhua-password", "10.1.1.1")
	if err != nil || p.Division != "530102000000" || !p.Can(accounts.RoleIssuer) {
		t.Fatalf("the new user signs in: %+v %v", p, err)
	}
	ck, _ := s.StartSession(ctx, p, "10.1.1.1")

	// A new password ends the user's sessions; the old password stops working.
	pw := "another-password"
	before, after, err := s.UpdateUser(ctx, "wuhua", accounts.UserChange{Password: &pw}, "boss")
	if err != nil || before.PasswordHash == after.PasswordHash || after.UpdatedBy != "boss" {
		t.Fatalf("update: %v", err)
	}
	if _, ok := s.Authenticate(request("GET", ck)); ok {
		t.Error("a session outlived a password reset")
	}
	if _, err := s.SignIn(ctx, "wuhua", "wuhua-password", "10.1.1.1"); err != accounts.ErrBadCredentials {
		t.Errorf("the old password: %v", err)
	}
	// A disabled user cannot sign in.
	yes := true
	if _, _, err := s.UpdateUser(ctx, "wuhua", accounts.UserChange{Disabled: &yes}, "boss"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignIn(ctx, "wuhua", pw, "10.1.1.1"); err != accounts.ErrBadCredentials {
		t.Errorf("a disabled user: %v", err)
	}
	if _, _, err := s.UpdateUser(ctx, "duty", accounts.UserChange{Disabled: &yes}, "boss"); !errors.Is(err, accounts.ErrBootstrapUser) {
		t.Errorf("changing a bootstrap user: %v", err)
	}
	users, _ := s.Users(ctx)
	if len(users) != 3 || users[0].Name != "boss" || !users[0].Bootstrap || users[2].Name != "wuhua" {
		t.Errorf("users: %+v", users)
	}
	if _, err := s.DeleteUser(ctx, "wuhua"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.User(ctx, "wuhua"); !errors.Is(err, accounts.ErrNoUser) {
		t.Errorf("after delete: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	rdb := redistest.Client(t, redistest.DBAccounts)
	c := &clock{now: time.Date(2026, 7, 1, 20, 0, 0, 0, time.UTC)}
	prefix := redistest.Prefix(t, "tok")
	s := newStore(t, rdb, prefix, c, nil)
	owner, _ := s.CreateUser(ctx, accounts.NewUser{Name: "feeder", Password: "feeder-password",
		Roles: []accounts.Role{accounts.RoleIssuer, accounts.RoleViewer}, Division: "530102000000"}, "boss")
	op := owner.Principal()

	_, _, err := s.CreateToken(ctx, op, accounts.TokenRequest{Name: "", Roles: []accounts.Role{accounts.RoleApprover}, Division: "530103000000"})
	if err == nil || !strings.Contains(err.Error(), "name: required") || !strings.Contains(err.Error(), "roles[0]: you do not hold the approver role") ||
		!strings.Contains(err.Error(), "division: 530103000000 is outside your division") || !strings.Contains(err.Error(), "expires: required") {
		t.Errorf("every problem at once: %v", err)
	}
	tok, secret, err := s.CreateToken(ctx, op, accounts.TokenRequest{Name: "cap-feed", Roles: []accounts.Role{accounts.RoleIssuer},
		Division: "530102001000", Expires: c.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tok.Hash, secret) || !strings.HasPrefix(secret, "wgt_"+tok.ID+"_") {
		t.Errorf("token %+v secret %q", tok, secret)
	}
	raw, _ := rdb.HGet(ctx, prefix+":tokens", tok.ID).Result()
	if strings.Contains(raw, secret[len("wgt_"+tok.ID+"_"):]) {
		t.Error("the token's secret is stored in Redis")
	}
	bearer := func(v string) *http.Request { return request("POST", nil, "Authorization", "Bearer "+v) }
	p, ok := s.Authenticate(bearer(secret))
	if !ok || p.Kind != accounts.KindToken || p.Name != "feeder" || p.Division != "530102001000" || p.Actor() != "feeder/token:cap-feed" {
		t.Fatalf("token principal: %+v %v", p, ok)
	}
	if _, ok := s.Authenticate(bearer(secret[:len(secret)-2] + "xx")); ok {
		t.Error("a wrong secret works")
	}
	list, _ := s.Tokens(ctx)
	if len(list) != 1 || list[0].LastUsed.IsZero() {
		t.Errorf("last use not recorded: %+v", list)
	}
	// The owner loses the issuer role: the token loses it too.
	viewer := []accounts.Role{accounts.RoleViewer}
	s.UpdateUser(ctx, "feeder", accounts.UserChange{Roles: &viewer}, "boss")
	if p, ok := s.Authenticate(bearer(secret)); !ok || p.Can(accounts.RoleIssuer) {
		t.Errorf("token of a user without the role: %+v", p)
	}
	if err := s.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Authenticate(bearer(secret)); ok {
		t.Error("a revoked token works")
	}
	// Expiry.
	tok2, secret2, _ := s.CreateToken(ctx, op, accounts.TokenRequest{Name: "short", Roles: viewer, Division: "530102000000", Expires: c.Now().Add(time.Hour)})
	c.Add(time.Hour)
	if _, ok := s.Authenticate(bearer(secret2)); ok {
		t.Error("an expired token works")
	}
	// Deleting the user revokes their tokens.
	_, secret3, _ := s.CreateToken(ctx, op, accounts.TokenRequest{Name: "third", Roles: viewer, Division: "530102000000", Expires: c.Now().Add(time.Hour)})
	s.DeleteUser(ctx, "feeder")
	if _, ok := s.Authenticate(bearer(secret3)); ok {
		t.Error("a deleted user's token works")
	}
	if _, err := s.Token(ctx, tok2.ID); !errors.Is(err, accounts.ErrNoToken) {
		t.Errorf("a deleted user's token is kept: %v", err)
	}
}
