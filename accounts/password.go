package accounts

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// PasswordIterations is the PBKDF2-SHA256 work factor of new hashes (OWASP
// 2023: 600,000); config refuses fewer than config.MinPasswordIterations.
const PasswordIterations = 600_000

// MinPassword is the shortest password a user may be given, in characters.
const MinPassword = 10

const passwordScheme = "pbkdf2-sha256"

// HashPassword returns the PBKDF2-SHA256 hash of password in the form the
// configuration takes: pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>.
func HashPassword(password string) (string, error) {
	return hashPassword(password, PasswordIterations)
}

func hashPassword(password string, iterations int) (string, error) {
	if password == "" {
		return "", errors.New("accounts: empty password")
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	h, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("accounts: hash: %w", err)
	}
	enc := base64.RawStdEncoding
	return passwordScheme + "$" + strconv.Itoa(iterations) + "$" + enc.EncodeToString(salt) + "$" + enc.EncodeToString(h), nil
}

// passwordHash is a parsed hash.
type passwordHash struct {
	iterations int
	salt, hash []byte
}

// parsePasswordHash reads a hash that HashPassword made (config checks the
// configured ones in the same way, with messages for people).
func parsePasswordHash(s string) (passwordHash, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != passwordScheme {
		return passwordHash{}, errors.New("want pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>")
	}
	var h passwordHash
	var err error
	if h.iterations, err = strconv.Atoi(parts[1]); err != nil || h.iterations < 1 {
		return passwordHash{}, fmt.Errorf("iterations %q: not a positive number", parts[1])
	}
	dec := base64.RawStdEncoding
	if h.salt, err = dec.DecodeString(strings.TrimRight(parts[2], "=")); err != nil || len(h.salt) == 0 {
		return passwordHash{}, errors.New("salt: not base64")
	}
	if h.hash, err = dec.DecodeString(strings.TrimRight(parts[3], "=")); err != nil || len(h.hash) != sha256.Size {
		return passwordHash{}, fmt.Errorf("hash: want %d bytes in base64", sha256.Size)
	}
	return h, nil
}

func (h passwordHash) check(password string) bool {
	got, err := pbkdf2.Key(sha256.New, password, h.salt, h.iterations, len(h.hash))
	return err == nil && subtle.ConstantTimeCompare(got, h.hash) == 1
}
