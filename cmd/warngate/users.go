package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"

	"warngate/accounts"
	"warngate/config"
	"warngate/warning"
)

const userUsage = "usage: warngate user hash   (reads a password from standard input and prints its hash for password_hash in users:)"

// userCommand runs `warngate user …`.
func userCommand(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 1 || args[0] != "hash" {
		return errors.New(userUsage)
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if len([]rune(pw)) < 10 {
		return errors.New("the password must have at least 10 characters")
	}
	h, err := accounts.HashPassword(pw)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}

// demoUser is a user generated for the embedded demo, with the password
// that the banner prints.
type demoUser struct {
	config.User
	Password string
}

var demo struct {
	sync.Mutex
	users map[*config.Config][]demoUser
}

// demoUsers returns the demo users of an embedded configuration without
// users of its own: duty (issuer), leader (approver), watch (viewer) and
// manager (admin) for the whole city, and huashan (responder) for 华山街道 of
// 五华区, with random passwords, added to cfg.Users the first time it is
// asked. It returns nothing for any other configuration.
func demoUsers(cfg *config.Config) []demoUser {
	demo.Lock()
	defer demo.Unlock()
	if us, ok := demo.users[cfg]; ok {
		return us
	}
	if !cfg.Embedded() || len(cfg.Users) > 0 {
		return nil
	}
	var out []demoUser
	for _, u := range []config.User{
		{Name: "duty", DisplayName: "值班员", Roles: []string{"issuer"}},
		{Name: "leader", DisplayName: "带班领导", Roles: []string{"approver"}},
		{Name: "watch", DisplayName: "观察员", Roles: []string{"viewer"}},
		{Name: "manager", DisplayName: "系统管理员", Roles: []string{"admin"}},
		{Name: "huashan", DisplayName: "华山街道值班室", Roles: []string{"responder"}, Division: "530102001000"},
	} {
		pw := randomToken()[:12]
		h, err := accounts.HashPassword(pw)
		if err != nil {
			panic(err) // only for an empty password
		}
		u.PasswordHash = config.Secret(h)
		out = append(out, demoUser{User: u, Password: pw})
		cfg.Users = append(cfg.Users, u)
	}
	if demo.users == nil {
		demo.users = map[*config.Config][]demoUser{}
	}
	demo.users[cfg] = out
	return out
}

// newAccounts returns the store of users, sessions and API tokens, with the
// configuration's users (or the demo users) as its bootstrap users.
func (a *app) newAccounts() (*accounts.Store, error) {
	demoUsers(a.cfg)
	key := string(a.cfg.SessionKey)
	if key == "" {
		if !a.cfg.Embedded() && len(a.cfg.Users) > 0 {
			a.log.Error("session_key is not set: console sign-ins will not survive a restart nor work across API processes")
		}
		key = randomToken()
	}
	boot := make([]accounts.User, 0, len(a.cfg.Users))
	for _, u := range a.cfg.Users {
		roles := make([]accounts.Role, len(u.Roles))
		for i, r := range u.Roles {
			roles[i] = accounts.Role(r)
		}
		boot = append(boot, accounts.User{Name: u.Name, DisplayName: u.DisplayName, Roles: roles, Division: u.Division, PasswordHash: string(u.PasswordHash)})
	}
	secure := false
	if u, err := url.Parse(a.cfg.PublicURL); err == nil && u.Scheme == "https" {
		secure = true
	}
	tree := a.tree
	return accounts.New(a.rdb, boot, accounts.Options{
		Prefix: a.cfg.Redis.SharedPrefix(""), Key: []byte(key), Secure: secure,
		Covers: func(x, y string) bool { return x == "" || tree.Covers(x, y) },
	})
}

// bypassLevels are the levels the bootstrap token releases without approval.
func bypassLevels(cfg *config.Config) []warning.Level {
	var out []warning.Level
	for _, s := range cfg.Approval.AdminTokenBypass {
		var l warning.Level
		if err := l.UnmarshalText([]byte(s)); err == nil {
			out = append(out, l)
		}
	}
	return out
}
