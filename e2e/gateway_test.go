package e2e_test

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warngate/accounts"
	"warngate/api"
	"warngate/channels"
	"warngate/channels/sim"
	"warngate/dispatcher"
	"warngate/internal/link"
	"warngate/internal/redistest"
	"warngate/ledger"
	"warngate/policy"
	"warngate/region"
	"warngate/roster"
	"warngate/warning"
)

// dbE2E is this package's Redis database (see internal/redistest).
const dbE2E = redistest.DBE2E

// Passwords of the console users.
const (
	dutyPassword   = "duty-pass-0001"
	leaderPassword = "leader-pass-0002"
	adminPassword  = "admin-pass-0003" // 五华区's administrator
)

// gateway is a whole warngate in the test process, wired as cmd/warngate
// wires it: API with the console, dispatcher workers, ledger and the
// provider simulator reporting back over HTTP.
type gateway struct {
	url    string
	tree   *region.Tree
	roster region.Roster
	ledger *ledger.Ledger

	mu    sync.Mutex
	links map[string]string // person id → the confirmation link their SMS carried
}

// cheapHash is a password hash in the configured form with few iterations,
// so that a test under -race does not spend seconds in PBKDF2.
func cheapHash(pw string) string {
	salt := []byte("e2e-test-salt-16")
	h, _ := pbkdf2.Key(sha256.New, pw, salt, 1000, 32)
	enc := base64.RawStdEncoding
	return "pbkdf2-sha256$1000$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(h)
}

// startGateway starts a gateway on the default policy, which tune may change.
func startGateway(t *testing.T, tune ...func(*policy.Policy)) *gateway {
	t.Helper()
	rdb := redistest.Client(t, dbE2E)
	if err := rdb.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tree := region.Kunming()
	demo := region.Demo(tree, region.DemoOptions{ResidentsPerVillage: 4, WeChatShare: 0.5, HouseholdsPerVillage: 2})
	rosters := roster.New(rdb, roster.Options{Prefix: "wg", Tree: tree, Base: demo})
	roster := rosters.Live()
	l := ledger.New(rdb, "wg", nil)
	reg := prometheus.NewRegistry()
	g := &gateway{tree: tree, roster: roster, ledger: l, links: map[string]string{}}

	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	g.url = srv.URL
	// Officials who are called answer at once and press no key: every call
	// is delivered, and confirmations are the tests' own.
	p := sim.New(sim.Config{CallbackURL: srv.URL + "/callbacks/sim", Secret: "e2e-sim-secret", ReportDelay: 20 * time.Millisecond,
		Voice: sim.VoiceConfig{NoAnswer: -1, Silent: true, KeyDelay: 20 * time.Millisecond}}, srv.Client(), log)
	p.OnAccept(func(b *channels.Batch, _ time.Time) {
		if b.Channel != warning.SMS {
			return
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, r := range b.Recipients {
			text := channels.Compose(b, r).Plain()
			if i := strings.Index(text, srv.URL+"/a/"); i >= 0 {
				g.links[r.ID] = strings.Fields(text[i:])[0]
			}
		}
	})
	notifiers := map[warning.Channel]channels.Notifier{}
	for _, ch := range warning.Channels {
		notifiers[ch] = p
	}
	links, err := link.New([]byte("e2e-link-key-0123456789"), nil)
	if err != nil {
		t.Fatal(err)
	}
	pol := policy.Default()
	for _, f := range tune {
		f(pol)
	}
	d := dispatcher.New(dispatcher.Config{
		AckURL: func(w *warning.Warning, ref warning.Ref) string {
			return srv.URL + "/a/" + links.Token(ref, w.Expires.Add(time.Hour))
		},
	}, dispatcher.Deps{Redis: rdb, Ledger: l, Policy: pol, Tree: tree, Roster: roster, Rosters: rosters,
		Checklists: policy.DefaultChecklists(), Notifiers: notifiers, Metrics: dispatcher.NewMetrics(reg), Log: log})
	users, err := accounts.New(rdb, []accounts.User{
		{Name: "duty", DisplayName: "值班员", Roles: []accounts.Role{accounts.RoleIssuer}, PasswordHash: cheapHash(dutyPassword)},
		{Name: "leader", DisplayName: "带班领导", Roles: []accounts.Role{accounts.RoleApprover}, PasswordHash: cheapHash(leaderPassword)},
		{Name: "wh-admin", DisplayName: "五华区管理员", Roles: []accounts.Role{accounts.RoleAdmin}, Division: "530102000000", PasswordHash: cheapHash(adminPassword)},
	}, accounts.Options{Key: []byte("e2e-session-key-0123456789abcdef"), FailDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	handler = api.New(api.Options{Dispatcher: d, Ledger: l, Tree: tree, Roster: roster, Rosters: rosters,
		Receivers: []api.ReportReceiver{&sim.Receiver{Secret: "e2e-sim-secret"}}, AdminToken: "e2e-admin-token",
		Accounts: users, Registry: reg, Log: log, Ready: l.Ping, Links: links, PublicURL: srv.URL})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close(); srv.Close() })
	return g
}

// link returns the confirmation link the SMS to a person carried.
func (g *gateway) link(person string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.links[person]
}

// gridWorker finds, under area, a grid worker with call-list households.
func (g *gateway) gridWorker(area string) (region.Person, bool) {
	var found region.Person
	g.tree.Walk(area, func(d *region.Division) bool {
		if found.ID != "" {
			return false
		}
		if d.Level != region.Village {
			return true
		}
		workers := map[string]bool{}
		g.roster.Households(d.Code, func(h region.Household) bool { workers[h.GridWorker] = true; return true })
		g.roster.People(d.Code, func(p region.Person) bool {
			if p.Role == region.GridWorker && workers[p.ID] && p.Phone != "" {
				found = p
				return false
			}
			return true
		})
		return found.ID == ""
	})
	return found, found.ID != ""
}
