package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"warngate/accounts"
)

// User is a bureau user who signs in to the console.
type User struct {
	// Name signs in and is recorded in the audit trail: letters, digits, ".", "_" or "-".
	Name string `yaml:"name"`
	// DisplayName is shown in pages, e.g. 值班员.
	DisplayName string `yaml:"display_name"`
	// Roles: issuer, approver, responder, admin, viewer. Every user may view.
	Roles []string `yaml:"roles"`
	// Division is the 12-digit code of the division the user answers for
	// (a county, a township); empty means the whole jurisdiction.
	Division string `yaml:"division"`
	// PasswordHash is pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>, as
	// printed by `warngate user hash`.
	PasswordHash Secret `yaml:"password_hash"`
}

// Password hashing parameters every configured hash must meet.
const (
	PasswordScheme        = "pbkdf2-sha256"
	MinPasswordIterations = 210_000
	MinPasswordSalt       = 16 // bytes
	PasswordHashLen       = 32 // bytes of SHA-256
)

// SessionKeyMin is the shortest session_key accepted, in characters.
const SessionKeyMin = 32

// ParsePasswordHash splits a pbkdf2-sha256$<iterations>$<salt>$<hash> string,
// with standard base64 with or without padding. It checks the shape, not the password.
func ParsePasswordHash(s string) (iterations int, salt, hash []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != PasswordScheme {
		return 0, nil, nil, errors.New("want pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>; make one with: warngate user hash")
	}
	iterations, err = strconv.Atoi(parts[1])
	if err != nil || iterations < MinPasswordIterations {
		return 0, nil, nil, fmt.Errorf("iterations %q: at least %d", parts[1], MinPasswordIterations)
	}
	dec := base64.RawStdEncoding
	if salt, err = dec.DecodeString(strings.TrimRight(parts[2], "=")); err != nil || len(salt) < MinPasswordSalt {
		return 0, nil, nil, fmt.Errorf("salt: want at least %d bytes in base64", MinPasswordSalt)
	}
	if hash, err = dec.DecodeString(strings.TrimRight(parts[3], "=")); err != nil || len(hash) != PasswordHashLen {
		return 0, nil, nil, fmt.Errorf("hash: want %d bytes in base64", PasswordHashLen)
	}
	return iterations, salt, hash, nil
}

// checkUsers reads session_key_file and checks the users: unique names,
// known roles, well-formed hashes. Finish calls it.
func (c *Config) checkUsers() []error {
	var errs []error
	if c.SessionKeyFile != "" {
		// Finish runs more than once: a key equal to the file's was read from it.
		b, err := os.ReadFile(c.SessionKeyFile)
		switch key := Secret(strings.TrimSpace(string(b))); {
		case err != nil:
			errs = append(errs, fmt.Errorf("session_key_file: %w", err))
		case c.SessionKey != "" && c.SessionKey != key:
			errs = append(errs, errors.New("session_key and session_key_file: give one, not both"))
		default:
			c.SessionKey = key
		}
	}
	if c.SessionKey != "" && len(c.SessionKey) < SessionKeyMin {
		errs = append(errs, fmt.Errorf("session_key: at least %d characters; generate one with: head -c 32 /dev/urandom | base64", SessionKeyMin))
	}
	if len(c.Users) > 0 && c.SessionKey == "" && !c.Embedded() {
		errs = append(errs, errors.New("session_key: required with users and a real Redis, so that every API process accepts the same sign-in; set session_key or session_key_file"))
	}
	seen := map[string]int{}
	for i, u := range c.Users {
		at := fmt.Sprintf("users[%d]", i)
		if u.Name != "" {
			at = fmt.Sprintf("users[%d] (%s)", i, u.Name)
		}
		switch {
		case u.Name == "":
			errs = append(errs, fmt.Errorf("%s: name: required", at))
		case !validUserName(u.Name):
			errs = append(errs, fmt.Errorf("%s: name: use 1 to 64 letters, digits, '.', '_' or '-'", at))
		case accounts.ReservedNames[u.Name]:
			errs = append(errs, fmt.Errorf("%s: name: %q is reserved for the gateway's own actions; choose another", at, u.Name))
		case seen[u.Name] > 0:
			errs = append(errs, fmt.Errorf("%s: name: already used by users[%d]; names must be unique", at, seen[u.Name]-1))
		default:
			seen[u.Name] = i + 1
		}
		if len(u.Roles) == 0 {
			errs = append(errs, fmt.Errorf("%s: roles: give at least one of issuer, approver, responder, admin, viewer", at))
		}
		for _, r := range u.Roles {
			if _, err := accounts.ParseRole(r); err != nil {
				errs = append(errs, fmt.Errorf("%s: roles: %w", at, err))
			}
		}
		if u.Division != "" && (len(u.Division) != 12 || strings.Trim(u.Division, "0123456789") != "") {
			errs = append(errs, fmt.Errorf("%s: division: %q is not a 12-digit division code", at, u.Division))
		}
		if u.PasswordHash == "" {
			errs = append(errs, fmt.Errorf("%s: password_hash: required; make one with: warngate user hash", at))
		} else if _, _, _, err := ParsePasswordHash(string(u.PasswordHash)); err != nil {
			errs = append(errs, fmt.Errorf("%s: password_hash: %w", at, err))
		}
	}
	return errs
}

func validUserName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return false
		}
	}
	return true
}
