package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"

	"warngate/api"
	"warngate/config"
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
	h, err := api.HashPassword(pw)
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
// users of its own: duty (issuer), leader (approver) and watch (viewer), with
// random passwords, added to cfg.Users the first time it is asked. It returns
// nothing for any other configuration.
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
	} {
		pw := randomToken()[:12]
		h, err := api.HashPassword(pw)
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

// users returns the console's users from the configuration (or the demo
// users), or nil when there are none.
func (a *app) users() api.Users {
	demoUsers(a.cfg)
	if len(a.cfg.Users) == 0 {
		return nil
	}
	key := string(a.cfg.SessionKey)
	if key == "" {
		if !a.cfg.Embedded() {
			a.log.Error("session_key is not set: console sign-ins will not survive a restart nor work across API processes")
		}
		key = randomToken()
	}
	users := make([]api.User, 0, len(a.cfg.Users))
	for _, u := range a.cfg.Users {
		roles := make([]api.Role, len(u.Roles))
		for i, r := range u.Roles {
			roles[i] = api.Role(r)
		}
		users = append(users, api.User{Name: u.Name, Display: u.DisplayName, Roles: roles, PasswordHash: string(u.PasswordHash)})
	}
	secure := false
	if u, err := url.Parse(a.cfg.PublicURL); err == nil && u.Scheme == "https" {
		secure = true
	}
	store, err := api.NewUserStore(users, []byte(key), api.SessionOptions{Secure: secure})
	if err != nil {
		// config.checkUsers refuses these at start-up; a store without the
		// users it could not read still lets the others in.
		a.log.Error("console users", "err", err)
	}
	return store
}
